"""Every container of the application stack: its pinned image, its limits, its healthcheck."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated

from pydantic import Field

from components.config.base import IMAGE_REF, Model, Problem

# A version tag names at least major.minor (`15.12-bookworm`, `v3.2.1`); a digest is sha256.
_VERSION_TAG = re.compile(r"^v?[0-9]+\.[0-9]+[A-Za-z0-9_.-]*$")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def image_is_pinned(image: str) -> bool:
    """A reference pinned to a full version (major.minor at least, not `latest` or `7`) or to a
    sha256 digest."""
    if _DIGEST.search(image):
        return bool(image.split("@", 1)[0])
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return False
    return _VERSION_TAG.match(tag) is not None


class Healthcheck(Model):
    """Docker healthcheck timing: every 30 s once running, 10 s to answer, 3 failures; during the
    first 60 s (the start period) a check every 2 s, so a deploy waits only until the service is
    really up. The start interval needs Docker Engine 25 or later; set it to null on older
    engines (the first check then comes after a whole interval)."""

    interval_s: Annotated[int, Field(ge=5, le=300)] = 30
    timeout_s: Annotated[int, Field(ge=1, le=120)] = 10
    retries: Annotated[int, Field(ge=1, le=10)] = 3
    start_period_s: Annotated[int, Field(ge=0, le=600)] = 60
    start_interval_s: Annotated[int, Field(ge=1, le=60)] | None = 2

    def problems(self) -> Iterator[Problem]:
        if self.timeout_s >= self.interval_s:
            yield ("timeout_s", f"must be < interval_s ({self.interval_s}) (got {self.timeout_s})")
        if self.start_interval_s is not None and self.start_interval_s >= self.interval_s:
            yield ("start_interval_s", f"must be < interval_s ({self.interval_s}) (got {self.start_interval_s})")


class Service(Model):
    """One container: its pinned image and its limits (memory, CPUs, processes and threads)."""

    image: Annotated[str, Field(pattern=IMAGE_REF)]
    memory_mb: Annotated[int, Field(ge=32, le=65536)]
    cpus: Annotated[float, Field(gt=0, le=32)]
    pids_limit: Annotated[int, Field(ge=32, le=65536)] = 512
    healthcheck: Healthcheck = Healthcheck()

    def problems(self) -> Iterator[Problem]:
        if not image_is_pinned(self.image):
            yield (
                "image",
                "must be pinned to a full version tag (major.minor at least) or a sha256 digest, "
                f"e.g. `postgres:15.10` (got {self.image!r})",
            )


class PostgresService(Service):
    memory_mb: Annotated[int, Field(ge=256, le=65536)]
    # One process per connection: room for the most connections its memory allows (500), plus
    # Postgres's own workers.
    pids_limit: Annotated[int, Field(ge=600, le=65536)] = 1024


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
    # The non-root uid:gid the image runs as; the secret files it reads are owned by it.
    user: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,9}:[1-9][0-9]{0,9}$")] = "10001:10001"
    health_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9/._-]*$")] = "/health"
    # The healthcheck runs inside the image; name a tool it has. Default: curl on health_path.
    health_command: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | None = None


class ApiService(AppService):
    memory_mb: Annotated[int, Field(ge=128, le=65536)]
    metrics_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9/._-]*$")] = "/metrics"
    migrate_command: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = Field(
        default_factory=lambda: ["alembic", "upgrade", "head"]
    )


class Services(Model):
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
    nginx_exporter: Service
    alertmanager: Service
