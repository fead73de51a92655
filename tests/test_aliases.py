"""URN safety: a renamed or re-parented resource answers to its old URN, so `pulumi up` keeps its
state (and, in prod, its protection) instead of deleting and recreating it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pulumi
import pulumi_random as random
from conftest import ROOT

from preflight.aliases import AliasSpec, Registration, resolve
from preflight.engine import Plan

BEFORE = ROOT / "tests" / "data" / "prod-urns-before-reshape.txt"


def _previous_state(path: Path) -> tuple[set[str], set[str]]:
    """(every URN, the protected ones) of a recorded prod state."""
    entries = [line.split(" ", 1) for line in path.read_text().splitlines() if line[:2] in ("P ", "- ")]
    return {urn for _, urn in entries}, {urn for flag, urn in entries if flag == "P"}


def test_every_protected_prod_resource_survives_the_reshape(plans: dict[str, Plan]) -> None:
    previous, protected = _previous_state(BEFORE)
    assert len(protected) >= 40
    plan = plans["prod"]
    moves = plan.moves_from(previous)
    kept = {r.urn for r in plan.resources} & previous
    claimed = kept | set(moves.values())
    assert protected <= claimed, sorted(protected - claimed)
    # ... and what claims a protected URN is itself protected (the same data, still guarded),
    # except what a rotation replaces: generated values and secret versions (their values stay
    # in Secret Manager, where a replaced version is disabled, not destroyed); and access grants,
    # which are no data and must stay revocable (unprotecting is an in-place state change).
    unguarded = {
        "random:index/randomPassword:RandomPassword",
        "gcp:secretmanager/secretVersion:SecretVersion",
        "gcp:secretmanager/secretIamMember:SecretIamMember",
        "gcp:storage/bucketIAMMember:BucketIAMMember",
    }
    by_urn = {r.urn: r for r in plan.resources}
    for new, old in moves.items():
        if old in protected and by_urn[new].type not in unguarded:
            assert by_urn[new].protect, new
    # Only the old monitoring component, split into three, has no successor.
    assert {urn.rsplit("::", 1)[1] for urn in previous - claimed} <= {"monitoring"}


def test_plan_json_lists_each_resources_aliases(plans: dict[str, Plan]) -> None:
    volume = next(r for r in plans["prod"].by_type("docker:index/volume:Volume") if r.urn.endswith("-postgres-data"))
    # Its own alias (the old name under the new parent), then the one inherited from its parent's
    # old URN: the URN the volume had before the reshape.
    assert volume.to_json()["aliases"] == [
        "urn:pulumi:prod::stagecraft::stagecraft:platform:Platform$stagecraft:application:ApplicationLayer"
        "$stagecraft:postgres:Postgres$docker:index/volume:Volume::postgres-data",
        "urn:pulumi:prod::stagecraft::stagecraft:platform:Platform$stagecraft:postgres:Postgres"
        "$docker:index/volume:Volume::postgres-data",
    ]


def test_a_rename_without_an_alias_is_caught(run_mocked: Callable[..., Plan]) -> None:
    """The check above would fail for a rename that forgot its alias: the old URN is unclaimed."""

    def program(alias: bool) -> Callable[[], None]:
        def build() -> None:
            opts = pulumi.ResourceOptions(aliases=[pulumi.Alias(name="old")]) if alias else None
            random.RandomPassword("new", length=16, opts=opts)

        return build

    old = "urn:pulumi:prod::stagecraft::random:index/randomPassword:RandomPassword::old"
    assert run_mocked("prod", program(alias=True)).moves_from({old}) != {}
    assert run_mocked("prod", program(alias=False)).moves_from({old}) == {}


def test_children_inherit_only_the_parents_matched_old_urn() -> None:
    """The engine's rule: a child of a moved component tries the component's old URN as its
    parent, with its own old name; without its own alias, the old name is guessed by swapping the
    parent's name prefix."""
    stack, project = "prod", "proj"
    old_parent = "urn:pulumi:prod::proj::a:b:C::old"
    old_child = "urn:pulumi:prod::proj::a:b:C$x:y:Z::child"
    new_parent = "urn:pulumi:prod::proj::a:b:Layer$a:b:C::new"
    new_child = "urn:pulumi:prod::proj::a:b:Layer$a:b:C$x:y:Z::new-child"
    registrations = [
        Registration(new_parent, "", [AliasSpec(name="old", parent_urn="")]),
        Registration(new_child, new_parent, [AliasSpec(name="child")]),
    ]
    # The parent's alias names no parent, so it collapses to the root: a:b:C::old.
    assert resolve(registrations, {old_parent, old_child}, stack, project) == {
        new_parent: old_parent,
        new_child: old_child,
    }
    # Without its own alias the child would be looked for as `old-child`, which never existed.
    registrations[1] = Registration(new_child, new_parent, [])
    assert new_child not in resolve(registrations, {old_parent, old_child}, stack, project)
