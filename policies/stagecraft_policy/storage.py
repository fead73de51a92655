"""Buckets are private everywhere; in prod they and the secrets are durable and protected."""

from __future__ import annotations

from collections.abc import Iterable

from stagecraft_policy.base import ONLY_PROD, Subject, listed, mapped, number, resource_policy, show
from stagecraft_policy.resource_types import BUCKET, SECRET

DAY = 86400
# Lifecycle actions that never delete data.
KEEPING_ACTIONS = ("SetStorageClass", "AbortIncompleteMultipartUpload")


def _bucket_private(subject: Subject) -> Iterable[str]:
    if subject.props.get("uniformBucketLevelAccess") is not True:
        yield "uniform bucket-level access is off; set uniform_bucket_level_access=True"
    if subject.props.get("publicAccessPrevention") != "enforced":
        yield "public access prevention is not enforced; set public_access_prevention='enforced'"


def _delete_rule_problems(index: int, condition: object, subject: Subject) -> Iterable[str]:
    settings = subject.settings
    condition = mapped(condition)
    age = number(condition.get("age"))
    noncurrent = number(condition.get("daysSinceNoncurrentTime"))
    where = f"lifecycle rule {index} (Delete)"
    if age is not None and age < settings.prod_min_delete_age_days:
        yield f"{where} deletes objects at age {show(age)} days; prod keeps them >= {settings.prod_min_delete_age_days}"
    if noncurrent is not None and noncurrent < settings.prod_min_noncurrent_days:
        yield (
            f"{where} deletes versions {show(noncurrent)} days after they become noncurrent; prod keeps them "
            f">= {settings.prod_min_noncurrent_days}"
        )
    if age is None and noncurrent is None:
        yield (
            f"{where} has no age or daysSinceNoncurrentTime floor; in prod every delete waits at least "
            f"{settings.prod_min_delete_age_days} days (age) or {settings.prod_min_noncurrent_days} days noncurrent"
        )


def _prod_bucket_durable(subject: Subject) -> Iterable[str]:
    props, settings = subject.props, subject.settings
    if props.get("forceDestroy"):
        yield "force_destroy is on for a prod bucket; turn it off so a destroy cannot delete data"
    if mapped(props.get("versioning")).get("enabled") is not True:
        yield "versioning is off for a prod bucket; enable it"
    retention = number(mapped(props.get("softDeletePolicy")).get("retentionDurationSeconds"))
    if retention is None or retention < settings.prod_min_soft_delete_days * DAY:
        kept = "unset" if retention is None else f"{retention / DAY:g} days"
        yield f"soft delete keeps deleted objects {kept}; prod keeps them >= {settings.prod_min_soft_delete_days} days"
    for index, rule in enumerate(listed(props.get("lifecycleRules"))):
        action = mapped(mapped(rule).get("action")).get("type")
        if action == "Delete":
            yield from _delete_rule_problems(index, mapped(rule).get("condition"), subject)
        elif action not in KEEPING_ACTIONS:
            allowed = ", ".join(KEEPING_ACTIONS)
            yield f"lifecycle rule {index} has action {action!r}; prod allows Delete (with floors), {allowed}"


def _prod_data_protected(subject: Subject) -> Iterable[str]:
    if not subject.protect:
        yield "prod data is not protected; set protect=True so no update or destroy can delete it"
    if subject.type == SECRET and subject.props.get("deletionProtection") is not True:
        yield "prod secret has no deletion protection; set deletion_protection=True"


STORAGE_POLICIES = [
    resource_policy(
        "bucket-private",
        "Buckets have uniform bucket-level access and enforced public access prevention.",
        _bucket_private,
        types=[BUCKET],
    ),
    resource_policy(
        "prod-bucket-durable",
        "Prod buckets are never force-destroyed, keep versions, soft-delete long enough and delete nothing early.",
        _prod_bucket_durable,
        types=[BUCKET],
        when=ONLY_PROD,
    ),
    resource_policy(
        "prod-data-protected",
        "In prod, buckets and secrets are protected (and secrets deletion-protected).",
        _prod_data_protected,
        types=[BUCKET, SECRET],
        when=ONLY_PROD,
    ),
]
