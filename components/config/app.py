"""What the application sees: its public names and the settings that differ per environment."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from components.config.base import DnsName, Model, Problem


class Domains(Model):
    """Public DNS names served by the reverse proxy."""

    web: DnsName
    api: DnsName
    grafana: DnsName

    def problems(self) -> Iterator[Problem]:
        if len({self.web, self.api, self.grafana}) != 3:
            yield ("", "web, api and grafana must be three different names")


class AppSettings(Model):
    """Behaviour of the application containers that differs per environment."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    cors_origins: Annotated[list[Annotated[str, Field(pattern=r"^(\*|https?://[a-z0-9.:-]+)$")]], Field(min_length=1)]
    email_mode: Literal["shadow", "live"] = "shadow"
    debug_endpoints: bool = False
    feature_flags: dict[Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{1,63}$")], bool] = Field(default_factory=dict)
