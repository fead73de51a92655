"""What `verify` checks, read from the deployed stack's outputs.

The Pulumi program exports one object named ``verify`` (and, for a self-signed staging
certificate, ``tls_ca_certificate``). ``pulumi stack output --json`` prints both among the other
outputs; nothing here needs a secret output. The ``verify`` object, with staging's values:

.. code-block:: json

    {
      "stack": "staging",
      "environment": "staging",
      "docker_host": "ssh://deploy@apps-01.acme.example.com",
      "name_prefix": "acme-staging-",
      "proxy": {"http_port": 8080, "https_port": 8443, "health_port": 8081},
      "domains": {"web": "staging.acme.example.com", "api": "api-staging.acme.example.com",
                  "grafana": "grafana-staging.acme.example.com"},
      "health_paths": {"api": "/health", "web": "/healthz"},
      "cors_origins": ["https://staging.acme.example.com"],
      "rate_limit": {"per_minute": 100, "burst": 40},
      "p95_latency_ms": 2000,
      "labels": {"app": "acme", "environment": "staging", "stack": "staging", "managed-by": "pulumi"},
      "log_options": {"max-size": "50m", "max-file": "3"},
      "services": {"postgres": "acme-staging-postgres", "api": "acme-staging-api", "...": "..."},
      "jobs": {"postgres-init": "acme-staging-postgres-init",
               "chroma-volume-owner": "acme-staging-chroma-volume-owner", "...": "..."},
      "networks": ["acme-staging-alerting", "acme-staging-app", "acme-staging-chroma", "acme-staging-data",
                   "acme-staging-edge", "acme-staging-egress", "acme-staging-monitoring",
                   "acme-staging-temporal"],
      "volumes": ["acme-staging-postgres-data", "acme-staging-postgres-files", "..."],
      "databases": {"app": "acme_staging"},
      "postgres_port": 5432,
      "redis_port": 6379,
      "chroma_port": 8000,
      "temporal_address": "10.210.5.10:7233",
      "monitoring": {"prometheus_port": 9090, "grafana_port": 3000},
      "probe": {"service": "ops", "postgres_user": "postgres",
                "postgres_password_file": "/run/stagecraft/secrets/postgres-superuser-password",
                "redis_user": "verify",
                "redis_password_file": "/run/stagecraft/secrets/redis-verify-password"}
    }

- ``proxy.http_port``/``https_port`` are the host ports the proxy publishes; ``health_port`` is the
  port of its health listener inside the container, which must not be published.
- ``services`` maps every long-running service (by its ``service`` label) to its stable name (the
  container name, or for the API and web, which are replaced under versioned container names, the
  network alias old and new share); it must name at least :data:`REQUIRED_SERVICES`. Containers
  are found by their ``app``, ``stack`` and ``service`` labels; a name is a hint for a container
  that lost its labels.
- ``jobs`` maps each one-shot job (migrations, init scripts, backups, the volume-owner jobs) to
  its container name; each must have exited 0.
- ``temporal_address`` is the one address Temporal's frontend binds (on the temporal network) and
  its clients dial; it does not listen on loopback.
- ``networks``/``volumes`` must exist; together with ``name_prefix`` they define what belongs to
  this stack for the isolation checks.
- ``probe`` names the service whose container runs the in-network probes (psql, pg_isready,
  redis-cli, python3) and where, inside it, the superuser's and Redis's password files are.
  Passwords are read there by the probe and never leave the container. What that container shares
  no network with (Chroma, Temporal's address) is probed from the target's own container.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from components.config.base import DNS_NAME

# Services the checks talk to; the program may run more (exporters, Temporal UI).
REQUIRED_SERVICES = ("postgres", "redis", "chroma", "temporal", "api", "web", "proxy", "prometheus", "grafana", "ops")
REQUIRED_LABELS = ("app", "environment", "stack", "managed-by")
DOCKER_HOST_SCHEMES = ("ssh://", "unix://", "tcp://")
DOCKER_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$"
POSTGRES_IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"
HTTP_PATH = r"^/[A-Za-z0-9._~/-]*$"
CONTAINER_PATH = r"^/[A-Za-z0-9._/-]+$"

Port = Annotated[int, Field(ge=1, le=65535)]
DockerName = Annotated[str, Field(pattern=DOCKER_NAME)]


class TargetsError(Exception):
    """The outputs lack something verify needs; one line per problem, naming the key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{source}: {problem}" for problem in problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class ProxyPorts(_Model):
    http_port: Port
    https_port: Port
    health_port: Port


class Domains(_Model):
    web: Annotated[str, Field(pattern=DNS_NAME, max_length=253)]
    api: Annotated[str, Field(pattern=DNS_NAME, max_length=253)]
    grafana: Annotated[str, Field(pattern=DNS_NAME, max_length=253)]


class HealthPaths(_Model):
    api: Annotated[str, Field(pattern=HTTP_PATH)]
    web: Annotated[str, Field(pattern=HTTP_PATH)]


