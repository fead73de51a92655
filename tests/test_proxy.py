"""nginx: the rendered config accepted by `nginx -t`, then served by a real nginx on 127.0.0.1."""

from __future__ import annotations

import http.client
import http.server
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import free_port, require_tool, wait_for_port

from components.config import Domains, StackConfig
from components.services.proxy import SECURITY_HEADERS, NginxSettings, Upstreams, render_nginx_conf

DOMAINS = Domains(
    web="staging.acme.example.com", api="api-staging.acme.example.com", grafana="grafana-staging.acme.example.com"
)
ALLOWED_ORIGIN = "https://staging.acme.example.com"


class _Upstream(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Upstream.seen.append(self.path)
        body = b"upstream says hi"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def _certificate(directory: Path) -> tuple[Path, Path]:
    require_tool("openssl")
    cert, key = directory / "tls.crt", directory / "tls.key"
    names = ",".join(f"DNS:{d}" for d in (DOMAINS.web, DOMAINS.api, DOMAINS.grafana))
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=stagecraft-test",
            "-addext",
            f"subjectAltName={names}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


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


@pytest.fixture
def workdir() -> Iterator[Path]:
    # nginx workers run unprivileged: keep their files out of pytest's 0700 temp tree.
    directory = Path(tempfile.mkdtemp(prefix="stagecraft-nginx-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


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


@pytest.fixture
def proxy(workdir: Path) -> Iterator[Proxy]:
    nginx = require_tool("nginx")
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    ports = (free_port(), free_port(), free_port())
    conf = workdir / "nginx.conf"
    conf.write_text(render_nginx_conf(_settings(workdir, upstream.server_address[1], ports, rate=60, burst=5)))
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


def test_security_headers_on_every_site(proxy: Proxy) -> None:
    for host in (DOMAINS.web, DOMAINS.api, DOMAINS.grafana):
        response = proxy.https(host)
        assert response.status == 200
        for name, value in SECURITY_HEADERS.items():
            assert response.getheader(name) == value, (host, name)
        assert "frame-ancestors 'none'" in response.getheader("Content-Security-Policy")
        assert response.getheader("Server") == "nginx"  # no version


def test_http_redirects_to_https(proxy: Proxy) -> None:
    response = proxy.http(proxy.http_port, DOMAINS.web, "/login?next=/x")
    assert response.status == 301
    assert response.getheader("Location") == f"https://{DOMAINS.web}/login?next=/x"


def test_health_listener_is_not_redirected(proxy: Proxy) -> None:
    response = proxy.http(proxy.health_port, "anything", "/healthz")
    assert response.status == 200


def test_metrics_and_admin_are_not_exposed(proxy: Proxy) -> None:
    _Upstream.seen.clear()
    for path in ("/metrics", "/admin/users", "/debug/vars"):
        assert proxy.https(DOMAINS.api, path).status == 404
    assert _Upstream.seen == []


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
