"""The exporters: the nginx exporter reading the proxy's stub_status over the app network, the node
exporter reading the ops container's backup and drill results (checked with the real
node_exporter), and their scrape targets."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker as docker
import pytest
from conftest import ROOT, free_port, require_tool, service_containers, wait_for_port

from components.config import Network, Service, Services
from components.containers.endpoints import Endpoint
from components.containers.network import Networks, NetworksArgs
from components.naming import Naming
from components.services.exporters import (
    TEXTFILE_DIR,
    Exporters,
    ExportersArgs,
    node_exporter_command,
)
from components.services.proxy import STATUS_PORT
from preflight.engine import Plan

OPS = ROOT / "images" / "ops"
if str(OPS) not in sys.path:
    sys.path.insert(0, str(OPS))

from stagecraft_ops import metrics  # noqa: E402

NAMING = Naming(app="acme", environment="staging", stack="staging", project="p-1234")
SUBNETS = Network(
    edge="10.9.0.0/24",
    app="10.9.1.0/24",
    data="10.9.2.0/24",
    chroma="10.9.4.0/24",
    temporal="10.9.5.0/24",
    monitoring="10.9.3.0/24",
    egress="10.9.6.0/24",
    alerting="10.9.7.0/24",
)


def _service(image: str) -> dict[str, Any]:
    return {"image": image, "memory_mb": 64, "cpus": 0.25}


SERVICES = Services.model_validate(
    {
        "postgres": {**_service("postgres:15.12-bookworm"), "memory_mb": 1024},
        "redis": {**_service("redis:7.4.2-bookworm"), "memory_mb": 512},
        "chroma": {**_service("chromadb/chroma:1.0.12"), "memory_mb": 1024},
        "temporal": {**_service("temporalio/server:1.27.2"), "memory_mb": 1024},
        "temporal_ui": _service("temporalio/ui:2.37.2"),
        "temporal_admin_tools": _service("temporalio/admin-tools:1.27.2-tctl-1.18.2-cli-1.3.0"),
        "api": {**_service("ghcr.io/acme/api:2.13.4"), "memory_mb": 512, "port": 8001},
        "web": {**_service("ghcr.io/acme/web:2.13.4"), "port": 3000},
        "proxy": _service("nginx:1.27.4-alpine"),
        "prometheus": _service("prom/prometheus:v3.2.1"),
        "grafana": _service("grafana/grafana:11.5.2"),
        "postgres_exporter": _service("quay.io/prometheuscommunity/postgres-exporter:v0.17.1"),
        "redis_exporter": _service("oliver006/redis_exporter:v1.67.0-alpine"),
        "node_exporter": _service("prom/node-exporter:v1.9.0"),
        "nginx_exporter": _service("nginx/nginx-prometheus-exporter:1.4.1"),
        "alertmanager": _service("prom/alertmanager:v0.28.1"),
    }
)
NGINX_EXPORTER = Service.model_validate(_service("nginx/nginx-prometheus-exporter:1.4.1"))


def _build(with_nginx: bool = True, **overrides: Any) -> Callable[[], None]:
    def build() -> None:
        networks = Networks("networks", NetworksArgs(naming=NAMING, settings=SUBNETS)).networks
        textfile = docker.Volume("ops-metrics", name=NAMING.volume("ops", "metrics"))
        args: dict[str, Any] = {
            "naming": NAMING,
            "services": SERVICES,
            "monitoring_network": networks["monitoring"],
            "data_network": networks["data"],
            "postgres": Endpoint("acme-staging-postgres", 5432),
            "postgres_user": "acme_staging_monitor",
            "postgres_password": pulumi.Output.secret("pg-Exporter-1"),
            "redis": Endpoint("acme-staging-redis", 6379),
            "redis_user": "exporter",
            "redis_password": pulumi.Output.secret("redis-Exporter-2"),
            "textfile_volume": textfile,
        }
        if with_nginx:
            args |= {
                "proxy_status": Endpoint("acme-staging-proxy", STATUS_PORT),
                "nginx_exporter": NGINX_EXPORTER,
                "app_network": networks["app"],
            }
        args |= overrides
        exporters = Exporters("exporters", ExportersArgs(**args))
        jobs = {target.job: target.address for target in exporters.scrape_targets}
        expected = {
            "postgres": "acme-staging-postgres-exporter:9187",
            "redis": "acme-staging-redis-exporter:9121",
            "node": "acme-staging-node-exporter:9100",
        }
        if with_nginx:
            expected["nginx"] = "acme-staging-nginx-exporter:9113"
        assert jobs == expected

    return build


def test_nginx_exporter_reads_the_proxy_status_over_the_app_network(run_mocked: Callable[..., Plan]) -> None:
    containers = service_containers(run_mocked("staging", _build()))
    nginx = containers["nginx-exporter"].inputs
    assert nginx["command"] == [
        "--nginx.scrape-uri=http://acme-staging-proxy:8082/stub_status",
        "--web.listen-address=:9113",
    ]
    assert {n["name"] for n in nginx["networksAdvanced"]} == {"acme-staging-app", "acme-staging-monitoring"}
    # The image is FROM scratch: the only thing its healthcheck can run is the exporter itself.
    assert nginx["healthcheck"]["tests"] == ["CMD", "/usr/bin/nginx-prometheus-exporter", "--version"]
    assert nginx["user"] == "1001:1001" and nginx["readOnly"] is True and "ports" not in nginx


def test_node_exporter_reads_the_ops_metrics_read_only(run_mocked: Callable[..., Plan]) -> None:
    containers = service_containers(run_mocked("staging", _build()))
    node = containers["node-exporter"].inputs
    assert f"--collector.textfile.directory={TEXTFILE_DIR}" in node["command"]
    assert {"target": TEXTFILE_DIR, "type": "volume", "source": "acme-staging-ops-metrics", "readOnly": True} in node[
        "mounts"
    ]
    assert "--collector.postmaster" in containers["postgres-exporter"].inputs["command"]


def test_without_the_proxy_there_is_no_nginx_exporter(run_mocked: Callable[..., Plan]) -> None:
    assert "nginx-exporter" not in service_containers(run_mocked("staging", _build(with_nginx=False)))


def test_half_an_nginx_exporter_is_refused(run_mocked: Callable[..., Plan]) -> None:
    with pytest.raises(Exception, match="app_network missing"):
        run_mocked("staging", _build(with_nginx=True, app_network=None))


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The real node_exporter with the rendered flags, its textfile directory in tmp_path."""
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    port = free_port()
    flags = [flag.replace(TEXTFILE_DIR, str(textfile)) for flag in node_exporter_command(textfile=True)]
    process = subprocess.Popen(
        [
            require_tool("prometheus-node-exporter"),
            *flags,
            f"--web.listen-address=127.0.0.1:{port}",
            "--collector.disable-defaults",
            "--collector.textfile",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port)
        yield port, textfile
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("stagecraft_") or line.startswith("node_textfile_scrape_error"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_node_exporter_serves_what_the_ops_tool_writes(node_exporter: tuple[int, Path]) -> None:
    port, textfile = node_exporter
    finished = time.time()
    metrics.record_run(str(textfile), "backup", finished, 42.0, True, {"postgres/acme_staging": 1024, "redis": 10})
    metrics.record_run(str(textfile), "drill", finished, 60.0, False)
    values = _scrape(port)
    assert values["node_textfile_scrape_error"] == 0
    assert values["stagecraft_backup_last_success_timestamp_seconds"] == pytest.approx(finished, abs=1)
    assert values["stagecraft_backup_last_run_success"] == 1
    assert values['stagecraft_backup_artifact_bytes{artifact="redis"}'] == 10
    assert values["stagecraft_restore_drill_last_run_success"] == 0
    assert "stagecraft_restore_drill_last_success_timestamp_seconds" not in values
