"""Staging never reads, reuses or is mistaken for production: secret IDs, labels and the stack in
the URN agree; versions go only to the environment's own secrets; nothing outside prod mentions a
production name; nothing mentions another environment's project; generated values are unique."""

from __future__ import annotations

import re
from collections.abc import Iterable

from stagecraft_policy.base import (
    NOT_PROD,
    ONLY_PROD,
    Stack,
    Subject,
    labels_of,
    resource_policy,
    stack_policy,
    strings_in,
)
from stagecraft_policy.iam import SECRET_PATH
from stagecraft_policy.resource_types import CONTAINER, RANDOM_PASSWORD, SECRET, SECRET_VERSION

# The ops tool's seed command (`python -m stagecraft_ops seed ...`), in an argument list or a script.
SEED_COMMAND = re.compile(r"stagecraft_ops\W+seed\b|\bstagecraft-seed\b")


def _secret_environment_agrees(subject: Subject) -> Iterable[str]:
    env = subject.environment
    secret_id = subject.props.get("secretId")
    label = labels_of(subject.props).get("environment")
    if not isinstance(secret_id, str) or not secret_id.startswith(f"{env}-"):
        yield f"secret ID {secret_id!r} must start with '{env}-', the environment of the stack in its URN"
    if label != env:
        yield f"secret label environment={label!r} must be {env!r}, the environment of the stack in its URN"


def _no_foreign_environment_labels(subject: Subject) -> Iterable[str]:
    label = labels_of(subject.props).get("environment")
    if label is not None and label != subject.environment:
        yield (
            f"label environment={label!r} on a resource of the {subject.environment!r} stack; labels must name the "
            "stack's own environment"
        )


def _secret_version_own_environment(subject: Subject) -> Iterable[str]:
    reference = subject.props.get("secret")
    found = SECRET_PATH.match(reference) if isinstance(reference, str) else None
    env = subject.environment
    if found is None or found["project"] not in subject.own_projects or not found["id"].startswith(f"{env}-"):
        yield (
            f"version written to {reference!r}; write only to this environment's secrets, "
            f"projects/<own project>/secrets/{env}-..."
        )


def _no_production_references(subject: Subject) -> Iterable[str]:
    """Outside prod, no value may use a production name prefix."""
    patterns = [
        (prefix, re.compile(rf"(^|[/:@\s\"'=,]){re.escape(prefix)}")) for prefix in subject.settings.production_prefixes
    ]
    for path, text in strings_in(subject.props):
        for prefix, pattern in patterns:
            if pattern.search(text):
                yield f"{path or 'a value'} uses the production name prefix {prefix!r}; use this environment's names"


def _no_other_environment_projects(subject: Subject) -> Iterable[str]:
    foreign = subject.settings.foreign_projects(subject.environment)
    for path, text in strings_in(subject.props):
        for project in sorted(foreign):
            if project in text:
                yield f"{path or 'a value'} mentions {project!r}, another environment's project; use this one's"


def _unique_values(stack: Stack) -> Iterable[tuple[str, str]]:
    """No two secret versions, and no two generated passwords, share a value."""
    groups = (
        (SECRET_VERSION, ("secretData", "secretDataWo"), "secret version"),
        (RANDOM_PASSWORD, ("result",), "generated password"),
    )
    for type_, keys, what in groups:
        seen: dict[str, str] = {}
        for resource in stack.of_type(type_):
            for key in keys:
                value = resource.props.get(key)
                if not isinstance(value, str) or not value:
                    continue
                if value in seen:
                    yield resource.urn, f"{what} shares its value with {seen[value]}; every secret needs its own value"
                else:
                    seen[value] = resource.urn


def _no_seed_in_production(subject: Subject) -> Iterable[str]:
    """Seed data (fixtures or an anonymized copy) is for staging: in prod, no container runs the
    seed command, in its arguments or in a script it is given, whatever its labels say."""
    props = subject.props
    if labels_of(props).get("service") == "seed":
        yield "a seed job in prod; seed data never goes into production"
        return
    for key in ("command", "entrypoints"):
        arguments = " ".join(text for _, text in strings_in(props.get(key)))
        if SEED_COMMAND.search(arguments):
            yield f"{key} runs the seed command in prod; seed data never goes into production"
            return
    for key in ("envs", "uploads"):
        for path, text in strings_in(props.get(key), key):
            if SEED_COMMAND.search(text):
                yield f"{path} runs the seed command in prod; seed data never goes into production"
                return


ISOLATION_POLICIES = [
    resource_policy(
        "secret-environment-agrees",
        "A secret's ID, its environment label and the stack in its URN name the same environment.",
        _secret_environment_agrees,
        types=[SECRET],
    ),
    resource_policy(
        "no-foreign-environment-labels",
        "No resource carries another environment's `environment` label.",
        _no_foreign_environment_labels,
    ),
    resource_policy(
        "secret-version-own-environment",
        "A secret version is written only to a secret of its own environment, in its own project.",
        _secret_version_own_environment,
        types=[SECRET_VERSION],
    ),
    resource_policy(
        "no-production-references",
        "Outside prod, nothing uses a production name prefix.",
        _no_production_references,
        when=NOT_PROD,
    ),
    resource_policy(
        "no-other-environment-projects",
        "Nothing mentions another environment's GCP project.",
        _no_other_environment_projects,
    ),
    resource_policy(
        "no-seed-in-production",
        "In prod, no container runs the seed command (by its arguments or a script it is given).",
        _no_seed_in_production,
        types=[CONTAINER],
        when=ONLY_PROD,
    ),
    stack_policy(
        "unique-secret-values",
        "No two secret versions, and no two generated passwords, in a stack share a value.",
        _unique_values,
    ),
]
