"""Day-2 operations: when backups run, how long metrics are kept, when alerts fire."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from components.config.base import HOURS_MINUTES, Model


class Backup(Model):
    """When database backups run: daily at 02:00 UTC unless set."""

    schedule_utc: Annotated[str, Field(pattern=HOURS_MINUTES)] = "02:00"


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
