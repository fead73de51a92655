"""The proxy in acme mode, run for real: the HTTP-01 challenge on plain HTTP, and the supervisor
script (its entrypoint) in front of a real nginx on 127.0.0.1, taking certbot's certificates as
they arrive without dropping a request, and never going down over a broken one."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port, require_tool, self_signed_certificate, wait_for_port
from test_proxy import DOMAINS, running_proxy

from components.services.proxy import NginxSettings, Upstreams, render_nginx_conf, render_supervisor

POLL_S = 1  # the supervisor's poll in these tests (60 s in the container)
WAIT_S = 30.0  # upper bound for anything the tests wait for


def _wait(condition: object, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------------------------
# The HTTP-01 challenge


def test_the_challenge_is_answered_on_plain_http_for_the_configured_names_only(workdir: Path) -> None:
    webroot = workdir / "acme"
    challenge = webroot / ".well-known" / "acme-challenge"
    challenge.mkdir(parents=True)
    for directory in (webroot, webroot / ".well-known", challenge):
        directory.chmod(0o755)
    token = challenge / "tok3n"
    token.write_text("tok3n.thumbprint")
    token.chmod(0o644)
    with running_proxy(workdir, acme_webroot=str(webroot)) as proxy:
        for domain in (DOMAINS.web, DOMAINS.api, DOMAINS.grafana):
            answer = proxy.http(proxy.http_port, domain, "/.well-known/acme-challenge/tok3n")
            assert answer.status == 200, domain  # answered, not redirected to HTTPS
            assert answer.getheader("Content-Type") == "text/plain"
            # Anything else on plain HTTP still goes to HTTPS; an unknown token is not found.
            assert proxy.http(proxy.http_port, domain, "/login").status == 301
            assert proxy.http(proxy.http_port, domain, "/.well-known/acme-challenge/other").status == 404
        # A name the stack does not serve gets no challenge (nor anything else).
        assert proxy.http(proxy.http_port, "evil.example.com", "/.well-known/acme-challenge/tok3n").status == 421
        # Nothing outside the challenge directory is served from the webroot: nginx resolves the
        # dots first, and what is left is an ordinary path, redirected.
        escape = proxy.http(proxy.http_port, DOMAINS.web, "/.well-known/acme-challenge/../tok3n")
        assert escape.status == 301


# --------------------------------------------------------------------------------------------
# The supervisor


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for the stack's names (subject CN=name) and its key."""
    return self_signed_certificate(directory, (DOMAINS.web, DOMAINS.api, DOMAINS.grafana), name)


def _der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


class _Upstream(http.server.BaseHTTPRequestHandler):
    slow_request_arrived = threading.Event()

    def do_GET(self) -> None:
        if self.path == "/slow":  # a request still being answered when the proxy is stopped
            _Upstream.slow_request_arrived.set()
            time.sleep(2)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@dataclass
