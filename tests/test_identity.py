"""One service account per workload; primitive roles and public members cannot be granted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from components.cloud.iam import GrantError, checked_member, checked_role
from components.cloud.identity import Identities, IdentitiesArgs
from components.config import WORKLOADS
from components.naming import Naming
from preflight.engine import Plan

NAMING = Naming(app="acme", environment="staging", stack="staging", project="acme-staging-1")


def _identities(iam: dict[str, list[str]] | None = None) -> Callable[[], Any]:
    return lambda: Identities(
        "identities",
        IdentitiesArgs(naming=NAMING, project="acme-staging-1", workloads=WORKLOADS, iam=iam or {}),
    )


def test_one_account_per_workload(run_mocked: Callable[..., Plan]) -> None:
    plan = run_mocked("staging", _identities())
    accounts = plan.by_type("gcp:serviceaccount/account:Account")
    assert sorted(a.inputs["accountId"] for a in accounts) == sorted(f"acme-staging-{w}" for w in WORKLOADS)
    assert all(a.inputs["project"] == "acme-staging-1" for a in accounts)
    assert all("staging" in a.inputs["displayName"] for a in accounts)


def test_project_roles_are_only_the_project_scoped_writers(run_mocked: Callable[..., Plan]) -> None:
    iam = {"roles/monitoring.metricWriter": ["monitoring"], "roles/cloudtrace.agent": ["api"]}
    plan = run_mocked("staging", _identities(iam))
    roles = {
        (m.inputs["member"].split(":")[1].split("@")[0], m.inputs["role"])
        for m in plan.by_type("gcp:projects/iAMMember:IAMMember")
    }
    assert ("acme-staging-monitoring", "roles/monitoring.metricWriter") in roles
    assert ("acme-staging-api", "roles/cloudtrace.agent") in roles
    assert all(role.split("/")[1].split(".")[0] in {"logging", "monitoring", "cloudtrace"} for _, role in roles)


@pytest.mark.parametrize("role", ["roles/owner", "roles/editor", "roles/viewer"])
def test_primitive_roles_are_refused(role: str, run_mocked: Callable[..., Plan]) -> None:
    with pytest.raises(GrantError):
        checked_role(role)
    with pytest.raises(Exception, match="primitive role"):
        run_mocked("staging", _identities({role: ["api"]}))


@pytest.mark.parametrize("member", ["allUsers", "allAuthenticatedUsers"])
def test_public_members_are_refused(member: str) -> None:
    with pytest.raises(GrantError):
        checked_member(member)
    assert checked_member("serviceAccount:a@b.iam.gserviceaccount.com").startswith("serviceAccount:")
