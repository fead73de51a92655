"""A release of the API through the real nginx, with the rendered config, in a private network
namespace (run by tests/test_zero_downtime.py under `unshare -n`; nothing here touches the host's
network).

The old API answers on 127.0.0.2, the new one on 127.0.0.3, both on the API's port; a DNS server
on 127.0.0.1 answers the API's stable name the way Docker's embedded DNS does through a release:
the old address, then both once the new version is healthy, then the new one alone once the old
container is removed (which stops it). A client sends requests through the proxy the whole time.
Prints one JSON line: every status seen, and which version answered.
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import ClassVar

from dnslib import QTYPE, RR, A
from dnslib.server import BaseResolver, DNSServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conftest import self_signed_certificate, wait_for_port  # noqa: E402

from components.config import Domains  # noqa: E402
from components.services.proxy import NginxSettings, Upstreams, render_nginx_conf  # noqa: E402

API_NAME = "acme-staging-api"
API_PORT = 8001
DOMAINS = Domains(
    web="staging.acme.example.com", api="api-staging.acme.example.com", grafana="grafana-staging.acme.example.com"
)
OLD, NEW = "127.0.0.2", "127.0.0.3"


class Answers(BaseResolver):
    """The container network's DNS: the API's stable name resolves to whichever versions run."""

    current: ClassVar[list[str]] = [OLD]

    def resolve(self, request, handler):  # type: ignore[no-untyped-def]  # dnslib's interface
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        if name == API_NAME and request.q.qtype == QTYPE.A:
            for address in list(Answers.current):
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=600))
        return reply


def version_server(address: str, version: str) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = version.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, API_PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def request(port: int) -> tuple[int, str]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    connection.sock = context.wrap_socket(raw, server_hostname=DOMAINS.api)
    connection.request("GET", "/v1/items", headers={"Host": DOMAINS.api})
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    return response.status, body


def main() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    directory = Path(tempfile.mkdtemp(prefix="stagecraft-release-"))
    directory.chmod(0o755)
    dns = DNSServer(Answers(), port=5353, address="127.0.0.1")
    dns.start_thread()
    old, new = version_server(OLD, "old"), version_server(NEW, "new")
    cert, key = self_signed_certificate(directory, [DOMAINS.api])
    http_port, https_port, health_port = 18080, 18443, 18081
    settings = NginxSettings(
        domains=DOMAINS,
        upstreams=Upstreams(
            api=f"{API_NAME}:{API_PORT}", web=f"{API_NAME}:{API_PORT}", grafana=f"{API_NAME}:{API_PORT}"
        ),
        cors_origins=["https://staging.acme.example.com"],
        # The loop's requests stay within the rate limit: this test is about releases.
        rate_limit_per_minute=100000,
        rate_limit_burst=10000,
        client_max_body_mb=1,
        certificate_file=str(cert),
        key_file=str(key),
        temp_dir=str(directory),
        pid_file=str(directory / "nginx.pid"),
        http_port=http_port,
        https_port=https_port,
        health_port=health_port,
        public_https_port=https_port,
        user="root",
        resolver="127.0.0.1:5353",
        resolver_valid_s=1,
    )
    conf = directory / "nginx.conf"
    conf.write_text(render_nginx_conf(settings))
    nginx = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(directory), "-e", str(directory / "error.log"), "-g", "daemon off;"]
    )
    statuses: list[int] = []
    versions: list[str] = []
    try:
        wait_for_port(https_port)
        phases = [
            ("old only", [OLD], 40),
            # The new version is healthy: both answer to the name until the old one goes.
            ("both", [OLD, NEW], 60),
        ]
        for _phase, answer, count in phases:
            Answers.current = answer
            for _ in range(count):
                status, body = request(https_port)
                statuses.append(status)
                versions.append(body)
                time.sleep(0.02)
        # The old container is removed: it stops, and the name points at the new one alone.
        Answers.current = [NEW]
        old.shutdown()
        old.server_close()
        for _ in range(120):
            status, body = request(https_port)
            statuses.append(status)
            versions.append(body)
            time.sleep(0.02)
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        new.shutdown()
        dns.stop()
    error_log = (directory / "error.log").read_text() if (directory / "error.log").exists() else ""
    print(json.dumps({"statuses": statuses, "versions": versions, "error_log": error_log[-2000:]}))


if __name__ == "__main__":
    main()
