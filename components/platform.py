"""The whole environment: identities, secrets and buckets (and, wired here, the services)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from components.config import WORKLOADS, StackConfig
from components.identity import Identities, IdentitiesArgs
from components.naming import Naming
from components.secrets import Secrets, SecretsArgs, SecretSpec
from components.storage import OBJECT_PREFIXES, BucketGrant, Buckets, StorageArgs

# Which workload may read which generated secret. Nothing else gets secretAccessor.
SECRET_ACCESSORS: Mapping[str, tuple[str, ...]] = {
    "postgres-superuser-password": ("backup",),
    "app-db-password": ("api",),
    "temporal-db-password": ("temporal",),
    "redis-password": ("api",),
    "grafana-admin-password": ("monitoring",),
    "api-secret-key": ("api",),
    "jwt-signing-key": ("api",),
}

# Which workload gets which role on which bucket.
BUCKET_ROLES: tuple[tuple[str, str, str], ...] = (
    ("uploads", "api", "roles/storage.objectUser"),
    ("backups", "backup", "roles/storage.objectCreator"),
    ("backups", "backup", "roles/storage.objectViewer"),
)


def naming_for(config: StackConfig, stack: str) -> Naming:
    sc = config.stagecraft
    return Naming(
        app=sc.app_name,
        environment=sc.environment,
        stack=stack,
        project=config.gcp.project,
        branch=sc.git_branch,
    )


@dataclass(frozen=True)
class PlatformArgs:
    config: StackConfig
    stack: str


class Platform(pulumi.ComponentResource):
    """Creates one environment of the application from its validated stack config.

    The building blocks get only what they need: names and labels from ``Naming``, identities
    from ``Identities``, and each other's outputs passed in explicitly.
    """

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:platform:Platform", name, None, opts)
        config = args.config
        sc = config.stagecraft
        project = config.gcp.project
        self.naming = naming = naming_for(config, args.stack)
        child = pulumi.ResourceOptions(parent=self)

        self.identities = Identities(
            "identities",
            IdentitiesArgs(
                naming=naming,
                project=project,
                workloads=WORKLOADS,
                project_roles=sc.identity.project_roles,
            ),
            opts=child,
        )
        members = {workload: self.identities.member(workload) for workload in WORKLOADS}

        specs = [
            SecretSpec(name=name, accessors=accessors, generation=sc.secrets.generations.get(name, 1))
            for name, accessors in SECRET_ACCESSORS.items()
        ]
        specs += [
            SecretSpec(name=name, accessors=tuple(provided.accessors), provided=provided.value)
            for name, provided in sc.secrets.provided.items()
        ]
        self.secrets = Secrets(
            "secrets",
            SecretsArgs(
                naming=naming,
                project=project,
                settings=sc.secrets,
                specs=specs,
                members=members,
                protect=config.is_prod,
            ),
            opts=child,
        )

        self.storage = Buckets(
            "storage",
            StorageArgs(
                naming=naming,
                project=project,
                settings=sc.storage,
                is_prod=config.is_prod,
                grants=[
                    BucketGrant(bucket=bucket, workload=workload, role=role, member=members[workload])
                    for bucket, workload, role in BUCKET_ROLES
                ],
            ),
            opts=child,
        )

        self.outputs: dict[str, Any] = {
            "environment": sc.environment,
            "domains": sc.domains.model_dump(),
            "service_accounts": self.identities.emails,
            "buckets": self.storage.names,
            "object_prefixes": {purpose: list(prefixes) for purpose, prefixes in OBJECT_PREFIXES.items()},
            "secret_ids": self.secrets.secret_ids,
        }
        self.register_outputs(self.outputs)
