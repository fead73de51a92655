"""nginx: the rendered config accepted by `nginx -t`, then served by a real nginx on 127.0.0.1."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import http.server
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import free_port, require_tool, self_signed_certificate, wait_for_port

from components.config import Domains, StackConfig
from components.services.proxy import SECURITY_HEADERS, NginxSettings, Upstreams, render_nginx_conf

DOMAINS = Domains(
    web="staging.acme.example.com", api="api-staging.acme.example.com", grafana="grafana-staging.acme.example.com"
)
ALLOWED_ORIGIN = "https://staging.acme.example.com"


class _Upstream(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []
    forwarded_for: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        _Upstream.seen.append(self.path)
        _Upstream.forwarded_for.append(self.headers.get("X-Forwarded-For"))
        body = b"upstream says hi"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def _certificate(directory: Path) -> tuple[Path, Path]:
    require_tool("openssl")
    return self_signed_certificate(directory, (DOMAINS.web, DOMAINS.api, DOMAINS.grafana))


def _settings(
    directory: Path, upstream: int, ports: tuple[int, int, int], rate: int = 100, burst: int = 5
) -> NginxSettings:
    cert, key = _certificate(directory)
    return NginxSettings(
        domains=DOMAINS,
        upstreams=Upstreams(api=f"127.0.0.1:{upstream}", web=f"127.0.0.1:{upstream}", grafana=f"127.0.0.1:{upstream}"),
        cors_origins=[ALLOWED_ORIGIN],
        rate_limit_per_minute=rate,
        rate_limit_burst=burst,
        client_max_body_mb=1,
        certificate_file=str(cert),
        key_file=str(key),
        temp_dir=str(directory),
        pid_file=str(directory / "nginx.pid"),
        http_port=ports[0],
        https_port=ports[1],
        health_port=ports[2],
    )


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_nginx_accepts_the_rendered_config(stack: str, configs: dict[str, StackConfig], workdir: Path) -> None:
    nginx = require_tool("nginx")
    sc = configs[stack].stagecraft
    base = _settings(workdir, 9, (free_port(), free_port(), free_port()))
    settings = NginxSettings(
        **{
            **base.__dict__,
            "domains": sc.domains,
            "cors_origins": sc.app.cors_origins,
            "rate_limit_per_minute": sc.proxy.rate_limit_per_minute,
            "rate_limit_burst": sc.proxy.rate_limit_burst,
        }
    )
    conf = workdir / "nginx.conf"
    conf.write_text(render_nginx_conf(settings))
    result = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@dataclass
class Proxy:
    http_port: int
    https_port: int
    health_port: int

    def https(
        self, host: str, path: str = "/", headers: dict[str, str] | None = None, method: str = "GET"
    ) -> http.client.HTTPResponse:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        connection = http.client.HTTPSConnection("127.0.0.1", self.https_port, timeout=10, context=context)
        raw = socket.create_connection(("127.0.0.1", self.https_port), timeout=10)
        connection.sock = context.wrap_socket(raw, server_hostname=host)
        connection.request(method, path, headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        response.read()
        connection.close()
        return response

    def http(self, port: int, host: str, path: str = "/") -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        response.read()
        connection.close()
        return response


@contextlib.contextmanager
def running_proxy(workdir: Path, **overrides: object) -> Iterator[Proxy]:
    """A real nginx on the rendered config (rate 60/min, burst 5, HTTPS on a free port that is
    not 443), in front of a local upstream; stopped when the block ends."""
    nginx = require_tool("nginx")
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    ports = (free_port(), free_port(), free_port())
    settings = _settings(workdir, upstream.server_address[1], ports, rate=60, burst=5)
    settings = dataclasses.replace(settings, **{"public_https_port": ports[1], **overrides})  # type: ignore[arg-type]
    conf = workdir / "nginx.conf"
    conf.write_text(render_nginx_conf(settings))
    process = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for port in ports:
            wait_for_port(port)
        yield Proxy(*ports)
    finally:
        process.terminate()
        process.wait(timeout=10)
        upstream.shutdown()
        upstream.server_close()


@pytest.fixture
def proxy(workdir: Path) -> Iterator[Proxy]:
    with running_proxy(workdir) as running:
        yield running


def test_security_headers_on_every_site(proxy: Proxy) -> None:
    for host in (DOMAINS.web, DOMAINS.api, DOMAINS.grafana):
        response = proxy.https(host)
        assert response.status == 200
        for name, value in SECURITY_HEADERS.items():
            assert response.getheader(name) == value, (host, name)
        assert "frame-ancestors 'none'" in response.getheader("Content-Security-Policy")
        assert response.getheader("Server") == "nginx"  # no version


def test_http_redirects_to_https_on_the_stacks_own_port(proxy: Proxy) -> None:
    """Staging serves HTTPS on 8443 on a host where prod owns 443: a redirect without the port
    would send staging's users to prod."""
    response = proxy.http(proxy.http_port, DOMAINS.web, "/login?next=/x")
    assert response.status == 301
    assert response.getheader("Location") == f"https://{DOMAINS.web}:{proxy.https_port}/login?next=/x"


