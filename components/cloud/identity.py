"""One Google service account per workload, and the project-level roles GCP grants only on a
project."""

from __future__ import annotations

from collections.abc import Sequence
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


class Identities(pulumi.ComponentResource):
    """Creates a service account per workload of one environment, plus the few project-level
    roles (log and metric writers) GCP cannot grant on a narrower resource.

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
        self.members = {workload: account.member for workload, account in self.accounts.items()}
        self.emails = {workload: account.email for workload, account in self.accounts.items()}
        self.register_outputs({"emails": self.emails})