class RateLimit(_Model):
    per_minute: Annotated[int, Field(ge=1, le=100_000)]
    burst: Annotated[int, Field(ge=0, le=10_000)]


class LogOptions(_Model):
    max_size: str = Field(alias="max-size", pattern=r"^[0-9]+[kmg]?$")
    max_file: str = Field(alias="max-file", pattern=r"^[0-9]+$")


class Databases(_Model):
    app: Annotated[str, Field(pattern=POSTGRES_IDENTIFIER)]


class MonitoringPorts(_Model):
    prometheus_port: Port
    grafana_port: Port


class Probe(_Model):
    service: str
    postgres_user: Annotated[str, Field(pattern=POSTGRES_IDENTIFIER)]
    postgres_password_file: Annotated[str, Field(pattern=CONTAINER_PATH)]
    # The Redis ACL user the probes log in as (allowed only the marker keys) and its password.
    redis_user: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
    redis_password_file: Annotated[str, Field(pattern=CONTAINER_PATH)]


class Targets(_Model):
    """The ``verify`` output of one deployed stack (see the module docstring)."""

    stack: Annotated[str, Field(min_length=1)]
    environment: Annotated[str, Field(min_length=1)]
    docker_host: str
    name_prefix: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*-$")]
    proxy: ProxyPorts
    domains: Domains
    health_paths: HealthPaths
    cors_origins: Annotated[list[Annotated[str, Field(pattern=r"^(\*|https?://[a-z0-9.:-]+)$")]], Field(min_length=1)]
    rate_limit: RateLimit
    p95_latency_ms: Annotated[int, Field(ge=1)]
    labels: dict[str, str]
    log_options: LogOptions
    services: dict[str, DockerName]
    jobs: dict[str, DockerName]
    networks: Annotated[list[DockerName], Field(min_length=1)]
    volumes: list[DockerName]
    databases: Databases
    postgres_port: Port
    redis_port: Port
    chroma_port: Port
    temporal_address: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*:[0-9]{1,5}$")]
    monitoring: MonitoringPorts
    probe: Probe
    # Staging's debug ports: service -> host port, published on the host's loopback only.
    debug_ports: dict[str, Port] = Field(default_factory=dict)

    @field_validator("docker_host")
    @classmethod
    def _docker_host(cls, value: str) -> str:
        if not value.startswith(DOCKER_HOST_SCHEMES) or len(value) <= len("unix://"):
            raise ValueError(f"must start with one of {', '.join(DOCKER_HOST_SCHEMES)} (got {value!r})")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [key for key in REQUIRED_LABELS if key not in value]
        if missing:
            raise ValueError(f"missing label(s) {', '.join(missing)} (required: {', '.join(REQUIRED_LABELS)})")
        return value

    @field_validator("services")
    @classmethod
    def _services(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [name for name in REQUIRED_SERVICES if name not in value]
        if missing:
            raise ValueError(f"missing service(s) {', '.join(missing)} (required: {', '.join(REQUIRED_SERVICES)})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Targets:
        for key in ("stack", "environment"):
            if self.labels[key] != getattr(self, key):
                raise ValueError(f"labels.{key} is {self.labels[key]!r} but {key} is {getattr(self, key)!r}")
        if self.probe.service not in self.services:
            raise ValueError(f"probe.service {self.probe.service!r} is not one of the services")
        return self

    @property
    def identity_labels(self) -> dict[str, str]:
        """The labels that say a Docker object belongs to this stack of this application."""
        return {"app": self.labels["app"], "stack": self.labels["stack"]}

    @property
    def temporal_host_port(self) -> tuple[str, int]:
        host, port = self.temporal_address.rsplit(":", 1)
        return host, int(port)


def _problem(error: Any) -> str:
    loc = ".".join(str(part) for part in ("verify", *error["loc"]))
    kind = error["type"]
    if kind == "missing":
        return f"{loc}: missing"
    if kind == "extra_forbidden":
        return f"{loc}: unknown key"
    message = re.sub(r"^Value error, ", "", error["msg"])
    return f"{loc}: {message}"


def load_targets(outputs: Any, source: str) -> tuple[Targets, str | None]:
    """The validated ``verify`` object and the optional CA certificate from a stack's outputs
    (the object ``pulumi stack output --json`` prints). Raises :class:`TargetsError`."""
    if not isinstance(outputs, dict):
        raise TargetsError(source, [f"expected a JSON object of stack outputs, got {type(outputs).__name__}"])
    if "verify" not in outputs:
        raise TargetsError(
            source, ["verify: missing (the stack exports no `verify` object; deploy a program version that does)"]
        )
    try:
        targets = Targets.model_validate(outputs["verify"])
    except ValidationError as error:
        raise TargetsError(source, [_problem(e) for e in error.errors()]) from None
    ca = outputs.get("tls_ca_certificate")
    if ca is not None and (not isinstance(ca, str) or "-----BEGIN CERTIFICATE-----" not in ca):
        raise TargetsError(source, ["tls_ca_certificate: must be a PEM certificate"])
    return targets, ca
