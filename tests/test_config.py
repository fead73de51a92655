"""The config model: both stack files load; every bad input is refused with file and key."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import stack_document

from components.config import (
    ConfigError,
    ConfigSecret,
    StackConfig,
    engine_view,
    image_is_pinned,
    load_from_engine,
    load_from_file,
    read_stack_file,
)


def test_both_stack_files_are_valid(configs: dict[str, StackConfig]) -> None:
    assert configs["staging"].environment == "staging"
    assert configs["prod"].environment == "prod"


def test_environments_differ_the_way_the_seeds_ask(configs: dict[str, StackConfig]) -> None:
    staging, prod = configs["staging"].stagecraft, configs["prod"].stagecraft
    assert staging.app.log_level == "debug" and prod.app.log_level != "debug"
    assert staging.app.email_mode == "shadow"
    assert staging.storage.backup_retention_days < prod.storage.backup_retention_days
    assert staging.services.postgres.memory_mb < prod.services.postgres.memory_mb
    assert staging.storage.test_data_ttl_days is not None and prod.storage.test_data_ttl_days is None
    assert prod.secrets.deletion_protection and prod.secrets.version_destroy_ttl_days


def _set(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set `ns:key.sub.sub` in a stack document (value DELETE removes it)."""
    document = copy.deepcopy(document)
    top, _, rest = path.partition(".")
    node = document["config"]
    parts = [top, *rest.split(".")] if rest else [top]
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return document


DELETE = object()

