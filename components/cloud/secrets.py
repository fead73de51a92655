"""Secret Manager secrets of one environment: generated or provided values, their versions, and
access granted per secret."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from components.cloud.iam import Iam, bindings, checked_member
from components.config import ConfigSecret, SecretSettings
from components.naming import Naming
from components.resources import child

ACCESSOR_ROLE = "roles/secretmanager.secretAccessor"


@dataclass(frozen=True)
class SecretSpec:
    """One secret: who may read it (``{role: [workload, ...]}``), and its value when the operator
    provides it."""

    name: str
    iam: Iam = field(default_factory=dict)
    provided: ConfigSecret | None = None
    generation: int = 1


@dataclass(frozen=True)
class SecretsArgs:
    naming: Naming
    project: str
    settings: SecretSettings
    specs: Sequence[SecretSpec]
    # serviceAccount:<email> of each workload of *this* environment.
    members: Mapping[str, pulumi.Input[str]]
    protect: bool = False


class Secrets(pulumi.ComponentResource):
    """For each secret: a value (pulumi-random, or a config secret), a Secret Manager secret named
    ``<environment>-<name>``, a version holding the value, and the roles its ``iam`` lists, granted
    on that one secret only.

    The version is written through the write-only ``secret_data_wo`` input, so Secret Manager's
    copy never enters Pulumi state; bumping the secret's generation in config writes a new value.
    In prod the secrets are protected, but their values and versions are not: a rotation
    replaces those, and the services that use a value apply the new one when they restart.
    """

    values: dict[str, pulumi.Output[str]]
    secrets: dict[str, gcp.secretmanager.Secret]

    def __init__(self, name: str, args: SecretsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:secrets:Secrets", name, None, opts)
        self.values = {}
        self.secrets = {}
        for spec in args.specs:
            value = self._value(name, spec, args)
            secret = gcp.secretmanager.Secret(
                f"{name}-{spec.name}",
                secret_id=args.naming.secret_id(spec.name),
                project=args.project,
                labels=args.naming.labels(secret=spec.name),
                replication=_replication(args.settings),
                deletion_protection=args.settings.deletion_protection,
                version_destroy_ttl=_ttl(args.settings.version_destroy_ttl_days),
                opts=child(self, was=spec.name, protect=args.protect),
            )
            gcp.secretmanager.SecretVersion(
                f"{name}-{spec.name}",
                secret=secret.id,
                secret_data_wo=value,
                secret_data_wo_version=str(spec.generation),
                # A prod version is disabled, not destroyed, when Pulumi would delete it, so a
                # rotation (a new version replacing this one) never needs a protected resource
                # replaced, and the old value stays recoverable.
                deletion_policy="DISABLE" if args.protect else "DELETE",
                opts=child(secret, was=spec.name, protect=False),
            )
            for role, workload in bindings(spec.iam):
                gcp.secretmanager.SecretIamMember(
                    f"{name}-{spec.name}-{workload}",
                    project=args.project,
                    secret_id=secret.id,
                    role=role,
                    member=pulumi.Output.from_input(args.members[workload]).apply(checked_member),
                    # A grant is never protected (its secret is): revoking access must not need
                    # `pulumi state unprotect`.
                    opts=child(secret, was=f"{spec.name}-{workload}", protect=False),
                )
            self.values[spec.name] = value
            self.secrets[spec.name] = secret
        self.secret_ids = {secret_name: secret.secret_id for secret_name, secret in self.secrets.items()}
        self.register_outputs({"secret_ids": self.secret_ids})

    def _value(self, name: str, spec: SecretSpec, args: SecretsArgs) -> pulumi.Output[str]:
        if spec.provided is not None:
            return spec.provided.output()
        policy = args.settings.password
        password = random.RandomPassword(
            f"{name}-{spec.name}",
            length=policy.length,
            special=policy.special,
            override_special=policy.override_special if policy.special else None,
            min_upper=policy.min_upper,
            min_lower=policy.min_lower,
            min_numeric=policy.min_numeric,
            min_special=policy.min_special if policy.special else 0,
            # A new generation replaces the password, which writes a new version. Not protected:
            # rotating is replacing; the values stay in Secret Manager's versions.
            keepers={"generation": str(spec.generation)},
            opts=child(self, was=spec.name),
        )
        return pulumi.Output.secret(password.result)


def read_secret(secret_id: str, project: str, version: str = "latest") -> pulumi.Output[str]:
    """A secret the operator keeps in Secret Manager (a certificate, an SMTP password), read at
    deploy time from the stack's own project and kept secret in Pulumi's state."""
    data = gcp.secretmanager.get_secret_version_output(secret=secret_id, project=project, version=version)
    return pulumi.Output.secret(data.secret_data)


def _ttl(days: int | None) -> str | None:
    return None if days is None else f"{days * 86400}s"


def _replication(settings: SecretSettings) -> gcp.secretmanager.SecretReplicationArgs:
    kms = settings.kms_key
    if settings.replication.mode == "user_managed":
        return gcp.secretmanager.SecretReplicationArgs(
            user_managed=gcp.secretmanager.SecretReplicationUserManagedArgs(
                replicas=[
                    gcp.secretmanager.SecretReplicationUserManagedReplicaArgs(
                        location=location,
                        customer_managed_encryption=(
                            gcp.secretmanager.SecretReplicationUserManagedReplicaCustomerManagedEncryptionArgs(
                                kms_key_name=kms
                            )
                            if kms
                            else None
                        ),
                    )
                    for location in settings.replication.locations
                ]
            )
        )
    return gcp.secretmanager.SecretReplicationArgs(
        auto=gcp.secretmanager.SecretReplicationAutoArgs(
            customer_managed_encryption=(
                gcp.secretmanager.SecretReplicationAutoCustomerManagedEncryptionArgs(kms_key_name=kms) if kms else None
            )
        )
    )
