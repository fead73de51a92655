"""One Google service account per workload, and the guard every IAM grant goes through."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from components.config import PRIMITIVE_ROLES, PUBLIC_MEMBERS
from components.naming import Naming

# Roles GCP only grants on a project; everything else is granted on the resource itself.
BASELINE_PROJECT_ROLES: Mapping[str, tuple[str, ...]] = {
    "api": ("roles/logging.logWriter",),
    "web": ("roles/logging.logWriter",),
    "temporal": ("roles/logging.logWriter",),
    "backup": ("roles/logging.logWriter",),
    "monitoring": ("roles/monitoring.metricWriter", "roles/logging.logWriter"),
}


class GrantError(ValueError):
    """An IAM grant that stagecraft never makes."""


def checked_role(role: str) -> str:
    """Refuse primitive roles; every grant in stagecraft passes through here."""
    if role in PRIMITIVE_ROLES:
        raise GrantError(f"primitive role {role} is never granted; use a predefined role on the resource")
    return role


def checked_member(member: str) -> str:
    """Refuse public principals (allUsers, allAuthenticatedUsers)."""
    if member in PUBLIC_MEMBERS:
        raise GrantError(f"public member {member} is never granted")
    return member


@dataclass(frozen=True)
class IdentitiesArgs:
    naming: Naming
    project: str
    workloads: Sequence[str]
    # Extra project-level roles per workload (config `identity.project_roles`).
    project_roles: Mapping[str, Sequence[str]] = field(default_factory=dict)


class Identities(pulumi.ComponentResource):
    """Creates a service account per workload of one environment, plus the few project-level
    roles (log and metric writers) GCP cannot grant on a narrower resource.

    Every other grant (a bucket, a secret) is made by the component that owns that resource,
    using ``member(workload)``; so an identity can reach only what its own environment grants it.
    """

    accounts: dict[str, gcp.serviceaccount.Account]

    def __init__(self, name: str, args: IdentitiesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:identity:Identities", name, None, opts)
        naming = args.naming
        self.accounts = {}
        for workload in args.workloads:
            account = gcp.serviceaccount.Account(
                workload,
                account_id=naming.service_account_id(workload),
                display_name=naming.display_name(f"{workload} workload"),
                description=naming.description(f"identity of the {workload} workload"),
                project=args.project,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.accounts[workload] = account
            roles = [*BASELINE_PROJECT_ROLES.get(workload, ()), *args.project_roles.get(workload, ())]
            for role in dict.fromkeys(roles):
                gcp.projects.IAMMember(
                    f"{workload}-{role.rsplit('/', 1)[-1]}",
                    project=args.project,
                    role=checked_role(role),
                    member=account.member,
                    opts=pulumi.ResourceOptions(parent=account),
                )
        self.emails = {workload: account.email for workload, account in self.accounts.items()}
        self.register_outputs({"emails": self.emails})

    def member(self, workload: str) -> pulumi.Output[str]:
        """`serviceAccount:<email>` of a workload of this environment."""
        return self.accounts[workload].member
