"""The policy pack keeps its own copies of the program's constants and rules (it never imports the
program); each copy must equal the program's, or the pack would judge by different rules."""

from __future__ import annotations

import itertools
import sys
from typing import Any

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "policies"))

from stagecraft_policy import containers as pack_containers
from stagecraft_policy import resource_types, shared, stack_rules

from components.config import cloud, services
from components.containers import container, environment, images
from components.services import proxy
from preflight.engine import Plan

NAMES = [
    "POSTGRES_PASSWORD",
    "POSTGRES_PASSWORD_FILE",
    "postgres_password",
    "PGPASSFILE",
    "REDISCLI_AUTH",
    "GF_AUTH_ANONYMOUS_ENABLED",
    "POSTGRES_HOST_AUTH_METHOD",
    "API_KEY",
    "apikey",
    "JWT_SECRET",
    "GITHUB_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "TLS_PRIVATE",
    "MYSQL_PWD",
    "LOG_LEVEL",
    "DATABASE_HOST",
    "KEYCLOAK_URL",
    "MONKEY",
    "",
]
VALUES = [
    "hunter2",
    "/run/stagecraft/secrets/x",
    "/run/stagecraft/",
    "/run/stagecraftx",
    "/etc/passwd",
    "true",
    "false",
    "True",
    "scram-sha-256",
    "md5",
    "",
    "postgresql://u:p@db/x",
]
IMAGES = [
    "postgres:15.12-bookworm",
    "postgres:15",
    "postgres",
    "postgres:latest",
    "redis:7",
    "redis:7.4.2-bookworm",
    "redis:alpine",
    "prom/prometheus:v3.2.1",
    "prom/prometheus:v3",
    "temporalio/admin-tools:1.27.2-tctl-1.18.2-cli-1.3.0",
    "ghcr.io/acme/api:2.14.0-rc.1",
    "ghcr.io/acme/api:2.14",
    "registry:5000/acme/api",
    "registry:5000/acme/api:1.2",
    "nginx@sha256:" + "a" * 64,
    "nginx:1.27@sha256:" + "a" * 64,
    "nginx@sha256:" + "a" * 63,
    "nginx@sha256:" + "A" * 64,
    "@sha256:" + "a" * 64,
    "nginx:1.27.4-alpine",
    "nginx:.1.2",
    "nginx:1..2",
    ":1.2",
]


def test_roles_and_members() -> None:
    assert shared.PRIMITIVE_ROLES == cloud.PRIMITIVE_ROLES
    assert shared.PUBLIC_MEMBERS == cloud.PUBLIC_MEMBERS
    assert shared.PROJECT_ROLES == cloud.PROJECT_ROLES


def test_secret_looking_names_and_allowed_values() -> None:
    assert shared.SECRET_NAME.pattern == environment.SECRET_NAME.pattern
    assert shared.SECRET_NAME.flags == environment.SECRET_NAME.flags
    assert shared.FILES_PREFIX == environment.FILES_PREFIX == container.FILES_ROOT + "/"
    assert shared.NON_SECRET_SETTINGS == environment.NON_SECRET_SETTINGS


@pytest.mark.parametrize("name", NAMES)
def test_safe_value_agrees(name: str) -> None:
    values = [*VALUES, *environment.NON_SECRET_SETTINGS.values()]
    for value in values:
        assert shared.safe_value(name, value) is environment.safe_value(name, value), (name, value)


def test_safe_value_corpus_exercises_both_answers() -> None:
    answers = {environment.safe_value(n, v) for n, v in itertools.product(NAMES, VALUES)}
    assert answers == {True, False}


@pytest.mark.parametrize("image", IMAGES)
def test_image_pinning_agrees(image: str) -> None:
    assert shared.image_is_pinned(image) is services.image_is_pinned(image)


def test_image_pinning_means_a_full_version_or_a_digest() -> None:
    pinned = {image for image in IMAGES if shared.image_is_pinned(image)}
    assert pinned == {
        "postgres:15.12-bookworm",
        "redis:7.4.2-bookworm",
        "prom/prometheus:v3.2.1",
        "temporalio/admin-tools:1.27.2-tctl-1.18.2-cli-1.3.0",
        "ghcr.io/acme/api:2.14.0-rc.1",
        "ghcr.io/acme/api:2.14",
        "registry:5000/acme/api:1.2",
        "nginx@sha256:" + "a" * 64,
        "nginx:1.27@sha256:" + "a" * 64,
        "nginx:1.27.4-alpine",
    }


@pytest.mark.parametrize("text", ["acme-staging-api", "acme-prod-x", "staging", "acme-stagingx", "prod-", "a-b-c"])
def test_environment_words_agree(text: str) -> None:
    for env in ("staging", "prod"):
        assert shared.names_environment(text, env) is cloud.names_environment(text, env)


def test_proxy_ports_and_pids_floor() -> None:
    assert (shared.PROXY_HTTP_PORT, shared.PROXY_HTTPS_PORT) == (proxy.HTTP_PORT, proxy.HTTPS_PORT)
    floor = next(m.ge for m in services.Service.model_fields["pids_limit"].metadata if hasattr(m, "ge"))
    assert shared.MIN_PIDS_LIMIT == floor


@pytest.mark.parametrize(
    "reference",
    [
        "nginx:1.27.4-alpine",
        "docker.io/library/nginx:1.27",
        "index.docker.io/library/postgres:15.12@sha256:" + "a" * 64,
        "chromadb/chroma:1.0.12",
        "quay.io/prometheuscommunity/postgres-exporter:v0.17.1",
        "registry:5000/acme/api:1.2",
        "registry:5000/acme/api",
    ],
)
def test_image_repository_agrees(reference: str) -> None:
    assert stack_rules.repository(reference) == images.repository(reference)


def test_every_type_the_program_deploys_is_allowed(plans: dict[str, Plan]) -> None:
    for plan in plans.values():
        for resource in plan.resources:
            if resource.custom:
                assert resource.type in resource_types.ALLOWED_TYPES, resource.type
            else:
                assert resource_types.COMPONENT.match(resource.type), resource.type


def _props(resource: Any) -> dict[str, Any]:
    return resource.raw_inputs


def test_the_programs_root_containers_are_its_volume_owner_jobs(plans: dict[str, Plan]) -> None:
    """The pack recognises the program's volume-owner jobs by what they are, and nothing else
    the program runs as root."""
    for plan in plans.values():
        containers = plan.by_type("docker:index/container:Container")
        root = [c for c in containers if _props(c).get("user") == "0:0"]
        assert root, plan.stack
        assert all(pack_containers.is_volume_owner(_props(c)) for c in root)
        assert not [c for c in containers if c not in root and pack_containers.is_volume_owner(_props(c))]
