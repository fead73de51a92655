"""IAM as an allow-list: three additive member types, a few roles each, on the environment's own
project, secrets and buckets, for the environment's own service accounts (or allow-listed users,
groups and domains)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy.proxy import UnknownValueError

from stagecraft_policy.base import Subject, listed, resource_policy
from stagecraft_policy.gcp import account_problem, project_problem
from stagecraft_policy.resource_types import BUCKET_IAM_MEMBER, PROJECT_IAM_MEMBER, SECRET_IAM_MEMBER
from stagecraft_policy.shared import PRIMITIVE_ROLES, PROJECT_ROLES, PUBLIC_MEMBERS

MEMBER_TYPES = (PROJECT_IAM_MEMBER, SECRET_IAM_MEMBER, BUCKET_IAM_MEMBER)
SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"
BUCKET_ROLES = ("roles/storage.objectViewer", "roles/storage.objectCreator", "roles/storage.objectUser")
SECRET_PATH = re.compile(r"^projects/(?P<project>[^/]+)/secrets/(?P<id>[A-Za-z0-9_-]{1,255})$")
# Tokens of types that grant access: IAM of any kind, and the legacy ACLs.
ACCESS_WORDS = ("iam", "acl", "accesscontrol")


def _policy_members(policy_data: Any) -> list[str]:
    """The members an IAM policy document grants to (or a note that it cannot be read)."""
    try:
        document = json.loads(policy_data) if isinstance(policy_data, str) else policy_data
        bindings = document.get("bindings") or []
        return [f"{b.get('role')}: {', '.join(map(str, b.get('members') or []))}" for b in bindings]
    except (ValueError, AttributeError, TypeError):
        return ["(policyData is not an IAM policy document)"]


def _members_only(subject: Subject) -> Iterable[str]:
    token = subject.type.lower()
    if subject.type in MEMBER_TYPES or not any(word in token for word in ACCESS_WORDS):
        return
    try:
        granted = [str(m) for m in [subject.props.get("member"), *listed(subject.props.get("members"))] if m]
        if subject.props.get("policyData") is not None:
            granted += _policy_members(subject.props.get("policyData"))
    except UnknownValueError:
        granted = ["members not known until the update"]
    detail = f" (grants {'; '.join(granted)[:300]})" if granted else ""
    yield (
        f"{subject.type} is not allowed{detail}: grant only through the additive SecretIamMember, "
        "BucketIAMMember or projects IAMMember, on this environment's own resources"
    )


def _project_grants(subject: Subject) -> Iterable[str]:
    role = subject.props.get("role")
    if role in PRIMITIVE_ROLES:
        yield f"primitive role {role} granted on the project; grant a predefined role on the one resource instead"
    elif role not in PROJECT_ROLES:
        yield (
            f"role {role!r} granted on the whole project; only {', '.join(PROJECT_ROLES)} may be, every other role "
            "goes on the one secret or bucket that needs it"
        )


def _secret_grants(subject: Subject) -> Iterable[str]:
    props = subject.props
    if props.get("role") != SECRET_ACCESSOR:
        yield f"role {props.get('role')!r} on a secret; only {SECRET_ACCESSOR} is granted on secrets"
    reference = props.get("secretId")
    found = SECRET_PATH.match(reference) if isinstance(reference, str) else None
    if found is None:
        yield (
            f"secretId {reference!r} must be the full projects/<project ID>/secrets/<id> of one of this "
            "environment's secrets, so its owner can be proven"
        )
    else:
        problem = project_problem(found["project"], subject)
        if problem:
            yield f"secretId {reference!r}: {problem}; grant only on this environment's secrets"
        if not found["id"].startswith(f"{subject.environment}-"):
            env = subject.environment
            yield f"grant on secret {found['id']!r} from the {env!r} stack; grant only on '{env}-' secrets"
    if props.get("project") is not None:
        problem = project_problem(props.get("project"), subject)
        if problem:
            yield f"{problem}; grant only in this environment's project"


def _bucket_grants(subject: Subject) -> Iterable[str]:
    props = subject.props
    if props.get("role") not in BUCKET_ROLES:
        yield f"role {props.get('role')!r} on a bucket; only {', '.join(BUCKET_ROLES)} are granted on buckets"
    bucket = props.get("bucket")
    prefixes = [f"{project}-{subject.environment}-" for project in sorted(subject.own_projects)]
    if not isinstance(bucket, str) or not any(bucket.startswith(prefix) for prefix in prefixes):
        yield (
            f"grant on bucket {bucket!r}; grant only on this environment's buckets, named "
            f"'<own project>-{subject.environment}-...'"
        )


def member_problem(member: Any, subject: Subject) -> str | None:
    """Why ``member`` may not be granted anything by this stack (None if it may)."""
    if not isinstance(member, str):
        return f"member {member!r} is not a principal"
    if member in PUBLIC_MEMBERS:
        return f"{member} is the public; grant only to this environment's service accounts"
    kind, _, rest = member.partition(":")
    if kind == "serviceAccount":
        problem = account_problem(rest, subject)
        return None if problem is None else f"service account {rest!r} {problem}"
    if kind in ("user", "group", "domain") and member in subject.settings.members(subject.environment):
        return None
    if kind in ("user", "group", "domain"):
        return (
            f"{member} is not in allowedMembers.{subject.environment} of policies/stagecraft_policy/settings.json; "
            "grant to this environment's service accounts"
        )
    return f"member {member[:80]!r} is neither a service account of this environment nor an allow-listed principal"


def _members_own(subject: Subject) -> Iterable[str]:
    props: Mapping[str, Any] = subject.props
    members = [props.get("member")] if props.get("member") is not None else []
    members += listed(props.get("members"))
    if not members:
        yield "grant names no member"
    for member in members:
        problem = member_problem(member, subject)
        if problem:
            yield problem


IAM_POLICIES = [
    resource_policy(
        "iam-members-only",
        "Access is granted only through additive IAM members: no authoritative bindings or policies, no folder, "
        "organization or service-account IAM, no ACLs.",
        _members_only,
    ),
    resource_policy(
        "iam-project-grants",
        "On a whole project only the log, metric and trace writer roles are granted.",
        _project_grants,
        types=[PROJECT_IAM_MEMBER],
    ),
    resource_policy(
        "secret-accessor-same-environment",
        "Secret grants are secretAccessor on one of the environment's own secrets, named by its full path.",
        _secret_grants,
        types=[SECRET_IAM_MEMBER],
    ),
    resource_policy(
        "iam-bucket-grants",
        "Bucket grants are object viewer, creator or user roles on the environment's own buckets.",
        _bucket_grants,
        types=[BUCKET_IAM_MEMBER],
    ),
    resource_policy(
        "iam-members-own",
        "IAM members are the environment's own service accounts or allow-listed users, groups and domains; "
        "never the public.",
        _members_own,
        types=MEMBER_TYPES,
    ),
]
