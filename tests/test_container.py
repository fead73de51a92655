"""The hardened-container block: limits, privileges, files instead of environment secrets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pytest

from components.config import Network, Service
from components.containers.container import Attachment, ContainerArgs, HardenedContainer
from components.containers.environment import UnsafeEnvironmentError, checked_env
from components.containers.network import Networks, NetworksArgs
from components.naming import Naming
from preflight.engine import Plan

NAMING = Naming(app="acme", environment="staging", stack="staging", project="p-1234")
SETTINGS = Service.model_validate({"image": "nginx:1.27.4", "memory_mb": 128, "cpus": 0.5})
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


def _build(**overrides: Any) -> Callable[[], Any]:
    """Values that are callables are called inside the mock run (Outputs need its event loop)."""

    def build() -> None:
        networks = Networks("networks", NetworksArgs(naming=NAMING, settings=SUBNETS))
        args = {
            "naming": NAMING,
            "service": "demo",
            "settings": SETTINGS,
            "networks": [Attachment(networks.networks["app"], aliases=("demo",))],
            "health_test": ["CMD", "true"],
            **{key: value() if callable(value) else value for key, value in overrides.items()},
        }
        HardenedContainer("demo", ContainerArgs(**args))

    return build


@pytest.mark.parametrize("name", ["DB_PASSWORD", "API_TOKEN", "SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "POSTGRES_PWD"])
def test_secret_looking_variables_must_be_files(name: str) -> None:
    with pytest.raises(UnsafeEnvironmentError):
        checked_env({name: "x"})
    assert checked_env({f"{name}_FILE": "/run/stagecraft/secrets/x"}) == [f"{name}_FILE=/run/stagecraft/secrets/x"]


def test_outputs_never_reach_the_environment(run_mocked: Callable[..., Plan]) -> None:
    with pytest.raises(Exception, match="plain strings"):
        run_mocked("staging", _build(env=lambda: {"GREETING": pulumi.Output.secret("hello")}))


def test_defaults_are_hardened(run_mocked: Callable[..., Plan]) -> None:
    plan = run_mocked("staging", _build())
    (container,) = plan.by_type("docker:index/container:Container")
    inputs = container.inputs
    assert inputs["readOnly"] is True and inputs["privileged"] is False
    assert inputs["securityOpts"] == ["no-new-privileges:true"]
    assert inputs["capabilities"] == {"drops": ["ALL"]}
    assert inputs["memory"] == 128 and inputs["cpus"] == "0.5"
    assert inputs["restart"] == "unless-stopped" and inputs["wait"] is True
    (image,) = plan.by_type("docker:index/remoteImage:RemoteImage")
    assert image.inputs["name"] == "nginx:1.27.4" and inputs["image"].startswith("sha256:")
    assert not plan.by_type("docker:index/volume:Volume")  # no files, no carrier


def test_files_travel_through_a_never_started_carrier(run_mocked: Callable[..., Plan]) -> None:
    plan = run_mocked(
        "staging",
        _build(
            secret_files=lambda: {"token": pulumi.Output.secret("s3cr3t-value")},
            config_files={"app.conf": "x = 1\n", "run.sh": "#!/bin/sh\n"},
            executable_files=frozenset({"run.sh"}),
            user="101:101",
        ),
    )
    by_name = {c.name: c for c in plan.by_type("docker:index/container:Container")}
    carrier, service = by_name["demo-files"], by_name["demo"]
    assert carrier.inputs["start"] is False and carrier.inputs["networkMode"] == "none"
    modes = {u["file"]: (u["permissions"], u["owner"]) for u in carrier.inputs["uploads"]}
    assert modes == {
        "/run/stagecraft/secrets/token": ("0400", "101"),
        "/run/stagecraft/config/app.conf": ("0444", "101"),
        "/run/stagecraft/config/run.sh": ("0555", "101"),
    }
    assert "s3cr3t-value" not in str(carrier.inputs)
    files_mount = [m for m in service.inputs["mounts"] if m["target"] == "/run/stagecraft"]
    assert files_mount == [
        {"target": "/run/stagecraft", "type": "volume", "readOnly": True, "source": "acme-staging-demo-files"}
    ]
    assert carrier.urn in service.dependencies


def test_one_shot_jobs_run_to_completion(run_mocked: Callable[..., Plan]) -> None:
    plan = run_mocked("staging", _build(one_shot=True))
    (job,) = plan.by_type("docker:index/container:Container")
    assert job.inputs["attach"] is True and job.inputs["mustRun"] is False
    assert job.inputs["restart"] == "no" and "healthcheck" not in job.inputs and job.inputs["wait"] is False


def test_networks_are_segmented(run_mocked: Callable[..., Plan]) -> None:
    plan = run_mocked("staging", lambda: Networks("networks", NetworksArgs(naming=NAMING, settings=SUBNETS)))
    networks = {n.name.removeprefix("networks-"): n.inputs for n in plan.by_type("docker:index/network:Network")}
    assert {name: n["internal"] for name, n in networks.items()} == {
        "edge": False,
        "app": False,
        "data": True,
        "chroma": True,
        "temporal": True,
        "monitoring": True,
        "egress": False,
        "alerting": False,
    }
    assert networks["data"]["ipamConfigs"] == [{"subnet": "10.9.2.0/24", "gateway": "10.9.2.1"}]
    assert networks["data"]["name"] == "acme-staging-data"
