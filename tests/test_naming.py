"""Names carry the environment, fit GCP's limits, and never coincide between stacks."""

from __future__ import annotations

import re

import pytest

from components.config import GENERATED_SECRETS, WORKLOADS
from components.naming import Naming, NamingError, label_value

LONGEST = Naming(app="abcdefghij", environment="staging", stack="staging-feature", project="a" * 30, branch="x" * 90)


@pytest.mark.parametrize("naming", [LONGEST, Naming(app="ab", environment="prod", stack="prod", project="p-1234")])
def test_service_account_ids_fit_gcp_rules(naming: Naming) -> None:
    for workload in WORKLOADS:
        account_id = naming.service_account_id(workload)
        assert 6 <= len(account_id) <= 30
        assert re.fullmatch(r"[a-z][-a-z0-9]*[a-z0-9]", account_id)
        assert naming.environment in account_id.split("-")


def test_bucket_names_are_project_prefixed_and_fit() -> None:
    for purpose in ("uploads", "backups", "access-logs"):
        name = LONGEST.bucket(purpose)
        assert name.startswith(LONGEST.project + "-staging-")
        assert 3 <= len(name) <= 63


def test_secret_ids_start_with_the_environment() -> None:
    naming = Naming(app="acme", environment="prod", stack="prod", project="acme-prod-1")
    assert all(naming.secret_id(name) == f"prod-{name}" for name in GENERATED_SECRETS)


def test_overlong_names_are_refused_not_truncated() -> None:
    naming = Naming(app="acme", environment="staging", stack="s", project="p-1234")
    with pytest.raises(NamingError):
        naming.service_account_id("a-workload-with-a-long-name")
    with pytest.raises(NamingError):
        Naming(app="acme", environment="staging", stack="s", project="g" * 60).bucket("uploads")


def test_labels_carry_the_four_required_keys_and_valid_values() -> None:
    labels = LONGEST.labels(purpose="Uploads/Test")
    assert {"app", "environment", "stack", "managed-by"} <= set(labels)
    assert labels["managed-by"] == "pulumi"
    for value in labels.values():
        assert len(value) <= 63 and re.fullmatch(r"[a-z0-9_-]*", value)


def test_display_names_carry_environment_and_branch() -> None:
    naming = Naming(app="acme", environment="staging", stack="staging", project="p-1234", branch="feature/login")
    assert naming.display_name("api workload") == "acme staging api workload (branch feature/login)"
    assert naming.labels()["git-branch"] == "feature-login"
    assert "branch" not in Naming(app="acme", environment="prod", stack="prod", project="p-1234").display_name("api")


def test_label_value_sanitises() -> None:
    assert label_value("Feature/ÜBER_Login") == "feature-ber_login"
    assert len(label_value("x" * 100)) == 63


def test_every_physical_name_differs_between_stacks(namings: dict[str, Naming]) -> None:
    staging, prod = namings["staging"], namings["prod"]

    def names(n: Naming) -> set[str]:
        return {
            *(n.service_account_id(w) for w in WORKLOADS),
            *(n.secret_id(s) for s in GENERATED_SECRETS),
            *(n.bucket(p) for p in ("uploads", "backups", "access-logs")),
            *(n.container(s) for s in ("postgres", "redis", "api")),
            *(n.volume(s) for s in ("postgres", "redis")),
            n.network("data"),
            n.database(),
            n.database("temporal"),
            n.database_user(),
        }

    assert names(staging).isdisjoint(names(prod))
