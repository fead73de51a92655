"""Day-2 operations: when backups run, how long metrics are kept, when alerts fire."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from components.config.base import HOURS_MINUTES, RESOURCE_ID, Model, Problem
from components.config.services import Healthcheck

WEEKLY_SLOT = r"^(daily|mon|tue|wed|thu|fri|sat|sun) ([01][0-9]|2[0-3]):[0-5][0-9]$"


class Backup(Model):
    """When backups and restore drills run (UTC): backups daily at 02:00, a drill restoring the
    latest Postgres backup weekly on Sunday at 03:00; a run may start up to `grace_minutes` late
    (after a restart), and an alert fires when the last good one is older than its schedule plus
    the grace."""

    schedule_utc: Annotated[str, Field(pattern=HOURS_MINUTES)] = "02:00"
    drill_schedule: Annotated[str, Field(pattern=WEEKLY_SLOT)] = "sun 03:00"
    grace_minutes: Annotated[int, Field(ge=1, le=720)] = 60


class OpsService(Model):
    """The operations container (backups, restores, drills, seed jobs): its image is built by the
    program from images/ops on the stack's own Postgres image."""

    memory_mb: Annotated[int, Field(ge=128, le=65536)] = 512
    cpus: Annotated[float, Field(gt=0, le=32)] = 0.5
    pids_limit: Annotated[int, Field(ge=32, le=65536)] = 256
    healthcheck: Healthcheck = Healthcheck()
    # The Docker host's platform, for the build (the machine running Pulumi may differ).
    platform: Annotated[str, Field(pattern=r"^linux/(amd64|arm64)$")] = "linux/amd64"


class Seed(Model):
    """Staging data: fixtures generated from a spec file in the repository, or an anonymized dump
    from the stack's uploads bucket under `seed/`. Never in prod."""

    mode: Literal["generate", "load"]
    # generate: a JSON spec in the repository (see images/ops/stagecraft_ops/seed.py).
    spec: Annotated[str, Field(pattern=r"^[A-Za-z0-9_./-]+\.json$")] | None = None
    # load: the dump's object name in the uploads bucket.
    object: Annotated[str, Field(pattern=r"^seed/[A-Za-z0-9_./-]+$")] | None = None
    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None

    def problems(self) -> Iterator[Problem]:
        if self.mode == "generate" and self.spec is None:
            yield ("spec", "is required when mode is generate")
        if self.mode == "load" and self.object is None:
            yield ("object", "is required when mode is load")
        if self.spec is not None and (self.spec.startswith("/") or ".." in self.spec.split("/")):
            yield ("spec", f"must be a path inside the repository (got {self.spec!r})")


class AlertThresholds(Model):
    """When alerts fire; staging is usually looser than prod."""

    p95_latency_ms: Annotated[int, Field(ge=10, le=60000)] = 2000
    error_rate_percent: Annotated[float, Field(gt=0, le=100)] = 5.0
    cpu_percent: Annotated[int, Field(ge=1, le=100)] = 80
    memory_percent: Annotated[int, Field(ge=1, le=100)] = 90
    disk_percent: Annotated[int, Field(ge=1, le=100)] = 85
    down_minutes: Annotated[int, Field(ge=1, le=60)] = 3


class Monitoring(Model):
    """Prometheus and Grafana settings."""

    retention_days: Annotated[int, Field(ge=1, le=3650)] = 15
    scrape_interval_s: Annotated[int, Field(ge=5, le=300)] = 15
    alerts: AlertThresholds = AlertThresholds()


EMAIL = r"^[^@\s]+@[^@\s]+\.[a-z]{2,63}$"


class AlertEmail(Model):
    """Alerts by email through an SMTP relay (TLS required); the password is read at deploy time
    from a Secret Manager secret of the stack's own project."""

    smarthost: Annotated[str, Field(pattern=r"^[a-z0-9.-]+:[0-9]{1,5}$")]
    sender: Annotated[str, Field(pattern=EMAIL)]
    to: Annotated[list[Annotated[str, Field(pattern=EMAIL)]], Field(min_length=1)]
    username: Annotated[str, Field(min_length=1, max_length=254)]
    password_secret: Annotated[str, Field(pattern=RESOURCE_ID)]


class AlertWebhook(Model):
    """Alerts to a Slack-compatible webhook; its URL is a secret read at deploy time from Secret
    Manager in the stack's own project."""

    url_secret: Annotated[str, Field(pattern=RESOURCE_ID)]
    channel: Annotated[str, Field(pattern=r"^[#@]?[A-Za-z0-9_.-]{1,80}$")] | None = None


class Alerting(Model):
    """Where firing alerts go: email, a webhook, or both (critical alerts to both, warnings by
    email or else the webhook)."""

    email: AlertEmail | None = None
    webhook: AlertWebhook | None = None

    def problems(self) -> Iterator[Problem]:
        if self.email is None and self.webhook is None:
            yield ("", "needs at least one channel: email or webhook")
