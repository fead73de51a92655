"""Secrets: generated per stack, stored as <environment>-<name>, readable only by their workloads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
from conftest import labelled

from components.cloud.secrets import Secrets, SecretsArgs, SecretSpec
from components.config import ConfigSecret, SecretSettings
from components.naming import Naming
from preflight.engine import Plan

MEMBERS = {w: f"serviceAccount:acme-{{env}}-{w}@p.iam.gserviceaccount.com" for w in ("api", "backup", "temporal")}


def _secrets(env: str, settings: SecretSettings, specs: list[SecretSpec], protect: bool = False) -> Callable[[], Any]:
    naming = Naming(app="acme", environment=env, stack=env, project=f"acme-{env}-1")
    members = {w: m.format(env=env) for w, m in MEMBERS.items()}
    return lambda: Secrets(
        "secrets",
        SecretsArgs(
            naming=naming, project=f"acme-{env}-1", settings=settings, specs=specs, members=members, protect=protect
        ),
    )


ACCESSOR = "roles/secretmanager.secretAccessor"
SPECS = [
    SecretSpec("app-db-password", {ACCESSOR: ("api",)}),
    SecretSpec("postgres-superuser-password", {ACCESSOR: ("backup",)}),
]


def test_each_secret_has_id_labels_version_and_only_its_accessors(run_mocked: Callable[..., Plan]) -> None:
    plan = run_mocked("staging", _secrets("staging", SecretSettings(), SPECS))
    secrets = labelled(plan, "gcp:secretmanager/secret:Secret", "secret")
    assert secrets["app-db-password"].inputs["secretId"] == "staging-app-db-password"
    assert secrets["app-db-password"].inputs["labels"]["environment"] == "staging"
    assert secrets["app-db-password"].inputs["replication"] == {"auto": {}}
    versions = plan.by_type("gcp:secretmanager/secretVersion:SecretVersion")
    assert len(versions) == 2
    for version in versions:
        # Write-only input: Secret Manager's copy of the value stays out of state.
        assert version.inputs["secretDataWo"] == "[secret]"
        assert "secretData" not in version.inputs
    bindings = plan.by_type("gcp:secretmanager/secretIamMember:SecretIamMember")
    pairs = {(b.inputs["secretId"].rsplit("/", 1)[1], b.inputs["member"]) for b in bindings}
    assert pairs == {
        ("staging-app-db-password", MEMBERS["api"].format(env="staging")),
        ("staging-postgres-superuser-password", MEMBERS["backup"].format(env="staging")),
    }
    assert all(b.inputs["role"] == "roles/secretmanager.secretAccessor" for b in bindings)


def test_generated_values_honour_the_policy_and_stay_secret(run_mocked: Callable[..., Plan]) -> None:
    settings = SecretSettings.model_validate({"password": {"length": 48, "special": False}})
    plan = run_mocked("staging", _secrets("staging", settings, SPECS))
    passwords = plan.by_type("random:index/randomPassword:RandomPassword")
    assert {p.inputs["length"] for p in passwords} == {48}
    assert all(p.inputs["special"] is False for p in passwords)
    assert len(plan.secret_values) == 2 and all(len(v) == 48 for v in plan.secret_values)


def test_prod_secrets_are_protected_with_delayed_destroy_and_cmek(run_mocked: Callable[..., Plan]) -> None:
    key = "projects/kms-1/locations/europe-west1/keyRings/acme/cryptoKeys/secrets"
    settings = SecretSettings.model_validate(
        {
            "deletion_protection": True,
            "version_destroy_ttl_days": 7,
            "kms_key": key,
            "replication": {"mode": "user_managed", "locations": ["europe-west1"]},
        }
    )
    plan = run_mocked("prod", _secrets("prod", settings, SPECS, protect=True))
    for secret in plan.by_type("gcp:secretmanager/secret:Secret"):
        assert secret.protect
        assert secret.inputs["deletionProtection"] is True
        assert secret.inputs["versionDestroyTtl"] == "604800s"
        replica = secret.inputs["replication"]["userManaged"]["replicas"][0]
        assert replica == {"location": "europe-west1", "customerManagedEncryption": {"kmsKeyName": key}}
    assert all(
        v.inputs["deletionPolicy"] == "DISABLE" for v in plan.by_type("gcp:secretmanager/secretVersion:SecretVersion")
    )
    # Values and versions are what a rotation replaces: never protected, so a generation bump
    # never needs a protected resource replaced.
    assert not any(p.protect for p in plan.by_type("random:index/randomPassword:RandomPassword"))
    assert not any(v.protect for v in plan.by_type("gcp:secretmanager/secretVersion:SecretVersion"))


def test_staging_and_prod_generate_different_values(run_mocked: Callable[..., Plan]) -> None:
    staging = run_mocked("staging", _secrets("staging", SecretSettings(), SPECS))
    prod = run_mocked("prod", _secrets("prod", SecretSettings(), SPECS))
    assert staging.secret_values.isdisjoint(prod.secret_values)


def test_provided_secret_uses_the_config_value_without_generating(run_mocked: Callable[..., Plan]) -> None:
    spec = SecretSpec("smtp-password", {ACCESSOR: ("api",)}, provided=ConfigSecret("smtp-value-123"))
    captured: dict[str, Any] = {}

    def build() -> None:
        secrets = _secrets("staging", SecretSettings(), [spec])()
        captured["value"] = secrets.values["smtp-password"]

    plan = run_mocked("staging", build)
    assert not plan.by_type("random:index/randomPassword:RandomPassword")
    assert plan.by_type("gcp:secretmanager/secretVersion:SecretVersion")[0].inputs["secretDataWo"] == "[secret]"
    assert isinstance(captured["value"], pulumi.Output)


def test_a_new_generation_rotates_the_value(run_mocked: Callable[..., Plan]) -> None:
    spec = SecretSpec("api-secret-key", {ACCESSOR: ("api",)}, generation=3)
    plan = run_mocked("staging", _secrets("staging", SecretSettings(), [spec]))
    assert plan.by_type("random:index/randomPassword:RandomPassword")[0].inputs["keepers"] == {"generation": "3"}
    assert plan.by_type("gcp:secretmanager/secretVersion:SecretVersion")[0].inputs["secretDataWoVersion"] == "3"


def test_prod_grants_stay_revocable(plans: dict[str, Plan]) -> None:
    """The secrets and buckets are protected, their access grants are not: taking a workload's
    access away in prod must not need `pulumi state unprotect`."""
    prod = plans["prod"]
    grants = prod.by_type("gcp:secretmanager/secretIamMember:SecretIamMember")
    grants += prod.by_type("gcp:storage/bucketIAMMember:BucketIAMMember")
    assert grants and not any(grant.protect for grant in grants)
    assert all(secret.protect for secret in prod.by_type("gcp:secretmanager/secret:Secret"))
