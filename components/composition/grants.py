"""Every IAM grant a stack makes, in one table: who gets which role on the project, on each
secret and on each bucket. Nothing else in stagecraft grants access.

Workloads are names; the security layer resolves them to this environment's own service
accounts. The secrets a workload may read follow from the secret files its services read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from components.cloud.iam import Iam, merge
from components.cloud.secrets import ACCESSOR_ROLE
from components.config import GENERATED_SECRETS, WORKLOADS, Identity, ProvidedSecret
from components.config.cloud import OPTIONAL_SECRETS
from components.services import api, exporters, grafana, ops, temporal

# Roles GCP grants only on a project: every workload writes logs, monitoring writes metrics.
PROJECT_IAM: Iam = {
    "roles/logging.logWriter": WORKLOADS,
    "roles/monitoring.metricWriter": ("monitoring",),
}

# The generated secrets each workload reads, from the files its containers are given.
SECRET_READERS: Mapping[str, Sequence[str]] = {
    "api": api.SECRETS,
    "temporal": temporal.SECRETS,
    "monitoring": (*grafana.SECRETS, *exporters.SECRETS),
    # Backups and restores run as the database superuser, and stream Redis as its backup user;
    # the ops container also hosts the live checks' probes (a Redis marker key).
    "backup": ops.SECRETS,
}

BUCKET_IAM: Mapping[str, Iam] = {
    "uploads": {"roles/storage.objectUser": ("api",)},
    "backups": {"roles/storage.objectCreator": ("backup",), "roles/storage.objectViewer": ("backup",)},
}


@dataclass(frozen=True)
class Grants:
    """A stack's grants: ``{role: [workload, ...]}`` on the project, per secret, per bucket."""

    project: Iam
    secrets: Mapping[str, Iam]
    buckets: Mapping[str, Iam]


def secret_readers(secret: str) -> list[str]:
    return [workload for workload, secrets in SECRET_READERS.items() if secret in secrets]


def stack_grants(identity: Identity, provided: Mapping[str, ProvidedSecret], optional: Sequence[str] = ()) -> Grants:
    """The grants table of one stack: the fixed grants above, the project roles its config adds
    (log, metric and trace writing only), and readers of the secrets its config provides.
    ``optional``: the optional secrets this stack uses (e.g. a seed salt)."""
    wanted = [name for name in GENERATED_SECRETS if name not in OPTIONAL_SECRETS or name in optional]
    secrets: dict[str, Iam] = {name: {ACCESSOR_ROLE: secret_readers(name)} for name in wanted}
    secrets.update({name: {ACCESSOR_ROLE: list(spec.accessors)} for name, spec in provided.items()})
    return Grants(project=merge(PROJECT_IAM, identity.project_iam), secrets=secrets, buckets=BUCKET_IAM)
