"""A stack's whole configuration, and the rules that differ between environments.

Each section checks its own fields (see its ``problems``); what is left here are the rules that
span sections or set prod apart from staging.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from components.config.app import AppSettings, Domains
from components.config.base import Model, Problem
from components.config.cloud import ENVIRONMENT_WORDS, Gcp, Identity, SecretSettings, Storage, names_environment
from components.config.host import DebugPorts, Docker, Network, Proxy, SecretManagerTls
from components.config.operations import Alerting, Backup, Monitoring, OpsService, Seed
from components.config.services import Services

ENVIRONMENTS = ENVIRONMENT_WORDS
# Prod keeps backups a month, and deleted or overwritten objects a week.
PROD_MIN_BACKUP_RETENTION_DAYS = 30
PROD_MIN_NONCURRENT_VERSION_DAYS = 7
PROD_MIN_SOFT_DELETE_DAYS = 7


class Stagecraft(Model):
    """Everything under the ``stagecraft:`` namespace of a stack file."""

    app_name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{1,9}$")]
    environment: Literal["staging", "prod"]
    git_branch: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._/-]+$")] | None = None
    domains: Domains
    app: AppSettings
    services: Services
    storage: Storage
    secrets: SecretSettings = SecretSettings()
    identity: Identity = Identity()
    backup: Backup = Backup()
    network: Network
    proxy: Proxy
    debug_ports: DebugPorts = DebugPorts()
    monitoring: Monitoring = Monitoring()
    ops: OpsService = OpsService()
    seed: Seed | None = None
    alerting: Alerting

    def problems(self) -> Iterator[Problem]:
        ports = {"proxy.http_port": self.proxy.http_port, "proxy.https_port": self.proxy.https_port}
        ports.update({f"debug_ports.{k}": v for k, v in self.debug_ports.model_dump().items() if v is not None})
        seen: dict[int, str] = {}
        for key, port in ports.items():
            if port in seen:
                yield (key, f"port {port} is already used by stagecraft:{seen[port]}")
            seen[port] = key


class StackConfig(Model):
    """A stack's whole configuration."""

    stagecraft: Stagecraft
    gcp: Gcp
    docker: Docker

    @property
    def environment(self) -> str:
        return self.stagecraft.environment

    @property
    def is_prod(self) -> bool:
        return self.stagecraft.environment == "prod"

    def problems(self) -> Iterator[Problem]:
        yield from own_project_rules(self)
        rules = prod_rules if self.is_prod else staging_rules
        yield from _prefixed("stagecraft", rules(self.stagecraft))


def own_project_rules(config: StackConfig) -> Iterator[Problem]:
    """Each environment lives in its own project, named for it, and uses only keys from it."""
    environment, project = config.environment, config.gcp.project
    if not names_environment(project, environment):
        yield ("gcp.project", f"must name its environment as a word, e.g. `acme-{environment}-1234` (got {project!r})")
    for other in ENVIRONMENTS:
        if other != environment and names_environment(project, other):
            yield ("gcp.project", f"names the {other} environment; each environment has its own project")
    sc = config.stagecraft
    secrets: list[tuple[str, str]] = []
    if isinstance(sc.proxy.tls, SecretManagerTls):
        for key in ("certificate_secret", "private_key_secret"):
            secrets.append((f"proxy.tls.{key}", getattr(sc.proxy.tls, key)))
    if sc.alerting.email is not None:
        secrets.append(("alerting.email.password_secret", sc.alerting.email.password_secret))
    if sc.alerting.webhook is not None:
        secrets.append(("alerting.webhook.url_secret", sc.alerting.webhook.url_secret))
    for key, secret_id in secrets:
        if not secret_id.startswith(f"{environment}-"):
            yield (
                f"stagecraft.{key}",
                f"must name one of this environment's secrets, `{environment}-...` (got {secret_id!r})",
            )
    for key_path, key in (
        ("stagecraft.storage.kms_key", config.stagecraft.storage.kms_key),
        ("stagecraft.secrets.kms_key", config.stagecraft.secrets.kms_key),
    ):
        if key is not None and key.split("/")[1] != project:
            yield (key_path, f"must be a key in the stack's own project {project!r} (got {key.split('/')[1]!r})")


def _prefixed(section: str, problems: Iterator[Problem]) -> Iterator[Problem]:
    for key, message in problems:
        yield (f"{section}.{key}", message)


def prod_rules(sc: Stagecraft) -> Iterator[Problem]:
    """Prod is strict: quiet logs, exact origins, durable storage, protected secrets, a real
    certificate, nothing published but the proxy."""
    if sc.app.log_level == "debug":
        yield ("app.log_level", "must not be debug in prod; allowed: info, warning, error")
    if "*" in sc.app.cors_origins:
        yield ("app.cors_origins", "must not contain '*' in prod; list the exact https:// origins")
    for origin in sc.app.cors_origins:
        if origin.startswith("http://"):
            yield ("app.cors_origins", f"must use https:// origins in prod (got {origin!r})")
    if sc.app.debug_endpoints:
        yield ("app.debug_endpoints", "must be false in prod")
    storage = sc.storage
    if not storage.versioning:
        yield ("storage.versioning", "must be true in prod")
    for key, value, floor in (
        ("soft_delete_days", storage.soft_delete_days, PROD_MIN_SOFT_DELETE_DAYS),
        ("backup_retention_days", storage.backup_retention_days, PROD_MIN_BACKUP_RETENTION_DAYS),
        ("noncurrent_version_days", storage.noncurrent_version_days, PROD_MIN_NONCURRENT_VERSION_DAYS),
    ):
        if value < floor:
            yield (f"storage.{key}", f"must be >= {floor} in prod (got {value})")
    if sc.storage.test_data_ttl_days is not None:
        yield ("storage.test_data_ttl_days", "must be unset in prod: prod holds no test data")
    if not sc.secrets.deletion_protection:
        yield ("secrets.deletion_protection", "must be true in prod")
    for name, port in sc.debug_ports.model_dump().items():
        if port is not None:
            yield (f"debug_ports.{name}", "must be unset in prod: only the proxy publishes ports")
    if sc.proxy.tls.mode == "self-signed":
        yield ("proxy.tls.mode", "must be secret-manager, acme or provided in prod (a certificate browsers trust)")
    if not sc.proxy.grafana_allow:
        yield ("proxy.grafana_allow", "must list the networks allowed to reach Grafana in prod")
    if sc.secrets.version_destroy_ttl_days is None:
        yield ("secrets.version_destroy_ttl_days", "must be set in prod (days a destroyed version stays recoverable)")
    if sc.seed is not None:
        yield ("seed", "must be unset in prod: seed data never goes into production")


def staging_rules(sc: Stagecraft) -> Iterator[Problem]:
    """Outside prod: no real emails, and test data that expires."""
    if sc.app.email_mode != "shadow":
        yield ("app.email_mode", "must be shadow outside prod, so staging never emails real users")
    if sc.storage.test_data_ttl_days is None:
        yield ("storage.test_data_ttl_days", "must be set outside prod (days before test-data/ objects are deleted)")
