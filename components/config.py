"""A stack's whole configuration as one pydantic model, and the two ways to load it.

A real `pulumi up` hands the program its config through the engine (``load_from_engine``);
``preflight`` reads ``Pulumi.<stack>.yaml`` directly (``load_from_file``). Both build the same raw
tree ``{"stagecraft": {...}, "gcp": {...}, "docker": {...}}`` and validate it with ``StackConfig``,
so a mistake is reported the same way, naming the file and the key path, before any resource
exists.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
)
from pydantic_core import PydanticCustomError, core_schema

PROJECT_NAMESPACE = "stagecraft"
NAMESPACES = (PROJECT_NAMESPACE, "gcp", "docker")
# Keys Pulumi itself may put in a stack file's config; they are not ours to judge.
IGNORED_NAMESPACES = ("pulumi",)

ENVIRONMENTS = ("staging", "prod")
# The workloads that get their own service account, and the secrets stagecraft generates.
Workload = Literal["api", "web", "temporal", "backup", "monitoring"]
WORKLOADS: tuple[str, ...] = get_args(Workload)
GeneratedSecret = Literal[
    "postgres-superuser-password",
    "app-db-password",
    "temporal-db-password",
    "redis-password",
    "grafana-admin-password",
    "api-secret-key",
    "jwt-signing-key",
    "postgres-exporter-password",
]
GENERATED_SECRETS: tuple[str, ...] = get_args(GeneratedSecret)
PRIMITIVE_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})


class ConfigSecret:
    """A config value that was set with ``pulumi config set --secret``.

    The plaintext never shows in ``repr`` or ``str``; use ``output()`` to hand it to a resource as
    a secret Output.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def output(self) -> Any:
        import pulumi

        return pulumi.Output.secret(self._value)

    def __repr__(self) -> str:
        return "ConfigSecret([secret])"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigSecret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def check(value: Any) -> ConfigSecret:
            if isinstance(value, ConfigSecret):
                return value
            raise PydanticCustomError(
                "plaintext_secret",
                "must be a secret value: set it with `pulumi config set --secret` "
                "(the stack file then holds a `secure:` value)",
            )

        return core_schema.no_info_plain_validator_function(check)


class _Model(BaseModel):
    """Strict, closed models: a typo or a wrong type is an error, never a default."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


DNS_NAME = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
IMAGE_REF = r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
ROLE = r"^(roles/[A-Za-z0-9_.]+|projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/roles/[A-Za-z0-9_.]+)$"
HOURS_MINUTES = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class Domains(_Model):
    """Public DNS names served by the reverse proxy."""

    web: Annotated[str, Field(pattern=DNS_NAME, max_length=253)]
    api: Annotated[str, Field(pattern=DNS_NAME, max_length=253)]
    grafana: Annotated[str, Field(pattern=DNS_NAME, max_length=253)]


class AppSettings(_Model):
    """Behaviour of the application containers that differs per environment."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    cors_origins: Annotated[list[Annotated[str, Field(pattern=r"^(\*|https?://[a-z0-9.:-]+)$")]], Field(min_length=1)]
    email_mode: Literal["shadow", "live"] = "shadow"
    debug_endpoints: bool = False
    feature_flags: dict[Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{1,63}$")], bool] = {}


class Healthcheck(_Model):
    """Docker healthcheck timing; defaults are seed 000's values."""

    interval_s: Annotated[int, Field(ge=5, le=300)] = 30
    timeout_s: Annotated[int, Field(ge=1, le=120)] = 10
    retries: Annotated[int, Field(ge=1, le=10)] = 3
    start_period_s: Annotated[int, Field(ge=0, le=600)] = 60


class Service(_Model):
    """One container: its pinned image and its limits."""

    image: Annotated[str, Field(pattern=IMAGE_REF)]
    memory_mb: Annotated[int, Field(ge=32, le=65536)]
    cpus: Annotated[float, Field(gt=0, le=32)]
    healthcheck: Healthcheck = Healthcheck()


class PostgresService(Service):
    memory_mb: Annotated[int, Field(ge=256, le=65536)]


class RedisService(Service):
    memory_mb: Annotated[int, Field(ge=64, le=65536)]


class ChromaService(Service):
    memory_mb: Annotated[int, Field(ge=256, le=65536)]


class TemporalService(Service):
    memory_mb: Annotated[int, Field(ge=256, le=65536)]
    namespace: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,62}$")] = "default"
    retention_days: Annotated[int, Field(ge=1, le=365)] = 3


class AppService(Service):
    """The API or the web front end: images the application team builds."""

    port: Annotated[int, Field(ge=1024, le=65535)]
    health_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9/._-]*$")] = "/health"
    # The healthcheck runs inside the image; name a tool it has. Default: curl on health_path.
    health_command: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | None = None


