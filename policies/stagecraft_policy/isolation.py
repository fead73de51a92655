"""Rules that keep staging's secrets and identities apart from production's."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from stagecraft_policy.environment import (
    ENVIRONMENTS,
    PRODUCTION,
    Settings,
    labels_of,
    names_environment,
    other_environments,
    resource_policy,
    stack_environment,
    strings_in,
)

SECRET = "gcp:secretmanager/secret:Secret"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
SECRET_ACCESSOR_TYPES = (
    "gcp:secretmanager/secretIamMember:SecretIamMember",
    "gcp:secretmanager/secretIamBinding:SecretIamBinding",
)


def _secret_id(reference: str) -> str:
    """`projects/p/secrets/<id>` or `<id>` -> `<id>`."""
    return reference.rsplit("/secrets/", 1)[-1].split("/", 1)[0]


def secret_environment_agrees(args: Any, settings: Settings) -> Iterable[str]:
    if args.resource_type != SECRET:
        return
    env = stack_environment(args.urn, settings)
    secret_id = str(args.props.get("secretId", ""))
    label = labels_of(args.props).get("environment")
    if not secret_id.startswith(f"{env}-"):
        yield f"secret ID {secret_id!r} must start with '{env}-', the environment of stack's URN; rename it via Naming"
    if label != env:
        yield f"secret label environment={label!r} must be {env!r}, the environment of the stack in its URN"


def no_foreign_environment_labels(args: Any, settings: Settings) -> Iterable[str]:
    env = stack_environment(args.urn, settings)
    label = labels_of(args.props).get("environment")
    if label is not None and env in ENVIRONMENTS and label != env:
        yield (
            f"label environment={label!r} on a resource of the {env!r} stack; "
            "labels must name the stack's own environment"
        )


def secret_version_own_environment(args: Any, settings: Settings) -> Iterable[str]:
    if args.resource_type != SECRET_VERSION:
        return
    env = stack_environment(args.urn, settings)
    reference = str(args.props.get("secret", ""))
    secret_id = _secret_id(reference)
    if not secret_id.startswith(f"{env}-"):
        yield f"version written to secret {secret_id!r}, which is not a {env!r} secret; write only to '{env}-' secrets"
    if env != PRODUCTION and any(f"projects/{p}/" in reference for p in settings.production_projects):
        yield f"version written into production project ({reference}); use this environment's project"


def accessor_same_environment(args: Any, settings: Settings) -> Iterable[str]:
    if args.resource_type not in SECRET_ACCESSOR_TYPES:
        return
    env = stack_environment(args.urn, settings)
    members = args.props.get("members") or [args.props.get("member", "")]
    for member in members:
        identity = str(member).split(":", 1)[-1].split("@", 1)[0]
        if not names_environment(identity, env) or any(names_environment(identity, o) for o in other_environments(env)):
            yield f"secret accessor {member!r} is not a {env!r} identity; grant only this environment's accounts"
    secret_id = _secret_id(str(args.props.get("secretId", "")))
    if secret_id and not secret_id.startswith(f"{env}-"):
        yield f"accessor binding on secret {secret_id!r} from the {env!r} stack; bind only '{env}-' secrets"


def no_production_references(args: Any, settings: Settings) -> Iterable[str]:
    """Outside prod, no input may name a production project or a production name prefix."""
    if stack_environment(args.urn, settings) == PRODUCTION:
        return
    for text in strings_in(dict(args.props)):
        for project in settings.production_projects:
            if project and project in text:
                yield f"references production project {project!r}; point it at this environment's project"
        for prefix in settings.production_prefixes:
            if re.search(rf"(^|[/:@\s\"'=,]){re.escape(prefix)}", text):
                yield f"references a production name ({prefix}...) in {text[:80]!r}; use this environment's names"


SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|_PWD|SECRET|TOKEN|_KEY|CREDENTIAL|PRIVATE|APIKEY)", re.IGNORECASE)
CREDENTIAL_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


def no_plaintext_secret_env(args: Any, _settings: Settings) -> Iterable[str]:
    if args.resource_type != "docker:index/container:Container":
        return
    for pair in args.props.get("envs") or []:
        key, _, value = str(pair).partition("=")
        if SECRET_NAME.search(key) and not key.endswith("_FILE") and value and not value.startswith("/run/stagecraft/"):
            yield f"env {key} holds a plaintext secret; deliver it as a file and set {key}_FILE instead"
        elif CREDENTIAL_URL.search(value):
            yield f"env {key} holds a URL with credentials; pass the password as a file"


def _unique_versions(args: StackValidationArgs, report: ReportViolation) -> None:
    seen: dict[str, str] = {}
    for resource in args.resources:
        if resource.resource_type != SECRET_VERSION:
            continue
        value = resource.props.get("secretDataWo") or resource.props.get("secretData")
        if not value:
            continue
        if value in seen:
            report(
                f"secret version shares its value with {seen[value]}; every secret needs its own generated value",
                resource.urn,
            )
        else:
            seen[value] = resource.urn


ISOLATION_POLICIES = [
    resource_policy(
        "secret-environment-agrees",
        "A secret's ID, its environment label and the stack in its URN name the same environment.",
        secret_environment_agrees,
    ),
    resource_policy(
        "no-foreign-environment-labels",
        "No resource carries another environment's `environment` label.",
        no_foreign_environment_labels,
    ),
    resource_policy(
        "secret-version-own-environment",
        "A secret version is written only to a secret of its own environment.",
        secret_version_own_environment,
    ),
    resource_policy(
        "secret-accessor-same-environment",
        "Secret accessor bindings go only to identities and secrets of the same environment.",
        accessor_same_environment,
    ),
    resource_policy(
        "no-production-references",
        "Outside prod, nothing references a production project or production name prefix.",
        no_production_references,
    ),
    resource_policy(
        "no-plaintext-secret-env",
        "No container environment variable holds a plaintext password, token, key or credentials.",
        no_plaintext_secret_env,
    ),
    StackValidationPolicy(
        name="unique-secret-values",
        description="No two secret versions in a stack share a value.",
        validate=_unique_versions,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]
