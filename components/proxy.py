"""The nginx reverse proxy: TLS, security headers, rate limiting, routes, CORS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import pulumi_tls as tls

from components.config import Domains, ProvidedTls, Proxy, SelfSignedTls, Service
from components.container import (
    Attachment,
    ContainerArgs,
    HardenedContainer,
    config_path,
    secret_path,
    tmpfs_options,
    wget_check,
)
from components.naming import Naming

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


def _headers(indent: str) -> str:
    return "".join(f'{indent}add_header {name} "{value}" always;\n' for name, value in SECURITY_HEADERS.items())


def _blocked(indent: str) -> str:
    return "".join(f"{indent}location ^~ {path} {{ return 404; }}\n" for path in BLOCKED_PATHS)


def _proxy_location(upstream: str, burst: int, indent: str) -> str:
    inner = indent + "    "
    return (
        f"{indent}location / {{\n"
        f"{inner}limit_req zone=per_ip burst={burst} nodelay;\n"
        f"{inner}proxy_pass http://{upstream};\n"
        f"{inner}proxy_http_version 1.1;\n"
        f"{inner}proxy_set_header Host $host;\n"
        f"{inner}proxy_set_header X-Real-IP $remote_addr;\n"
        f"{inner}proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        f"{inner}proxy_set_header X-Forwarded-Proto https;\n"
        f'{inner}proxy_set_header Connection "";\n'
        f"{inner}proxy_hide_header X-Powered-By;\n"
        f"{indent}}}\n"
    )


def render_nginx_conf(s: NginxSettings) -> str:
    """nginx.conf for the proxy: HTTP->HTTPS redirect, TLS 1.2+, security headers on every
    response, per-IP rate limiting, one server per domain, CORS only for the listed origins."""
    tls_block = (
        f"        ssl_certificate {s.certificate_file};\n"
        f"        ssl_certificate_key {s.key_file};\n"
        "        ssl_protocols TLSv1.2 TLSv1.3;\n"
        f"        ssl_ciphers {CIPHERS};\n"
        "        ssl_prefer_server_ciphers off;\n"
        "        ssl_session_cache shared:TLS:10m;\n"
        "        ssl_session_timeout 10m;\n"
        "        ssl_session_tickets off;\n"
    )
    cors_map = "".join(f'        "{origin}" $http_origin;\n' for origin in s.cors_origins if origin != "*")
    if "*" in s.cors_origins:
        cors_map += '        "~." "*";\n'

    def server(domain: str, upstream: str, extra: str = "") -> str:
        return (
            "    server {\n"
            f"        listen {s.https_port} ssl;\n"
            f"        server_name {domain};\n"
            + tls_block
            + _headers("        ")
            + extra
            + _blocked("        ")
            + _proxy_location(upstream, s.rate_limit_burst, "        ")
            + "    }\n"
        )

    cors = (
        '        add_header Access-Control-Allow-Origin "$cors_origin" always;\n'
        '        add_header Access-Control-Allow-Credentials "true" always;\n'
        '        add_header Access-Control-Allow-Methods "GET, POST, PUT, PATCH, DELETE, OPTIONS" always;\n'
        '        add_header Access-Control-Allow-Headers "Authorization, Content-Type" always;\n'
        '        add_header Vary "Origin" always;\n'
        "        if ($request_method = OPTIONS) { return 204; }\n"
    )
    user = f"user {s.user};\n" if s.user else ""
    return (
        "# stagecraft: rendered, do not edit\n" + user + "worker_processes auto;\n"
        f"pid {s.pid_file};\n"
        "error_log stderr warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"    include {s.mime_types};\n"
        "    default_type application/octet-stream;\n"
        "    server_tokens off;\n"
        "    access_log /dev/stdout;\n"
        "    sendfile on;\n"
        "    keepalive_timeout 65;\n"
        f"    client_max_body_size {s.client_max_body_mb}m;\n"
        f"    client_body_temp_path {s.temp_dir}/client_body;\n"
        f"    proxy_temp_path {s.temp_dir}/proxy;\n"
        f"    fastcgi_temp_path {s.temp_dir}/fastcgi;\n"
        f"    uwsgi_temp_path {s.temp_dir}/uwsgi;\n"
        f"    scgi_temp_path {s.temp_dir}/scgi;\n"
        f"    limit_req_zone $binary_remote_addr zone=per_ip:10m rate={s.rate_limit_per_minute}r/m;\n"
        "    limit_req_status 429;\n"
        "    map $http_origin $cors_origin {\n"
        '        default "";\n' + cors_map + "    }\n"
        f"    upstream api {{ server {s.upstreams.api}; keepalive 16; }}\n"
        f"    upstream web {{ server {s.upstreams.web}; keepalive 16; }}\n"
        f"    upstream grafana {{ server {s.upstreams.grafana}; }}\n"
        "    # Health listener for Docker's healthcheck: untouched by the redirect and the limits.\n"
        "    server {\n"
        f"        listen {s.health_port};\n"
        "        access_log off;\n"
        '        location = /healthz { return 200 "ok\\n"; }\n'
        "        location / { return 404; }\n"
        "    }\n"
        "    server {\n"
        f"        listen {s.http_port} default_server;\n"
        "        server_name _;\n"
        '        add_header Strict-Transport-Security "' + SECURITY_HEADERS["Strict-Transport-Security"] + '" always;\n'
        "        location / { return 301 https://$host$request_uri; }\n"
        "    }\n"
        "    # Unknown host names get nothing.\n"
        "    server {\n"
        f"        listen {s.https_port} ssl default_server;\n"
        "        server_name _;\n" + tls_block + "        return 421;\n"
        "    }\n"
        + server(s.domains.web, "web")
        + server(s.domains.api, "api", cors)
        + server(s.domains.grafana, "grafana")
        + "}\n"
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


class ReverseProxy(pulumi.ComponentResource):
    """Creates the TLS material (a pulumi-tls CA and certificate for the stack's domains, or the
    certificate and key from config secrets) and the nginx container: the only container that
    publishes ports in prod."""

    def __init__(self, name: str, args: ProxyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:proxy:ReverseProxy", name, None, opts)
        certificate, key = self._tls(args)
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
        self.server = HardenedContainer(
            "proxy",
            ContainerArgs(
                naming=args.naming,
                service="proxy",
                settings=args.settings,
                networks=[Attachment(args.edge_network), Attachment(args.app_network)],
                # Skip the image's entrypoint scripts: they rewrite /etc/nginx, which is read-only.
                entrypoint=["nginx"],
                command=["-c", config_path("nginx.conf"), "-g", "daemon off;"],
                secret_files={"tls.crt": certificate, "tls.key": key},
                config_files={"nginx.conf": conf},
                # The master reads the key as root, then runs workers as an unprivileged user.
                cap_add=("CHOWN", "SETUID", "SETGID"),
                tmpfs={"/tmp": tmpfs_options(64), "/var/cache/nginx": tmpfs_options(64)},
                health_test=wget_check(HEALTH_PORT, "/healthz"),
                ports=[
                    docker.ContainerPortArgs(internal=HTTP_PORT, external=args.proxy.http_port, ip=bind),
                    docker.ContainerPortArgs(internal=HTTPS_PORT, external=args.proxy.https_port, ip=bind),
                ],
                depends_on=args.depends_on,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"name": self.server.name})

    def _tls(self, args: ProxyArgs) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        mode = args.proxy.tls
        if isinstance(mode, ProvidedTls):
            return mode.certificate.output(), mode.private_key.output()
        assert isinstance(mode, SelfSignedTls)
        child = pulumi.ResourceOptions(parent=self)
        hours = mode.validity_days * 24
        ca_key = tls.PrivateKey("ca", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca = tls.SelfSignedCert(
            "ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=args.naming.display_name("CA"), organization="stagecraft"
            ),
            validity_period_hours=hours,
            allowed_uses=["cert_signing", "crl_signing"],
            opts=child,
        )
        key = tls.PrivateKey("server", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        request = tls.CertRequest(
            "server",
            private_key_pem=key.private_key_pem,
            dns_names=[args.domains.web, args.domains.api, args.domains.grafana],
            subject=tls.CertRequestSubjectArgs(common_name=args.domains.web, organization="stagecraft"),
            opts=child,
        )
        cert = tls.LocallySignedCert(
            "server",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            validity_period_hours=hours,
            early_renewal_hours=min(hours // 3, 24 * 14),
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            opts=child,
        )
        self.ca_certificate = ca.cert_pem
        chain = pulumi.Output.all(cert.cert_pem, ca.cert_pem).apply(lambda pems: pems[0] + pems[1])
        return chain, pulumi.Output.secret(key.private_key_pem)
