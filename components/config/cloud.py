"""The Google Cloud side of a stack: its project, buckets, secrets and identities."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal, get_args

from pydantic import Field, field_validator

from components.config.base import GCP_LOCATION, GCP_PROJECT, ROLE, ConfigSecret, KmsKey, Model, Problem

# The workloads that get their own service account, and the secrets stagecraft generates.
Workload = Literal["api", "web", "temporal", "backup", "monitoring"]
WORKLOADS: tuple[str, ...] = get_args(Workload)
GeneratedSecret = Literal[
    "postgres-superuser-password",
    "app-db-password",
    "temporal-db-password",
    "redis-password",
    "redis-exporter-password",
    "redis-backup-password",
    "redis-healthcheck-password",
    "redis-verify-password",
    "grafana-admin-password",
    "api-secret-key",
    "jwt-signing-key",
    "postgres-exporter-password",
    "seed-salt",
]
GENERATED_SECRETS: tuple[str, ...] = get_args(GeneratedSecret)
# Generated only where they are used: the salt of staging's seed data.
OPTIONAL_SECRETS = ("seed-salt",)
PRIMITIVE_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})
# The only roles stagecraft grants on a whole project: writing logs, metrics and traces. Every
# other grant is made by the program on one resource (a secret, a bucket).
ProjectRole = Literal["roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/cloudtrace.agent"]
PROJECT_ROLES: tuple[str, ...] = get_args(ProjectRole)
# How a workload proves its Google identity: a key file the program creates and delivers to its
# containers only, or none (the host provides identity, or the workload needs none).
Credentials = Literal["key-file", "none"]
ENVIRONMENT_WORDS = ("staging", "prod")


def names_environment(text: str, environment: str) -> bool:
    """True if ``environment`` is a whole dash-separated word of ``text``."""
    return environment in text.split("-")


class Gcp(Model):
    """The ``gcp:`` provider keys stagecraft reads. Each environment has its own project (a
    shared project would let project-level grants cross the line), and its ID names the
    environment as a word, e.g. ``acme-staging-4711``."""

    project: Annotated[str, Field(pattern=GCP_PROJECT)]
    region: Annotated[str, Field(pattern=GCP_LOCATION)]
    zone: Annotated[str, Field(pattern=r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")] | None = None


class Storage(Model):
    """The environment's GCS buckets."""

    location: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9-]{1,30}$")]
    versioning: bool = True
    backup_retention_days: Annotated[int, Field(ge=1, le=3650)]
    noncurrent_version_days: Annotated[int, Field(ge=1, le=3650)] = 30
    # Objects under the test-data/ prefix are deleted after this many days (staging seeds).
    test_data_ttl_days: Annotated[int, Field(ge=1, le=365)] | None = None
    soft_delete_days: Annotated[int, Field(ge=0, le=90)] = 7
    access_log_retention_days: Annotated[int, Field(ge=1, le=3650)] = 365
    kms_key: KmsKey | None = None

    def problems(self) -> Iterator[Problem]:
        if 0 < self.soft_delete_days < 7:
            yield ("soft_delete_days", f"must be 0 (off) or between 7 and 90 (got {self.soft_delete_days})")


class PasswordPolicy(Model):
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

    def problems(self) -> Iterator[Problem]:
        floor = self.min_upper + self.min_lower + self.min_numeric + self.min_special
        if floor > self.length:
            yield ("length", f"must be >= the sum of the min_* counts ({floor}) (got {self.length})")


class Replication(Model):
    """Secret Manager replication: Google-chosen regions, or the listed ones."""

    mode: Literal["automatic", "user_managed"] = "automatic"
    locations: list[Annotated[str, Field(pattern=GCP_LOCATION)]] = Field(default_factory=list)

    def problems(self) -> Iterator[Problem]:
        if self.mode == "user_managed" and not self.locations:
            yield ("locations", "must list at least one location when mode is user_managed")
        if self.mode == "automatic" and self.locations:
            yield ("locations", "must be empty when mode is automatic")


class ProvidedSecret(Model):
    """A secret the operator supplies (e.g. an SMTP password) instead of one generated here."""

    value: ConfigSecret
    accessors: Annotated[list[Workload], Field(min_length=1)]


class SecretSettings(Model):
    """Secret Manager settings for this environment."""

    password: PasswordPolicy = PasswordPolicy()
    replication: Replication = Replication()
    kms_key: KmsKey | None = None
    deletion_protection: bool = False
    # Days a destroyed version stays recoverable (Secret Manager's delayed destroy); None: immediate.
    version_destroy_ttl_days: Annotated[int, Field(ge=1, le=365)] | None = None
    provided: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$")], ProvidedSecret] = Field(
        default_factory=dict
    )
    # Bump a secret's generation to rotate it: a new value and a new Secret Manager version.
    generations: dict[GeneratedSecret, Annotated[int, Field(ge=1, le=10000)]] = Field(default_factory=dict)

    def problems(self) -> Iterator[Problem]:
        if self.kms_key and self.replication.mode == "user_managed":
            key_location = self.kms_key.split("/")[3]
            for index, location in enumerate(self.replication.locations):
                if location != key_location:
                    yield (
                        f"replication.locations.{index}",
                        f"must equal the kms_key's location {key_location!r} (got {location!r})",
                    )
        for name in self.provided:
            if name in GENERATED_SECRETS:
                yield (f"provided.{name}", "clashes with a generated secret; choose another name")


# The workloads whose containers read a key file: the API (its uploads bucket, and staging's seed
# job loading a dump from it) and the backup service (the backups bucket).
KEY_FILE_WORKLOADS = ("api", "backup")


def _default_credentials() -> dict[str, str]:
    # The API reads and writes its uploads bucket; the backup service writes the backups bucket.
    return {"api": "key-file", "backup": "key-file"}


class Identity(Model):
    """Workload identities: extra project-level roles (only log, metric and trace writing), and
    how each workload gets its credentials."""

    # {role: [workload, ...]}, the same shape as every grant in stagecraft.
    project_iam: dict[Annotated[str, Field(pattern=ROLE)], list[Workload]] = Field(default_factory=dict)
    credentials: dict[Workload, Credentials] = Field(default_factory=_default_credentials)
    # Bump a workload's key generation to rotate its key: a new key, the old one deleted.
    key_generations: dict[Workload, Annotated[int, Field(ge=1, le=10000)]] = Field(default_factory=dict)

    @field_validator("credentials")
    @classmethod
    def _over_the_defaults(cls, credentials: dict[str, str]) -> dict[str, str]:
        """Each workload named overrides its own default; `{api: none}` leaves backup's key."""
        return {**_default_credentials(), **credentials}

    def problems(self) -> Iterator[Problem]:
        for role in self.project_iam:
            if role not in PROJECT_ROLES:
                yield (
                    f"project_iam.{role}",
                    f"only {', '.join(PROJECT_ROLES)} may be granted on the project; every other role is granted "
                    "by stagecraft on the one resource that needs it",
                )
        for workload, credentials in self.credentials.items():
            if credentials == "key-file" and workload not in KEY_FILE_WORKLOADS:
                yield (
                    f"credentials.{workload}",
                    f"key-file is only for {', '.join(KEY_FILE_WORKLOADS)}, whose containers read a key; "
                    f"no {workload} container would ever use one (use none)",
                )
        for workload in self.key_generations:
            if self.credentials.get(workload, "none") != "key-file":
                yield (f"key_generations.{workload}", "applies only to a workload whose credentials are key-file")
