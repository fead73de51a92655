"""Temporal: schema and namespace jobs that are safe to re-run, and no password in the environment."""

from __future__ import annotations

import subprocess

import pytest
from conftest import service_containers

from components.containers.endpoints import Endpoint
from components.services.temporal import (
    render_dynamic_config,
    render_namespace_script,
    render_schema_script,
    render_server_entrypoint,
)
from preflight.engine import Plan

SCRIPTS = {
    "schema": render_schema_script(
        Endpoint("pg", 5432), "acme_staging_temporal", ("acme_staging_temporal", "acme_staging_temporal_visibility")
    ),
    "namespace": render_namespace_script("acme-staging-temporal:7233", "default", 3),
    "entrypoint": render_server_entrypoint(),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts_are_valid_posix_shell(name: str) -> None:
    result = subprocess.run(["sh", "-n"], input=SCRIPTS[name], text=True, capture_output=True, timeout=10)
    assert result.returncode == 0, result.stderr
    assert SCRIPTS[name].startswith("#!/bin/sh\nset -eu\n")


def test_schema_job_creates_sets_up_and_upgrades_both_databases() -> None:
    script = SCRIPTS["schema"]
    for database, schema in (
        ("acme_staging_temporal ", "temporal"),
        ("acme_staging_temporal_visibility ", "visibility"),
    ):
        create = f"--db {database}create --defaultdb acme_staging_temporal"
        assert create in script
        assert script.index(create) < script.index(f"--db {database}setup-schema -v 0.0")
        assert f"--db {database}update-schema -d /etc/temporal/schema/postgresql/v12/{schema}/versioned" in script
    assert 'SQL_PASSWORD="$(cat /run/stagecraft/secrets/temporal-db-password)"' in script


def test_namespace_job_creates_once_then_updates() -> None:
    script = SCRIPTS["namespace"]
    assert script.index("namespace describe") < script.index("namespace update") < script.index("namespace create")
    assert "--retention 72h" in script


def test_dynamic_config_carries_the_retention() -> None:
    assert "72h" in render_dynamic_config(3)


def test_server_password_never_in_container_environment(plans: dict[str, Plan]) -> None:
    server = service_containers(plans["prod"])["temporal"]
    envs = dict(pair.split("=", 1) for pair in server.inputs["envs"])
    assert "POSTGRES_PWD" not in envs
    assert envs["POSTGRES_USER"] == "acme_prod_temporal" and envs["DBNAME"] == "acme_prod_temporal"
    assert server.inputs["entrypoints"] == ["/bin/sh", "/run/stagecraft/config/entrypoint.sh"]
