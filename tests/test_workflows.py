"""The GitHub Actions workflows: actionlint-clean, credentials only where they are needed."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, require_tool

WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the `on:` key as True.
    document["on"] = document.pop(True, document.get("on"))
    return document


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if str(step.get("uses", "")).startswith(action)]


def test_actionlint_accepts_every_workflow() -> None:
    actionlint = require_tool(str(Path(__import__("sys").executable).parent / "actionlint"))
    files = sorted(str(path) for path in WORKFLOWS.glob("*.yml"))
    assert len(files) == 3
    result = subprocess.run([actionlint, *files], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pull_request_runs_checks_then_previews_with_the_pack() -> None:
    workflow = load("pull-request.yml")
    assert "pull_request" in workflow["on"]
    test, preview = workflow["jobs"]["test"], workflow["jobs"]["preview"]
    runs = " ".join(step.get("run", "") for step in test["steps"])
    assert "pytest" in runs and "preflight check" in runs
    assert "secrets." not in yaml.safe_dump(test) and not steps_using(test, "google-github-actions/auth")
    # Credentials live in the preview job only, and forks never reach it.
    assert preview["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert preview["needs"] == "test"
    assert preview["strategy"]["matrix"]["stack"] == ["staging", "prod"]
    (pulumi,) = steps_using(preview, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["policyPacks"] == "policies"
    assert pulumi["with"]["comment-on-pr"] is True
    assert workflow["permissions"] == {"contents": "read"}


@pytest.mark.parametrize(("name", "stack"), [("deploy-staging.yml", "staging"), ("deploy-prod.yml", "prod")])
def test_deploys_use_the_pack_then_verify(name: str, stack: str) -> None:
    deploy = load(name)["jobs"]["deploy"]
    steps = deploy["steps"]
    (pulumi,) = steps_using(deploy, "pulumi/actions")
    assert pulumi["with"] == {"command": "up", "stack-name": stack, "policyPacks": "policies"}
    command = f"venv/bin/python -m preflight verify --stack {stack} --json"
    verify = [i for i, step in enumerate(steps) if step.get("run", "") == command]
    assert verify and verify[0] > steps.index(pulumi)
    installs = " ".join(step.get("run", "") for step in steps[: verify[0]])
    assert "-r requirements-verify.txt" in installs
    assert deploy["needs"] == "test"


def test_staging_deploys_on_push_and_prod_by_approved_dispatch() -> None:
    staging, prod = load("deploy-staging.yml"), load("deploy-prod.yml")
    assert staging["on"] == {"push": {"branches": ["main"]}}
    assert set(prod["on"]) == {"workflow_dispatch"}
    assert prod["jobs"]["deploy"]["environment"] == "production"
    assert prod["concurrency"]["cancel-in-progress"] is False
