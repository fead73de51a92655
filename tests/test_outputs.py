"""The stack's `verify` output: what `preflight verify` checks a deployed stack against."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import service_containers, stack_document

from components.composition.outputs import PROBE_SECRETS, PROBE_SERVICE
from components.services.ops import SECRETS as OPS_SECRETS
from preflight.engine import Plan
from preflight.engine import plan as plan_stack
from preflight.verify.targets import REQUIRED_SERVICES, load_targets


def _labels(resource: object) -> dict[str, str]:
    return {label["label"]: label["value"] for label in resource.inputs.get("labels", [])}  # type: ignore[attr-defined]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_verify_output_is_what_verify_reads(stack: str, plans: dict[str, Plan]) -> None:
    outputs = plans[stack].outputs
    # As `pulumi stack output --json` prints it: plain JSON, no secret in it.
    targets, _ = load_targets(json.loads(json.dumps(outputs)), f"{stack} outputs")
    assert targets.stack == stack
    assert set(REQUIRED_SERVICES) <= set(targets.services)
    assert "[secret]" not in json.dumps(outputs["verify"])


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_verify_output_names_every_container_network_and_volume(stack: str, plans: dict[str, Plan]) -> None:
    """Verify checks what the program runs: every service, every job (each must exit 0), and
    the networks and volumes that belong to the stack; nothing missing, nothing invented."""
    plan = plans[stack]
    verify = plan.outputs["verify"]
    running, jobs = set(), set()
    for container in plan.by_type("docker:index/container:Container"):
        labels = _labels(container)
        if labels.get("role") == "files-carrier":
            continue
        (running if container.inputs["mustRun"] else jobs).add(labels["service"])
    assert set(verify["services"]) == running
    assert set(verify["jobs"]) == jobs
    assert set(verify["networks"]) == {n.inputs["name"] for n in plan.by_type("docker:index/network:Network")}
    assert set(verify["volumes"]) == {v.inputs["name"] for v in plan.by_type("docker:index/volume:Volume")}
    # Rolling services are found by their stable name (the network alias old and new share).
    api = service_containers(plan)["api"]
    assert verify["services"]["api"] != api.inputs["name"]
    assert all(verify["services"]["api"] in n["aliases"] for n in api.inputs["networksAdvanced"])


def test_the_probe_container_holds_the_probes_password_files(plans: dict[str, Plan]) -> None:
    assert set(PROBE_SECRETS.values()) <= set(OPS_SECRETS)
    for plan in plans.values():
        carrier = service_containers(plan)[f"{PROBE_SERVICE}-files"]
        files = {upload["file"] for upload in carrier.inputs["uploads"]}
        probe = plan.outputs["verify"]["probe"]
        assert {probe["postgres_password_file"], probe["redis_password_file"]} <= files


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_verify_output_follows_config(stack: str, plans: dict[str, Plan]) -> None:
    plan = plans[stack]
    config = plan.config
    assert config is not None
    verify = plan.outputs["verify"]
    sc = config.stagecraft
    assert verify["proxy"]["https_port"] == sc.proxy.https_port
    assert verify["rate_limit"] == {"per_minute": sc.proxy.rate_limit_per_minute, "burst": sc.proxy.rate_limit_burst}
    assert verify["docker_host"] == config.docker.host
    assert verify["labels"]["environment"] == sc.environment


def test_debug_ports_are_named_by_service(write_stack: Callable[..., Path]) -> None:
    """Verify accepts a loopback port only where the stack configured one: the output names
    each by the service label its container carries."""
    document = stack_document("staging")
    document["config"]["stagecraft:debug_ports"] = {"temporal_ui": 18088, "api": 18001}
    result = plan_stack("staging", write_stack(document))
    assert result.outputs["verify"]["debug_ports"] == {"temporal-ui": 18088, "api": 18001}
    published = {
        service: [p["external"] for p in container.inputs.get("ports", [])]
        for service, container in service_containers(result).items()
    }
    assert published["temporal-ui"] == [18088] and published["api"] == [18001]
