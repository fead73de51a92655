"""The one shape every grant in stagecraft takes, and the guard every grant passes through.

A resource family (the project, a secret, a bucket) takes ``iam``: a mapping from a role to the
workloads that get it, e.g. ``{"roles/secretmanager.secretAccessor": ["api"]}``. Workloads are
names (``api``, ``backup``...); the component resolves them to this environment's own service
accounts, so a grant can never name another environment's identity.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from components.config import PRIMITIVE_ROLES, PUBLIC_MEMBERS

Iam = Mapping[str, Sequence[str]]


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


def bindings(iam: Iam) -> Iterator[tuple[str, str]]:
    """(role, workload) pairs of an ``iam`` mapping, each once, in the order written."""
    seen: set[tuple[str, str]] = set()
    for role, workloads in iam.items():
        for workload in workloads:
            if (role, workload) not in seen:
                seen.add((role, workload))
                yield checked_role(role), workload


def role_suffix(role: str) -> str:
    """The last word of a role, for logical names: roles/storage.objectViewer -> objectViewer."""
    return role.rsplit("/", 1)[-1].rsplit(".", 1)[-1]


def merge(*tables: Iam) -> dict[str, list[str]]:
    """Several ``iam`` mappings as one."""
    merged: dict[str, list[str]] = {}
    for table in tables:
        for role, workloads in table.items():
            merged.setdefault(role, [])
            merged[role] += [w for w in workloads if w not in merged[role]]
    return merged