# (stack, key to set, value, key path named in the error, fragment of the message)
BAD_INPUTS = [
    ("prod", "stagecraft:services.postgres.memory_mb", 64, "stagecraft:services.postgres.memory_mb", ">= 256 (got 64)"),
    (
        "staging",
        "stagecraft:services.redis.memory_mb",
        "lots",
        "stagecraft:services.redis.memory_mb",
        "must be an integer",
    ),
    ("staging", "stagecraft:services.api.cpus", "two", "stagecraft:services.api.cpus", "must be a number"),
    ("staging", "stagecraft:services.api.cpus", 0, "stagecraft:services.api.cpus", "must be > 0"),
    ("staging", "stagecraft:services.postgres.memroy_mb", 512, "stagecraft:services.postgres.memroy_mb", "unknown key"),
    (
        "prod",
        "stagecraft:services.web.healthcheck.intervall_s",
        5,
        "stagecraft:services.web.healthcheck.intervall_s",
        "unknown key",
    ),
    ("staging", "stagecraft:storage.lifecycle", {}, "stagecraft:storage.lifecycle", "allowed keys here: location"),
    ("staging", "stagecraft:debug", True, "stagecraft:debug", "unknown key"),
    ("prod", "gcp:projet", "acme-prod", "gcp:projet", "unknown key"),
    ("staging", "aws:region", "us-east-1", "aws:region", "unknown namespace"),
    ("staging", "stagecraft:environment", "production", "stagecraft:environment", "'staging' or 'prod'"),
    ("staging", "stagecraft:app.log_level", "verbose", "stagecraft:app.log_level", "must be one of"),
    ("prod", "stagecraft:app.log_level", "debug", "stagecraft:app.log_level", "must not be debug in prod"),
    ("prod", "stagecraft:app.cors_origins", ["*"], "stagecraft:app.cors_origins", "must not contain '*' in prod"),
    ("prod", "stagecraft:app.debug_endpoints", True, "stagecraft:app.debug_endpoints", "must be false in prod"),
    ("prod", "stagecraft:storage.versioning", False, "stagecraft:storage.versioning", "must be true in prod"),
    ("prod", "stagecraft:services.api.image", "ghcr.io/acme/api:latest", "stagecraft:services.api.image", "pinned"),
    ("staging", "stagecraft:services.redis.image", "redis", "stagecraft:services.redis.image", "pinned"),
    ("prod", "stagecraft:secrets.deletion_protection", False, "stagecraft:secrets.deletion_protection", "true in prod"),
    (
        "prod",
        "stagecraft:secrets.version_destroy_ttl_days",
        DELETE,
        "stagecraft:secrets.version_destroy_ttl_days",
        "set in prod",
    ),
    ("staging", "stagecraft:app.email_mode", "live", "stagecraft:app.email_mode", "must be shadow outside prod"),
    (
        "staging",
        "stagecraft:storage.backup_retention_days",
        "14",
        "stagecraft:storage.backup_retention_days",
        "must be an integer",
    ),
    (
        "staging",
        "stagecraft:storage.backup_retention_days",
        0,
        "stagecraft:storage.backup_retention_days",
        ">= 1 (got 0)",
    ),
    (
        "staging",
        "stagecraft:storage.soft_delete_days",
        3,
        "stagecraft:storage.soft_delete_days",
        "0 (off) or between 7 and 90",
    ),
    (
        "staging",
        "stagecraft:app.feature_flags.ENABLE_LEARNING",
        "no",
        "stagecraft:app.feature_flags.ENABLE_LEARNING",
        "true or false",
    ),
    ("staging", "stagecraft:domains.api", "API_STAGING", "stagecraft:domains.api", "must match"),
    ("staging", "stagecraft:domains", DELETE, "stagecraft:domains", "is required"),
    ("staging", "gcp:project", "Acme_Staging", "gcp:project", "must match"),
    ("staging", "docker:host", "apps-01:2376", "docker:host", "must match"),
    ("staging", "stagecraft:secrets.password.length", 8, "stagecraft:secrets.password.length", ">= 16 (got 8)"),
    (
        "staging",
        "stagecraft:secrets.replication.mode",
        "user_managed",
        "stagecraft:secrets.replication.locations",
        "at least one",
    ),
    (
        "staging",
        "stagecraft:identity.project_iam",
        {"roles/editor": ["api"]},
        "stagecraft:identity.project_iam.roles/editor",
        "may be granted on the project",
    ),
    (
        "staging",
        "stagecraft:identity.project_iam",
        {"roles/logging.logWriter": ["intruder"]},
        "stagecraft:identity.project_iam.roles/logging.logWriter.0",
        "must be one of",
    ),
    (
        "staging",
        "stagecraft:secrets.provided",
        {"smtp-password": {"value": "hunter2", "accessors": ["api"]}},
        "stagecraft:secrets.provided.smtp-password.value",
        "must be a secret value",
    ),
    (
        "staging",
        "stagecraft:services.proxy.healthcheck",
        {"interval_s": 10, "timeout_s": 10},
        "stagecraft:services.proxy.healthcheck.timeout_s",
        "must be < interval_s",
    ),
    ("prod", "stagecraft:storage.test_data_ttl_days", 7, "stagecraft:storage.test_data_ttl_days", "unset in prod"),
    # Project-wide roles beyond writing logs, metrics and traces would let a workload reach every
    # secret or identity of the project.
    *[
        (
            "staging",
            "stagecraft:identity.project_iam",
            {role: ["api"]},
            f"stagecraft:identity.project_iam.{role}",
            "may be granted on the project",
        )
        for role in (
            "roles/secretmanager.secretAccessor",
            "roles/resourcemanager.projectIamAdmin",
            "roles/iam.serviceAccountTokenCreator",
            "roles/storage.admin",
        )
    ],
    # Each environment in its own project, named for it.
    ("staging", "gcp:project", "acme-prod-4711", "gcp:project", "names the prod environment"),
    ("staging", "gcp:project", "acme-shared-4711", "gcp:project", "must name its environment"),
    ("prod", "gcp:project", "acme-staging-4711", "gcp:project", "names the staging environment"),
    # Prod keeps backups and old versions long enough to recover.
    ("prod", "stagecraft:storage.backup_retention_days", 1, "stagecraft:storage.backup_retention_days", ">= 30"),
    ("prod", "stagecraft:storage.noncurrent_version_days", 1, "stagecraft:storage.noncurrent_version_days", ">= 7"),
    ("prod", "stagecraft:storage.soft_delete_days", 0, "stagecraft:storage.soft_delete_days", ">= 7 in prod"),
    # Keys come from the stack's own project.
    (
        "prod",
        "stagecraft:storage.kms_key",
        "projects/acme-staging-4711/locations/europe/keyRings/r/cryptoKeys/k",
        "stagecraft:storage.kms_key",
        "own project 'acme-prod-4711'",
    ),
    (
        "staging",
        "stagecraft:secrets.kms_key",
        "projects/acme-prod-4711/locations/europe-west1/keyRings/r/cryptoKeys/k",
        "stagecraft:secrets.kms_key",
        "own project",
    ),
    # Certificates: trusted ones in prod, from this environment's own secrets.
    ("prod", "stagecraft:proxy.tls", {"mode": "self-signed"}, "stagecraft:proxy.tls.mode", "secret-manager, acme"),
    (
        "prod",
        "stagecraft:proxy.tls",
        {"mode": "secret-manager", "certificate_secret": "staging-tls", "private_key_secret": "prod-tls-key"},
        "stagecraft:proxy.tls.certificate_secret",
        "this environment's secrets",
    ),
    (
        "staging",
        "stagecraft:proxy.tls",
        {
            "mode": "acme",
            "email": "ops@acme.example.com",
            "certbot": {"image": "certbot/certbot:v4.0.0", "memory_mb": 64, "cpus": 0.1},
        },
        "stagecraft:proxy.tls.mode",
        "http_port 80",
    ),
    ("prod", "stagecraft:proxy.grafana_allow", [], "stagecraft:proxy.grafana_allow", "must list the networks"),
    ("prod", "stagecraft:proxy.grafana_allow", ["10.0.0.1/8"], "stagecraft:proxy.grafana_allow.0", "CIDR"),
    (
        "staging",
        "stagecraft:identity.key_generations",
        {"web": 2},
        "stagecraft:identity.key_generations.web",
        "key-file",
    ),
]


