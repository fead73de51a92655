"""GCS buckets of one environment: uploads and database backups (plus access logs in prod)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from components.cloud.iam import Iam, bindings, checked_member, checked_role, role_suffix
from components.config import Storage as StorageSettings
from components.naming import Naming
from components.resources import child

# Object-prefix conventions: lifecycle rules and the backup and seed jobs key on these.
OBJECT_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "uploads": ("uploads/", "seed/", "test-data/"),
    "backups": ("postgres/", "redis/", "chroma/"),
}
TEST_DATA_PREFIX = "test-data/"
# GCS writes usage logs as this group (https://cloud.google.com/storage/docs/access-logs).
STORAGE_ANALYTICS_GROUP = "group:cloud-storage-analytics@google.com"


@dataclass(frozen=True)
class StorageArgs:
    naming: Naming
    project: str
    settings: StorageSettings
    is_prod: bool
    # Per bucket purpose: {role: [workload, ...]}.
    iam: Mapping[str, Iam] = field(default_factory=dict)
    # serviceAccount:<email> of each workload of *this* environment.
    members: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


class Buckets(pulumi.ComponentResource):
    """Creates the environment's buckets, each private (uniform access, public access prevention
    enforced), versioned, soft-deleting, with lifecycle rules from config, and grants each
    workload only the roles its ``iam`` lists on each bucket.

    Prod buckets are protected, never force-destroyed, and log access into a log bucket.
    """

    buckets: dict[str, gcp.storage.Bucket]

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:storage:Buckets", name, None, opts)
        self._name = name
        self._args = args
        self.buckets = {}
        log_bucket = None
        if args.is_prod:
            log_bucket = self._bucket("access-logs", _log_rules(args.settings), None)
            gcp.storage.BucketIAMMember(
                f"{name}-access-logs-writer",
                bucket=log_bucket.name,
                role=checked_role("roles/storage.objectCreator"),
                member=checked_member(STORAGE_ANALYTICS_GROUP),
                opts=child(log_bucket, was="access-logs-writer", protect=False),
            )
        self._bucket("uploads", _upload_rules(args.settings), log_bucket)
        self._bucket("backups", _backup_rules(args.settings), log_bucket)
        for purpose, iam in args.iam.items():
            bucket = self.buckets[purpose]
            for role, workload in bindings(iam):
                suffix = role_suffix(role)
                gcp.storage.BucketIAMMember(
                    f"{name}-{purpose}-{workload}-{suffix}",
                    bucket=bucket.name,
                    role=role,
                    member=pulumi.Output.from_input(args.members[workload]).apply(checked_member),
                    # Grants are not protected like their bucket: revoking access stays possible.
                    opts=child(bucket, was=f"{purpose}-{workload}-{suffix}", protect=False),
                )
        self.names = {purpose: bucket.name for purpose, bucket in self.buckets.items()}
        self.register_outputs({"names": self.names})

    def _bucket(
        self,
        purpose: str,
        rules: list[gcp.storage.BucketLifecycleRuleArgs],
        log_bucket: gcp.storage.Bucket | None,
    ) -> gcp.storage.Bucket:
        args = self._args
        settings = args.settings
        bucket_name = args.naming.bucket(purpose)
        bucket = gcp.storage.Bucket(
            f"{self._name}-{purpose}",
            name=bucket_name,
            project=args.project,
            location=settings.location,
            storage_class="STANDARD",
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=settings.versioning or args.is_prod),
            lifecycle_rules=rules,
            soft_delete_policy=gcp.storage.BucketSoftDeletePolicyArgs(
                retention_duration_seconds=settings.soft_delete_days * 86400
            ),
            logging=(
                gcp.storage.BucketLoggingArgs(log_bucket=log_bucket.name, log_object_prefix=bucket_name)
                if log_bucket is not None
                else None
            ),
            encryption=(
                gcp.storage.BucketEncryptionArgs(default_kms_key_name=settings.kms_key)
                if settings.kms_key and args.is_prod
                else None
            ),
            force_destroy=not args.is_prod,
            labels=args.naming.labels(purpose=purpose),
            opts=child(self, was=purpose, protect=args.is_prod),
        )
        self.buckets[purpose] = bucket
        return bucket


def _delete(**condition: object) -> gcp.storage.BucketLifecycleRuleArgs:
    return gcp.storage.BucketLifecycleRuleArgs(
        action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
        condition=gcp.storage.BucketLifecycleRuleConditionArgs(**condition),
    )


def _common_rules(settings: StorageSettings) -> list[gcp.storage.BucketLifecycleRuleArgs]:
    return [
        _delete(days_since_noncurrent_time=settings.noncurrent_version_days, with_state="ARCHIVED"),
        gcp.storage.BucketLifecycleRuleArgs(
            action=gcp.storage.BucketLifecycleRuleActionArgs(type="AbortIncompleteMultipartUpload"),
            condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=1),
        ),
    ]


def _upload_rules(settings: StorageSettings) -> list[gcp.storage.BucketLifecycleRuleArgs]:
    rules = _common_rules(settings)
    if settings.test_data_ttl_days is not None:
        rules.insert(0, _delete(age=settings.test_data_ttl_days, matches_prefixes=[TEST_DATA_PREFIX]))
    return rules


def _backup_rules(settings: StorageSettings) -> list[gcp.storage.BucketLifecycleRuleArgs]:
    return [_delete(age=settings.backup_retention_days, with_state="ANY"), *_common_rules(settings)]


def _log_rules(settings: StorageSettings) -> list[gcp.storage.BucketLifecycleRuleArgs]:
    return [_delete(age=settings.access_log_retention_days, with_state="ANY"), *_common_rules(settings)]