class Supervised:
    """The supervisor running nginx; certbot's directory as certbot lays it out."""

    workdir: Path
    https_port: int
    live: Path
    log: Path
    started: subprocess.Popen[bytes] | None = None
    versions: int = 0

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self.started is not None
        return self.started

    def install(self, cert: Path, key: Path) -> None:
        """What certbot does on issue and renewal: new files in archive/, then the live/ links
        moved onto them, one at a time."""
        self.versions += 1
        archive = self.workdir / "archive"
        archive.mkdir(exist_ok=True)
        self.live.mkdir(exist_ok=True)
        for source, name in ((cert, "fullchain"), (key, "privkey")):
            target = archive / f"{name}{self.versions}.pem"
            shutil.copyfile(source, target)
            link = self.live / f"{name}.pem.new"
            link.unlink(missing_ok=True)
            link.symlink_to(target)
            os.replace(link, self.live / f"{name}.pem")

    def certificate(self) -> bytes:
        """The certificate nginx presents on a new HTTPS connection."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.https_port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=DOMAINS.web) as tls:
                der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    def master_pid(self) -> int:
        return int((self.workdir / "nginx.pid").read_text().strip())

    def output(self) -> str:
        text = self.log.read_text(errors="replace")
        error_log = self.workdir / "error.log"
        return text + (error_log.read_text(errors="replace") if error_log.exists() else "")


@contextlib.contextmanager
def supervised(
    workdir: Path, check_every_s: int = POLL_S, installed: tuple[Path, Path] | None = None
) -> Iterator[Supervised]:
    """The rendered supervisor run by dash (the image runs busybox sh) with the Debian nginx,
    on free 127.0.0.1 ports, with ``installed`` in certbot's directory before it starts; its
    whole process group is stopped when the block ends."""
    shell = require_tool("dash")
    nginx = require_tool("nginx")
    require_tool("openssl")
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    bootstrap_cert, bootstrap_key = _certificate(workdir, "bootstrap")
    live, current = workdir / "live", workdir / "current"
    ports = (free_port(), free_port(), free_port(), free_port(), free_port())
    backend = f"127.0.0.1:{upstream.server_address[1]}"
    settings = NginxSettings(
        domains=DOMAINS,
        upstreams=Upstreams(api=backend, web=backend, grafana=backend),
        cors_origins=[],
        rate_limit_per_minute=100000,
        rate_limit_burst=10000,
        client_max_body_mb=1,
        certificate_file=str(current / "fullchain.pem"),
        key_file=str(current / "privkey.pem"),
        temp_dir=str(workdir),
        pid_file=str(workdir / "nginx.pid"),
        http_port=ports[0],
        https_port=ports[1],
        health_port=ports[2],
        status_port=ports[3],
        preflight_port=ports[4],
    )
    conf = workdir / "nginx.conf"
    conf.write_text(render_nginx_conf(settings))
    # `nginx` as the script calls it, with this test's prefix and error log.
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "nginx"
    wrapper.write_text(f'#!/bin/sh\nexec {nginx} -p {workdir}/ -e {workdir}/error.log "$@"\n')
    wrapper.chmod(0o755)
    script = workdir / "supervisor.sh"
    script.write_text(
        render_supervisor(str(conf), str(live), str(bootstrap_cert), str(bootstrap_key), str(current), check_every_s)
    )
    log = workdir / "supervisor.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    running = Supervised(workdir, ports[1], live, log)
    if installed is not None:
        running.install(*installed)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [shell, str(script)], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    running.started = process
    try:
        yield running
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        upstream.shutdown()
        upstream.server_close()


class RequestLoop:
    """HTTPS requests, one new connection each, until stopped (at most ``limit``); every answer
    that is not a 200, and every error, is a failure."""

    def __init__(self, port: int, limit: int = 20000) -> None:
        self.port, self.limit = port, limit
        self.certificates: list[bytes] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        for _ in range(self.limit):
            if self._stop.is_set():
                return
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw:
                    with context.wrap_socket(raw, server_hostname=DOMAINS.web) as tls:
                        der = tls.getpeercert(binary_form=True)
                        tls.sendall(f"GET / HTTP/1.1\r\nHost: {DOMAINS.web}\r\nConnection: close\r\n\r\n".encode())
                        status = tls.recv(64).split(b" ", 2)[1]
                if status != b"200":
                    self.failures.append(f"status {status!r}")
                assert der is not None
                self.certificates.append(der)
            except (OSError, IndexError) as error:
                self.failures.append(repr(error))

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=WAIT_S)

    def serving(self, der: bytes, requests: int = 20) -> bool:
        """The last ``requests`` answers all came with this certificate."""
        recent = self.certificates[-requests:]
        return len(recent) == requests and set(recent) == {der}


def test_certbots_certificates_are_taken_by_a_reload_without_dropping_a_request(workdir: Path) -> None:
    with supervised(workdir) as proxy:
        wait_for_port(proxy.https_port)
        master = proxy.master_pid()
        first, renewed = _certificate(workdir, "first"), _certificate(workdir, "renewed")
        with RequestLoop(proxy.https_port) as loop:
            # No certificate from certbot yet: the bootstrap one.
            _wait(lambda: loop.serving(_der(workdir / "bootstrap.crt")), "the bootstrap certificate")
            proxy.install(*first)
            _wait(lambda: loop.serving(_der(first[0])), "certbot's first certificate")
            proxy.install(*renewed)
            _wait(lambda: loop.serving(_der(renewed[0])), "the renewed certificate")
        assert loop.failures == []
        assert len(loop.certificates) > 60
        # Reloaded, never restarted: the same master all along, still running.
        assert proxy.master_pid() == master and proxy.process.poll() is None
        assert proxy.output().count("certificate changed; nginx reloaded") == 2


def test_a_broken_certificate_leaves_the_served_one_in_place(workdir: Path) -> None:
    good, other = _certificate(workdir, "good"), _certificate(workdir, "other")
    broken = workdir / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    with supervised(workdir) as proxy:
        wait_for_port(proxy.https_port)
        master = proxy.master_pid()
        with RequestLoop(proxy.https_port) as loop:
            proxy.install(*good)
            _wait(lambda: loop.serving(_der(good[0])), "the good certificate")
            # A certificate that does not parse, then one whose key is not its own.
            proxy.install(broken, good[1])
            _wait(lambda: proxy.output().count("[emerg]") >= 2, "two rejected reloads")
            proxy.install(other[0], good[1])
            _wait(lambda: proxy.output().count("[emerg]") >= 4, "two more rejected reloads")
            assert loop.serving(_der(good[0]))
            # Once certbot gets it right, it is taken.
            proxy.install(*other)
            _wait(lambda: loop.serving(_der(other[0])), "the repaired certificate")
        assert loop.failures == []
        assert proxy.master_pid() == master and proxy.process.poll() is None


def test_a_broken_certificate_at_start_serves_the_bootstrap_one(workdir: Path) -> None:
    """A restart (a host reboot) while certbot's files are unusable must not keep the proxy down."""
    good = _certificate(workdir, "good")
    broken = workdir / "broken.pem"
    broken.write_text("garbage\n")
    with supervised(workdir, installed=(broken, good[1])) as proxy:
        wait_for_port(proxy.https_port)
        assert proxy.certificate() == _der(workdir / "bootstrap.crt")
        assert "not usable" in proxy.output()
        proxy.install(*good)
        _wait(lambda: proxy.certificate() == _der(good[0]), "the repaired certificate")
        assert proxy.process.poll() is None


def _get(port: int, path: str) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=DOMAINS.web) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {DOMAINS.web}\r\nConnection: close\r\n\r\n".encode())
            return tls.recv(64)


def test_docker_stop_ends_the_supervisor_and_nginx_promptly(workdir: Path) -> None:
    """`docker stop` sends SIGTERM to the script and kills everything 30 s later: the script must
    let nginx finish the request in flight and exit well before that, whatever its poll interval."""
    _Upstream.slow_request_arrived.clear()
    answers: list[bytes] = []
    with supervised(workdir, check_every_s=600) as proxy:
        wait_for_port(proxy.https_port)
        master = proxy.master_pid()
        client = threading.Thread(target=lambda: answers.append(_get(proxy.https_port, "/slow")))
        client.start()
        assert _Upstream.slow_request_arrived.wait(timeout=WAIT_S)
        proxy.process.send_signal(signal.SIGTERM)
        assert proxy.process.wait(timeout=15) == 0
        client.join(timeout=WAIT_S)
        assert answers and answers[0].startswith(b"HTTP/1.1 200")
        with pytest.raises(ProcessLookupError):
            os.kill(master, 0)
