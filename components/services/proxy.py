"""The nginx reverse proxy: TLS, security headers, rate limiting, routes, CORS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import pulumi_tls as tls

from components.config import Domains, ProvidedTls, Proxy, SelfSignedTls, Service
from components.containers.container import (
    Attachment,
    config_path,
    secret_path,
    tmpfs_options,
)
from components.containers.healthchecks import wget_check
from components.containers.service import ServiceComponent
from components.naming import Naming
from components.resources import child
from components.templates import render

HTTP_PORT = 8080  # inside the container; the host ports come from config
HTTPS_PORT = 8443
HEALTH_PORT = 8081  # plain HTTP, never redirected, never published
CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self' https:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
}
# Never served through the proxy, on any domain.
BLOCKED_PATHS = ("/metrics", "/admin", "/debug", "/internal")


@dataclass(frozen=True)
class Upstreams:
    """host:port of each backend (container names in Docker; 127.0.0.1 ports in tests)."""

    api: str
    web: str
    grafana: str


@dataclass(frozen=True)
class NginxSettings:
    """Everything the rendered nginx.conf depends on; plain values."""

    domains: Domains
    upstreams: Upstreams
    cors_origins: Sequence[str]
    rate_limit_per_minute: int
    rate_limit_burst: int
    client_max_body_mb: int
    certificate_file: str
    key_file: str
    temp_dir: str = "/tmp"
    pid_file: str = "/tmp/nginx.pid"
    http_port: int = HTTP_PORT
    https_port: int = HTTPS_PORT
    health_port: int = HEALTH_PORT
    mime_types: str = "/etc/nginx/mime.types"
    user: str | None = None


def render_nginx_conf(settings: NginxSettings) -> str:
    """nginx.conf for the proxy: HTTP->HTTPS redirect, TLS 1.2+, security headers on every
    response, per-IP rate limiting, one server per domain, CORS only for the listed origins."""
    return render(
        "nginx.conf.j2",
        s=settings,
        ciphers=CIPHERS,
        security_headers=SECURITY_HEADERS,
        blocked_paths=BLOCKED_PATHS,
    )


@dataclass(frozen=True)
class ProxyArgs:
    naming: Naming
    settings: Service
    proxy: Proxy
    domains: Domains
    cors_origins: Sequence[str]
    upstreams: Upstreams
    edge_network: docker.Network
    app_network: docker.Network
    depends_on: Sequence[pulumi.Resource] = ()


class ReverseProxy(ServiceComponent):
    """Creates the TLS material (a pulumi-tls CA and certificate for the stack's domains, or the
    certificate and key from config secrets) and the nginx container: the only container that
    publishes ports in prod."""

    ca_certificate: pulumi.Output[str] | None = None

    def __init__(self, name: str, args: ProxyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:proxy:ReverseProxy", name, args.naming, opts)
        certificate, key = self._tls(name, args)
        conf = render_nginx_conf(
            NginxSettings(
                domains=args.domains,
                upstreams=args.upstreams,
                cors_origins=args.cors_origins,
                rate_limit_per_minute=args.proxy.rate_limit_per_minute,
                rate_limit_burst=args.proxy.rate_limit_burst,
                client_max_body_mb=args.proxy.client_max_body_mb,
                certificate_file=secret_path("tls.crt"),
                key_file=secret_path("tls.key"),
            )
        )
        bind = args.proxy.bind_address
        self.server = self.container(
            "server",
            "proxy",
            args.settings,
            networks=[Attachment(args.edge_network), Attachment(args.app_network)],
            # Skip the image's entrypoint scripts: they rewrite /etc/nginx, which is read-only.
            entrypoint=["nginx"],
            command=["-c", config_path("nginx.conf"), "-g", "daemon off;"],
            secret_files={"tls.crt": certificate, "tls.key": key},
            config_files={"nginx.conf": conf},
            # The master reads the key as root, then runs workers as an unprivileged user.
            cap_add=("CHOWN", "SETUID", "SETGID"),
            tmp_mb=64,
            tmpfs={"/var/cache/nginx": tmpfs_options(64)},
            health_test=wget_check(HEALTH_PORT, "/healthz"),
            ports=[
                docker.ContainerPortArgs(internal=HTTP_PORT, external=args.proxy.http_port, ip=bind),
                docker.ContainerPortArgs(internal=HTTPS_PORT, external=args.proxy.https_port, ip=bind),
            ],
            depends_on=args.depends_on,
        )
        self.register_outputs({"name": self.server.name})

    def _tls(self, name: str, args: ProxyArgs) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        mode = args.proxy.tls
        if isinstance(mode, ProvidedTls):
            return mode.certificate.output(), mode.private_key.output()
        assert isinstance(mode, SelfSignedTls)
        hours = mode.validity_days * 24
        ca_key = tls.PrivateKey(f"{name}-ca", algorithm="ECDSA", ecdsa_curve="P256", opts=child(self, was="ca"))
        ca = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=args.naming.display_name("CA"), organization="stagecraft"
            ),
            validity_period_hours=hours,
            allowed_uses=["cert_signing", "crl_signing"],
            opts=child(self, was="ca"),
        )
        key = tls.PrivateKey(f"{name}-server", algorithm="ECDSA", ecdsa_curve="P256", opts=child(self, was="server"))
        request = tls.CertRequest(
            f"{name}-server",
            private_key_pem=key.private_key_pem,
            dns_names=[args.domains.web, args.domains.api, args.domains.grafana],
            subject=tls.CertRequestSubjectArgs(common_name=args.domains.web, organization="stagecraft"),
            opts=child(self, was="server"),
        )
        cert = tls.LocallySignedCert(
            f"{name}-server",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            validity_period_hours=hours,
            early_renewal_hours=min(hours // 3, 24 * 14),
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            opts=child(self, was="server"),
        )
        self.ca_certificate = ca.cert_pem
        chain = pulumi.Output.all(cert.cert_pem, ca.cert_pem).apply(lambda pems: pems[0] + pems[1])
        return chain, pulumi.Output.secret(key.private_key_pem)
