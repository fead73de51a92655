"""Temporal: schema and namespace jobs that are safe to re-run, and no password in the environment."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from conftest import service_containers

from components.containers.endpoints import Endpoint
from components.services.temporal import (
    SERVICE_PORTS,
    render_dynamic_config,
    render_namespace_script,
    render_schema_script,
    render_server_config,
    render_ui_config,
)
from preflight.engine import Plan

SCRIPTS = {
    "schema": render_schema_script(
        Endpoint("pg", 5432), "acme_staging_temporal", ("acme_staging_temporal", "acme_staging_temporal_visibility")
    ),
    "namespace": render_namespace_script("acme-staging-temporal:7233", "default", 3),
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


def test_server_config_binds_and_announces_one_address() -> None:
    """The config the image would render at start, rendered by the program instead: every
    service binds the fixed address, the cluster announces it, and nothing is archived to disk."""
    text = render_server_config(
        Endpoint("acme-prod-postgres", 5432),
        "acme_prod_temporal",
        "db-Pass-1",
        ("acme_prod_temporal", "acme_prod_temporal_visibility"),
        "10.220.5.10",
        "/run/stagecraft/config/dynamic.yaml",
    )
    config = yaml.safe_load(text)
    stores = config["persistence"]["datastores"]
    assert stores["default"]["sql"]["connectAddr"] == "acme-prod-postgres:5432"
    assert stores["visibility"]["sql"]["databaseName"] == "acme_prod_temporal_visibility"
    assert stores["default"]["sql"]["password"] == "db-Pass-1"
    assert config["persistence"]["numHistoryShards"] == 4
    assert config["global"]["membership"]["broadcastAddress"] == "10.220.5.10"
    assert {name: service["rpc"]["bindOnIP"] for name, service in config["services"].items()} == {
        name: "10.220.5.10" for name in SERVICE_PORTS
    }
    assert config["global"]["metrics"]["prometheus"]["listenAddress"] == "0.0.0.0:9090"
    assert config["archival"]["history"]["state"] == "disabled"
    assert config["dynamicConfigClient"]["filepath"] == "/run/stagecraft/config/dynamic.yaml"


def test_ui_config_has_no_cross_origin_access_and_secure_cookies() -> None:
    config = yaml.safe_load(render_ui_config(Endpoint("acme-prod-temporal", 7233), "default"))
    assert config["temporalGrpcAddress"] == "acme-prod-temporal:7233"
    assert config["cors"] == {"cookieInsecure": False, "allowOrigins": []}
    assert config["auth"]["enabled"] is False and config["notifyOnNewVersion"] is False


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_server_and_ui_run_read_only_on_their_rendered_configs(stack: str, plans: dict[str, Plan]) -> None:
    containers = service_containers(plans[stack])
    server, ui = containers["temporal"], containers["temporal-ui"]
    for container in (server, ui):
        assert container.inputs["readOnly"] is True
    assert server.inputs["entrypoints"][:1] == ["temporal-server"]
    assert "--config" in server.inputs["entrypoints"] and "start" == server.inputs["entrypoints"][-1]
    envs = dict(pair.split("=", 1) for pair in server.inputs.get("envs", []))
    assert not any("PWD" in key or "PASSWORD" in key for key in envs)
    # The config holding the database password is a secret file, owned by the server's uid.
    uploads = {u["file"]: u for u in containers["temporal-files"].inputs["uploads"]}
    config = uploads["/run/stagecraft/secrets/docker.yaml"]
    assert config["content"] == "[secret]" and config["permissions"] == "0400" and config["owner"] == "1000"
    assert ui.inputs["user"] == "5000:5000"


def test_the_frontend_answers_only_its_clients(plans: dict[str, Plan]) -> None:
    """No authentication on the frontend: the server's client-facing network is shared only with
    the API, the UI and the jobs, and the UI is on no network the public proxy joins."""
    containers = service_containers(plans["prod"])

    def networks(service: str) -> set[str]:
        return {n["name"] for n in containers[service].inputs.get("networksAdvanced", [])}

    on_temporal = {name for name in containers if "acme-prod-temporal" in networks(name)}
    assert on_temporal == {"temporal", "temporal-ui", "temporal-namespace", "api"}
    assert networks("temporal-ui") == {"acme-prod-temporal"}
    assert not networks("temporal-ui") & networks("proxy")


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_every_client_dials_the_address_the_frontend_binds(stack: str, plans: dict[str, Plan]) -> None:
    """The frontend listens only on its Temporal-network address. The API shares the data and
    monitoring networks with the server too, where Docker's DNS could answer the server's name
    with an address nothing listens on, so every client is given the bound address itself."""
    plan = plans[stack]
    containers = service_containers(plan)
    server = containers["temporal"]
    bound = next(n["ipv4Address"] for n in server.inputs["networksAdvanced"] if n["name"].endswith("-temporal"))
    frontend = f"{bound}:7233"
    api_env = dict(pair.split("=", 1) for pair in containers["api"].inputs["envs"])
    assert api_env["TEMPORAL_ADDRESS"] == frontend
    ui_config = next(u for u in containers["temporal-ui-files"].inputs["uploads"] if u["file"].endswith("docker.yaml"))
    assert yaml.safe_load(ui_config["content"])["temporalGrpcAddress"] == frontend
    namespace = next(
        u for u in containers["temporal-namespace-files"].inputs["uploads"] if u["file"].endswith("namespace.sh")
    )
    assert frontend in namespace["content"]
    assert plan.outputs["verify"]["temporal_address"] == frontend
