"""Labels everywhere, and protection for what holds data in prod."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stagecraft_policy.environment import Settings, advisory_then_mandatory_in_prod, labels_of, resource_policy

REQUIRED_LABELS = ("app", "environment", "stack", "managed-by")
LABELLED_TYPES = (
    "gcp:storage/bucket:Bucket",
    "gcp:secretmanager/secret:Secret",
    "docker:index/container:Container",
    "docker:index/volume:Volume",
    "docker:index/network:Network",
)
STATEFUL_TYPES = ("gcp:storage/bucket:Bucket", "gcp:secretmanager/secret:Secret")


def required_labels(args: Any, _settings: Settings) -> Iterable[str]:
    if args.resource_type not in LABELLED_TYPES:
        return
    missing = [key for key in REQUIRED_LABELS if key not in labels_of(args.props)]
    if missing:
        yield f"missing labels {', '.join(missing)}; take labels from Naming.labels()"


def prod_stateful_protected(args: Any, _settings: Settings) -> Iterable[str]:
    stateful = args.resource_type in STATEFUL_TYPES or (
        args.resource_type == "docker:index/volume:Volume" and str(args.props.get("name", "")).endswith("-data")
    )
    if stateful and not args.opts.protect:
        yield "stateful prod resource is not protected; set protect=True (and retain_on_delete for volumes)"


HYGIENE_POLICIES = [
    *advisory_then_mandatory_in_prod(
        "required-labels", "Resources carry app, environment, stack and managed-by labels.", required_labels
    ),
    resource_policy(
        "prod-stateful-protected",
        "In prod, buckets, secrets and data volumes are protected.",
        prod_stateful_protected,
        only_prod=True,
    ),
]
