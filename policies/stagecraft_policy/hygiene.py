"""Labels on everything that takes them: advisory outside prod, mandatory in prod."""

from __future__ import annotations

from collections.abc import Iterable

from pulumi_policy import EnforcementLevel

from stagecraft_policy.base import NOT_PROD, ONLY_PROD, Subject, labels_of, resource_policy
from stagecraft_policy.resource_types import BUCKET, CONTAINER, NETWORK, SECRET, VOLUME

REQUIRED_LABELS = ("app", "environment", "stack", "managed-by")
LABELLED_TYPES = (BUCKET, SECRET, CONTAINER, VOLUME, NETWORK)


def _required_labels(subject: Subject) -> Iterable[str]:
    missing = [key for key in REQUIRED_LABELS if key not in labels_of(subject.props)]
    if missing:
        yield f"missing labels {', '.join(missing)}; take labels from Naming.labels()"


DESCRIPTION = "Buckets, secrets, containers, volumes and networks carry app, environment, stack and managed-by labels."
HYGIENE_POLICIES = [
    resource_policy(
        "required-labels",
        DESCRIPTION,
        _required_labels,
        types=LABELLED_TYPES,
        enforcement=EnforcementLevel.ADVISORY,
        when=NOT_PROD,
    ),
    resource_policy(
        "prod-required-labels",
        f"{DESCRIPTION} (mandatory in prod)",
        _required_labels,
        types=LABELLED_TYPES,
        when=ONLY_PROD,
    ),
]
