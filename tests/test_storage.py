"""Buckets: private, versioned, lifecycle-managed; prod protected and access-logged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import labelled

from components.cloud.storage import Buckets, StorageArgs
from components.composition.platform import naming_for
from components.config import StackConfig
from preflight.engine import Plan


def _buckets(
    config: StackConfig, stack: str, iam: dict[str, Any] | None = None, members: dict[str, str] | None = None
) -> Callable[[], Any]:
    return lambda: Buckets(
        "storage",
        StorageArgs(
            naming=naming_for(config, stack),
            project=config.gcp.project,
            settings=config.stagecraft.storage,
            is_prod=config.is_prod,
            iam=iam or {},
            members=members or {},
        ),
    )


def _by_name(plan: Plan) -> dict[str, Any]:
    return labelled(plan, "gcp:storage/bucket:Bucket", "purpose")


def test_every_bucket_is_private_versioned_and_labelled(
    configs: dict[str, StackConfig], run_mocked: Callable[..., Plan]
) -> None:
    for stack, config in configs.items():
        buckets = _by_name(run_mocked(stack, _buckets(config, stack)))
        assert {"uploads", "backups"} <= set(buckets)
        for bucket in buckets.values():
            inputs = bucket.inputs
            assert inputs["uniformBucketLevelAccess"] is True
            assert inputs["publicAccessPrevention"] == "enforced"
            assert inputs["versioning"] == {"enabled": True}
            assert inputs["labels"]["environment"] == config.environment
            assert inputs["name"].startswith(f"{config.gcp.project}-{config.environment}-")
            assert (
                inputs["softDeletePolicy"]["retentionDurationSeconds"]
                == config.stagecraft.storage.soft_delete_days * 86400
            )


def test_backup_retention_and_test_data_ttl(configs: dict[str, StackConfig], run_mocked: Callable[..., Plan]) -> None:
    staging = _by_name(run_mocked("staging", _buckets(configs["staging"], "staging")))
    rules = staging["backups"].inputs["lifecycleRules"]
    assert {"action": {"type": "Delete"}, "condition": {"age": 14, "withState": "ANY"}} in rules
    upload_rules = staging["uploads"].inputs["lifecycleRules"]
    assert {"action": {"type": "Delete"}, "condition": {"age": 7, "matchesPrefixes": ["test-data/"]}} in upload_rules

    prod = _by_name(run_mocked("prod", _buckets(configs["prod"], "prod")))
    assert {"action": {"type": "Delete"}, "condition": {"age": 30, "withState": "ANY"}} in prod["backups"].inputs[
        "lifecycleRules"
    ]
    assert not any("matchesPrefixes" in r["condition"] for r in prod["uploads"].inputs["lifecycleRules"])


def test_prod_is_protected_logged_and_never_force_destroyed(
    configs: dict[str, StackConfig], run_mocked: Callable[..., Plan]
) -> None:
    prod = _by_name(run_mocked("prod", _buckets(configs["prod"], "prod")))
    log_bucket = prod["access-logs"].inputs["name"]
    for name in ("uploads", "backups"):
        assert prod[name].protect
        assert prod[name].inputs["forceDestroy"] is False
        assert prod[name].inputs["logging"] == {"logBucket": log_bucket, "logObjectPrefix": prod[name].inputs["name"]}
    staging = _by_name(run_mocked("staging", _buckets(configs["staging"], "staging")))
    assert all(b.inputs["forceDestroy"] is True and not b.protect for b in staging.values())
    assert "access-logs" not in staging


def test_prod_cmek_is_optional(configs: dict[str, StackConfig], run_mocked: Callable[..., Plan]) -> None:
    key = "projects/kms-1/locations/europe/keyRings/acme/cryptoKeys/buckets"
    config = configs["prod"].model_copy(
        update={
            "stagecraft": configs["prod"].stagecraft.model_copy(
                update={"storage": configs["prod"].stagecraft.storage.model_copy(update={"kms_key": key})}
            )
        }
    )
    with_key = _by_name(run_mocked("prod", _buckets(config, "prod")))
    assert with_key["uploads"].inputs["encryption"] == {"defaultKmsKeyName": key}
    without = _by_name(run_mocked("prod", _buckets(configs["prod"], "prod")))
    assert "encryption" not in without["uploads"].inputs


def test_grants_are_per_bucket_and_per_workload(
    configs: dict[str, StackConfig], run_mocked: Callable[..., Plan]
) -> None:
    member = "serviceAccount:acme-staging-backup@p.iam.gserviceaccount.com"
    iam = {"backups": {"roles/storage.objectCreator": ["backup"]}}
    plan = run_mocked("staging", _buckets(configs["staging"], "staging", iam, {"backup": member}))
    bindings = plan.by_type("gcp:storage/bucketIAMMember:BucketIAMMember")
    assert [(b.inputs["bucket"], b.inputs["role"], b.inputs["member"]) for b in bindings] == [
        ("acme-staging-4711-staging-backups", "roles/storage.objectCreator", member)
    ]
