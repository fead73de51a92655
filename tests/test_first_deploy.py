"""What a first real `pulumi up` depends on: every process can read its own files, a failing
job stops the update before anything that depends on it, and the deploy waits only as long as
the services take to come up."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, service_containers, stack_document

from components.containers.images import IMAGE_USERS, image_user, repository
from preflight.cli import main
from preflight.critical_path import critical_path
from preflight.engine import Plan, Simulation, plan

CONTAINER = "docker:index/container:Container"


def _run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _uid(user: str) -> str:
    return user.split(":", 1)[0]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_every_secret_file_is_owned_by_the_uid_that_reads_it(stack: str, plans: dict[str, Plan]) -> None:
    """A 0400 file is readable by its owner only: the owner must be the uid the container runs
    as (its `user`, which the program always sets from the image's own user)."""
    containers = service_containers(plans[stack])
    checked = 0
    for name, carrier in containers.items():
        if not name.endswith("-files"):
            continue
        service = containers[name.removesuffix("-files")]
        uid = _uid(service.inputs["user"])
        for upload in carrier.inputs["uploads"]:
            assert upload["owner"] == uid, f"{upload['file']} of {name} is owned by {upload['owner']}, runs as {uid}"
            if upload["permissions"] == "0400":
                checked += 1
        assert _uid(carrier.inputs["user"]) == uid
    assert checked >= 25


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_nothing_runs_as_root_except_the_volume_owner_jobs(stack: str, plans: dict[str, Plan]) -> None:
    for name, container in service_containers(plans[stack]).items():
        user = container.inputs.get("user", "")
        assert user, f"{name} has no user: it would run as the image's default"
        if name.endswith("-volume-owner"):
            assert user == "0:0" and container.inputs["capabilities"]["adds"] == ["CHOWN"]
            assert container.inputs["networkMode"] == "none"
        else:
            assert _uid(user) != "0", name


def test_the_uid_table_covers_every_image_of_both_stacks(configs: dict) -> None:
    for config in configs.values():
        services = config.stagecraft.services
        for field in type(services).model_fields:
            image = getattr(services, field).image
            if field in ("api", "web"):
                continue  # the application team's images: their uid is in config
            assert repository(image) in IMAGE_USERS, image
    # The images whose Dockerfiles set a user other than root.
    assert image_user("temporalio/server:1.27.2").uid == 1000
    assert image_user("temporalio/admin-tools:1.27.2-tctl-1.18.2-cli-1.3.0").uid == 1000
    assert image_user("docker.io/library/postgres:15.12-bookworm").uid == 999
    assert image_user("quay.io/prometheuscommunity/postgres-exporter:v0.17.1").uid == 65534


def test_temporal_reads_its_own_secret_as_uid_1000(plans: dict[str, Plan]) -> None:
    """The defect this guards against: files delivered 0400 owned by root to a process running
    as uid 1000, which then cannot read its database password and never starts."""
    containers = service_containers(plans["staging"])
    for service in ("temporal", "temporal-schema"):
        assert containers[service].inputs["user"] == "1000:1000"
        for upload in containers[f"{service}-files"].inputs["uploads"]:
            assert upload["owner"] == "1000"


# Jobs -----------------------------------------------------------------------------------------


def _registered(result: Plan, service: str) -> bool:
    return service in service_containers(result)


def _plan_in_a_process(*argv: str) -> subprocess.CompletedProcess[str]:
    """`preflight plan` as a user runs it: its own process (a failed program leaves the SDK's
    pending work behind, which only ends with the process)."""
    return subprocess.run(
        [sys.executable, "-m", "preflight", "plan", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("job", ["postgres-init", "temporal-schema", "temporal-namespace", "api-migrate"])
def test_preflight_plan_exits_1_naming_the_failed_job(job: str) -> None:
    result = _plan_in_a_process("--stack", "staging", "--job-exit-code", f"{job}=3")
    assert result.returncode == 1 and result.stdout == ""
    assert f"job {job} (container acme-staging-{job}) exited with code 3; its last log lines:" in result.stderr
    assert f"{job}: failed" in result.stderr  # the job's own last log lines
    assert "Traceback" not in result.stderr


def test_nothing_gated_on_a_failed_job_is_created() -> None:
    """The API (gated on the migration) never reaches the engine; what does not depend on the
    migration still does."""
    script = (
        "import json, sys\n"
        "import preflight.engine as engine\n"
        "seen = []\n"
        "original = engine.CapturingMonitor.RegisterResource\n"
        "def spy(self, request):\n"
        "    response = original(self, request)\n"
        "    seen[:] = self.captured\n"
        "    return response\n"
        "engine.CapturingMonitor.RegisterResource = spy\n"
        "try:\n"
        "    engine.plan('staging', simulation=engine.Simulation(job_exit_codes={'api-migrate': 1}))\n"
        "except engine.ProgramError:\n"
        "    pass\n"
        "containers = [r for r in seen if r.type == 'docker:index/container:Container']\n"
        "print(json.dumps([r.inputs.get('labels', []) for r in containers]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    labels = [
        {label["label"]: label["value"] for label in found} for found in json.loads(result.stdout.splitlines()[-1])
    ]
    services = {found["service"] for found in labels if found.get("role") != "files-carrier"}
    assert "api-migrate" in services and "postgres" in services and "temporal" in services
    assert "api" not in services


def test_every_job_at_zero_and_a_preview_pass() -> None:
    code, _, err = _run_cli("plan", "--stack", "staging")
    assert code == 0, err
    # In a preview nothing has run and exit codes are unknown: nothing fails.
    result = plan("staging", simulation=Simulation(preview=True, job_exit_codes={"api-migrate": 1}))
    assert _registered(result, "api")


# How long a first deploy waits -----------------------------------------------------------------


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_a_first_up_waits_at_most_20_seconds_on_health_checks(stack: str, plans: dict[str, Plan]) -> None:
    path = critical_path(plans[stack])
    assert path.seconds <= 20
    assert [step.name for step in path.steps if step.kind == "wait"][:1] == ["postgres"]
    for name, container in service_containers(plans[stack]).items():
        check = container.inputs.get("healthcheck")
        if check:
            assert check["startInterval"] == "2s" and check["interval"] == "30s", name


def test_without_start_intervals_the_same_path_waits_whole_intervals(write_stack: Callable[..., Path]) -> None:
    """For engines older than Docker 25: the figure shows what turning start intervals off costs."""
    document = stack_document("staging")
    for settings in document["config"]["stagecraft:services"].values():
        settings["healthcheck"] = {"start_interval_s": None}
    result = plan("staging", write_stack(document))
    slow = critical_path(result)
    waits = [step for step in slow.steps if step.kind == "wait"]
    assert len(waits) >= 3 and slow.seconds == 30 * len(waits)
    for name, container in service_containers(result).items():
        if name != "ops":  # its own section of the config, left as it was
            assert "startInterval" not in (container.inputs.get("healthcheck") or {}), name


def test_plan_prints_the_critical_path() -> None:
    code, out, _ = _run_cli("plan", "--stack", "prod")
    assert code == 0
    assert "critical path of a first `pulumi up`:" in out
    assert "wait   postgres: first healthy check after 2 s" in out