@pytest.mark.parametrize(
    ("stack", "key", "value", "named", "fragment"), BAD_INPUTS, ids=[f"{c[0]}:{c[1]}={c[2]!r}"[:80] for c in BAD_INPUTS]
)
def test_bad_input_is_refused_naming_file_and_key(
    write_stack: Callable[..., Path], stack: str, key: str, value: Any, named: str, fragment: str
) -> None:
    path = write_stack(_set(stack_document(stack), key, value), name=f"Pulumi.{stack}.yaml")
    with pytest.raises(ConfigError) as caught:
        load_from_file(path)
    lines = str(caught.value).splitlines()
    matching = [line for line in lines if line.startswith(f"Pulumi.{stack}.yaml: {named}: ")]
    assert matching, f"no line names {named}: {lines}"
    assert any(fragment in line for line in matching), lines


def test_all_problems_are_reported_at_once(write_stack: Callable[..., Path]) -> None:
    document = _set(stack_document("prod"), "stagecraft:app.log_level", "debug")
    document = _set(document, "stagecraft:services.redis.memory_mb", 1)
    path = write_stack(document, name="Pulumi.prod.yaml")
    with pytest.raises(ConfigError) as caught:
        load_from_file(path)
    keys = [key for key, _ in caught.value.problems]
    assert "stagecraft:services.redis.memory_mb" in keys
    # Cross-field rules run once the types are right; the type error comes first.
    assert len(keys) == 1


def test_secure_value_is_accepted_and_never_shown(write_stack: Callable[..., Path]) -> None:
    document = _set(
        stack_document("staging"),
        "stagecraft:secrets.provided",
        {"smtp-password": {"value": {"secure": "v1:abc:def"}, "accessors": ["api"]}},
    )
    config = load_from_file(write_stack(document))
    provided = config.stagecraft.secrets.provided["smtp-password"].value
    assert isinstance(provided, ConfigSecret)
    assert "offline-" not in repr(config) and provided.reveal().startswith("offline-")


def test_offline_secret_differs_per_stack_file(write_stack: Callable[..., Path], tmp_path: Path) -> None:
    secret = {"smtp-password": {"value": {"secure": "v1:same:cipher"}, "accessors": ["api"]}}
    staging = load_from_file(write_stack(_set(stack_document("staging"), "stagecraft:secrets.provided", secret)))
    prod_doc = _set(stack_document("prod"), "stagecraft:secrets.provided", secret)
    prod = load_from_file(write_stack(prod_doc, name="Pulumi.prod.yaml"))
    assert (
        staging.stagecraft.secrets.provided["smtp-password"].value
        != prod.stagecraft.secrets.provided["smtp-password"].value
    )


