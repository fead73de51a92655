"""What every rule needs: the resource it judges with its stack and environment, the settings its
policy config resolves to, and small readers for the values the analyzer hands over.

The analyzer hands rules read-only Mapping and Sequence proxies (not dicts and lists); numbers
arrive as floats, secrets already unwrapped. Reading a value that is unknown during preview raises
UnknownValueError, which the analyzer reports as "can't run during preview": the rule then runs at
`pulumi up`, when every input is known. Scans that look for something forbidden skip unknowns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyProviderResource,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from stagecraft_policy.config import CONFIG_SCHEMA, PRODUCTION, Settings, settings_for

ROOT_STACK = "pulumi:pulumi:Stack"
ALWAYS, ONLY_PROD, NOT_PROD = "always", "only-prod", "not-prod"


def stack_of(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<type>::<name>` -> `<stack>`."""
    return urn.split("::", 1)[0].rsplit(":", 1)[-1]


@dataclass(frozen=True)
class Subject:
    """One resource as a rule sees it."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    protect: bool
    provider: PolicyProviderResource | None
    stack: str
    environment: str
    settings: Settings

    @property
    def prod(self) -> bool:
        return self.environment == PRODUCTION

    @property
    def own_projects(self) -> frozenset[str]:
        return self.settings.own_projects(self.environment)

    def carries_environment(self, text: str) -> bool:
        return self.settings.carries_environment(text, self.environment)


def subject_of(resource: ResourceValidationArgs | PolicyResource, settings: Settings) -> Subject:
    """A resource handed over by Analyze or AnalyzeStack, with its stack and environment."""
    stack = stack_of(resource.urn)
    return Subject(
        type=resource.resource_type,
        name=resource.name,
        urn=resource.urn,
        props=resource.props,
        protect=bool(resource.opts.protect),
        provider=resource.provider,
        stack=stack,
        environment=settings.environment_of(stack),
        settings=settings,
    )


def _applies(when: str, environment: str) -> bool:
    return when == ALWAYS or (when == ONLY_PROD) == (environment == PRODUCTION)


Check = Callable[[Subject], Iterable[str]]


def resource_policy(
    name: str,
    description: str,
    check: Check,
    types: Iterable[str] | None = None,
    enforcement: EnforcementLevel = EnforcementLevel.MANDATORY,
    when: str = ALWAYS,
) -> ResourceValidationPolicy:
    """A policy from a check that yields one message per problem, each saying the fix. Problems in
    the policy's own config are reported once, against the stack's root resource."""
    wanted = frozenset(types) if types is not None else None

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        settings = settings_for(args.get_config())
        if args.resource_type == ROOT_STACK:
            for problem in settings.problems:
                report(f"policy config: {problem}")
        if wanted is not None and args.resource_type not in wanted:
            return
        subject = subject_of(args, settings)
        if not _applies(when, subject.environment):
            return
        for message in check(subject):
            report(message, args.urn)

    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=enforcement,
        config_schema=CONFIG_SCHEMA,
    )


@dataclass(frozen=True)
class Stack:
    """Every resource of one stack, as a stack policy sees them (outputs, not inputs)."""

    resources: tuple[Subject, ...]
    stack: str
    environment: str
    settings: Settings

    def of_type(self, *types: str) -> list[Subject]:
        return [r for r in self.resources if r.type in types]

    @property
    def prod(self) -> bool:
        return self.environment == PRODUCTION


StackCheck = Callable[[Stack], Iterable[tuple[str, str]]]


def stack_policy(name: str, description: str, check: StackCheck, when: str = ALWAYS) -> StackValidationPolicy:
    """A policy over the whole stack from a check that yields (URN, message) per problem."""

    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        settings = settings_for(args.get_config())
        resources = list(args.resources)
        if not resources:
            return
        root = next((r.urn for r in resources if r.resource_type == ROOT_STACK), resources[0].urn)
        for problem in settings.problems:
            report(f"policy config: {problem}", root)
        stack = stack_of(resources[0].urn)
        environment = settings.environment_of(stack)
        if not _applies(when, environment):
            return
        view = Stack(tuple(subject_of(r, settings) for r in resources), stack, environment, settings)
        for urn, message in check(view):
            report(message, urn or root)

    return StackValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=CONFIG_SCHEMA,
    )


# Readers ------------------------------------------------------------------------------------


def is_list(value: Any) -> bool:
    """A list value (the analyzer's Sequence proxy), not a string."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def listed(value: Any) -> list[Any]:
    """A list value as a list; anything else (absent, null) as empty."""
    return list(value) if is_list(value) else []


def mapped(value: Any) -> Mapping[str, Any]:
    """An object value as a mapping; anything else (absent, null, a string) as empty."""
    return value if isinstance(value, Mapping) else {}


def number(value: Any) -> float | None:
    """A number (ints arrive as floats), or None for anything else, booleans included."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def show(value: float | None) -> str:
    """A number as people write it (8080, not 8080.0)."""
    return "unset" if value is None else f"{value:g}"


def labels_of(props: Mapping[str, Any]) -> dict[str, str]:
    """GCP labels are a map; Docker labels a list of {label, value}."""
    labels = props.get("labels")
    if isinstance(labels, Mapping):
        return {str(k): str(v) for k, v in labels.items()}
    return {str(item.get("label")): str(item.get("value")) for item in listed(labels) if isinstance(item, Mapping)}


def strings_in(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, text) of every string inside ``value``; values unknown during preview are skipped."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key in list(value):
            try:
                item = value[key]
            except UnknownValueError:
                continue
            yield from strings_in(item, f"{path}.{key}" if path else str(key))
    elif is_list(value):
        for index in range(len(value)):
            try:
                item = value[index]
            except UnknownValueError:
                continue
            yield from strings_in(item, f"{path}[{index}]")


def known(props: Mapping[str, Any], key: str) -> Any:
    """``props[key]``, or None when it is absent or not known until the update."""
    try:
        return props.get(key)
    except UnknownValueError:
        return None
