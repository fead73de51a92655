"""Bucket rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stagecraft_policy.environment import Settings, resource_policy

BUCKET = "gcp:storage/bucket:Bucket"


def bucket_private(args: Any, _settings: Settings) -> Iterable[str]:
    if args.resource_type != BUCKET:
        return
    if args.props.get("uniformBucketLevelAccess") is not True:
        yield "uniform bucket-level access is off; set uniform_bucket_level_access=True"
    if args.props.get("publicAccessPrevention") != "enforced":
        yield "public access prevention is not enforced; set public_access_prevention='enforced'"


def prod_bucket_durable(args: Any, _settings: Settings) -> Iterable[str]:
    if args.resource_type != BUCKET:
        return
    if args.props.get("forceDestroy"):
        yield "force_destroy is on for a prod bucket; turn it off so a destroy cannot delete data"
    if not (args.props.get("versioning") or {}).get("enabled"):
        yield "versioning is off for a prod bucket; enable it"


STORAGE_POLICIES = [
    resource_policy(
        "bucket-private",
        "Buckets have uniform bucket-level access and enforced public access prevention.",
        bucket_private,
    ),
    resource_policy(
        "prod-bucket-durable",
        "Prod buckets are never force-destroyed and keep versions.",
        prod_bucket_durable,
        only_prod=True,
    ),
]