def test_on_443_the_redirect_names_no_port(workdir: Path) -> None:
    with running_proxy(workdir, public_https_port=443) as proxy:
        response = proxy.http(proxy.http_port, DOMAINS.api, "/v1")
    assert response.getheader("Location") == f"https://{DOMAINS.api}/v1"


def test_an_unknown_host_is_never_redirected(proxy: Proxy) -> None:
    """Redirecting whatever Host a client sends would make the proxy an open redirect."""
    response = proxy.http(proxy.http_port, "evil.example.com", "/")
    assert response.status == 421
    assert response.getheader("Location") is None


def test_health_listener_is_not_redirected(proxy: Proxy) -> None:
    response = proxy.http(proxy.health_port, "anything", "/healthz")
    assert response.status == 200


def test_metrics_and_admin_are_not_exposed_whatever_the_case(proxy: Proxy) -> None:
    _Upstream.seen.clear()
    for path in ("/metrics", "/admin/users", "/debug/vars", "/METRICS", "/Admin/users", "/internal/x", "/InTeRnAl"):
        assert proxy.https(DOMAINS.api, path).status == 404, path
    assert _Upstream.seen == []


def test_grafana_admin_api_is_blocked(proxy: Proxy) -> None:
    _Upstream.seen.clear()
    for path in ("/api/admin/users", "/API/Admin/settings"):
        assert proxy.https(DOMAINS.grafana, path).status == 404, path
    assert _Upstream.seen == []
    assert proxy.https(DOMAINS.grafana, "/api/health").status == 200


def test_grafana_answers_only_the_allowed_networks(workdir: Path) -> None:
    with running_proxy(workdir, grafana_allow=("10.0.0.0/8",)) as proxy:
        refused = proxy.https(DOMAINS.grafana, "/")
        web = proxy.https(DOMAINS.web, "/")
    assert refused.status == 403  # the test client is 127.0.0.1
    assert refused.getheader("Strict-Transport-Security") == SECURITY_HEADERS["Strict-Transport-Security"]
    assert web.status == 200


def test_the_client_cannot_choose_its_forwarded_address(proxy: Proxy) -> None:
    _Upstream.forwarded_for.clear()
    proxy.https(DOMAINS.api, "/v1/items", {"X-Forwarded-For": "203.0.113.9"})
    assert _Upstream.forwarded_for == ["127.0.0.1"]


def test_security_headers_on_errors_too(proxy: Proxy) -> None:
    """Scanners check the 4xx pages as well: a blocked path, an unknown host, a rate limit."""
    responses = [proxy.https(DOMAINS.api, "/metrics"), proxy.https("unknown.example.com")]
    responses += [proxy.https(DOMAINS.web, f"/burst/{i}") for i in range(12)]
    statuses = {response.status for response in responses}
    assert {404, 421, 429} <= statuses
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.getheader(name) == value, (response.status, name)


def test_cors_only_for_listed_origins(proxy: Proxy) -> None:
    allowed = proxy.https(DOMAINS.api, "/v1/items", {"Origin": ALLOWED_ORIGIN})
    assert allowed.getheader("Access-Control-Allow-Origin") == ALLOWED_ORIGIN
    other = proxy.https(DOMAINS.api, "/v1/items", {"Origin": "https://evil.example.com"})
    assert other.getheader("Access-Control-Allow-Origin") is None
    preflight = proxy.https(DOMAINS.api, "/v1/items", {"Origin": ALLOWED_ORIGIN}, method="OPTIONS")
    assert preflight.status == 204


def test_unknown_hosts_are_refused(proxy: Proxy) -> None:
    assert proxy.https("unknown.example.com").status == 421


def test_rate_limit_answers_429(proxy: Proxy) -> None:
    statuses = [proxy.https(DOMAINS.web, f"/page/{i}").status for i in range(20)]
    assert statuses[0] == 200
    assert 429 in statuses
    # burst 5, nodelay: the first request plus the burst pass, the rest are limited.
    assert statuses.count(200) <= 7


def test_cors_preflights_count_against_the_limit(proxy: Proxy) -> None:
    headers = {"Origin": ALLOWED_ORIGIN}
    statuses = [proxy.https(DOMAINS.api, "/v1/items", headers, method="OPTIONS").status for _ in range(20)]
    assert statuses[0] == 204
    assert 429 in statuses
