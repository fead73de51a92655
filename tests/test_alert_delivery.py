"""End to end: the real Prometheus, with the rendered prometheus.yml and alert rules, scrapes a
failed backup and a failed restore drill, and the real Alertmanager, with the rendered routing
and templates, delivers them: the critical one to the webhook and by email, the warning by
email. Both marked as staging's, the SMTP login read from its password file.

Everything listens on 127.0.0.1 on free ports and is stopped when the test ends."""

from __future__ import annotations

import base64
import email
import email.policy
import http.server
import json
import socketserver
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, require_tool

from components.config import StackConfig
from components.containers.endpoints import ScrapeTarget
from components.services.alertmanager import (
    EmailReceiver,
    WebhookReceiver,
    render_alertmanager_config,
    render_templates,
)
from components.services.prometheus import DEFAULT_OPS_AGES, render_alert_rules, render_prometheus_config

DEADLINE_S = 60
SMTP_USER = "alerts@acme.example.com"
SMTP_PASSWORD = "smtp-Pass-5150"


@dataclass
class Received:
    """What the local receivers got, shared with their server threads."""

    webhooks: list[dict[str, Any]] = field(default_factory=list)
    mails: list[email.message.EmailMessage] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _metrics_text() -> bytes:
    """What the node exporter would serve from the ops container's files after a failed backup
    and a failed drill that both had succeeded a moment before."""
    now = time.time()
    return (
        f"stagecraft_backup_last_success_timestamp_seconds {now:.0f}\n"
        "stagecraft_backup_last_run_success 0\n"
        f"stagecraft_restore_drill_last_success_timestamp_seconds {now:.0f}\n"
        "stagecraft_restore_drill_last_run_success 0\n"
    ).encode()


def _http_server(handle_get: Callable[[], bytes] | None, received: Received) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = handle_get() if handle_get and self.path == "/metrics" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            payload = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with received.lock:
                received.webhooks.append(json.loads(payload))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def _smtp_server(received: Received) -> socketserver.ThreadingTCPServer:
    """Just enough SMTP for one client: EHLO offering AUTH PLAIN (no STARTTLS: the relay is on
    the loopback interface), then MAIL, RCPT, DATA; every login and message recorded."""

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        def handle(self) -> None:
            self.reply("220 localhost ESMTP test")
            while line := self.rfile.readline():
                command = line.decode().strip()
                verb = command.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    self.reply("250-localhost")
                    self.reply("250 AUTH PLAIN")
                elif verb == "AUTH":
                    _identity, user, password = base64.b64decode(command.split()[2]).decode().split("\0")
                    with received.lock:
                        received.logins.append((user, password))
                    self.reply("235 2.7.0 Authentication successful")
                elif verb == "DATA":
                    self.reply("354 End data with <CR><LF>.<CR><LF>")
                    lines = []
                    while (data := self.rfile.readline()) not in (b".\r\n", b""):
                        lines.append(data[1:] if data.startswith(b"..") else data)
                    message = email.message_from_bytes(b"".join(lines), policy=email.policy.default)
                    with received.lock:
                        received.mails.append(message)  # type: ignore[arg-type]
                    self.reply("250 OK")
                elif verb == "QUIT":
                    self.reply("221 Bye")
                    return
                else:  # HELO, MAIL, RCPT, RSET, NOOP
                    self.reply("250 OK")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


@pytest.fixture
def received() -> Received:
    return Received()


@pytest.fixture
def servers(received: Received) -> Iterator[dict[str, int]]:
    """The metrics endpoint, the webhook receiver and the SMTP relay, on free ports."""
    metrics = _http_server(_metrics_text, received)
    webhook = _http_server(None, received)
    smtp = _smtp_server(received)
    running = [metrics, webhook, smtp]
    for server in running:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield {
            "metrics": metrics.server_address[1],
            "webhook": webhook.server_address[1],
            "smtp": smtp.server_address[1],
        }
    finally:
        for server in running:
            server.shutdown()
            server.server_close()


@pytest.fixture
def programs(tmp_path: Path) -> Iterator[Callable[[str, list[str]], Path]]:
    """Starts real programs with their output in log files; stops them all afterwards."""
    started: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(name: str, command: list[str]) -> Path:
        log = tmp_path / f"{name}.log"
        stream = log.open("wb")
        started.append((subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT), stream))
        return log

    yield start
    for process, stream in started:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        stream.close()


