"""`preflight plan`: both stacks end to end, isolated from each other, with no secret in sight."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, stack_document

from preflight.cli import main
from preflight.engine import Plan

# Inputs that hold a physical name, per resource type.
NAME_INPUTS = {
    "gcp:serviceaccount/account:Account": "accountId",
    "gcp:secretmanager/secret:Secret": "secretId",
    "gcp:storage/bucket:Bucket": "name",
}


def _run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_plan_json_shows_the_security_layer(stack: str) -> None:
    code, out, _ = _run_cli("plan", "--stack", stack, "--json")
    assert code == 0
    document = json.loads(out)
    assert document["stack"] == stack and document["violations"] == []
    resources = document["resources"]
    assert set(resources[0]) == {
        "urn",
        "type",
        "name",
        "parent",
        "inputs",
        "protect",
        "retain_on_delete",
        "dependencies",
        "aliases",
    }
    counts = Counter(r["type"] for r in resources)
    assert counts["random:index/randomPassword:RandomPassword"] >= 4
    assert counts["gcp:secretmanager/secretVersion:SecretVersion"] >= 4
    assert counts["gcp:storage/bucket:Bucket"] >= 2
    assert counts["gcp:serviceaccount/account:Account"] >= 4
    secrets = {r["urn"]: r for r in resources if r["type"] == "gcp:secretmanager/secret:Secret"}
    bindings = [r for r in resources if r["type"] == "gcp:secretmanager/secretIamMember:SecretIamMember"]
    # Each binding hangs off its secret; every secret a workload reads has one (the Redis
    # healthcheck's password is read by the Redis container alone, so it has none).
    readers = {urn for urn, r in secrets.items() if not r["inputs"]["secretId"].endswith("redis-healthcheck-password")}
    assert {b["parent"] for b in bindings} == readers
    for resource in resources:
        assert resource["urn"].startswith(f"urn:pulumi:{stack}::stagecraft::")


def test_prod_resources_that_hold_data_are_protected(plans: dict[str, Plan]) -> None:
    prod = plans["prod"]
    for type_ in ("gcp:storage/bucket:Bucket", "gcp:secretmanager/secret:Secret"):
        assert all(r.protect for r in prod.by_type(type_)), type_
    # What a rotation replaces is never protected, or rotating would need a protected resource
    # replaced: generated values, secret versions, service account keys.
    for type_ in (
        "random:index/randomPassword:RandomPassword",
        "gcp:secretmanager/secretVersion:SecretVersion",
        "gcp:serviceaccount/key:Key",
    ):
        assert prod.by_type(type_) and not any(r.protect for r in prod.by_type(type_)), type_
    assert not any(r.protect for r in plans["staging"].resources)


def test_staging_and_prod_share_no_physical_name(plans: dict[str, Plan]) -> None:
    def names(plan: Plan) -> set[str]:
        return {r.inputs[key] for type_, key in NAME_INPUTS.items() for r in plan.by_type(type_)}

    staging, prod = names(plans["staging"]), names(plans["prod"])
    assert len(staging) >= 12 and len(prod) >= 12
    assert staging.isdisjoint(prod)


def test_accessor_bindings_stay_inside_their_environment(plans: dict[str, Plan]) -> None:
    for stack, plan in plans.items():
        for binding in plan.by_type("gcp:secretmanager/secretIamMember:SecretIamMember"):
            assert f"-{stack}-" in binding.inputs["member"]
            assert binding.inputs["secretId"].rsplit("/", 1)[1].startswith(f"{stack}-")


def test_mock_values_are_unique_per_stack_and_resource(plans: dict[str, Plan]) -> None:
    staging, prod = plans["staging"].secret_values, plans["prod"].secret_values
    generated = plans["staging"].by_type("random:index/randomPassword:RandomPassword")
    keys = plans["staging"].by_type("tls:index/privateKey:PrivateKey")
    account_keys = plans["staging"].by_type("gcp:serviceaccount/key:Key")
    # Read at deploy time from Secret Manager: the SMTP password and the webhook URL.
    read_at_deploy = 2
    assert len(staging) == len(generated) + len(keys) + len(account_keys) + read_at_deploy
    assert staging.isdisjoint(prod)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_no_secret_value_appears_in_any_output(
    stack: str, plans: dict[str, Plan], write_stack: Callable[..., Path]
) -> None:
    # A provided config secret too, not only the generated ones.
    document = stack_document(stack)
    document["config"]["stagecraft:secrets"]["provided"] = {
        "smtp-password": {"value": {"secure": "v1:c2FsdA==:Y2lwaGVy"}, "accessors": ["api"]}
    }
    path = write_stack(document, name=f"Pulumi.{stack}.yaml")
    outputs = [_run_cli("plan", "--stack", stack, "--config-file", str(path), *flag) for flag in ((), ("--json",))]
    from preflight.engine import plan

    values = plan(stack, path).secret_values
    assert len(values) >= 8
    for code, out, err in outputs:
        assert code == 0
        for value in values:
            assert value not in out and value not in err
    assert '"secretDataWo": "[secret]"' in outputs[1][1]


def _cli_subprocess(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "preflight", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("stack", "key", "value", "named"),
    [
        (
            "staging",
            "stagecraft:services",
            {"postgres": {"image": "postgres:15.12", "memory_mb": "big", "cpus": 1}},
            "stagecraft:services.postgres.memory_mb",
        ),
        (
            "prod",
            "stagecraft:storage",
            {"location": "EU", "backup_retention_days": 30, "deep": {"typo": 1}},
            "stagecraft:storage.deep",
        ),
        ("prod", "stagecraft:app", {"cors_origins": ["*"], "log_level": "info"}, "stagecraft:app.cors_origins"),
    ],
)
def test_bad_config_exits_2_with_one_clean_message(
    stack: str, key: str, value: Any, named: str, write_stack: Callable[..., Path]
) -> None:
    document = stack_document(stack)
    document["config"][key] = value
    path = write_stack(document, name=f"Pulumi.{stack}.yaml")
    result = _cli_subprocess("plan", "--stack", stack, "--config-file", str(path), "--json")
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"Pulumi.{stack}.yaml: {named}: " in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_stack_file_exits_2() -> None:
    result = _cli_subprocess("plan", "--stack", "nonexistent")
    assert result.returncode == 2 and "Pulumi.nonexistent.yaml: file: not found" in result.stderr


def test_usage_error_exits_2() -> None:
    assert _cli_subprocess("plan").returncode == 2


def test_readable_tree_marks_protected_resources() -> None:
    code, out, _ = _run_cli("plan", "--stack", "prod")
    assert code == 0
    assert "stagecraft:platform:Platform  stagecraft" in out
    assert "gcp:storage/bucket:Bucket  stagecraft-security-storage-backups  [protect]" in out


def test_a_failing_program_is_reported_not_hung() -> None:
    import pulumi_random as random

    from preflight.engine import ProgramError, capture

    def program() -> None:
        random.RandomPassword("before", length=16)
        raise ValueError("boom")

    with pytest.raises(ProgramError, match="ValueError: boom"):
        capture("staging", program)


def test_check_passes_on_the_repository() -> None:
    code, out, err = _run_cli("check", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert {s["stack"] for s in document["stacks"]} == {"staging", "prod"}
    for stack in document["stacks"]:
        assert not [v for v in stack["violations"] if v["enforcement"] == "mandatory"]
    assert document["isolation"] == [{"stacks": ["prod", "staging"], "violations": []}]


def test_policy_reports_a_broken_plan_with_exit_1(write_stack: Callable[..., Path]) -> None:
    # A staging stack file whose environment says prod: labels and IDs no longer match its URN.
    document = stack_document("prod")
    path = write_stack(document, name="Pulumi.staging.yaml")
    code, out, _ = _run_cli("policy", "--stack", "staging", "--config-file", str(path), "--json")
    assert code == 1
    violations = json.loads(out)["violations"]
    policies = {v["policy"] for v in violations if v["enforcement"] == "mandatory"}
    assert {
        "secret-environment-agrees",
        "no-foreign-environment-labels",
        "secret-accessor-same-environment",
    } <= policies
    assert all(v["urn"].startswith("urn:pulumi:staging::") for v in violations)
    assert all(set(v) == {"policy", "enforcement", "urn", "message"} for v in violations)


def test_a_copy_of_prod_is_caught_by_isolation(project_root: Path) -> None:
    copy_file = project_root / "Pulumi.prodcopy.yaml"
    copy_file.write_text((project_root / "Pulumi.prod.yaml").read_text())
    try:
        code, out, _ = _run_cli("isolation", "prod", "prodcopy", "--json")
        human = _run_cli("isolation", "prod", "prodcopy")[1]
    finally:
        copy_file.unlink()
    assert code == 1
    violations = json.loads(out)["violations"]
    kinds = {v["policy"] for v in violations}
    expected = {
        "domain",
        "host-port",
        "docker-name",
        "bucket-name",
        "secret-id",
        "service-account-id",
        "database-name",
        "subnet",
        "cross-stack-identity",
        "cross-stack-secret",
    }
    assert {f"isolation-{kind}" for kind in expected} <= kinds
    for violation in violations:
        assert violation["enforcement"] == "mandatory"
        sides = (violation["urn"], violation["other_urn"])
        assert any("prod:" in side or "::prod::" in side or side.startswith("prod") for side in sides)
        assert any("prodcopy" in side for side in sides)
    # Grouped by policy with counts; every detail (both sides) is in --json.
    assert "[mandatory] isolation-bucket-name: 3" in human


def test_secret_ids_are_compared_within_their_project(project_root: Path) -> None:
    """Secret IDs are unique per project: two prod stacks of two applications, each in its own
    project, may both have `prod-app-db-password`; the same project twice may not."""
    document = yaml.safe_load((project_root / "Pulumi.prod.yaml").read_text())
    config = document["config"]
    config["stagecraft:app_name"] = "other"
    config["gcp:project"] = "other-prod-4711"
    config["docker:host"] = "ssh://deploy@other-prod.example.com"
    config["stagecraft:domains"] = {key: f"{key}.other.example.com" for key in ("web", "api", "grafana")}
    config["stagecraft:app"]["cors_origins"] = ["https://web.other.example.com"]
    other = project_root / "Pulumi.prodother.yaml"
    other.write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        code, out, _ = _run_cli("isolation", "prod", "prodother", "--json")
    finally:
        other.unlink()
    assert code == 0, out
    kinds = {v["policy"] for v in json.loads(out)["violations"]}
    assert "isolation-secret-id" not in kinds and "isolation-service-account-id" not in kinds, kinds


def test_isolation_between_staging_and_prod_is_clean() -> None:
    code, out, _ = _run_cli("isolation", "staging", "prod", "--json")
    assert code == 0 and json.loads(out)["violations"] == []


def test_json_masks_secrets_in_policy_output(plans: dict[str, Plan]) -> None:
    code, out, _ = _run_cli("policy", "--stack", "prod", "--json")
    assert code == 0
    for value in plans["prod"].secret_values:
        assert value not in out


def test_urns_carry_the_whole_parent_type_chain(plans: dict[str, Plan]) -> None:
    """The engine qualifies a type by every ancestor's type (the root stack left out); the policy
    pack and `pulumi stack` see these URNs, so preflight must produce the same ones."""
    volumes = {r.inputs["name"]: r.urn for r in plans["prod"].by_type("docker:index/volume:Volume")}
    assert volumes["acme-prod-postgres-data"] == (
        "urn:pulumi:prod::stagecraft::stagecraft:platform:Platform$stagecraft:application:ApplicationLayer"
        "$stagecraft:postgres:Postgres$docker:index/volume:Volume::stagecraft-application-postgres-data"
    )
    platform = next(r for r in plans["prod"].resources if r.type == "stagecraft:platform:Platform")
    assert platform.urn == "urn:pulumi:prod::stagecraft::stagecraft:platform:Platform::stagecraft"
