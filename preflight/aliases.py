"""Aliases as the Pulumi engine resolves them, so a plan can prove that a renamed or re-parented
resource keeps its state (and, in prod, its protection) instead of being replaced.

The engine turns each alias a program sends into an old URN (``collapse``), and a child also
inherits its parent's old URN, but only the one that actually matched in the previous state, with
the parent's old name substituted where the child's name starts with the parent's
(``generate``). ``resolve`` walks a plan in registration order against a previous state the way
``pulumi up`` would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


@dataclass(frozen=True)
class AliasSpec:
    """One alias as the program sent it: a whole URN, or parts that default to the resource's."""

    urn: str = ""
    name: str = ""
    type: str = ""
    stack: str = ""
    project: str = ""
    parent_urn: str = ""
    no_parent: bool = False

    @classmethod
    def from_request(cls, alias: Any) -> AliasSpec:
        if alias.WhichOneof("alias") == "urn":
            return cls(urn=alias.urn)
        spec = alias.spec
        return cls(
            name=spec.name,
            type=spec.type,
            stack=spec.stack,
            project=spec.project,
            parent_urn=spec.parentUrn,
            no_parent=spec.noParent,
        )


def qualified_type(urn: str) -> str:
    return urn.split("::")[2]


def urn_name(urn: str) -> str:
    return urn.split("::", 3)[3]


def urn_type(urn: str) -> str:
    return qualified_type(urn).split("$")[-1]


def new_urn(stack: str, project: str, parent_type: str, type_: str, name: str) -> str:
    """A resource's URN: its type qualified by the parent's whole type chain (root stack left out)."""
    if parent_type and parent_type != ROOT_STACK_TYPE:
        type_ = f"{parent_type}${type_}"
    return f"urn:pulumi:{stack}::{project}::{type_}::{name}"


def create_urn(name: str, type_: str, parent: str, project: str, stack: str) -> str:
    """The engine's URN for an alias: under ``parent`` when there is one."""
    if not parent:
        return f"urn:pulumi:{stack}::{project}::{type_}::{name}"
    return f"{parent[: parent.rindex('::')]}${type_}::{name}"


def collapse(urn: str, parent: str, spec: AliasSpec, matched: Mapping[str, str], stack: str, project: str) -> str:
    """The old URN one alias names. A missing part is the resource's own; an explicit parent is
    replaced by the old URN that parent matched, if it matched one."""
    if spec.urn:
        return spec.urn
    name = spec.name or urn_name(urn)
    type_ = spec.type or urn_type(urn)
    alias_parent = parent if not spec.parent_urn else matched.get(spec.parent_urn, spec.parent_urn)
    if spec.no_parent or (alias_parent and qualified_type(alias_parent) == ROOT_STACK_TYPE):
        alias_parent = ""
    return create_urn(name, type_, alias_parent, spec.project or project, spec.stack or stack)


def _inherited(child_type: str, child_name: str, parent_name: str, parent_alias: str) -> str:
    alias_name = child_name
    if child_name.startswith(parent_name):
        alias_name = urn_name(parent_alias) + child_name[len(parent_name) :]
    stack, project = parent_alias.split("::")[0].split(":")[-1], parent_alias.split("::")[1]
    return new_urn(stack, project, qualified_type(parent_alias), child_type, alias_name)


def generate(
    urn: str, parent: str, specs: Sequence[AliasSpec], matched: Mapping[str, str], stack: str, project: str
) -> list[str]:
    """Every old URN the engine tries for a resource, its own aliases first."""
    found: list[str] = []

    def add(candidate: str) -> None:
        if candidate not in found:
            found.append(candidate)

    own = [collapse(urn, parent, spec, matched, stack, project) for spec in specs]
    for candidate in own:
        add(candidate)
    if parent and parent in matched:
        parent_alias = matched[parent]
        add(_inherited(urn_type(urn), urn_name(urn), urn_name(parent), parent_alias))
        for candidate in own:
            add(_inherited(urn_type(candidate), urn_name(candidate), urn_name(parent), parent_alias))
    return found


@dataclass(frozen=True)
class Registration:
    """What ``resolve`` needs of a planned resource."""

    urn: str
    parent: str
    specs: Sequence[AliasSpec]


def resolve(registrations: Iterable[Registration], previous: set[str], stack: str, project: str) -> dict[str, str]:
    """Which old URN each resource takes over, walking registrations in order as ``pulumi up``
    would: the resource's own URN if it is in the previous state, else its first alias that is.
    Returns {new URN: old URN} for the resources that moved."""
    matched: dict[str, str] = {}
    claimed: set[str] = set()
    for registration in registrations:
        if registration.urn in previous:
            claimed.add(registration.urn)
            continue
        for candidate in generate(registration.urn, registration.parent, registration.specs, matched, stack, project):
            if candidate in previous and candidate not in claimed:
                matched[registration.urn] = candidate
                claimed.add(candidate)
                break
    return matched


def candidates(registrations: Sequence[Registration], stack: str, project: str) -> list[list[str]]:
    """For each registration, in order, the old URNs the engine would try, assuming every moved
    parent took over its first candidate (what `preflight plan` shows as a resource's aliases)."""
    assumed: dict[str, str] = {}
    found = []
    for registration in registrations:
        tried = generate(registration.urn, registration.parent, registration.specs, assumed, stack, project)
        if tried:
            assumed[registration.urn] = tried[0]
        found.append(tried)
    return found
