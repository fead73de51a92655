"""The security layer: one environment's Google Cloud identities, secrets and buckets, with every
grant taken from the stack's grants table."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.cloud.identity import Identities, IdentitiesArgs
from components.cloud.secrets import Secrets, SecretsArgs, SecretSpec
from components.cloud.storage import Buckets, StorageArgs
from components.composition.grants import Grants
from components.config import WORKLOADS, StackConfig
from components.naming import Naming
from components.resources import child


@dataclass(frozen=True)
class SecurityLayerArgs:
    config: StackConfig
    naming: Naming
    grants: Grants


class SecurityLayer(pulumi.ComponentResource):
    """Creates a service account per workload, the secrets (generated or provided) and the
    buckets, granting each workload exactly what the grants table lists, on the resource itself.
    Prod's secrets and buckets are protected."""

    def __init__(self, name: str, args: SecurityLayerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:security:SecurityLayer", name, None, opts)
        config, naming, grants = args.config, args.naming, args.grants
        sc = config.stagecraft
        project = config.gcp.project
        # Before the layers existed these components were the platform's own children.
        previous_parent = opts.parent if opts else None

        self.identities = Identities(
            f"{name}-identities",
            IdentitiesArgs(
                naming=naming,
                project=project,
                workloads=WORKLOADS,
                iam=grants.project,
                keys={
                    workload: sc.identity.key_generations.get(workload, 1)
                    for workload, credentials in sc.identity.credentials.items()
                    if credentials == "key-file"
                },
            ),
            opts=child(self, was="identities", was_parent=previous_parent),
        )
        members = self.identities.members
        specs = [
            SecretSpec(name=secret, iam=grants.secrets[secret], generation=sc.secrets.generations.get(secret, 1))
            for secret in grants.secrets
            if secret not in sc.secrets.provided
        ]
        specs += [
            SecretSpec(name=secret, iam=grants.secrets[secret], provided=provided.value)
            for secret, provided in sc.secrets.provided.items()
        ]
        self.secrets = Secrets(
            f"{name}-secrets",
            SecretsArgs(
                naming=naming,
                project=project,
                settings=sc.secrets,
                specs=specs,
                members=members,
                protect=config.is_prod,
            ),
            opts=child(self, was="secrets", was_parent=previous_parent),
        )
        self.storage = Buckets(
            f"{name}-storage",
            StorageArgs(
                naming=naming,
                project=project,
                settings=sc.storage,
                is_prod=config.is_prod,
                iam=grants.buckets,
                members=members,
            ),
            opts=child(self, was="storage", was_parent=previous_parent),
        )
        self.register_outputs(
            {
                "service_accounts": self.identities.emails,
                "secret_ids": self.secrets.secret_ids,
                "buckets": self.storage.names,
            }
        )
