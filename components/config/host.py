"""The Docker host side of a stack: the host, its networks, the proxy's ports and TLS, and the
staging-only debug ports."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from components.config.base import ConfigSecret, Model, Port, Problem

PrivateSubnet = Annotated[str, Field(pattern=r"^(10|172|192)\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}/(1[6-9]|2[0-8])$")]


class Docker(Model):
    """The ``docker:`` provider keys stagecraft reads."""

    host: Annotated[str, Field(pattern=r"^(unix|ssh|tcp)://\S+$")]


class Network(Model):
    """Docker network subnets (edge, app, data, monitoring); they must not overlap each other or
    the other stack's."""

    edge: PrivateSubnet
    app: PrivateSubnet
    data: PrivateSubnet
    monitoring: PrivateSubnet

    def problems(self) -> Iterator[Problem]:
        subnets: dict[str, ipaddress.IPv4Network] = {}
        for name, text in self.model_dump().items():
            try:
                subnets[name] = ipaddress.IPv4Network(text, strict=True)
            except ValueError as error:
                yield (name, f"must be a network address in CIDR form ({error})")
                continue
            if not subnets[name].is_private:
                yield (name, f"must be a private range (got {text!r})")
        names = list(subnets)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                if subnets[first].overlaps(subnets[second]):
                    yield (second, f"overlaps stagecraft:network.{first}")


class SelfSignedTls(Model):
    """A pulumi-tls CA and certificate for the stack's domains (staging's default)."""

    mode: Literal["self-signed"]
    validity_days: Annotated[int, Field(ge=1, le=825)] = 90


class ProvidedTls(Model):
    """A certificate and key the operator supplies as config secrets (prod)."""

    mode: Literal["provided"]
    certificate: ConfigSecret
    private_key: ConfigSecret


TLS_MODES = ("self-signed", "provided")


class Proxy(Model):
    """The nginx reverse proxy: the only container that publishes ports in prod."""

    bind_address: Annotated[str, Field(pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")] = "0.0.0.0"
    http_port: Port
    https_port: Port
    rate_limit_per_minute: Annotated[int, Field(ge=1, le=100000)] = 100
    rate_limit_burst: Annotated[int, Field(ge=0, le=10000)] = 20
    client_max_body_mb: Annotated[int, Field(ge=1, le=1024)] = 25
    tls: Annotated[SelfSignedTls | ProvidedTls, Field(discriminator="mode")]


class DebugPorts(Model):
    """Staging only: host ports on 127.0.0.1 for debugging (API, web, Grafana, Temporal UI)."""

    api: Port | None = None
    web: Port | None = None
    grafana: Port | None = None
    temporal_ui: Port | None = None
