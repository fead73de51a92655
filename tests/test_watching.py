"""Every long-running service of both stacks is watched by Prometheus, through the prometheus.yml
the plan uploads into Prometheus's files carrier; and every address in that file reaches a
container Prometheus can actually talk to: one on a network Prometheus joins, found by its
container name or its network alias there, and the container that job is meant to watch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import service_containers, stack_document

from components import yaml_io
from components.containers.container import config_path
from components.services.prometheus import WATCHING_JOB, unwatched
from preflight.engine import Plan, PlannedResource, plan

VARIANTS = ("staging", "prod", "prod-acme")
LOOPBACK = ("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def variant_plans(plans: dict[str, Plan], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Plan]:
    """Both stacks, and prod with Let's Encrypt certificates (a certbot service beside the proxy)."""
    document = stack_document("prod")
    document["config"]["stagecraft:proxy"]["tls"] = {
        "mode": "acme",
        "email": "ops@acme.example.com",
        "certbot": {"image": "certbot/certbot:v4.0.0", "memory_mb": 64, "cpus": 0.1},
    }
    path: Path = tmp_path_factory.mktemp("acme") / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return {**plans, "prod-acme": plan("prod", path)}


def long_running(result: Plan) -> dict[str, PlannedResource]:
    """The services Docker keeps running (`mustRun`), by their service label."""
    return {service: c for service, c in service_containers(result).items() if c.inputs.get("mustRun")}


def prometheus_config(result: Plan) -> str:
    """The prometheus.yml the plan uploads for the Prometheus container to read."""
    uploads = service_containers(result)["prometheus-files"].inputs["uploads"]
    (config,) = [u["content"] for u in uploads if u["file"] == config_path("prometheus.yml")]
    return str(config)


def _targets(config_text: str) -> list[tuple[str, str]]:
    """(job, host:port) of every scrape target, and ("alertmanager-notify", host:port) of every
    Alertmanager alerts are sent to."""
    config: dict[str, Any] = yaml_io.load(config_text)
    found = [
        (job["job_name"], target)
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    for alertmanager in config.get("alerting", {}).get("alertmanagers", []):
        for static in alertmanager["static_configs"]:
            found += [("alertmanager-notify", target) for target in static["targets"]]
    return found


def _reachable(result: Plan, host: str) -> set[str]:
    """The long-running services Prometheus reaches at ``host``: on a network it joins, the
    container's name or one of its aliases on that network (Docker's DNS answers those alone)."""
    running = long_running(result)
    prometheus_networks = {n["name"] for n in running["prometheus"].inputs["networksAdvanced"]}
    found = set()
    for service, container in running.items():
        for attachment in container.inputs.get("networksAdvanced", []):
            if attachment["name"] not in prometheus_networks:
                continue
            if host == container.inputs["name"] or host in (attachment.get("aliases") or []):
                found.add(service)
    return found


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_long_running_service_is_watched(variant: str, variant_plans: dict[str, Plan]) -> None:
    result = variant_plans[variant]
    services = set(long_running(result))
    assert {"api", "postgres", "redis", "proxy", "ops", "prometheus", "alertmanager", "grafana"} <= services
    assert ("certbot" in services) is variant.endswith("acme")
    assert unwatched(services, prometheus_config(result)) == []
    # What no job scrapes is watched by its healthcheck alone: only services with no metrics.
    by_health_only = {service for service in services if WATCHING_JOB[service] is None}
    assert by_health_only == {"chroma", "web", "temporal-ui"} | ({"certbot"} if variant.endswith("acme") else set())


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_target_is_a_container_prometheus_can_reach(variant: str, variant_plans: dict[str, Plan]) -> None:
    result = variant_plans[variant]
    running = long_running(result)
    prometheus_networks = {n["name"] for n in running["prometheus"].inputs["networksAdvanced"]}
    assert prometheus_networks == {f"acme-{result.stack}-monitoring"}
    targets = _targets(prometheus_config(result))
    assert len(targets) >= 9
    for job, address in targets:
        host, _, port = address.rpartition(":")
        assert host and port.isdigit(), address
        if host in LOOPBACK:
            # Loopback is Prometheus itself: only its own job may scrape there.
            assert job == "prometheus", address
            continue
        reached = _reachable(result, host)
        assert len(reached) == 1, f"{job}: {address} reaches {sorted(reached) or 'nothing'}"
        (service,) = reached
        expected_job = "alertmanager" if job == "alertmanager-notify" else job
        assert WATCHING_JOB[service] == expected_job, f"{job}: {address} is {service}"


def test_a_target_off_prometheus_networks_is_not_reachable(plans: dict[str, Plan]) -> None:
    """The resolution above is real: Postgres is on the data network only, so Prometheus cannot
    reach it by name (its exporter is what Prometheus scrapes), and the web front end's alias
    lives on the app network only."""
    result = plans["staging"]
    assert _reachable(result, "acme-staging-postgres") == set()
    assert _reachable(result, "web") == set()
    assert _reachable(result, "acme-staging-postgres-exporter") == {"postgres-exporter"}
    # The API is rolling: its container name carries a version; its stable name is an alias.
    api = long_running(result)["api"]
    assert api.inputs["name"] != "acme-staging-api"
    assert _reachable(result, "acme-staging-api") == {"api"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_ops_service_is_watched_through_the_node_exporters_textfiles(
    variant: str, variant_plans: dict[str, Plan]
) -> None:
    """The ops container has no metrics endpoint: the node job watches it because the node
    exporter reads, as textfiles, the very volume the ops tool writes its metrics into."""
    result = variant_plans[variant]
    running = long_running(result)
    uploads = service_containers(result)["ops-files"].inputs["uploads"]
    (settings,) = [json.loads(u["content"]) for u in uploads if u["file"] == config_path("ops.json")]
    ops_mounts = {m["target"]: m["source"] for m in running["ops"].inputs["mounts"]}
    metrics_volume = ops_mounts[settings["textfile_dir"]]
    node = running["node-exporter"].inputs
    (textfile_dir,) = [
        arg.split("=", 1)[1] for arg in node["command"] if arg.startswith("--collector.textfile.directory=")
    ]
    node_mounts = {m["target"]: m for m in node["mounts"]}
    assert node_mounts[textfile_dir]["source"] == metrics_volume
    assert node_mounts[textfile_dir]["readOnly"] is True
    assert WATCHING_JOB["ops"] == "node"
