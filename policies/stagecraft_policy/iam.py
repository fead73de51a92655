"""IAM rules: no primitive roles, no public principals."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stagecraft_policy.environment import Settings, resource_policy

PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}


def _is_iam(resource_type: str) -> bool:
    kind = resource_type.rsplit(":", 1)[-1].lower()
    return "iam" in kind and ("member" in kind or "binding" in kind or "policy" in kind)


def _members(props: Any) -> list[str]:
    members = list(props.get("members") or [])
    if props.get("member"):
        members.append(props["member"])
    return [str(m) for m in members]


def no_primitive_roles(args: Any, _settings: Settings) -> Iterable[str]:
    if _is_iam(args.resource_type) and args.props.get("role") in PRIMITIVE_ROLES:
        yield f"primitive role {args.props['role']} granted; grant a predefined role on the resource instead"


def no_public_members(args: Any, _settings: Settings) -> Iterable[str]:
    if not _is_iam(args.resource_type):
        return
    for member in _members(args.props):
        if member in PUBLIC_MEMBERS:
            yield f"public member {member} granted; grant a named service account instead"


IAM_POLICIES = [
    resource_policy("no-primitive-roles", "No owner, editor or viewer role is granted.", no_primitive_roles),
    resource_policy("no-public-members", "No IAM grant goes to allUsers or allAuthenticatedUsers.", no_public_members),
]
