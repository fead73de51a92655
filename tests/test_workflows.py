"""The GitHub Actions workflows: actionlint-clean, credentials only where they are needed."""

from __future__ import annotations

import re
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


def pulumi_runs(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The pulumi/actions steps that run a command (the others only install the CLI)."""
    return [step for step in steps_using(job, "pulumi/actions") if "command" in step.get("with", {})]


def credentialed(job: dict[str, Any]) -> bool:
    """Whether a job can read secrets or variables beyond the run's own GITHUB_TOKEN, or mint an
    OIDC token for a cloud login."""
    text = yaml.safe_dump(job)
    names = re.findall(r"\b(?:secrets|vars)\.(\w+)", text)
    return any(name != "GITHUB_TOKEN" for name in names) or job.get("permissions", {}).get("id-token") == "write"


def environment_of(job: dict[str, Any]) -> str:
    environment = job.get("environment", "")
    return str(environment.get("name", "") if isinstance(environment, dict) else environment)


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def test_actionlint_accepts_every_workflow() -> None:
    actionlint = require_tool(str(Path(__import__("sys").executable).parent / "actionlint"))
    files = sorted(str(path) for path in WORKFLOWS.glob("*.yml"))
    assert len(files) == 3
    result = subprocess.run([actionlint, *files], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pull_request_runs_checks_then_previews_staging_with_the_pack() -> None:
    workflow = load("pull-request.yml")
    assert "pull_request" in workflow["on"]
    test, preview = workflow["jobs"]["test"], workflow["jobs"]["preview-staging"]
    runs = " ".join(step.get("run", "") for step in test["steps"])
    assert "ruff check" in runs and "pytest" in runs and "preflight check" in runs
    assert not credentialed(test) and "environment" not in test
    # Credentials live in the staging preview only, and forks never reach it.
    assert preview["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert preview["needs"] == "test"
    (pulumi,) = pulumi_runs(preview)
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["stack-name"] == "staging"
    assert pulumi["with"]["policyPacks"] == "policies" and pulumi["with"]["comment-on-pr"] is True
    assert workflow["permissions"] == {"contents": "read"}


def test_no_pull_request_job_with_credentials_mentions_prod() -> None:
    """A pull request runs its branch's code: prod is checked offline only, never with credentials."""
    jobs = load("pull-request.yml")["jobs"]
    for name, job in jobs.items():
        if credentialed(job):
            text = yaml.safe_dump(job)
            assert not re.search(r"prod", text, re.IGNORECASE), f"{name} reaches prod: {text}"
            assert "matrix" not in job.get("strategy", {}), f"{name} must name its one stack"
    offline = [name for name, job in jobs.items() if not credentialed(job)]
    assert offline == ["test"]


def test_every_pull_request_job_with_secrets_is_bound_to_a_non_prod_environment() -> None:
    jobs = load("pull-request.yml")["jobs"]
    bound = {name: environment_of(job) for name, job in jobs.items() if credentialed(job)}
    assert bound, "the staging preview is credentialed"
    for name, environment in bound.items():
        assert environment, f"{name} uses secrets without an environment (repository-level secrets)"
        assert "prod" not in environment.lower(), f"{name} is bound to {environment}"
        assert jobs[name]["if"] == "github.event.pull_request.head.repo.full_name == github.repository"


def test_secrets_are_read_only_inside_an_environment() -> None:
    """Per-environment secrets: a job without an environment would read repository-level ones."""
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for name, job in load(path.name)["jobs"].items():
            if credentialed(job):
                assert environment_of(job), f"{path.name}: {name} uses secrets outside an environment"


def test_staging_deploy_holds_no_prod_credentials() -> None:
    jobs = load("deploy-staging.yml")["jobs"]
    for name, job in jobs.items():
        if credentialed(job):
            assert environment_of(job) == "staging"
            assert not re.search(r"prod", yaml.safe_dump(job), re.IGNORECASE), name


def test_prod_deploy_follows_a_prod_preview_of_the_same_commit_in_a_protected_environment() -> None:
    workflow = load("deploy-prod.yml")
    jobs = workflow["jobs"]
    deploy = jobs["deploy"]
    previews = [
        name
        for name in as_list(deploy["needs"])
        if any(
            step["with"].get("command") == "preview" and step["with"].get("stack-name") == "prod"
            for step in pulumi_runs(jobs[name])
        )
    ]
    assert previews == ["preview"]
    preview = jobs["preview"]
    (pulumi,) = pulumi_runs(preview)
    assert pulumi["with"] == {"command": "preview", "stack-name": "prod", "policyPacks": "policies"}
    # Its own environment: prod's read/preview credentials, not the approval-gated deploy ones.
    assert environment_of(preview) == "production-preview" and environment_of(deploy) == "production"
    for job in (jobs["test"], preview, deploy):
        (checkout,) = steps_using(job, "actions/checkout")
        assert checkout["with"]["ref"] == "${{ github.sha }}"
    assert "github.ref == 'refs/heads/main'" in jobs["test"]["if"]


@pytest.mark.parametrize("name", ["deploy-staging.yml", "deploy-prod.yml"])
def test_secret_fingerprints_run_before_any_up(name: str) -> None:
    jobs = load(name)["jobs"]
    for job_name, job in jobs.items():
        steps = job["steps"]
        ups = [i for i, step in enumerate(steps) if step.get("with", {}).get("command") in ("up", "preview")]
        if not ups:
            continue
        stack = steps[ups[0]]["with"]["stack-name"]
        checks = [i for i, step in enumerate(steps) if step.get("run", "").startswith("scripts/secret-fingerprints")]
        assert checks and checks[0] < ups[0], f"{name}: {job_name} runs pulumi before the fingerprints"
        check = steps[checks[0]]
        assert stack in check["run"].split()[1:]
        assert check["env"] == {"PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}"}
        # The step runs `pulumi config`, so the CLI is installed before it.
        installs = [i for i, step in enumerate(steps) if step in steps_using(job, "pulumi/actions")[:1]]
        assert installs and installs[0] < checks[0] and "command" not in steps[installs[0]]["with"]


def test_prod_is_compared_with_staging_before_prod_is_deployed() -> None:
    jobs = load("deploy-prod.yml")["jobs"]
    before_deploy = [jobs[name] for name in as_list(jobs["deploy"]["needs"])]
    commands = [step.get("run", "").split() for job in before_deploy for step in job["steps"]]
    assert ["scripts/secret-fingerprints", "staging", "prod"] in commands


def test_actions_are_pinned_to_a_version() -> None:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for job in load(path.name)["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*", step["uses"]), step["uses"]


@pytest.mark.parametrize(("name", "stack"), [("deploy-staging.yml", "staging"), ("deploy-prod.yml", "prod")])
def test_deploys_use_the_pack_then_verify(name: str, stack: str) -> None:
    deploy = load(name)["jobs"]["deploy"]
    steps = deploy["steps"]
    (pulumi,) = pulumi_runs(deploy)
    assert pulumi["with"] == {"command": "up", "stack-name": stack, "policyPacks": "policies"}
    command = f"venv/bin/python -m preflight verify --stack {stack} --json"
    verify = [i for i, step in enumerate(steps) if step.get("run", "") == command]
    assert verify and verify[0] > steps.index(pulumi)
    installs = " ".join(step.get("run", "") for step in steps[: verify[0]])
    assert "-r requirements-verify.txt" in installs
    assert "test" in as_list(deploy["needs"])


def test_staging_deploys_on_push_and_prod_by_approved_dispatch() -> None:
    staging, prod = load("deploy-staging.yml"), load("deploy-prod.yml")
    assert staging["on"] == {"push": {"branches": ["main"]}}
    assert set(prod["on"]) == {"workflow_dispatch"}
    assert prod["jobs"]["deploy"]["environment"] == "production"
    assert prod["concurrency"]["cancel-in-progress"] is False
