"""Both stacks' container layer end to end: hardened, health-gated, side by side on one host."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import require_tool, service_containers

from components.config import StackConfig
from components.containers.environment import safe_value
from preflight.engine import Plan, PlannedResource

CONTAINER = "docker:index/container:Container"
SERVICES = ("postgres", "redis", "chroma", "temporal", "temporal-ui", "api", "web", "proxy", "prometheus", "grafana")
CONFIG_KEY = {"temporal-ui": "temporal_ui"}


def containers(plan: Plan) -> dict[str, PlannedResource]:
    return service_containers(plan)


def long_running(plan: Plan) -> dict[str, PlannedResource]:
    return {name: r for name, r in containers(plan).items() if r.inputs.get("mustRun") and r.inputs.get("start", True)}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_every_service_container_is_hardened(
    stack: str, plans: dict[str, Plan], configs: dict[str, StackConfig]
) -> None:
    plan, services = plans[stack], configs[stack].stagecraft.services
    running = long_running(plan)
    assert set(SERVICES) <= set(running)
    # Each hardened container pulls its own RemoteImage, a sibling of the container.
    images = {r.parent: r.inputs["name"] for r in plan.by_type("docker:index/remoteImage:RemoteImage")}
    for name in SERVICES:
        inputs = running[name].inputs
        settings = getattr(services, CONFIG_KEY.get(name, name))
        assert images[running[name].parent] == settings.image  # pinned, per stack, through RemoteImage
        assert inputs["memory"] == settings.memory_mb and inputs["memorySwap"] == settings.memory_mb
        assert float(inputs["cpus"]) == settings.cpus
        check = inputs["healthcheck"]
        assert check["interval"] == f"{settings.healthcheck.interval_s}s"
        assert check["retries"] == settings.healthcheck.retries
        assert check["startPeriod"] == f"{settings.healthcheck.start_period_s}s"
        assert inputs["wait"] is True and inputs["waitTimeout"] > settings.healthcheck.start_period_s
        assert inputs["logDriver"] == "json-file" and inputs["logOpts"] == {"max-size": "50m", "max-file": "3"}
        assert inputs["restart"] == "unless-stopped"
        assert "no-new-privileges:true" in inputs["securityOpts"]
        assert inputs["capabilities"]["drops"] == ["ALL"]
        assert inputs["privileged"] is False and "networkMode" not in inputs
        assert inputs["readOnly"] is True
        labels = {label["label"]: label["value"] for label in inputs["labels"]}
        assert labels["environment"] == configs[stack].environment and labels["managed-by"] == "pulumi"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_scratch_space_never_runs_programs(stack: str, plans: dict[str, Plan]) -> None:
    """Every container has a writable /tmp, and no tmpfs can hold an executable or a setuid file."""
    for name, container in containers(plans[stack]).items():
        if container.inputs.get("start") is False:
            continue  # file carriers never run
        tmpfs = container.inputs.get("tmpfs", {})
        assert "/tmp" in tmpfs, name
        for path, options in tmpfs.items():
            assert {"rw", "noexec", "nosuid"} <= set(options.split(",")), f"{name}:{path} {options}"


def test_healthchecks_test_real_readiness(plans: dict[str, Plan]) -> None:
    running = long_running(plans["staging"])

    def test_of(name: str) -> str:
        return " ".join(running[name].inputs["healthcheck"]["tests"])

    assert "test -f /tmp/stagecraft-ready && pg_isready -q -h 127.0.0.1" in test_of("postgres")
    assert "REDISCLI_AUTH" in test_of("redis") and "grep -qx PONG" in test_of("redis")
    assert "/api/v2/heartbeat" in test_of("chroma") and "curl" not in test_of("chroma")
    assert "/-/ready" in test_of("prometheus")
    assert ":8081/healthz" in test_of("proxy")


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_no_secret_in_any_environment_variable(stack: str, plans: dict[str, Plan]) -> None:
    plan = plans[stack]
    assert plan.secret_values
    for container in plan.by_type(CONTAINER):
        for pair in container.inputs.get("envs", []):
            key, _, value = pair.partition("=")
            assert value != "[secret]", pair
            assert safe_value(key, value), pair
            for secret in plan.secret_values:
                assert secret not in value


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_secrets_arrive_as_0400_files_owned_by_the_service(stack: str, plans: dict[str, Plan]) -> None:
    all_containers = containers(plans[stack])
    carriers = {name: r for name, r in all_containers.items() if name.endswith("-files")}
    assert carriers
    secret_uploads = 0
    for carrier in carriers.values():
        assert carrier.inputs["start"] is False and carrier.inputs["networkMode"] == "none"
        for upload in carrier.inputs["uploads"]:
            if "/secrets/" in upload["file"]:
                secret_uploads += 1
                assert upload["permissions"] == "0400"
                assert upload["content"] == "[secret]"
    assert secret_uploads >= 10
    postgres_files = [u for u in carriers["postgres-files"].inputs["uploads"]]
    assert all(u["owner"] == "999" for u in postgres_files)


def _names(plan: Plan, type_: str, key: str = "name") -> set[str]:
    return {r.inputs[key] for r in plan.by_type(type_)}


def _host_ports(plan: Plan) -> set[int]:
    return {p["external"] for c in plan.by_type(CONTAINER) for p in c.inputs.get("ports", [])}


def test_stacks_can_share_one_docker_host(plans: dict[str, Plan], configs: dict[str, StackConfig]) -> None:
    staging, prod = plans["staging"], plans["prod"]
    assert configs["staging"].docker.host == configs["prod"].docker.host
    for type_ in (CONTAINER, "docker:index/network:Network", "docker:index/volume:Volume"):
        assert _names(staging, type_).isdisjoint(_names(prod, type_)), type_
    import ipaddress

    def subnets(plan: Plan) -> list[ipaddress.IPv4Network]:
        return [
            ipaddress.IPv4Network(c["subnet"])
            for n in plan.by_type("docker:index/network:Network")
            for c in n.inputs["ipamConfigs"]
        ]

    assert not any(a.overlaps(b) for a in subnets(staging) for b in subnets(prod))
    assert _host_ports(staging) and _host_ports(prod)
    assert _host_ports(staging).isdisjoint(_host_ports(prod))


def test_only_the_proxy_publishes_ports_in_prod(plans: dict[str, Plan]) -> None:
    published = {name for name, c in containers(plans["prod"]).items() if c.inputs.get("ports")}
    assert published == {"proxy"}


def test_staging_debug_ports_are_loopback_only(plans: dict[str, Plan]) -> None:
    for name, container in containers(plans["staging"]).items():
        for port in container.inputs.get("ports", []):
            if name != "proxy":
                assert port["ip"] == "127.0.0.1", name
    assert "ports" not in containers(plans["staging"])["chroma"].inputs


def test_network_segmentation(plans: dict[str, Plan]) -> None:
    plan = plans["staging"]
    networks = {n.inputs["name"]: n.inputs for n in plan.by_type("docker:index/network:Network")}
    assert networks["acme-staging-data"]["internal"] is True
    assert networks["acme-staging-monitoring"]["internal"] is True
    assert networks["acme-staging-edge"]["internal"] is False
    joined = {name: {a["name"] for a in c.inputs["networksAdvanced"]} for name, c in long_running(plan).items()}
    assert joined["chroma"] == {"acme-staging-chroma"}
    assert joined["postgres"] == {"acme-staging-data"} and joined["redis"] == {"acme-staging-data"}
    assert "acme-staging-edge" in joined["proxy"]
    assert all("acme-staging-edge" not in nets for name, nets in joined.items() if name != "proxy")


def test_prod_volumes_are_protected_and_retained(plans: dict[str, Plan]) -> None:
    data = [v for v in plans["prod"].by_type("docker:index/volume:Volume") if v.inputs["name"].endswith("-data")]
    assert {v.inputs["name"].removeprefix("acme-prod-") for v in data} >= {
        "postgres-data",
        "redis-data",
        "chroma-data",
        "prometheus-data",
        "grafana-data",
    }
    assert all(v.protect and v.retain_on_delete for v in data)
    staging = [v for v in plans["staging"].by_type("docker:index/volume:Volume")]
    assert not any(v.protect for v in staging)


def test_jobs_gate_what_depends_on_them(plans: dict[str, Plan]) -> None:
    plan = plans["staging"]
    by_name = containers(plan)

    def depends(name: str, on: str) -> bool:
        return by_name[on].urn in by_name[name].dependencies

    def gated(name: str, job: str) -> bool:
        """Created only once the job succeeded: it waits for the job, and for its outcome."""
        labels = {label["label"]: label["value"] for label in by_name[name].inputs["labels"]}
        return depends(name, job) and labels.get(f"stagecraft.after.{job}") == "succeeded"

    jobs = ("api-migrate", "temporal-schema", "temporal-namespace", "postgres-init", "ops-pre-migration-backup")
    for job in jobs:
        inputs = by_name[job].inputs
        assert inputs["attach"] is True and inputs["mustRun"] is False and inputs["restart"] == "no"
    assert gated("api", "api-migrate") and gated("api", "temporal-namespace")
    assert gated("api-migrate", "postgres-init") and gated("api-migrate", "ops-pre-migration-backup")
    assert depends("postgres-init", "postgres")
    assert gated("temporal-schema", "postgres-init")
    assert gated("temporal", "temporal-schema")
    assert depends("temporal-namespace", "temporal")
    assert gated("temporal-ui", "temporal-namespace")
    # Dependencies that are not real are gone: the proxy finds its backends when requests
    # arrive, the web front end reaches the API through its public URL, Grafana and Prometheus
    # start whether or not what they show or scrape is up.
    assert not depends("proxy", "api") and not depends("proxy", "web") and not depends("proxy", "grafana")
    assert not depends("web", "api") and not depends("grafana", "prometheus")
    assert by_name["api-migrate"].inputs["command"] == ["alembic", "upgrade", "head"]
    assert by_name["api-migrate"].inputs["image"] == by_name["api"].inputs["image"]


def test_environment_flags_follow_config(plans: dict[str, Plan]) -> None:
    def env(stack: str) -> dict[str, str]:
        return dict(pair.split("=", 1) for pair in containers(plans[stack])["api"].inputs["envs"])

    staging, prod = env("staging"), env("prod")
    assert staging["EMAIL_SHADOW_MODE"] == "true" and prod["EMAIL_SHADOW_MODE"] == "false"
    assert staging["LOG_LEVEL"] == "DEBUG" and prod["LOG_LEVEL"] == "INFO"
    assert prod["ENABLE_DEBUG_ENDPOINTS"] == "false"
    assert staging["ENABLE_RATE_LIMITING"] == "true"
    assert staging["DATABASE_PASSWORD_FILE"].startswith("/run/stagecraft/secrets/")


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_uploaded_prometheus_files_pass_promtool(stack: str, plans: dict[str, Plan], tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    uploads = containers(plans[stack])["prometheus-files"].inputs["uploads"]
    files = {Path(u["file"]).name: u["content"] for u in uploads}
    assert set(files) == {"prometheus.yml", "alerts.yml"}
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    jobs = {"api", "temporal", "postgres", "redis", "node", "grafana", "prometheus"}
    assert all(f"job_name: {job}" in files["prometheus.yml"] for job in jobs)
    for args in (("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml")):
        result = subprocess.run([promtool, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