def _wait_ready(port: int, path: str, deadline: float, logs: Callable[[], str]) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"127.0.0.1:{port}{path} never became ready\n{logs()}")


def test_a_failed_drill_and_backup_reach_webhook_and_email(
    configs: dict[str, StackConfig],
    tmp_path: Path,
    servers: dict[str, int],
    received: Received,
    programs: Callable[[str, list[str]], Path],
) -> None:
    prometheus_bin = require_tool("prometheus")
    alertmanager_bin = require_tool("prometheus-alertmanager")
    config = configs["staging"]
    environment = config.environment
    am_port, prom_port = free_port(), free_port()

    (tmp_path / "smtp-password").write_text(SMTP_PASSWORD)
    (tmp_path / "webhook-url").write_text(f"http://127.0.0.1:{servers['webhook']}/hook\n")
    (tmp_path / "notifications.tmpl").write_text(render_templates(environment))
    (tmp_path / "alertmanager.yml").write_text(
        render_alertmanager_config(
            EmailReceiver(
                smarthost=f"127.0.0.1:{servers['smtp']}",
                sender="alerts@acme.example.com",
                to=("oncall@acme.example.com",),
                username=SMTP_USER,
                password_file=str(tmp_path / "smtp-password"),
                require_tls=False,
            ),
            WebhookReceiver(url_file=str(tmp_path / "webhook-url"), channel="#alerts-staging"),
            str(tmp_path / "notifications.tmpl"),
            group_wait_s=1,
        )
    )
    monitoring = config.stagecraft.monitoring
    (tmp_path / "alerts.yml").write_text(render_alert_rules(monitoring.alerts, [], environment, DEFAULT_OPS_AGES))
    (tmp_path / "prometheus.yml").write_text(
        render_prometheus_config(
            [ScrapeTarget("node", f"127.0.0.1:{servers['metrics']}")],
            1,
            ["alerts.yml"],
            environment,
            alertmanagers=[f"127.0.0.1:{am_port}"],
        )
    )

    am_log = programs(
        "alertmanager",
        [
            alertmanager_bin,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
    )
    prom_log = programs(
        "prometheus",
        [
            prometheus_bin,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
    )

    def logs() -> str:
        with received.lock:
            got = f"webhooks: {received.webhooks}\nmails: {[m['Subject'] for m in received.mails]}"
        return f"--- alertmanager\n{am_log.read_text()}\n--- prometheus\n{prom_log.read_text()}\n--- received\n{got}"

    deadline = time.monotonic() + DEADLINE_S
    _wait_ready(am_port, "/-/ready", deadline, logs)
    _wait_ready(prom_port, "/-/ready", deadline, logs)

    def delivered() -> tuple[dict[str, Any] | None, dict[str, Any]]:
        with received.lock:
            hook = next((w for w in received.webhooks if "RestoreDrillFailed" in w["attachments"][0]["title"]), None)
            mails = {m["Subject"]: m for m in received.mails}
        return hook, mails

    hook, mails = delivered()
    while time.monotonic() < deadline and not (hook and len(mails) >= 2):
        time.sleep(0.2)
        hook, mails = delivered()
    if hook is None or len(mails) < 2:
        pytest.fail(f"not delivered within {DEADLINE_S} s\n{logs()}")

    # The critical alert on the webhook: Slack's format, staging in the title and the text.
    attachment = hook["attachments"][0]
    assert attachment["title"] == "[staging] [FIRING:1] RestoreDrillFailed (restore-drill)"
    assert "environment=staging" in attachment["text"] and "severity=critical" in attachment["text"]
    assert "Runbook: docs/runbook.md#alert-restoredrillfailed" in attachment["text"]
    assert hook["channel"] == "#alerts-staging"
    # Both alerts by email (critical and warning), subjects marked as staging's, logged in with
    # the password from its file.
    assert set(mails) == {
        "[staging] [FIRING:1] RestoreDrillFailed (restore-drill)",
        "[staging] [FIRING:1] BackupFailed (backup)",
    }
    body = mails["[staging] [FIRING:1] BackupFailed (backup)"].get_body(preferencelist=("plain",))
    assert body is not None and "environment=staging" in body.get_content()
    assert set(received.logins) == {(SMTP_USER, SMTP_PASSWORD)}
