"""The nginx reverse proxy: TLS, security headers, rate limiting, routes, CORS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import pulumi_tls as tls

from components.cloud.secrets import read_secret
from components.config import AcmeTls, Domains, ProvidedTls, Proxy, SecretManagerTls, SelfSignedTls, Service
from components.containers.container import (
    Attachment,
    config_path,
    secret_path,
    tmpfs_options,
)
from components.containers.healthchecks import wget_check
from components.containers.images import image_user
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
# Never served through the proxy, on any domain, in any letter case; Grafana's admin API too.
BLOCKED_PATHS = ("metrics", "admin", "debug", "internal")
GRAFANA_BLOCKED_PATHS = (*BLOCKED_PATHS, "api/admin")
STATUS_PORT = 8082  # stub_status for the metrics exporter, never published
# acme mode: certbot's directories (shared volumes) and the certificate the proxy serves.
ACME_CONFIG_DIR = "/etc/letsencrypt"
ACME_WEBROOT = "/var/www/acme"
ACME_CERT_NAME = "stagecraft"
CURRENT_TLS_DIR = "/tmp/tls"
PREFLIGHT_PORT = 8083  # 127.0.0.1 only, inside the proxy


def blocked_pattern(paths: Sequence[str]) -> str:
    """A case-insensitive location regex for a path and everything under it."""
    return f"^/({'|'.join(paths)})(/|$)"


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
    # The HTTPS port clients use on the Docker host (redirects keep it unless it is 443).
    public_https_port: int = 443
    grafana_allow: Sequence[str] = ()
    # Networks allowed to read the connection counters (the exporter's).
    status_allow: Sequence[str] = ()
    # Where certbot puts HTTP-01 challenge files (acme mode), served on plain HTTP.
    acme_webroot: str | None = None
    temp_dir: str = "/tmp"
    pid_file: str = "/tmp/nginx.pid"
    http_port: int = HTTP_PORT
    https_port: int = HTTPS_PORT
    health_port: int = HEALTH_PORT
    status_port: int = STATUS_PORT
    preflight_port: int = PREFLIGHT_PORT
    mime_types: str = "/etc/nginx/mime.types"
    # Only for a master started as root (tests): the user its workers run as.
    user: str | None = None
    # The container network's DNS (Docker's embedded server) and how long an answer is kept.
    resolver: str = "127.0.0.11"
    resolver_valid_s: int = 2


def render_nginx_conf(settings: NginxSettings) -> str:
    """nginx.conf for the proxy: HTTP->HTTPS redirects for the configured names only (keeping a
    non-443 port), TLS 1.2+, security headers on every response (4xx included), per-IP rate
    limiting of every request (CORS preflights too), one server per domain, CORS only for the
    listed origins, X-Forwarded-For set to the client's address, Grafana's admin API blocked and
    Grafana limited to the allowed networks; backends resolved when requests arrive, so a new
    release takes over without a restart or reload of the proxy."""
    return render(
        "nginx.conf.j2",
        s=settings,
        ciphers=CIPHERS,
        security_headers=SECURITY_HEADERS,
        blocked_pattern=blocked_pattern(BLOCKED_PATHS),
        grafana_blocked_pattern=blocked_pattern(GRAFANA_BLOCKED_PATHS),
        https_port_suffix="" if settings.public_https_port == 443 else f":{settings.public_https_port}",
    )


def render_supervisor(
    nginx_conf: str,
    live_dir: str,
    bootstrap_certificate: str,
    bootstrap_key: str,
    current_dir: str = "/tmp/tls",
    check_every_s: int = 60,
    nginx: str = "nginx",
) -> str:
    """The proxy's entrypoint in acme mode: serve with Let's Encrypt's certificate once certbot
    has one (the bootstrap certificate until then), and reload nginx whenever it changes."""
    return render(
        "proxy-supervisor.sh.j2",
        nginx=nginx,
        nginx_conf=nginx_conf,
        live_dir=live_dir,
        bootstrap_certificate=bootstrap_certificate,
        bootstrap_key=bootstrap_key,
        current_dir=current_dir,
        check_every_s=check_every_s,
    )


def render_certbot_loop(
    domains: Sequence[str],
    email: str,
    staging_ca: bool,
    renew_every_hours: int,
    config_dir: str = ACME_CONFIG_DIR,
    webroot: str = ACME_WEBROOT,
    work_dir: str = "/tmp/certbot",
    heartbeat: str = "/tmp/certbot-alive",
    retry_every: str = "5m",
    sleep_unit: str = "h",
) -> str:
    """certbot's entrypoint: when the container starts, ask for the certificate with these names
    (HTTP-01 through the proxy's webroot): obtained, its names updated, or kept until it is due,
    and replaced at once when it came from the staging CA and the stack no longer asks for that
    CA; then try a renewal every few hours. A failure is retried at the next round, never fatal."""
    return render(
        "certbot.sh.j2",
        domains=list(domains),
        email=email,
        staging_ca=staging_ca,
        renew_every=f"{renew_every_hours}{sleep_unit}",
        retry_every=retry_every,
        config_dir=config_dir,
        webroot=webroot,
        work_dir=work_dir,
        heartbeat=heartbeat,
        cert_name=ACME_CERT_NAME,
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
    gcp_project: str
    # Networks allowed to read the connection counters.
    status_allow: Sequence[str] = ()
    protect: bool = False
    depends_on: Sequence[pulumi.Resource] = ()


class ReverseProxy(ServiceComponent):
    """Creates the TLS material and the nginx container: the only container that publishes
    ports in prod. The certificate comes from pulumi-tls (a CA and a certificate for the stack's
    domains), from two Secret Manager secrets of the stack's own project, from Let's Encrypt (a
    certbot container, a shared webroot, and a reload when the certificate changes), or from
    config secrets."""

    ca_certificate: pulumi.Output[str] | None = None

    def __init__(self, name: str, args: ProxyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:proxy:ReverseProxy", name, args.naming, opts)
        mode = args.proxy.tls
        certificate, key = self._certificate(name, args)
        acme = isinstance(mode, AcmeTls)
        nginx_conf = config_path("nginx.conf")
        conf = render_nginx_conf(
            NginxSettings(
                domains=args.domains,
                upstreams=args.upstreams,
                cors_origins=args.cors_origins,
                rate_limit_per_minute=args.proxy.rate_limit_per_minute,
                rate_limit_burst=args.proxy.rate_limit_burst,
                client_max_body_mb=args.proxy.client_max_body_mb,
                certificate_file=f"{CURRENT_TLS_DIR}/fullchain.pem" if acme else secret_path("tls.crt"),
                key_file=f"{CURRENT_TLS_DIR}/privkey.pem" if acme else secret_path("tls.key"),
                public_https_port=args.proxy.https_port,
                grafana_allow=args.proxy.grafana_allow,
                status_allow=args.status_allow,
                acme_webroot=ACME_WEBROOT if acme else None,
            )
        )
        config_files = {"nginx.conf": conf}
        volumes: dict[str, pulumi.Input[str]] = {}
        # certbot runs as the proxy's own user, so the proxy can read the key it writes.
        self._owner = image_user(args.settings.image).user
        if acme:
            self._acme_volumes(args.protect)
            config_files["supervisor.sh"] = render_supervisor(
                nginx_conf, f"{ACME_CONFIG_DIR}/live/{ACME_CERT_NAME}", secret_path("tls.crt"), secret_path("tls.key")
            )
            volumes = {ACME_CONFIG_DIR: self.acme_config.name, ACME_WEBROOT: self.acme_webroot.name}
        bind = args.proxy.bind_address
        self.server = self.container(
            "server",
            "proxy",
            args.settings,
            networks=[Attachment(args.edge_network), Attachment(args.app_network)],
            # Skip the image's entrypoint scripts: they rewrite /etc/nginx, which is read-only.
            entrypoint=["/bin/sh", config_path("supervisor.sh")] if acme else ["nginx"],
            command=None if acme else ["-c", nginx_conf, "-g", "daemon off;"],
            secret_files={"tls.crt": certificate, "tls.key": key},
            config_files=config_files,
            executable_files=frozenset({"supervisor.sh"}),
            volumes=volumes,
            read_only_volumes=frozenset(volumes),
            tmp_mb=64,
            tmpfs={"/var/cache/nginx": tmpfs_options(64)},
            health_test=wget_check(HEALTH_PORT, "/healthz"),
            ports=[
                docker.ContainerPortArgs(internal=HTTP_PORT, external=args.proxy.http_port, ip=bind),
                docker.ContainerPortArgs(internal=HTTPS_PORT, external=args.proxy.https_port, ip=bind),
            ],
            depends_on=args.depends_on,
        )
        if isinstance(mode, AcmeTls):
            self._certbot(mode, args)
        self.register_outputs({"name": self.server.name})

    def _certificate(self, name: str, args: ProxyArgs) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """The certificate chain and key the proxy serves (in acme mode, until certbot has one)."""
        mode = args.proxy.tls
        if isinstance(mode, ProvidedTls):
            return mode.certificate.output(), mode.private_key.output()
        if isinstance(mode, SecretManagerTls):
            return (
                read_secret(mode.certificate_secret, args.gcp_project, mode.version),
                read_secret(mode.private_key_secret, args.gcp_project, mode.version),
            )
        return self._self_signed(name, args, mode.validity_days if isinstance(mode, SelfSignedTls) else 90)

    def _self_signed(
        self, name: str, args: ProxyArgs, validity_days: int
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        hours = validity_days * 24
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

    def _acme_volumes(self, protect: bool) -> None:
        """Where certbot keeps its account and certificates, and the challenge webroot; both are
        written by certbot and read by the proxy."""
        self.acme_config = self.volume("acme", "proxy", "acme", protect)
        self.acme_webroot = self.volume("acme-webroot", "proxy", "acme-webroot", protect)

    def _certbot(self, mode: AcmeTls, args: ProxyArgs) -> None:
        domains = [args.domains.web, args.domains.api, args.domains.grafana]
        owner = self.volume_owner(
            "certbot", mode.certbot, self._owner, {ACME_CONFIG_DIR: self.acme_config, ACME_WEBROOT: self.acme_webroot}
        )
        volumes = {ACME_CONFIG_DIR: self.acme_config.name, ACME_WEBROOT: self.acme_webroot.name}
        self.certbot = self.container(
            "certbot",
            "certbot",
            mode.certbot,
            # The edge network only: it talks to Let's Encrypt, never to the application.
            networks=[Attachment(args.edge_network)],
            entrypoint=["/bin/sh", config_path("certbot.sh")],
            user=self._owner,
            config_files={
                "certbot.sh": render_certbot_loop(domains, mode.email, mode.staging_ca, mode.renew_every_hours)
            },
            executable_files=frozenset({"certbot.sh"}),
            volumes=volumes,
            health_test=["CMD-SHELL", f"find /tmp/certbot-alive -mmin -{mode.renew_every_hours * 60 + 30} | grep -q ."],
            after=[owner],
            # HTTP-01 needs the proxy serving the webroot on port 80 first.
            depends_on=[self.server.container],
        )
