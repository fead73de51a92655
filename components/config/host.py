"""The Docker host side of a stack: the host, its networks, the proxy's ports and TLS, and the
staging-only debug ports."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field

from components.config.base import RESOURCE_ID, ConfigSecret, Model, Port, Problem
from components.config.services import Service

PrivateSubnet = Annotated[str, Field(pattern=r"^(10|172|192)\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}/(1[6-9]|2[0-8])$")]


DEFAULT_PORTS = {"ssh": 22, "tcp": 2375}


def normalized_docker_host(host: str) -> str:
    """One spelling per Docker daemon: lowercase scheme and host name, the default port made
    explicit, no user (``ssh://deploy@Apps-01`` and ``ssh://apps-01:22`` are the same daemon)."""
    parts = urlsplit(host)
    scheme = parts.scheme.lower()
    if scheme == "unix":
        return f"unix://{parts.path or parts.netloc}"
    hostname = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    return f"{scheme}://{hostname}:{port}"


class Docker(Model):
    """The ``docker:`` provider keys stagecraft reads."""

    host: Annotated[str, Field(pattern=r"^(unix|ssh|tcp)://\S+$")]

    def problems(self) -> Iterator[Problem]:
        try:
            urlsplit(self.host).port  # noqa: B018 - raises on a malformed port
        except ValueError as error:
            yield ("host", f"is not a valid address ({error})")


class Network(Model):
    """Docker network subnets; they must not overlap each other or the other stack's.

    edge: the proxy's published side. app: the proxy and what it serves. data: the databases.
    chroma, temporal: each unauthenticated service with its own clients only. monitoring:
    Prometheus and what it scrapes. egress: jobs that reach Google Cloud and nothing else.
    alerting: Alertmanager alone, to reach the SMTP relay and the webhook."""

    edge: PrivateSubnet
    app: PrivateSubnet
    data: PrivateSubnet
    chroma: PrivateSubnet
    temporal: PrivateSubnet
    monitoring: PrivateSubnet
    egress: PrivateSubnet
    alerting: PrivateSubnet

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


class SecretManagerTls(Model):
    """A certificate chain and key read at deploy time from two Secret Manager secrets in the
    stack's own project (the stack file names them; it holds no secret)."""

    mode: Literal["secret-manager"]
    certificate_secret: Annotated[str, Field(pattern=RESOURCE_ID)]
    private_key_secret: Annotated[str, Field(pattern=RESOURCE_ID)]
    version: Annotated[str, Field(pattern=r"^(latest|[1-9][0-9]*)$")] = "latest"


class AcmeTls(Model):
    """Let's Encrypt through the HTTP-01 challenge: a certbot container obtains and renews the
    certificate into a volume the proxy reads, and the proxy reloads when it changes."""

    mode: Literal["acme"]
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,63}$", max_length=254)]
    # Let's Encrypt's staging CA: untrusted certificates, generous rate limits (for trying it out).
    staging_ca: bool = False
    renew_every_hours: Annotated[int, Field(ge=1, le=24)] = 12
    certbot: Service


class ProvidedTls(Model):
    """A certificate and key the operator supplies as config secrets, for hosts whose
    certificate comes from elsewhere; the stack file then holds `secure:` values, so the stack
    needs a secrets provider (see the README)."""

    mode: Literal["provided"]
    certificate: ConfigSecret
    private_key: ConfigSecret


TLS_MODES = ("self-signed", "secret-manager", "acme", "provided")
Cidr = Annotated[str, Field(pattern=r"^[0-9a-f:.]+/[0-9]{1,3}$")]


class Proxy(Model):
    """The nginx reverse proxy: the only container that publishes ports in prod."""

    bind_address: Annotated[str, Field(pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")] = "0.0.0.0"
    http_port: Port
    https_port: Port
    rate_limit_per_minute: Annotated[int, Field(ge=1, le=100000)] = 100
    rate_limit_burst: Annotated[int, Field(ge=0, le=10000)] = 20
    client_max_body_mb: Annotated[int, Field(ge=1, le=1024)] = 25
    tls: Annotated[SelfSignedTls | SecretManagerTls | AcmeTls | ProvidedTls, Field(discriminator="mode")]
    # Who may reach Grafana through the proxy (client addresses); empty: everyone. Prod must set it.
    grafana_allow: list[Cidr] = Field(default_factory=list)

    def problems(self) -> Iterator[Problem]:
        if self.http_port == self.https_port:
            yield ("https_port", f"must differ from http_port ({self.http_port})")
        if isinstance(self.tls, AcmeTls) and self.http_port != 80:
            yield ("tls.mode", "acme needs http_port 80: Let's Encrypt checks the HTTP-01 challenge on port 80")
        for index, cidr in enumerate(self.grafana_allow):
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as error:
                yield (f"grafana_allow.{index}", f"must be a network in CIDR form ({error})")


class DebugPorts(Model):
    """Staging only: host ports on 127.0.0.1 for debugging (API, web, Grafana, Temporal UI)."""

    api: Port | None = None
    web: Port | None = None
    grafana: Port | None = None
    temporal_ui: Port | None = None
