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
from components.config.cloud import Gcp, Identity, SecretSettings, Storage
from components.config.host import DebugPorts, Docker, Network, Proxy
from components.config.operations import Backup, Monitoring
from components.config.services import Services

ENVIRONMENTS = ("staging", "prod")


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
        rules = prod_rules if self.is_prod else staging_rules
        yield from _prefixed("stagecraft", rules(self.stagecraft))


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
    if not sc.storage.versioning:
        yield ("storage.versioning", "must be true in prod")
    if sc.storage.soft_delete_days < 7:
        yield ("storage.soft_delete_days", f"must be >= 7 in prod (got {sc.storage.soft_delete_days})")
    if sc.storage.test_data_ttl_days is not None:
        yield ("storage.test_data_ttl_days", "must be unset in prod: prod holds no test data")
    if not sc.secrets.deletion_protection:
        yield ("secrets.deletion_protection", "must be true in prod")
    for name, port in sc.debug_ports.model_dump().items():
        if port is not None:
            yield (f"debug_ports.{name}", "must be unset in prod: only the proxy publishes ports")
    if sc.proxy.tls.mode != "provided":
        yield ("proxy.tls.mode", "must be provided in prod (a real certificate, set as config secrets)")
    if sc.secrets.version_destroy_ttl_days is None:
        yield ("secrets.version_destroy_ttl_days", "must be set in prod (days a destroyed version stays recoverable)")


def staging_rules(sc: Stagecraft) -> Iterator[Problem]:
    """Outside prod: no real emails, and test data that expires."""
    if sc.app.email_mode != "shadow":
        yield ("app.email_mode", "must be shadow outside prod, so staging never emails real users")
    if sc.storage.test_data_ttl_days is None:
        yield ("storage.test_data_ttl_days", "must be set outside prod (days before test-data/ objects are deleted)")