class ApiService(AppService):
    memory_mb: Annotated[int, Field(ge=128, le=65536)]
    metrics_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9/._-]*$")] = "/metrics"
    migrate_command: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = [
        "alembic",
        "upgrade",
        "head",
    ]


class Services(_Model):
    """Every container of the application stack."""

    postgres: PostgresService
    redis: RedisService
    chroma: ChromaService
    temporal: TemporalService
    temporal_ui: Service
    temporal_admin_tools: Service
    api: ApiService
    web: AppService
    proxy: Service
    prometheus: Service
    grafana: Service
    postgres_exporter: Service
    redis_exporter: Service
    node_exporter: Service


class Storage(_Model):
    """The environment's GCS buckets."""

    location: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9-]{1,30}$")]
    versioning: bool = True
    backup_retention_days: Annotated[int, Field(ge=1, le=3650)]
    noncurrent_version_days: Annotated[int, Field(ge=1, le=3650)] = 30
    # Objects under the test-data/ prefix are deleted after this many days (staging seeds).
    test_data_ttl_days: Annotated[int, Field(ge=1, le=365)] | None = None
    soft_delete_days: Annotated[int, Field(ge=0, le=90)] = 7
    access_log_retention_days: Annotated[int, Field(ge=1, le=3650)] = 365
    kms_key: (
        Annotated[str, Field(pattern=r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")] | None
    ) = None


class PasswordPolicy(_Model):
    """How generated secret values look (pulumi-random RandomPassword)."""

    length: Annotated[int, Field(ge=16, le=128)] = 32
    special: bool = True
    min_upper: Annotated[int, Field(ge=0, le=16)] = 2
    min_lower: Annotated[int, Field(ge=0, le=16)] = 2
    min_numeric: Annotated[int, Field(ge=0, le=16)] = 2
    min_special: Annotated[int, Field(ge=0, le=16)] = 0
    # Characters some connection strings and config files choke on are left out.
    override_special: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[!#%()*+,.:;<=>?\[\]^_{|}~-]+$")] = (
        "-_.~!#%^*"
    )


class Replication(_Model):
    """Secret Manager replication: Google-chosen regions, or the listed ones."""

    mode: Literal["automatic", "user_managed"] = "automatic"
    locations: list[Annotated[str, Field(pattern=r"^[a-z]+-[a-z]+[0-9]+$")]] = []


class ProvidedSecret(_Model):
    """A secret the operator supplies (e.g. an SMTP password) instead of one generated here."""

    value: ConfigSecret
    accessors: Annotated[list[Workload], Field(min_length=1)]


class SecretSettings(_Model):
    """Secret Manager settings for this environment."""

    password: PasswordPolicy = PasswordPolicy()
    replication: Replication = Replication()
    kms_key: (
        Annotated[str, Field(pattern=r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")] | None
    ) = None
    deletion_protection: bool = False
    # Days a destroyed version stays recoverable (Secret Manager's delayed destroy); None: immediate.
    version_destroy_ttl_days: Annotated[int, Field(ge=1, le=365)] | None = None
    provided: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$")], ProvidedSecret] = {}
    # Bump a secret's generation to rotate it: a new value and a new Secret Manager version.
    generations: dict[GeneratedSecret, Annotated[int, Field(ge=1, le=10000)]] = {}


class Identity(_Model):
    """Extra project-level roles per workload, for roles GCP grants only on a project."""

    project_roles: dict[Workload, list[Annotated[str, Field(pattern=ROLE)]]] = {}


class Backup(_Model):
    """When database backups run (seed 003: daily at 02:00 UTC)."""

    schedule_utc: Annotated[str, Field(pattern=HOURS_MINUTES)] = "02:00"


PrivateSubnet = Annotated[str, Field(pattern=r"^(10|172|192)\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}/(1[6-9]|2[0-8])$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class Network(_Model):
    """Docker network subnets (seed 003's segmentation); must not overlap the other stack's."""

    edge: PrivateSubnet
    app: PrivateSubnet
    data: PrivateSubnet
    monitoring: PrivateSubnet


class SelfSignedTls(_Model):
    """A pulumi-tls CA and certificate for the stack's domains (staging's default)."""

    mode: Literal["self-signed"]
    validity_days: Annotated[int, Field(ge=1, le=825)] = 90


class ProvidedTls(_Model):
    """A certificate and key the operator supplies as config secrets (prod)."""

    mode: Literal["provided"]
    certificate: ConfigSecret
    private_key: ConfigSecret


TLS_MODES = ("self-signed", "provided")


class Proxy(_Model):
    """The nginx reverse proxy: the only container that publishes ports in prod."""

    bind_address: Annotated[str, Field(pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")] = "0.0.0.0"
    http_port: Port
    https_port: Port
    rate_limit_per_minute: Annotated[int, Field(ge=1, le=100000)] = 100
    rate_limit_burst: Annotated[int, Field(ge=0, le=10000)] = 20
    client_max_body_mb: Annotated[int, Field(ge=1, le=1024)] = 25
    tls: Annotated[SelfSignedTls | ProvidedTls, Field(discriminator="mode")]


class DebugPorts(_Model):
    """Staging only: host ports on 127.0.0.1 for debugging (seed 000's port plan)."""

    api: Port | None = None
    web: Port | None = None
    grafana: Port | None = None
    temporal_ui: Port | None = None


class AlertThresholds(_Model):
    """Alert thresholds (seed 003), different per environment (seed 004)."""

    p95_latency_ms: Annotated[int, Field(ge=10, le=60000)] = 2000
    error_rate_percent: Annotated[float, Field(gt=0, le=100)] = 5.0
    cpu_percent: Annotated[int, Field(ge=1, le=100)] = 80
    memory_percent: Annotated[int, Field(ge=1, le=100)] = 90
    disk_percent: Annotated[int, Field(ge=1, le=100)] = 85
    down_minutes: Annotated[int, Field(ge=1, le=60)] = 3


class Monitoring(_Model):
    """Prometheus and Grafana settings."""

    retention_days: Annotated[int, Field(ge=1, le=3650)] = 15
    scrape_interval_s: Annotated[int, Field(ge=5, le=300)] = 15
    alerts: AlertThresholds = AlertThresholds()


class Stagecraft(_Model):
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


class Gcp(_Model):
    """The ``gcp:`` provider keys stagecraft reads."""

    project: Annotated[str, Field(pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")]
    region: Annotated[str, Field(pattern=r"^[a-z]+-[a-z]+[0-9]+$")]
    zone: Annotated[str, Field(pattern=r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")] | None = None


class Docker(_Model):
    """The ``docker:`` provider keys stagecraft reads."""

    host: Annotated[str, Field(pattern=r"^(unix|ssh|tcp)://\S+$")]


class StackConfig(_Model):
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


# --------------------------------------------------------------------------------------------
# Errors


class ConfigError(Exception):
    """One or more config problems, each naming the file and the key path."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {key}: {msg}" for key, msg in problems))


def _key_path(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "config"
    # "[key]" marks a dict key error; a tag marks which member of a tagged union failed.
    parts = [str(part) for part in loc if part != "[key]"]
    parts = [p for i, p in enumerate(parts) if not (i and parts[i - 1] == "tls" and p in TLS_MODES)]
    namespace, *rest = parts
    return f"{namespace}:{'.'.join(rest)}" if rest else f"{namespace}:"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class whose fields live at ``loc`` (to list the allowed keys)."""
    model: Any = StackConfig
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = _unwrap(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Optional[X] / dict[str, X] -> X, enough to walk our own model tree."""
    args = getattr(annotation, "__args__", ())
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[-1] if models else annotation


def _describe(value: Any) -> str:
    if isinstance(value, ConfigSecret):
        return "[secret]"
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = f" (got {_describe(error.get('input'))})"
    if kind == "extra_forbidden":
        parent = _model_at(tuple(error["loc"][:-1]))
        allowed = ", ".join(parent.model_fields) if parent else "none"
        return f"unknown key; allowed keys here: {allowed}"
    if kind == "missing":
        return "is required"
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}{got}"
    if kind == "greater_than":
        return f"must be > {ctx['gt']}{got}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}{got}"
    if kind == "less_than":
        return f"must be < {ctx['lt']}{got}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}{got}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']}{got}"
    if kind in ("too_short", "too_long"):
        return error["msg"].replace("Value should", "must").replace("List should", "must") + got
    if kind in ("string_too_short", "string_too_long"):
        return error["msg"].replace("String should", "must") + got
    if kind.endswith("_type") or kind == "model_type" or kind == "dict_type":
        wanted = {
            "int_type": "an integer",
            "float_type": "a number",
            "bool_type": "true or false",
            "string_type": "a string",
            "list_type": "a list",
            "dict_type": "a mapping",
            "model_type": "a mapping",
        }.get(kind, kind.removesuffix("_type"))
        return f"must be {wanted}{got}"
    return error["msg"][0].lower() + error["msg"][1:] + ("" if kind == "plaintext_secret" else got)


def validate(raw: Mapping[str, Any], source: str) -> StackConfig:
    """Validate a raw config tree; every problem (types, ranges, environment rules) at once."""
    try:
        config = StackConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [(_key_path(tuple(e["loc"])), _message(e)) for e in exc.errors()]
        raise ConfigError(source, problems) from None
    problems = list(environment_rules(config))
    if problems:
        raise ConfigError(source, problems)
    return config


# --------------------------------------------------------------------------------------------
# Cross-field rules


def image_is_pinned(image: str) -> bool:
    """A tag naming a version (not `latest`), or a digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return False
    return tag != "latest" and any(ch.isdigit() for ch in tag)


def environment_rules(config: StackConfig) -> Iterator[tuple[str, str]]:
    """Rules that tie fields together; prod gets the strict set."""
    sc = config.stagecraft
    prod = config.is_prod
    for name in Services.model_fields:
        image = getattr(sc.services, name).image
        if not image_is_pinned(image):
            yield (
                f"stagecraft:services.{name}.image",
                f"must be pinned to a version tag or a sha256 digest, e.g. `postgres:15.10` (got {image!r})",
            )
    for name in Services.model_fields:
        check = getattr(sc.services, name).healthcheck
        if check.timeout_s >= check.interval_s:
            yield (
                f"stagecraft:services.{name}.healthcheck.timeout_s",
                f"must be < interval_s ({check.interval_s}) (got {check.timeout_s})",
            )
    if sc.secrets.replication.mode == "user_managed" and not sc.secrets.replication.locations:
        yield ("stagecraft:secrets.replication.locations", "must list at least one location when mode is user_managed")
    if sc.secrets.replication.mode == "automatic" and sc.secrets.replication.locations:
        yield ("stagecraft:secrets.replication.locations", "must be empty when mode is automatic")
    policy = sc.secrets.password
    floor = policy.min_upper + policy.min_lower + policy.min_numeric + policy.min_special
    if floor > policy.length:
        yield (
            "stagecraft:secrets.password.length",
            f"must be >= the sum of the min_* counts ({floor}) (got {policy.length})",
        )
    replication = sc.secrets.replication
    if sc.secrets.kms_key and replication.mode == "user_managed":
        key_location = sc.secrets.kms_key.split("/")[3]
        for index, location in enumerate(replication.locations):
            if location != key_location:
                yield (
                    f"stagecraft:secrets.replication.locations.{index}",
                    f"must equal the kms_key's location {key_location!r} (got {location!r})",
                )
    for name in sc.secrets.provided:
        if name in GENERATED_SECRETS:
            yield (f"stagecraft:secrets.provided.{name}", "clashes with a generated secret; choose another name")
    if 0 < sc.storage.soft_delete_days < 7:
        yield (
            "stagecraft:storage.soft_delete_days",
            f"must be 0 (off) or between 7 and 90 (got {sc.storage.soft_delete_days})",
        )
    if len({sc.domains.web, sc.domains.api, sc.domains.grafana}) != 3:
        yield ("stagecraft:domains", "web, api and grafana must be three different names")

    yield from _network_rules(sc)
    ports = {"proxy.http_port": sc.proxy.http_port, "proxy.https_port": sc.proxy.https_port}
    ports.update({f"debug_ports.{k}": v for k, v in sc.debug_ports.model_dump().items() if v is not None})
    seen: dict[int, str] = {}
    for key, port in ports.items():
        if port in seen:
            yield (f"stagecraft:{key}", f"port {port} is already used by stagecraft:{seen[port]}")
        seen[port] = key
    if prod:
        if sc.app.log_level == "debug":
            yield ("stagecraft:app.log_level", "must not be debug in prod; allowed: info, warning, error")
        if "*" in sc.app.cors_origins:
            yield ("stagecraft:app.cors_origins", "must not contain '*' in prod; list the exact https:// origins")
        for origin in sc.app.cors_origins:
            if origin.startswith("http://"):
                yield ("stagecraft:app.cors_origins", f"must use https:// origins in prod (got {origin!r})")
        if sc.app.debug_endpoints:
            yield ("stagecraft:app.debug_endpoints", "must be false in prod")
        if not sc.storage.versioning:
            yield ("stagecraft:storage.versioning", "must be true in prod")
        if sc.storage.soft_delete_days < 7:
            yield ("stagecraft:storage.soft_delete_days", f"must be >= 7 in prod (got {sc.storage.soft_delete_days})")
        if sc.storage.test_data_ttl_days is not None:
            yield ("stagecraft:storage.test_data_ttl_days", "must be unset in prod: prod holds no test data")
        if not sc.secrets.deletion_protection:
            yield ("stagecraft:secrets.deletion_protection", "must be true in prod")
        for name, port in sc.debug_ports.model_dump().items():
            if port is not None:
                yield (f"stagecraft:debug_ports.{name}", "must be unset in prod: only the proxy publishes ports")
        if sc.proxy.tls.mode != "provided":
            yield ("stagecraft:proxy.tls.mode", "must be provided in prod (a real certificate, set as config secrets)")
        if sc.secrets.version_destroy_ttl_days is None:
            yield (
                "stagecraft:secrets.version_destroy_ttl_days",
                "must be set in prod (days a destroyed version stays recoverable)",
            )
    else:
        if sc.app.email_mode != "shadow":
            yield ("stagecraft:app.email_mode", "must be shadow outside prod, so staging never emails real users")
        if sc.storage.test_data_ttl_days is None:
            yield (
                "stagecraft:storage.test_data_ttl_days",
                "must be set outside prod (days before test-data/ objects are deleted)",
            )
    for workload, roles in sc.identity.project_roles.items():
        for index, role in enumerate(roles):
            if role in PRIMITIVE_ROLES:
                yield (
                    f"stagecraft:identity.project_roles.{workload}.{index}",
                    f"primitive role {role} is not allowed; grant a predefined role on the resource instead",
                )


def _network_rules(sc: Stagecraft) -> Iterator[tuple[str, str]]:
    subnets: dict[str, ipaddress.IPv4Network] = {}
    for name, text in sc.network.model_dump().items():
        try:
            subnets[name] = ipaddress.IPv4Network(text, strict=True)
        except ValueError as error:
            yield (f"stagecraft:network.{name}", f"must be a network address in CIDR form ({error})")
            continue
        if not subnets[name].is_private:
            yield (f"stagecraft:network.{name}", f"must be a private range (got {text!r})")
    names = list(subnets)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if subnets[first].overlaps(subnets[second]):
                yield (f"stagecraft:network.{second}", f"overlaps stagecraft:network.{first}")


# --------------------------------------------------------------------------------------------
# Loading


def offline_secret(source: str, key: str, ciphertext: str) -> ConfigSecret:
    """Stand-in for a `secure:` value when no decryption key is at hand (preflight).

    Unique per stack file and key, so checks that compare secrets across stacks still mean
    something.
    """
    digest = hashlib.sha256(f"{source}\0{key}\0{ciphertext}".encode()).hexdigest()
    return ConfigSecret(f"offline-{digest[:32]}")


def _decode_secure(value: Any, source: str, key: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {"secure"} and isinstance(value["secure"], str):
            return offline_secret(source, key, value["secure"])
        return {k: _decode_secure(v, source, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_secure(v, source, f"{key}.{i}") for i, v in enumerate(value)]
    return value


def split_key(full_key: str) -> tuple[str, str]:
    """`ns:name` -> (ns, name); a key without a namespace belongs to the project."""
    namespace, sep, name = full_key.partition(":")
    return (namespace, name) if sep else (PROJECT_NAMESPACE, full_key)


def _raw_tree(items: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]]]:
    tree: dict[str, dict[str, Any]] = {ns: {} for ns in NAMESPACES}
    problems: list[tuple[str, str]] = []
    for full_key, value in items.items():
        namespace, name = split_key(str(full_key))
        if namespace in IGNORED_NAMESPACES:
            continue
        if namespace not in tree:
            problems.append((f"{namespace}:{name}", f"unknown namespace; allowed: {', '.join(NAMESPACES)}"))
            continue
        tree[namespace][name] = value
    return tree, problems


def read_stack_file(path: Path) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file, with `secure:` values as offline ConfigSecrets."""
    source = path.name
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(source, [("file", f"not found at {path}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "file"
        raise ConfigError(source, [(where, f"is not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise ConfigError(source, [("config", "must be a mapping of `namespace:key: value`")])
    config = document.get("config") or {}
    return {str(k): _decode_secure(v, source, str(k)) for k, v in config.items()}


def load_from_file(path: Path | str, source: str | None = None) -> StackConfig:
    """Load and validate a stack file as ``preflight`` does (no decryption, no engine)."""
    path = Path(path)
    source = source or path.name
    items = read_stack_file(path)
    tree, problems = _raw_tree(items)
    if problems:
        raise ConfigError(source, problems)
    return validate(tree, source)


def _parse_engine_value(value: str) -> Any:
    # The engine passes every value as a string: objects and lists as JSON, scalars as written.
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


def _wrap_secrets(value: Any, annotation: Any) -> Any:
    """Mark as ConfigSecret the strings that sit where the model expects a secret.

    The CLI marks a whole top-level key secret when any value under it was set with
    ``--secret``, so only the positions the model types as ConfigSecret are taken as secrets.
    """
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is ConfigSecret:
        return ConfigSecret(value) if isinstance(value, str) else value
    if origin is Annotated:
        return _wrap_secrets(value, args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        fields = annotation.model_fields
        return {k: _wrap_secrets(v, fields[k].annotation) if k in fields else v for k, v in value.items()}
    if origin is dict and isinstance(value, dict):
        return {k: _wrap_secrets(v, args[1]) for k, v in value.items()}
    if origin is list and isinstance(value, list):
        return [_wrap_secrets(v, args[0]) for v in value]
    if args and origin not in (dict, list, Literal):  # a union such as `Model | None`
        for arg in args:
            wrapped = _wrap_secrets(value, arg)
            if _contains_secret(wrapped):
                return wrapped
    return value


def _field_annotation(full_key: str) -> Any:
    namespace, name = split_key(full_key)
    model = StackConfig.model_fields.get(namespace)
    field = model.annotation.model_fields.get(name) if model is not None else None
    return field.annotation if field is not None else None


def load_from_engine(config: Mapping[str, str], secret_keys: list[str] | set[str], source: str) -> StackConfig:
    """Load and validate the config the Pulumi engine passes to a running program.

    Under a key in ``secret_keys`` (set with ``--secret``) the strings the model types as secrets
    become ConfigSecrets; a plaintext value where a secret is expected is refused.
    """
    items: dict[str, Any] = {}
    for key, value in config.items():
        parsed = _parse_engine_value(value)
        items[key] = _wrap_secrets(parsed, _field_annotation(key)) if key in secret_keys else parsed
    tree, problems = _raw_tree(items)
    if problems:
        raise ConfigError(source, problems)
    return validate(tree, source)


def load_for_current_stack() -> StackConfig:
    """The running program's config, as the Pulumi engine supplies it."""
    import pulumi
    from pulumi.runtime import get_config_env, get_config_secret_keys_env

    return load_from_engine(get_config_env(), set(get_config_secret_keys_env()), f"Pulumi.{pulumi.get_stack()}.yaml")


def engine_view(items: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """What the Pulumi CLI would hand the program for a stack file's config: strings, plus the
    keys that hold secrets (whole top-level keys, as the CLI marks them)."""
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in items.items():
        namespace, name = split_key(key)
        full_key = f"{namespace}:{name}"
        if _contains_secret(value):
            secret_keys.append(full_key)
        plain = _reveal(value)
        config[full_key] = plain if isinstance(plain, str) else json.dumps(plain)
    return config, secret_keys


def _contains_secret(value: Any) -> bool:
    if isinstance(value, ConfigSecret):
        return True
    if isinstance(value, dict):
        return any(_contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_secret(v) for v in value)
    return False


def _reveal(value: Any) -> Any:
    if isinstance(value, ConfigSecret):
        return value.reveal()
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


__all__ = [
    "ConfigError",
    "ConfigSecret",
    "StackConfig",
    "engine_view",
    "image_is_pinned",
    "load_for_current_stack",
    "load_from_engine",
    "load_from_file",
    "read_stack_file",
    "validate",
]
