"""One Google service account per workload, and the project-level roles GCP grants only on a
project."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from components.cloud.iam import Iam, bindings, checked_member
from components.naming import Naming
from components.resources import child


@dataclass(frozen=True)
class IdentitiesArgs:
    naming: Naming
    project: str
    workloads: Sequence[str]
    # Project-level roles: {role: [workload, ...]}.
    iam: Iam = field(default_factory=dict)
    # Workloads that get a key file, with the key's generation (bump it to rotate the key).
    keys: Mapping[str, int] = field(default_factory=dict)


def _key_file(private_key: str) -> str:
    """The provider returns the JSON key file base64-encoded."""
    return base64.b64decode(private_key).decode()


class Identities(pulumi.ComponentResource):
    """Creates a service account per workload of one environment, the few project-level roles
    (log, metric and trace writers) GCP cannot grant on a narrower resource, and a key for each
    workload whose credentials are a key file.

    Every other grant (a bucket, a secret) is made on that resource, to ``members``; so an
    identity can reach only what its own environment grants it.
    """

    accounts: dict[str, gcp.serviceaccount.Account]

    def __init__(self, name: str, args: IdentitiesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:identity:Identities", name, None, opts)
        naming = args.naming
        self.accounts = {}
        for workload in args.workloads:
            self.accounts[workload] = gcp.serviceaccount.Account(
                f"{name}-{workload}",
                account_id=naming.service_account_id(workload),
                display_name=naming.display_name(f"{workload} workload"),
                description=naming.description(f"identity of the {workload} workload"),
                project=args.project,
                opts=child(self, was=workload),
            )
        for role, workload in bindings(args.iam):
            account = self.accounts[workload]
            short = role.rsplit("/", 1)[-1]
            gcp.projects.IAMMember(
                f"{name}-{workload}-{short}",
                project=args.project,
                role=role,
                member=account.member.apply(checked_member),
                opts=child(account, was=f"{workload}-{short}"),
            )
        # A key per workload that needs one: its JSON key file as a secret, for that workload's
        # containers only; a new generation replaces it (the old key is deleted).
        self.key_files: dict[str, pulumi.Output[str]] = {}
        for workload, generation in args.keys.items():
            account = self.accounts[workload]
            key = gcp.serviceaccount.Key(
                f"{name}-{workload}-key",
                service_account_id=account.name,
                keepers={"generation": str(generation)},
                opts=child(account, additional_secret_outputs=["private_key"]),
            )
            self.key_files[workload] = pulumi.Output.secret(key.private_key).apply(_key_file)
        self.members = {workload: account.member for workload, account in self.accounts.items()}
        self.emails = {workload: account.email for workload, account in self.accounts.items()}
        self.register_outputs({"emails": self.emails})
