"""The operations service as the program deploys it: the backup service, the backup that gates
every migration, and staging's seed job."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, service_containers, stack_document

from components.services.ops import image_tag, render_database_url
from preflight.engine import Plan, plan

sys.path.insert(0, str(ROOT / "images" / "ops"))

from stagecraft_ops import settings as ops_settings


def _uploads(container: Any) -> dict[str, dict[str, Any]]:
    return {u["file"]: u for u in container.inputs["uploads"]}


def _labels(container: Any) -> dict[str, str]:
    return {label["label"]: label["value"] for label in container.inputs.get("labels", [])}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_backup_service_reads_only_what_it_backs_up(stack: str, plans: dict[str, Plan]) -> None:
    containers = service_containers(plans[stack])
    ops = containers["ops"]
    assert ops.inputs["user"] == "999:999" and ops.inputs["readOnly"] is True
    assert ops.inputs["command"] == ["serve"]
    assert ops.inputs["healthcheck"]["tests"][-2:] == ["stagecraft_ops", "health"]
    networks = {n["name"] for n in ops.inputs["networksAdvanced"]}
    assert networks == {f"acme-{stack}-data", f"acme-{stack}-egress"}
    mounts = {m["target"]: m for m in ops.inputs["mounts"]}
    assert mounts["/chroma"]["source"] == f"acme-{stack}-chroma-data" and mounts["/chroma"]["readOnly"] is True
    assert mounts["/metrics"]["source"] == f"acme-{stack}-ops-metrics"
    files = _uploads(containers["ops-files"])
    secrets = {path.rsplit("/", 1)[1] for path, u in files.items() if u["permissions"] == "0400"}
    assert secrets == {
        "postgres-superuser-password",
        "redis-backup-password",
        "redis-verify-password",
        "gcp-key.json",
    }
    assert all(u["owner"] == "999" for u in files.values())


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_settings_file_is_one_the_ops_tool_accepts(stack: str, plans: dict[str, Plan], tmp_path: Path) -> None:
    """The program renders the file and the tool validates it: both sides of the contract."""
    files = _uploads(service_containers(plans[stack])["ops-files"])
    text = files["/run/stagecraft/config/ops.json"]["content"]
    path = tmp_path / "ops.json"
    path.write_text(text)
    loaded = ops_settings.load(str(path))
    assert loaded.bucket == f"acme-{stack}-4711-{stack}-backups"
    assert loaded.prod is (stack == "prod")
    assert loaded.postgres.databases == (f"acme_{stack}", f"acme_{stack}_temporal", f"acme_{stack}_temporal_visibility")
    assert loaded.redis.user == "backup"
    assert loaded.credentials_file == "/run/stagecraft/secrets/gcp-key.json"
    assert json.loads(text)["schedule"] == {"backup_utc": "02:00", "drill": "sun 03:00", "grace_minutes": 60}


def test_a_migration_waits_for_a_backup_of_its_release(plans: dict[str, Plan]) -> None:
    containers = service_containers(plans["staging"])
    backup, migrate = containers["ops-pre-migration-backup"], containers["api-migrate"]
    assert backup.inputs["command"] == ["backup", "--reason", "pre-migration", "--only", "postgres"]
    assert "STAGECRAFT_RELEASE=ghcr.io/acme/api:2.14.0-rc.1" in backup.inputs["envs"]
    assert _labels(migrate)["stagecraft.after.ops-pre-migration-backup"] == "succeeded"
    assert backup.urn in migrate.dependencies


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_every_ops_container_runs_the_image_the_stack_builds(stack: str, plans: dict[str, Plan]) -> None:
    """The ops image exists only on the Docker host, built there: a container that named it as
    a pulled image would send Docker to a registry for `stagecraft/ops` (and race the build)."""
    plan = plans[stack]
    (build,) = plan.by_type("docker:index/image:Image")
    assert build.inputs["skipPush"] is True
    # Relative to the project: the same on every machine that runs `pulumi up`.
    assert build.inputs["build"]["context"] == "images/ops"
    pulled = {r.inputs["name"] for r in plan.by_type("docker:index/remoteImage:RemoteImage")}
    assert not any(name.startswith("stagecraft/ops") for name in pulled)
    ops = {service: c for service, c in service_containers(plan).items() if service.startswith("ops")}
    assert {"ops", "ops-files", "ops-volume-owner", "ops-pre-migration-backup"} <= set(ops)
    images = {c.inputs["image"] for c in ops.values()}
    assert len(images) == 1 and images.pop().startswith("sha256:")
    assert all(build.urn in c.dependencies for c in ops.values())


def test_the_image_tag_follows_its_sources(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    first = image_tag("postgres:15.12", tmp_path)
    assert image_tag("postgres:15.12", tmp_path) == first
    assert image_tag("postgres:15.13", tmp_path) != first
    (tmp_path / "Dockerfile").write_text("FROM y\n")
    assert image_tag("postgres:15.12", tmp_path) != first


def test_database_url_escapes_the_password() -> None:
    from components.containers.endpoints import Endpoint

    url = render_database_url("app", "p@ss:w/rd%", Endpoint("db", 5432), "acme")
    assert url == "postgresql://app:p%40ss%3Aw%2Frd%25@db:5432/acme\n"


def test_staging_seed_job_runs_after_the_migration(write_stack: Callable[..., Path]) -> None:
    document = stack_document("staging")
    document["config"]["stagecraft:seed"] = {"mode": "generate", "spec": "seed/example-spec.json"}
    result = plan("staging", write_stack(document))
    containers = service_containers(result)
    seed = containers["seed"]
    assert _labels(seed)["stagecraft.after.api-migrate"] == "succeeded"
    files = _uploads(containers["seed-files"])
    assert files["/run/stagecraft/secrets/database-url"]["content"] == "[secret]"
    assert json.loads(files["/run/stagecraft/config/spec.json"]["content"])["tables"]
    script = files["/run/stagecraft/config/seed.sh"]["content"]
    assert "seed generate" in script and "--environment staging" in script
    assert {n["name"] for n in seed.inputs["networksAdvanced"]} == {"acme-staging-data"}
    # Its salt is generated for this stack only.
    assert any(s.inputs["secretId"] == "staging-seed-salt" for s in result.by_type("gcp:secretmanager/secret:Secret"))


def test_no_seed_job_and_no_salt_without_seed_config(plans: dict[str, Plan]) -> None:
    for result in plans.values():
        assert "seed" not in service_containers(result)
        assert not any(
            s.inputs["secretId"].endswith("seed-salt") for s in result.by_type("gcp:secretmanager/secret:Secret")
        )