def test_engine_path_matches_file_path(project_root: Path) -> None:
    """What the CLI hands a real program validates to the same model as the file."""
    items = read_stack_file(project_root / "Pulumi.prod.yaml")
    config, secret_keys = engine_view(items)
    assert all(isinstance(value, str) for value in config.values())
    from_engine = load_from_engine(config, secret_keys, "Pulumi.prod.yaml")
    assert from_engine == load_from_file(project_root / "Pulumi.prod.yaml")


def test_engine_path_refuses_plaintext_where_a_secret_is_expected(project_root: Path) -> None:
    items = read_stack_file(project_root / "Pulumi.staging.yaml")
    config, _ = engine_view(items)
    config["stagecraft:secrets"] = json.dumps(
        {"provided": {"smtp-password": {"value": "hunter2", "accessors": ["api"]}}}
    )
    with pytest.raises(ConfigError) as caught:
        load_from_engine(config, [], "Pulumi.staging.yaml")
    assert "Pulumi.staging.yaml: stagecraft:secrets.provided.smtp-password.value: must be a secret" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    # The same value set with --secret is accepted.
    loaded = load_from_engine(config, ["stagecraft:secrets"], "Pulumi.staging.yaml")
    assert loaded.stagecraft.secrets.provided["smtp-password"].value.reveal() == "hunter2"


def test_engine_scalars_arrive_as_strings(project_root: Path) -> None:
    config, keys = engine_view(read_stack_file(project_root / "Pulumi.staging.yaml"))
    config["stagecraft:git_branch"] = "feature/login"
    assert load_from_engine(config, keys, "x").stagecraft.git_branch == "feature/login"


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("postgres:15.12", True),
        ("postgres", False),
        ("postgres:latest", False),
        ("ghcr.io/acme/api:2.13.4", True),
        ("registry:5000/acme/api", False),
        ("nginx@sha256:" + "a" * 64, True),
        ("redis:alpine", False),
        ("redis:7", False),
        ("postgres:15-bookworm", False),
        ("redis:7.4.2-bookworm", True),
        ("prom/prometheus:v3.2.1", True),
        ("temporalio/admin-tools:1.27.2-tctl-1.18.2-cli-1.3.0", True),
        ("ghcr.io/acme/api:2.14.0-rc.1", True),
        ("registry:5000/acme/api:1.2", True),
        ("nginx@sha256:abc", False),
    ],
)
def test_image_pinning(image: str, pinned: bool) -> None:
    assert image_is_pinned(image) is pinned


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.staging.yaml"
    path.write_text("config:\n  stagecraft:app_name: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_from_file(path)
    assert str(caught.value).startswith("Pulumi.staging.yaml: line ")


def test_a_copied_secret_is_refused(write_stack: Callable[..., Path]) -> None:
    """The same ciphertext twice is one secret used in two places: refused, naming both keys."""
    value = {"secure": "v1:c2FsdA==:Y29waWVk"}
    document = _set(
        stack_document("staging"),
        "stagecraft:secrets.provided",
        {"smtp-password": {"value": value, "accessors": ["api"]}, "sms-token": {"value": value, "accessors": ["api"]}},
    )
    with pytest.raises(ConfigError) as caught:
        load_from_file(write_stack(document))
    assert caught.value.problems == [
        (
            "stagecraft:secrets.provided.sms-token.value",
            "holds the same encrypted value as stagecraft:secrets.provided.smtp-password.value; "
            "set each secret to its own value",
        )
    ]


@pytest.mark.parametrize(
    ("host", "same_as"),
    [
        ("ssh://deploy@apps-01.acme.example.com", "ssh://apps-01.acme.example.com:22"),
        ("ssh://Deploy@APPS-01.acme.example.com:22", "ssh://apps-01.acme.example.com"),
        ("tcp://10.0.0.5", "tcp://10.0.0.5:2375"),
        ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
    ],
)
def test_docker_hosts_are_compared_in_one_spelling(host: str, same_as: str) -> None:
    from components.config.host import normalized_docker_host

    assert normalized_docker_host(host) == normalized_docker_host(same_as)
    assert normalized_docker_host("ssh://apps-01:2222") != normalized_docker_host("ssh://apps-01")
