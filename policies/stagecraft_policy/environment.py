"""How a rule learns a resource's environment, and the pack's tunable settings."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

ENVIRONMENTS = ("staging", "prod")
PRODUCTION = "prod"

# What users tune, per policy, with `--policy-pack-config`; defaults fit stagecraft's naming.
CONFIG_SCHEMA = PolicyConfigSchema(
    properties={
        "productionStacks": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["prod"],
            "description": "Stack names that are production.",
        },
        "productionProjects": {
            "type": "array",
            "items": {"type": "string"},
            "default": [],
            "description": "GCP project IDs only production may reference.",
        },
        "productionPrefixes": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["prod-"],
            "description": "Name prefixes (secret IDs, resource names) that other stacks must never reference.",
        },
    }
)


# The pack's defaults for this repository; `--policy-pack-config` overrides them per policy.
DEFAULTS_FILE = Path(__file__).with_name("settings.json")


@dataclass(frozen=True)
class Settings:
    production_stacks: tuple[str, ...] = ("prod",)
    production_projects: tuple[str, ...] = ()
    production_prefixes: tuple[str, ...] = ("prod-",)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Settings:
        merged = {**_DEFAULTS, **{k: v for k, v in (config or {}).items() if v}}
        return cls(
            production_stacks=tuple(merged.get("productionStacks") or cls.production_stacks),
            production_projects=tuple(merged.get("productionProjects") or ()),
            production_prefixes=tuple(merged.get("productionPrefixes") or cls.production_prefixes),
        )


_DEFAULTS: dict[str, Any] = json.loads(DEFAULTS_FILE.read_text()) if DEFAULTS_FILE.exists() else {}


def stack_of(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<type>::<name>` -> `<stack>`."""
    return urn.split("::", 1)[0].rsplit(":", 1)[-1]


def stack_environment(urn: str, settings: Settings) -> str:
    """The environment a stack deploys: production stacks are prod; otherwise the stack name's
    first dash-separated word (`staging`, `staging-feature-x` -> staging)."""
    stack = stack_of(urn)
    if stack in settings.production_stacks:
        return PRODUCTION
    return stack.split("-", 1)[0]


def labels_of(props: Mapping[str, Any]) -> dict[str, str]:
    """GCP labels are a map; Docker labels a list of {label, value}. (The analyzer hands rules
    read-only Mapping and Sequence proxies, not dicts and lists.)"""
    labels = props.get("labels")
    if isinstance(labels, Mapping):
        return {str(k): str(v) for k, v in labels.items()}
    if isinstance(labels, Sequence) and not isinstance(labels, str):
        return {str(item.get("label")): str(item.get("value")) for item in labels if isinstance(item, Mapping)}
    return {}


def environment_of(args: ResourceValidationArgs, settings: Settings) -> str:
    """The environment label when there is one, else the stack's."""
    return labels_of(args.props).get("environment") or stack_environment(args.urn, settings)


def is_prod(args: ResourceValidationArgs, settings: Settings) -> bool:
    return stack_environment(args.urn, settings) == PRODUCTION or environment_of(args, settings) == PRODUCTION


def other_environments(environment: str) -> list[str]:
    return [env for env in ENVIRONMENTS if env != environment]


def names_environment(text: str, environment: str) -> bool:
    """True if `environment` appears as a whole dash/underscore/at-separated word of `text`."""
    return re.search(rf"(^|[-_@/.:]){re.escape(environment)}($|[-_@/.:])", text) is not None


def strings_in(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, Sequence):
        for item in value:
            yield from strings_in(item)


Check = Callable[[ResourceValidationArgs, Settings], Iterable[str]]


def resource_policy(
    name: str,
    description: str,
    check: Check,
    enforcement: EnforcementLevel = EnforcementLevel.MANDATORY,
    only_prod: bool = False,
    skip_prod: bool = False,
) -> ResourceValidationPolicy:
    """A resource policy from a check that yields one message per problem (each says the fix)."""

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        settings = Settings.from_config(args.get_config())
        prod = is_prod(args, settings)
        if (only_prod and not prod) or (skip_prod and prod):
            return
        for message in check(args, settings):
            report(message, args.urn)

    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=enforcement,
        config_schema=CONFIG_SCHEMA,
    )


def advisory_then_mandatory_in_prod(name: str, description: str, check: Check) -> list[ResourceValidationPolicy]:
    """The same check twice: advisory outside prod, mandatory in prod (`prod-<name>`)."""
    return [
        resource_policy(name, description, check, EnforcementLevel.ADVISORY, skip_prod=True),
        resource_policy(f"prod-{name}", f"{description} (mandatory in prod)", check, only_prod=True),
    ]
