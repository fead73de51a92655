"""Google Cloud ownership: a stack creates things only in its environment's own projects, under
names that carry its environment, and mints keys only for its own service accounts."""

from __future__ import annotations

import re
from collections.abc import Iterable

from stagecraft_policy.base import Subject, resource_policy
from stagecraft_policy.resource_types import ACCOUNT, BUCKET, GCP_PROVIDER, KEY, PROJECT_IAM_MEMBER, SECRET

SERVICE_ACCOUNT_EMAIL = re.compile(
    r"^(?P<id>[a-z][a-z0-9-]{4,28}[a-z0-9])@(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])\.iam\.gserviceaccount\.com$"
)
ACCOUNT_PATH = re.compile(r"^projects/(?P<project>[^/]+)/serviceAccounts/(?P<email>[^/]+)$")
# Types whose project must be stated (not left to the provider's default).
PROJECT_REQUIRED = (ACCOUNT, BUCKET, PROJECT_IAM_MEMBER, SECRET)


def no_projects_message(subject: Subject) -> str:
    """Why a stack whose environment has no projects in settings.json can own nothing in GCP."""
    return (
        f"stack {subject.stack!r} deploys environment {subject.environment!r}, which has no GCP projects of its own "
        f"in policies/stagecraft_policy/settings.json; add them under environmentProjects.{subject.environment} "
        "so the stack can prove it owns what it creates"
    )


def project_problem(project: object, subject: Subject) -> str | None:
    """Why ``project`` is not one of the stack's own projects (None if it is)."""
    if not isinstance(project, str):
        return f"project must be a project ID (got {type(project).__name__})"
    if project not in subject.own_projects:
        owned = ", ".join(sorted(subject.own_projects)) or "none"
        return f"project {project!r} is not one of the {subject.environment} environment's own projects ({owned})"
    return None


def account_problem(email: str, subject: Subject) -> str | None:
    """Why ``email`` is not a service account of this environment (None if it is)."""
    found = SERVICE_ACCOUNT_EMAIL.match(email)
    if found is None:
        return "is not a service account email of the form <id>@<project>.iam.gserviceaccount.com"
    if found["project"] not in subject.own_projects:
        return f"lives in project {found['project']!r}, not one of this environment's own projects"
    if not subject.carries_environment(found["id"]):
        return f"its ID must carry {subject.environment!r} as a dash-separated word and no other environment's"
    return None


def _gcp_ownership(subject: Subject) -> Iterable[str]:
    if not (subject.type.startswith("gcp:") or subject.type == GCP_PROVIDER):
        return
    if not subject.own_projects:
        yield no_projects_message(subject)
        return
    props = subject.props
    if "project" in props and props["project"] is not None:
        problem = project_problem(props["project"], subject)
        if problem:
            yield f"{problem}; create it in this environment's project"
    elif subject.type in PROJECT_REQUIRED:
        yield "project is not set; state one of this environment's own projects instead of the provider's default"
    provider = subject.provider
    if provider is not None and provider.resource_type == GCP_PROVIDER and provider.props.get("project") is not None:
        problem = project_problem(provider.props["project"], subject)
        if problem:
            yield f"its provider's {problem}; use a provider configured for this environment's project"
    if subject.type == BUCKET:
        name, project = props.get("name"), props.get("project")
        if not isinstance(name, str) or not name.startswith(f"{project}-{subject.environment}-"):
            yield f"bucket name {name!r} must start with '<its project>-{subject.environment}-' (name it via Naming)"
    if subject.type == ACCOUNT:
        account_id = props.get("accountId")
        if not isinstance(account_id, str) or not subject.carries_environment(account_id):
            yield (
                f"service account ID {account_id!r} must carry {subject.environment!r} as a dash-separated word and no "
                "other environment's"
            )


def _key_own_account(subject: Subject) -> Iterable[str]:
    if subject.props.get("publicKeyData"):
        yield "key made from uploaded public key data; its private key lives elsewhere. Let Google generate keys"
    reference = subject.props.get("serviceAccountId")
    if not isinstance(reference, str):
        yield "serviceAccountId must name one of this environment's service accounts"
        return
    path = ACCOUNT_PATH.match(reference)
    email = path["email"] if path else reference
    if path is not None and path["project"] not in subject.own_projects:
        yield (
            f"key for {reference!r}: the account's project must be spelled out as one of this environment's own "
            "projects (not '-' or another project)"
        )
        return
    problem = account_problem(email, subject)
    if problem:
        yield f"key for {reference!r}: {problem}; create keys only for this environment's own accounts, by email"


GCP_POLICIES = [
    resource_policy(
        "gcp-ownership",
        "GCP resources live in the environment's own projects (stated, not defaulted), with names that carry the "
        "environment.",
        _gcp_ownership,
    ),
    resource_policy(
        "service-account-key-own",
        "Service account keys are minted only for the environment's own service accounts.",
        _key_own_account,
        types=[KEY],
    ),
]
