"""`preflight verify`: every check against real servers, broken ones included.

- Through the proxy: the real nginx with the project's own rendered nginx.conf (and broken
  variants of it), a CA and certificate made here, upstreams that are small Python servers.
- Probes: the very argv a container would run, run here against a real Postgres 15 and Redis.
- The Docker Engine API: a fake Engine serving recorded responses of this stack, driven by the
  real `docker` library.
- The CLI: exit codes and one-line errors for missing, empty or invalid outputs.
"""

from __future__ import annotations

import datetime
import http.server
import json
import os
import pwd
import re
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from conftest import ROOT, free_port, require_tool, wait_for_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fake_engine import FakeEngine, frame

from components.config import Domains
from components.services.proxy import NginxSettings, Upstreams, render_nginx_conf
from components.services.redis import ACL_RULES, render_acl, render_redis_conf
from preflight.cli import main
from preflight.verify import http_checks, probes
from preflight.verify.checks import CATEGORIES, REGISTRY, Result, run_checks, select
from preflight.verify.container_checks import is_root, secret_looking, secret_variables
from preflight.verify.context import Context
from preflight.verify.docker_api import demultiplex
from preflight.verify.http_checks import expected_redirect, judge_latency, p95, rate_limit_budget
from preflight.verify.http_client import can_offer
from preflight.verify.probes import LocalExecutor, ProbeResult
from preflight.verify.report import all_passed
from preflight.verify.targets import load_targets

DATA = ROOT / "tests" / "data" / "verify"
EXPECTED_CATEGORIES = {
    "connectivity",
    "health endpoints",
    "integration",
    "API functionality",
    "performance",
    "database",
    "Redis",
    "Chroma",
    "container health",
    "monitoring stack",
    "security headers",
    "environment variables",
    "log collection",
    "data persistence",
}


def outputs() -> dict[str, Any]:
    """The staging stack's outputs as `pulumi stack output --json` prints them."""
    return json.loads((DATA / "outputs-staging.json").read_text())


def context(document: dict[str, Any], **options: Any) -> Context:
    targets, ca = load_targets(document, "test outputs")
    settings = {"timeout": 5.0, "docker_host": targets.docker_host, "address": "127.0.0.1", "ca_pem": ca, **options}
    return Context(targets=targets, **settings)


def run(ctx: Context, *names: str) -> list[Result]:
    return run_checks(ctx, select(names=names))


def statuses(results: list[Result]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for result in results:
        found.setdefault(result.name, set()).add(result.status)
    return found


def assert_all_pass(results: list[Result]) -> None:
    bad = [f"{r.name}: {r.status}: {r.detail}" for r in results if r.status != "pass"]
    assert results and not bad, "\n".join(bad)


def failures(results: list[Result], name: str) -> list[str]:
    return [r.detail for r in results if r.name == name and r.status == "fail"]


# --------------------------------------------------------------------------------------------
# The registry and the CLI


def test_categories_are_exactly_the_fourteen_and_each_has_a_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(CATEGORIES) == EXPECTED_CATEGORIES and len(CATEGORIES) == 14
    assert main(["verify", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["checks"]
    assert {check["category"] for check in listed} == EXPECTED_CATEGORIES
    assert len({check["name"] for check in listed}) == len(listed) == len(REGISTRY)


def test_list_table_shows_every_check_with_its_category(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for check in REGISTRY:
        assert any(line.startswith(check.category) and f" {check.name} " in line for line in lines), check.name


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["verify", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), ("", "empty"), ("  \n", "empty"), ("{not json", "not JSON (line 1 column 2")],
)
def test_unusable_outputs_file_is_one_line_and_exit_2(
    content: str | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "outputs.json"
    if content is not None:
        path.write_text(content)
    code, out, err = _cli(["--stack", "staging", "--outputs", str(path)], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and str(path) in err


def test_missing_key_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = outputs()
    del document["verify"]["proxy"]["https_port"]
    del document["verify"]["services"]["ops"]
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(document))
    code, out, err = _cli(["--stack", "staging", "--outputs", str(path)], capsys)
    assert code == 2 and out == ""
    assert "verify.proxy.https_port: missing" in err
    assert "verify.services: missing service(s) ops" in err
    assert "Traceback" not in err


def test_outputs_without_verify_object_or_of_another_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"environment": "staging"}))
    code, _, err = _cli(["--stack", "staging", "--outputs", str(path)], capsys)
    assert code == 2 and "verify: missing" in err
    path.write_text(json.dumps(outputs()))
    code, _, err = _cli(["--stack", "prod", "--outputs", str(path)], capsys)
    assert code == 2 and "stack 'staging'" in err and "not 'prod'" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--stack is required"),
        (["--stack", "staging", "--address", "proxy.example.com"], "--address must be an IP address"),
        (["--stack", "staging", "--docker-host", "http://x:2375"], "--docker-host must start with one of"),
        (["--stack", "staging", "--timeout", "0"], "--timeout must be between"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(args, capsys)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1


def _fake_pulumi(directory: Path, script: str) -> dict[str, str]:
    pulumi = directory / "pulumi"
    pulumi.write_text("#!/bin/sh\n" + script)
    pulumi.chmod(0o755)
    return {"PATH": f"{directory}:/usr/bin:/bin"}


def test_without_pulumi_on_path_it_is_an_error_not_a_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = _cli(["--stack", "staging"], capsys)
    assert code == 2 and out == ""
    assert err == (
        "verify: `pulumi stack output --json --stack staging`: the pulumi CLI is not on PATH "
        "(install it or pass --outputs FILE)\n"
    )


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("echo \"error: no stack named 'staging' found\" >&2; exit 255", "failed (exit 255): error: no stack named"),
        ("exit 0", "empty"),
        ("echo '[secret]'", "not JSON"),
        ("echo '[1, 2]'", "expected a JSON object of stack outputs"),
    ],
)
def test_pulumi_failures_are_exit_2(
    script: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in _fake_pulumi(tmp_path, script).items():
        monkeypatch.setenv(key, value)
    code, out, err = _cli(["--stack", "staging"], capsys)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1


def test_pulumi_is_asked_for_the_stack_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "outputs.json").write_text(json.dumps(outputs()))
    log = tmp_path / "argv"
    script = f'echo "$@" > {log}; cat {tmp_path / "outputs.json"}'
    for key, value in _fake_pulumi(tmp_path, script).items():
        monkeypatch.setenv(key, value)
    code, _, _ = _cli(["--stack", "prod"], capsys)
    assert log.read_text().split() == ["stack", "output", "--json", "--stack", "prod"]
    assert code == 2  # the outputs are staging's: refused, not checked against prod


def test_nothing_listening_fails_every_check_clearly_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = outputs()
    dead = free_port()
    document["verify"]["proxy"].update(http_port=dead, https_port=dead)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(document))
    args = ["--stack", "staging", "--outputs", str(path), "--address", "127.0.0.1"]
    code, out, err = _cli(
        [*args, "--docker-host", f"tcp://127.0.0.1:{free_port()}", "--timeout", "3", "--json"], capsys
    )
    assert code == 1 and err == ""
    report = json.loads(out)
    assert set(report) == {"stack", "passed", "checks"} and report["stack"] == "staging"
    assert report["passed"] is False
    assert all(set(check) == {"category", "name", "status", "detail"} for check in report["checks"])
    assert {check["category"] for check in report["checks"]} == EXPECTED_CATEGORIES
    assert {check["status"] for check in report["checks"]} <= {"fail", "skip"}
    by_name = {check["name"]: check["detail"] for check in report["checks"]}
    assert (
        by_name["tls-handshake"] == f"cannot connect to 127.0.0.1:{dead} (the proxy's HTTPS port): Connection refused"
    )
    assert by_name["services-running"].startswith("cannot reach the Docker Engine at tcp://127.0.0.1:")
    assert by_name["services-running"].endswith("Connection refused")


# --------------------------------------------------------------------------------------------
# Through the proxy: the real nginx with the project's rendered config

DOMAINS = Domains(**outputs()["verify"]["domains"])


@dataclass(frozen=True)
class Pki:
    ca_pem: str
    chain: bytes
    key: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(names: list[str]) -> Pki:
    """A CA and a server certificate for ``names`` signed by it, like the stack's pulumi-tls pair."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("verify test CA"))
        .issuer_name(_name("verify test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Pki(
        ca_pem=ca.public_bytes(pem).decode(),
        chain=server.public_bytes(pem) + ca.public_bytes(pem),
        key=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki([DOMAINS.web, DOMAINS.api, DOMAINS.grafana])


class _App(http.server.BaseHTTPRequestHandler):
    """The API, web and Grafana behind the proxy: 200 on every path (like an app that routes
    everything), JSON on Grafana's health path."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _App.seen.append(self.path)
        body = json.dumps({"database": "ok"}).encode() if self.path == "/api/health" else b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if self.path == "/api/health" else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def app() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class RunningProxy:
    http_port: int
    https_port: int
    health_port: int
    pki: Pki

    def outputs(self, **verify: Any) -> dict[str, Any]:
        document = outputs()
        document["verify"]["proxy"] = {
            "http_port": self.http_port,
            "https_port": self.https_port,
            "health_port": self.health_port,
        }
        document["verify"].update(verify)
        document["tls_ca_certificate"] = self.pki.ca_pem
        return document

    def context(self, **verify: Any) -> Context:
        return context(self.outputs(**verify))


def nginx_settings(directory: Path, app_port: int, ports: tuple[int, int, int]) -> NginxSettings:
    """The staging stack's proxy settings, served from ``directory`` on free ports."""
    verify = outputs()["verify"]
    upstream = f"127.0.0.1:{app_port}"
    return NginxSettings(
        domains=DOMAINS,
        upstreams=Upstreams(api=upstream, web=upstream, grafana=upstream),
        cors_origins=verify["cors_origins"],
        rate_limit_per_minute=verify["rate_limit"]["per_minute"],
        rate_limit_burst=verify["rate_limit"]["burst"],
        client_max_body_mb=1,
        certificate_file=str(directory / "tls.crt"),
        key_file=str(directory / "tls.key"),
        temp_dir=str(directory),
        pid_file=str(directory / "nginx.pid"),
        http_port=ports[0],
        https_port=ports[1],
        health_port=ports[2],
        public_https_port=ports[1],
        # Workers of a root master would run as nobody, who cannot enter pytest's 0700 tmp_path.
        user="root" if os.geteuid() == 0 else None,
    )


@pytest.fixture
def start_proxy(tmp_path: Path, pki: Pki, app: int) -> Iterator[Callable[..., RunningProxy]]:
    """Start nginx with the project's rendered config, optionally edited by ``change``."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(change: Callable[[str], str] = lambda conf: conf) -> RunningProxy:
        nginx = require_tool("/usr/sbin/nginx")
        directory = tmp_path / f"nginx{len(processes)}"
        directory.mkdir()
        (directory / "tls.crt").write_bytes(pki.chain)
        (directory / "tls.key").write_bytes(pki.key)
        ports = (free_port(), free_port(), free_port())
        conf = render_nginx_conf(nginx_settings(directory, app, ports))
        changed = change(conf)
        assert changed != conf or change.__name__ == "<lambda>", "the change did not apply"
        (directory / "nginx.conf").write_text(changed)
        command = [nginx, "-c", str(directory / "nginx.conf"), "-p", str(directory), "-e", str(directory / "error.log")]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        process = subprocess.Popen(
            [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        processes.append(process)
        for port in ports:
            wait_for_port(port)
        return RunningProxy(*ports, pki=pki)

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def proxy(start_proxy: Callable[..., RunningProxy]) -> RunningProxy:
    return start_proxy()


def test_tls_connectivity_passes(proxy: RunningProxy) -> None:
    results = run(proxy.context(), "tls-handshake", "tls-1.2-accepted", "tls-1.3-accepted", "certificate-valid")
    assert_all_pass(results)
    assert len([r for r in results if r.name == "certificate-valid"]) == 3  # one per domain


def test_old_tls_versions_are_refused(proxy: RunningProxy) -> None:
    results = run(proxy.context(), "tls-1.0-refused", "tls-1.1-refused")
    assert_all_pass(results)


def test_proxy_accepting_tls_1_0_fails(start_proxy: Callable[..., RunningProxy]) -> None:
    def allow_old(conf: str) -> str:
        return conf.replace("ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;").replace(
            "ssl_ciphers ", "ssl_ciphers ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0:"
        )

    results = run(start_proxy(allow_old).context(), "tls-1.0-refused", "tls-1.1-refused", "tls-1.2-accepted")
    assert statuses(results) == {"tls-1.0-refused": {"fail"}, "tls-1.1-refused": {"fail"}, "tls-1.2-accepted": {"pass"}}
    assert f"{DOMAINS.api}: TLS 1.0 accepted" in failures(results, "tls-1.0-refused")


def test_certificate_of_another_ca_fails(proxy: RunningProxy) -> None:
    document = proxy.outputs()
    document["tls_ca_certificate"] = make_pki(["other.example.com"]).ca_pem
    results = run(context(document), "certificate-valid", "tls-handshake")
    assert statuses(results) == {"certificate-valid": {"fail"}, "tls-handshake": {"pass"}}
    assert all("certificate not valid against the stack's CA" in d for d in failures(results, "certificate-valid"))


def test_health_endpoints_through_the_proxy(proxy: RunningProxy) -> None:
    results = run(proxy.context(), "api-health", "web-health")
    assert_all_pass(results)
    assert [r.detail for r in results] == [f"https://{DOMAINS.api}/health: 200", f"https://{DOMAINS.web}/healthz: 200"]


def test_security_headers_and_no_version(proxy: RunningProxy) -> None:
    assert_all_pass(run(proxy.context(), "headers-on-200", "headers-on-404", "no-version-leak"))


@pytest.mark.parametrize("header", ["X-Frame-Options", "Permissions-Policy", "Strict-Transport-Security"])
def test_a_missing_header_fails(header: str, start_proxy: Callable[..., RunningProxy]) -> None:
    def drop(conf: str) -> str:
        return "\n".join(line for line in conf.splitlines() if f"add_header {header} " not in line) + "\n"

    results = run(start_proxy(drop).context(), "headers-on-200", "headers-on-404")
    assert statuses(results) == {"headers-on-200": {"fail"}, "headers-on-404": {"fail"}}
    assert all(header in detail for detail in failures(results, "headers-on-200") + failures(results, "headers-on-404"))


def test_server_version_leak_fails(start_proxy: Callable[..., RunningProxy]) -> None:
    results = run(
        start_proxy(lambda c: c.replace("server_tokens off;", "server_tokens on;")).context(), "no-version-leak"
    )
    assert statuses(results) == {"no-version-leak": {"fail"}}
    assert "Server: nginx/" in failures(results, "no-version-leak")[0]


def test_http_redirects_to_the_same_path_on_the_https_port(proxy: RunningProxy) -> None:
    assert_all_pass(run(proxy.context(), "http-redirect"))


def test_redirect_to_the_wrong_port_fails(start_proxy: Callable[..., RunningProxy]) -> None:
    def wrong_port(conf: str) -> str:
        return re.sub(r"(return 301 https://[a-z.-]+):[0-9]+\$request_uri;", r"\1:4443$request_uri;", conf)

    proxy = start_proxy(wrong_port)
    results = run(proxy.context(), "http-redirect")
    assert statuses(results) == {"http-redirect": {"fail"}}
    expected = f"https://{DOMAINS.web}:{proxy.https_port}/verify/redirect-check?from=http"
    assert any(f"https://{DOMAINS.web}:4443/" in d and expected in d for d in failures(results, "http-redirect"))


def test_unknown_host_on_https_is_refused(proxy: RunningProxy) -> None:
    assert_all_pass(run(proxy.context(), "unknown-host-https"))


def test_unknown_host_on_http_is_not_redirected(proxy: RunningProxy) -> None:
    assert_all_pass(run(proxy.context(), "unknown-host-http"))


def test_cors_preflight(proxy: RunningProxy) -> None:
    results = run(proxy.context(), "cors-allowed-origin", "cors-foreign-origin")
    assert_all_pass(results)


def test_cors_for_everyone_fails_the_foreign_origin_check(start_proxy: Callable[..., RunningProxy]) -> None:
    def any_origin(conf: str) -> str:
        return conf.replace('default "";', 'default "$http_origin";')

    results = run(start_proxy(any_origin).context(), "cors-foreign-origin")
    assert statuses(results) == {"cors-foreign-origin": {"fail"}}


def test_blocked_paths_in_any_spelling(proxy: RunningProxy) -> None:
    assert_all_pass(run(proxy.context(), "blocked-paths"))


def test_blocked_paths_in_their_own_spelling_answer_404(proxy: RunningProxy) -> None:
    results = run(proxy.context(), "blocked-paths")
    served = " ".join(failures(results, "blocked-paths"))
    for domain in (DOMAINS.web, DOMAINS.api, DOMAINS.grafana):
        for path in ("/metrics", "/admin", "/debug", "/internal", "//metrics", "/%6Detrics", "/metrics/"):
            assert f"https://{domain}{path}:" not in served


def test_unblocked_metrics_fail(start_proxy: Callable[..., RunningProxy]) -> None:
    def unblock(conf: str) -> str:
        return conf.replace("^/(metrics|admin", "^/(admin")

    results = run(start_proxy(unblock).context(), "blocked-paths")
    served = failures(results, "blocked-paths")
    assert f"https://{DOMAINS.web}/metrics: 200, expected 404" in served
    assert f"https://{DOMAINS.api}/metrics: 200, expected 404" in served


def test_latency_and_rate_limit(proxy: RunningProxy) -> None:
    results = run(proxy.context(), "p95-latency", "rate-limit")
    assert_all_pass(results)
    assert "over 20 requests" in results[0].detail and "429 after" in results[1].detail


def test_no_rate_limit_fails(start_proxy: Callable[..., RunningProxy]) -> None:
    def unlimited(conf: str) -> str:
        return "\n".join(line for line in conf.splitlines() if "limit_req zone=" not in line) + "\n"

    results = run(start_proxy(unlimited).context(), "rate-limit")
    assert statuses(results) == {"rate-limit": {"fail"}}
    assert "no 429 in 61 requests (61x 200)" in results[0].detail


def test_grafana_through_the_proxy(proxy: RunningProxy) -> None:
    assert_all_pass(run(proxy.context(), "grafana-via-proxy"))


def test_all_proxy_checks_in_one_run_stay_under_the_rate_limit(proxy: RunningProxy) -> None:
    """The whole HTTP side in registry order, as a deploy runs it, against the program's own
    proxy config: everything passes, and no request before the rate-limit probe is answered 429."""
    http_side = [c for c in REGISTRY if c.run.__module__ == "preflight.verify.http_checks"]
    assert {c.category for c in http_side} >= {"connectivity", "security headers", "performance"}
    results = run_checks(proxy.context(), http_side)
    assert_all_pass(results)
    assert not any(re.search(r"\b429\b", r.detail) for r in results if r.name != "rate-limit")


# --------------------------------------------------------------------------------------------
# Probes: the containers' argv, run here against a real Postgres 15, Redis and a heartbeat

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER_PASSWORD = "super-Secret-verify-1"
REDIS_PASSWORD = "redis-Secret-verify-2"


class Recorder:
    """A LocalExecutor that remembers every argv it ran (to look for leaked passwords)."""

    def __init__(self) -> None:
        self.local = LocalExecutor(path=[str(PG_BIN)])
        self.argvs: list[list[str]] = []

    @property
    def where(self) -> str:
        return "the test machine"

    def run(self, argv: Any, timeout: float) -> ProbeResult:
        self.argvs.append(list(argv))
        return self.local.run(argv, timeout)


def _as_postgres(command: list[str]) -> list[str]:
    """Postgres refuses to run as root; CI runs as root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Postgres 15 on 127.0.0.1 with scram-sha-256 and the stack's app database."""
    require_tool(str(PG_BIN / "postgres"))
    root = tmp_path_factory.mktemp("postgres")
    data, sockets, pwfile = root / "data", root / "sockets", root / "pwfile"
    sockets.mkdir()
    pwfile.write_text(SUPERUSER_PASSWORD + "\n")
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (root, sockets, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
        # The postgres user must reach its directory inside pytest's 0700 tree.
        for parent in root.parents:
            if parent == Path(tempfile.gettempdir()):
                break
            parent.chmod(parent.stat().st_mode | 0o011)
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}"]
    initdb += ["--auth-host=scram-sha-256", "--auth-local=scram-sha-256"]
    subprocess.run(_as_postgres(initdb), check=True, capture_output=True, env=env, timeout=120)
    port = free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
    pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o", options]
    subprocess.run(_as_postgres([*pg_ctl, "start"]), check=True, capture_output=True, env=env, timeout=120)
    try:
        psql = [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres"]
        create = subprocess.run(
            [*psql, "-c", "CREATE DATABASE acme_staging"],
            env={**env, "PGPASSWORD": SUPERUSER_PASSWORD},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert create.returncode == 0, create.stderr
        yield port
    finally:
        subprocess.run(_as_postgres([*pg_ctl[:3], "-m", "immediate", "stop"]), capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """redis-server with the stack's rendered config: AUTH from an included file."""
    redis_server = require_tool("redis-server")
    root = tmp_path_factory.mktemp("redis")
    # Every ACL user gets the same password here; the probes log in as `verify`.
    (root / "users.acl").write_text(render_acl(dict.fromkeys(ACL_RULES, REDIS_PASSWORD)))
    port = free_port()
    conf = render_redis_conf(64, str(root / "users.acl"), data_dir=str(root), port=port)
    conf = conf.replace("bind * -::*", "bind 127.0.0.1")
    (root / "redis.conf").write_text(conf)
    process = subprocess.Popen([redis_server, str(root / "redis.conf")], stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


class _Chroma(http.server.BaseHTTPRequestHandler):
    answer: ClassVar[tuple[int, bytes]] = (200, b'{"nanosecond heartbeat": 1732612345678901234}')

    def do_GET(self) -> None:
        status, body = _Chroma.answer if self.path == "/api/v2/heartbeat" else (404, b"{}")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def chroma() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Chroma)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@dataclass
class Probed:
    ctx: Context
    recorder: Recorder
    files: Path


@pytest.fixture
def probed(postgres: int, redis: int, chroma: int, tmp_path: Path) -> Probed:
    """A context whose probes run here, against the real servers, with password files."""
    (tmp_path / "postgres-superuser-password").write_text(SUPERUSER_PASSWORD)
    (tmp_path / "redis-password").write_text(REDIS_PASSWORD + "\n")
    document = outputs()
    verify = document["verify"]
    for service in ("postgres", "redis", "chroma"):
        verify["services"][service] = "127.0.0.1"
    verify.update(postgres_port=postgres, redis_port=redis, chroma_port=chroma)
    verify["probe"].update(
        postgres_password_file=str(tmp_path / "postgres-superuser-password"),
        redis_password_file=str(tmp_path / "redis-password"),
    )
    recorder = Recorder()
    return Probed(context(document, executor_override=lambda service: recorder), recorder, tmp_path)


def probed_document(probed: Probed) -> dict[str, Any]:
    """The outputs ``probed`` runs against (the servers here, the password files in tmp)."""
    document = outputs()
    document["verify"].update(
        probed.ctx.targets.model_dump(
            by_alias=True, include={"services", "postgres_port", "redis_port", "chroma_port", "probe"}
        )
    )
    return document


PROBE_CHECKS = (
    "postgres-ready",
    "app-database",
    "redis-auth-required",
    "redis-ping",
    "chroma-heartbeat",
    "redis-marker",
    "postgres-marker",
)


def test_probes_pass_against_real_servers_and_never_show_a_password(probed: Probed) -> None:
    results = run(probed.ctx, *PROBE_CHECKS)
    assert_all_pass(results)
    assert {r.category for r in results} == {"database", "Redis", "Chroma", "data persistence"}
    for argv in probed.recorder.argvs:
        assert not any(SUPERUSER_PASSWORD in arg or REDIS_PASSWORD in arg for arg in argv), argv
    assert any("REDISCLI_AUTH" in " ".join(argv) for argv in probed.recorder.argvs)


def test_markers_are_read_back_and_cleaned_up(probed: Probed, postgres: int, redis: int) -> None:
    assert_all_pass(run(probed.ctx, "postgres-marker", "redis-marker"))
    count = probed.recorder.local.run(
        probes.psql(
            "127.0.0.1",
            postgres,
            "postgres",
            "acme_staging",
            str(probed.files / "postgres-superuser-password"),
            ["SELECT count(*) FROM stagecraft_verify.marker"],
            5,
        ),
        10,
    )
    assert count.ok and count.stdout.strip() == "0"
    key = probes.redis_marker_key(probed.ctx.token)
    leftover = probed.recorder.local.run(
        probes.redis_cli("127.0.0.1", redis, "verify", str(probed.files / "redis-password"), ["EXISTS", key]), 10
    )
    assert leftover.stdout.strip() == "0"


def test_wrong_passwords_fail(probed: Probed) -> None:
    (probed.files / "postgres-superuser-password").write_text("not-the-password")
    (probed.files / "redis-password").write_text("not-the-password")
    results = run(probed.ctx, "postgres-ready", "app-database", "redis-ping", "redis-marker", "postgres-marker")
    assert statuses(results) == {
        "postgres-ready": {"pass"},  # pg_isready needs no password
        "app-database": {"fail"},
        "redis-ping": {"fail"},
        "redis-marker": {"fail"},
        "postgres-marker": {"fail"},
    }
    assert "password authentication failed" in failures(results, "app-database")[0]
    assert "not-the-password" not in json.dumps([r.detail for r in results])


def test_missing_password_file_fails_clearly(probed: Probed) -> None:
    (probed.files / "redis-password").unlink()
    results = run(probed.ctx, "redis-ping")
    assert statuses(results) == {"redis-ping": {"fail"}}
    assert "exit 125" in results[0].detail and "redis-password" in results[0].detail


def test_missing_app_database_fails(probed: Probed) -> None:
    document = outputs()
    document["verify"].update(
        probed.ctx.targets.model_dump(
            by_alias=True, include={"services", "postgres_port", "redis_port", "chroma_port", "probe"}
        )
    )
    document["verify"]["databases"]["app"] = "acme_nothing"
    ctx = context(document, executor_override=lambda service: probed.recorder)
    results = run(ctx, "app-database")
    assert statuses(results) == {"app-database": {"fail"}}
    assert 'database "acme_nothing" does not exist' in results[0].detail


def test_redis_without_a_password_fails_the_auth_check(tmp_path: Path, probed: Probed) -> None:
    redis_server = require_tool("redis-server")
    port = free_port()
    process = subprocess.Popen(
        [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        document = outputs()
        document["verify"].update(probed.ctx.targets.model_dump(by_alias=True, include={"services", "probe"}))
        document["verify"]["redis_port"] = port
        results = run(context(document, executor_override=lambda service: probed.recorder), "redis-auth-required")
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert statuses(results) == {"redis-auth-required": {"fail"}}
    assert "without a password answered PONG" in results[0].detail


def test_chroma_without_heartbeat_fails(probed: Probed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Chroma, "answer", (410, b'{"error": "Unimplemented"}'))
    results = run(probed.ctx, "chroma-heartbeat")
    assert statuses(results) == {"chroma-heartbeat": {"fail"}}
    assert results[0].detail.endswith('HTTP 410, expected 200 ({"error": "Unimplemented"})')
    monkeypatch.setattr(_Chroma, "answer", (503, b'{"nanosecond heartbeat": 1732612345678901234}'))
    results = run(probed.ctx, "chroma-heartbeat")
    assert statuses(results) == {"chroma-heartbeat": {"fail"}}
    assert "HTTP 503, expected 200" in results[0].detail
    monkeypatch.setattr(_Chroma, "answer", (200, b'{"status": "ok"}'))
    results = run(probed.ctx, "chroma-heartbeat")
    assert statuses(results) == {"chroma-heartbeat": {"fail"}}
    assert results[0].detail.endswith('HTTP 200 without a heartbeat ({"status": "ok"})')


@pytest.fixture
def bash_only(tmp_path: Path) -> LocalExecutor:
    """An executor whose PATH holds bash and nothing else, like Chroma's image holds no python,
    curl, wget (nor, for all the probes may assume, cat or timeout)."""
    bin_dir = tmp_path / "bash-only"
    bin_dir.mkdir()
    (bin_dir / "bash").symlink_to(require_tool("bash"))
    return LocalExecutor(env={"PATH": str(bin_dir)})


def test_chroma_heartbeat_through_bash_alone_against_a_real_server(
    bash_only: LocalExecutor, probed: Probed, chroma: int
) -> None:
    """The probe as the chroma container runs it: bash's /dev/tcp, HTTP/1.0, the status line
    and the JSON body parsed here."""
    ctx = context(probed_document(probed), executor_override=lambda service: bash_only)
    results = run(ctx, "chroma-heartbeat")
    assert_all_pass(results)
    assert results[0].detail == (
        f"http://127.0.0.1:{chroma}/api/v2/heartbeat from this machine: heartbeat 1732612345678901234"
    )
    raw = bash_only.run(probes.bash_http_get("127.0.0.1", chroma, "/api/v2/heartbeat", 5), 10)
    assert raw.ok and raw.stdout.startswith("HTTP/1.0 200 OK")
    assert probes.parse_http_response(raw.stdout) == probes.HttpAnswer(
        200, '{"nanosecond heartbeat": 1732612345678901234}'
    )


def test_bash_tcp_probe_connects_or_says_why_not(bash_only: LocalExecutor, postgres: int) -> None:
    assert bash_only.run(probes.bash_tcp_connect("127.0.0.1", postgres), 10) == ProbeResult(0, "connected\n", "")
    refused = bash_only.run(probes.bash_tcp_connect("127.0.0.1", free_port()), 10)
    assert refused.exit_code == 7 and refused.summary().endswith("Connection refused")


@pytest.mark.parametrize(
    ("raw", "status", "body"),
    [
        ("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", 200, "{}"),
        ("HTTP/1.0 410 Gone\nServer: x\n\ngone", 410, "gone"),
        ("HTTP/1.1 204\r\n\r\n", 204, ""),
        ("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n", 200, ""),  # cut off before the body
        ("", None, ""),
        ("SSH-2.0-OpenSSH_9.2\r\n", None, ""),
    ],
)
def test_raw_http_responses_are_parsed(raw: str, status: int | None, body: str) -> None:
    assert probes.parse_http_response(raw) == probes.HttpAnswer(status, body)


def test_nothing_listening_fails_the_probes(probed: Probed) -> None:
    document = outputs()
    document["verify"].update(probed.ctx.targets.model_dump(by_alias=True, include={"services", "probe"}))
    dead = free_port()
    document["verify"].update(postgres_port=dead, redis_port=dead, chroma_port=dead)
    results = run(context(document, executor_override=lambda service: probed.recorder), *PROBE_CHECKS)
    assert {r.status for r in results} == {"fail"}
    assert "no response" in failures(results, "postgres-ready")[0]
    assert "Connection refused" in failures(results, "redis-ping")[0]


# --------------------------------------------------------------------------------------------
# The Docker Engine API: recorded answers of the staging stack, through the real docker library


def _recorded_service(service: str) -> str:
    """The recorded container of a service (API and web carry a release suffix: found by their
    labels, not their stable name)."""
    containers = json.loads((DATA / "engine" / "containers.json").read_text())
    (name,) = [
        c["Name"].lstrip("/")
        for c in containers
        if c["Config"]["Labels"].get("service") == service and c["Config"]["Labels"].get("role") != "files-carrier"
    ]
    return name


API = _recorded_service("api")
WEB = _recorded_service("web")
TEMPORAL_ADDRESS = outputs()["verify"]["temporal_address"]
TEMPORAL_HOST = TEMPORAL_ADDRESS.rsplit(":", 1)[0]
# Checks that only need the Engine (the database and Redis probes need real servers: see above).
ENGINE_CHECKS = [
    c.name
    for c in REGISTRY
    if c.run.__module__ != "preflight.verify.http_checks"
    and c.category not in ("database", "Redis", "data persistence")
]


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine(DATA / "engine").start()
    yield fake
    fake.stop()


def engine_context(engine: FakeEngine, timeout: float = 5.0, document: dict[str, Any] | None = None) -> Context:
    return context(document or outputs(), docker_host=engine.url, timeout=timeout)


def test_healthy_stack_passes_every_engine_check(engine: FakeEngine) -> None:
    results = run(engine_context(engine), *ENGINE_CHECKS)
    assert_all_pass(results)
    assert {r.category for r in results} == {
        "connectivity",
        "health endpoints",
        "integration",
        "Chroma",
        "container health",
        "monitoring stack",
        "environment variables",
        "log collection",
    }
    detail = {r.name: r.detail for r in results}
    assert detail["docker-engine"] == f"{engine.url}: Docker Engine 27.5.1, API 1.47"
    # Every container of this stack, files carriers included; the prod stack's Postgres on the
    # same host is not one of them.
    assert detail["labels"] == "41 containers carry the stack's labels"
    assert detail["services-running"] == "16 service containers running"
    assert detail["jobs-completed"] == "7 one-shot jobs exited with 0"
    assert detail["non-root"] == (
        "21 containers run as non-root users; acme-staging-chroma-volume-owner, acme-staging-ops-volume-owner "
        "as root with CHOWN alone and no network"
    )
    assert detail["published-ports"] == "only the proxy publishes ports"
    assert detail["prometheus-targets"] == (
        "9 targets up (alertmanager, api, grafana, nginx, node, postgres, prometheus, redis, temporal)"
    )
    # Each probe ran where the topology lets it: ops (data network) for Postgres and Redis;
    # Chroma's and Temporal's own containers (bash) for what ops shares no network with.
    ran = {(name, argv[0]) for name, argv in engine.execs}
    assert ran == {
        ("acme-staging-prometheus", "wget"),
        ("acme-staging-grafana", "wget"),
        ("acme-staging-temporal", "temporal"),
        ("acme-staging-temporal", "bash"),
        ("acme-staging-chroma", "bash"),
        ("acme-staging-ops", "python3"),
    }
    connects = sorted(
        (name, f"{argv[-3]}:{argv[-2]}" if argv[0] == "python3" else f"{argv[4]}:{argv[5]}")
        for name, argv in engine.execs
        if argv[0] in ("python3", "bash")
    )
    assert connects == [
        ("acme-staging-chroma", "acme-staging-chroma:8000"),  # the heartbeat
        ("acme-staging-chroma", "acme-staging-chroma:8000"),  # the API's dependency
        ("acme-staging-ops", "acme-staging-postgres:5432"),
        ("acme-staging-ops", "acme-staging-redis:6379"),
        ("acme-staging-temporal", TEMPORAL_ADDRESS),
    ]
    assert detail["chroma-heartbeat"] == (
        "http://acme-staging-chroma:8000/api/v2/heartbeat from container acme-staging-chroma: "
        "heartbeat 1764153735123456789"
    )


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        document = document[key]
    document[last] = value


def _move(container: dict[str, Any], network: str, address: str) -> None:
    """Give ``container`` another fixed address on ``network`` (as a changed subnet would)."""
    endpoint = container["NetworkSettings"]["Networks"][network]
    endpoint.update(IPAddress=address, IPAMConfig={"IPv4Address": address})


def _publish(container: dict[str, Any], port: str, host_ip: str, host_port: str) -> None:
    binding = {"HostIp": host_ip, "HostPort": host_port}
    container["HostConfig"]["PortBindings"][port] = [binding]
    container["NetworkSettings"]["Ports"][port] = [binding]


# (what breaks, how, the checks that then fail (the first names the container), its message)
BREAKAGES: list[tuple[str, Callable[[FakeEngine], None], str, str]] = [
    (
        "unhealthy",
        lambda e: e.container(API)["State"]["Health"].update(
            Status="unhealthy", Log=[{"ExitCode": 7, "Output": "curl: (7) Failed to connect to 127.0.0.1 port 8001"}]
        ),
        "services-healthy",
        f"{API}: unhealthy (last check: curl: (7) Failed to connect to 127.0.0.1 port 8001)",
    ),
    (
        "stopped",
        lambda e: e.container(WEB)["State"].update(Status="exited", Running=False, ExitCode=137),
        "services-running",
        f"{WEB}: exited (exit code 137), expected running",
    ),
    (
        "label missing",
        lambda e: e.container("acme-staging-redis")["Config"]["Labels"].pop("environment"),
        "labels",
        "acme-staging-redis: environment=None (want 'staging')",
    ),
    (
        "restarting",
        lambda e: e.container("acme-staging-temporal").update(RestartCount=7),
        "restart-count",
        "acme-staging-temporal: restarted 7 times (at most 3)",
    ),
    (
        "job failed",
        lambda e: e.container("acme-staging-postgres-init")["State"].update(ExitCode=3),
        "jobs-completed",
        "acme-staging-postgres-init: exited with exit code 3, expected exited with 0",
    ),
    (
        "privileged",
        lambda e: e.container("acme-staging-ops")["HostConfig"].update(Privileged=True),
        "not-privileged",
        "acme-staging-ops: privileged",
    ),
    (
        "foreign network",
        lambda e: e.container(WEB)["NetworkSettings"]["Networks"].update(
            {"acme-prod-data": e.container("acme-prod-postgres")["NetworkSettings"]["Networks"]["acme-prod-data"]}
        ),
        "isolation-networks",
        f"{WEB}: attached to acme-prod-data, which is not this stack's (by name and labels)",
    ),
    (
        "foreign volume",
        lambda e: e.container("acme-staging-ops")["Mounts"].append(
            {"Type": "volume", "Name": "acme-prod-postgres-data", "Destination": "/mnt", "RW": False}
        ),
        "isolation-volumes",
        "acme-staging-ops: mounts volume acme-prod-postgres-data at /mnt, which is not this stack's",
    ),
    (
        "foreign container",
        lambda e: e.network("acme-staging-data")["Containers"].update(
            {e.container("acme-prod-postgres")["Id"]: {"Name": "acme-prod-postgres", "IPv4Address": "10.210.2.99/24"}}
        ),
        "isolation-foreign-containers",
        "acme-staging-data: acme-prod-postgres is attached and is not a container of this stack",
    ),
    (
        "secret in env",
        lambda e: e.container(WEB)["Config"]["Env"].append("SESSION_SECRET=hunter2hunter2"),
        "no-secret-values",
        f"{WEB}: SESSION_SECRET set to a value (deliver it as a file, *_FILE)",
    ),
    (
        "wrong APP_ENV",
        lambda e: _set(
            e.container(API)["Config"],
            "Env",
            [v if not v.startswith("APP_ENV=") else "APP_ENV=prod" for v in e.container(API)["Config"]["Env"]],
        ),
        "app-env",
        f"{API}: APP_ENV='prod', expected 'staging'",
    ),
    (
        "unrotated logs",
        lambda e: _set(e.container("acme-staging-postgres")["HostConfig"], "LogConfig.Config", {}),
        "log-rotation",
        "acme-staging-postgres: logs not rotated as configured: max-size None (want '50m'), max-file None (want '3')",
    ),
    (
        "no logs",
        lambda e: _set(e.container("acme-staging-chroma")["HostConfig"], "LogConfig", {"Type": "none", "Config": {}}),
        "logs-readable log-rotation",
        "acme-staging-chroma: logs unreadable: logs of ",
    ),
    (
        "network gone",
        lambda e: e.networks.remove(e.network("acme-staging-monitoring")),
        "networks-exist isolation-networks",
        "network acme-staging-monitoring does not exist",
    ),
    (
        "health port published",
        lambda e: e.container("acme-staging-proxy")["NetworkSettings"]["Ports"].update(
            {"8081/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8081"}]}
        ),
        "proxy-health-private",
        "acme-staging-proxy: health listener 8081/tcp is published on 0.0.0.0:8081",
    ),
    (
        "api cut off from chroma",
        lambda e: e.container(API)["NetworkSettings"]["Networks"].pop("acme-staging-chroma"),
        "api-dependencies",
        f"{API} shares no network with acme-staging-chroma",
    ),
    (
        # The API still shares data and monitoring with Temporal, but the address it dials is on
        # the temporal network alone.
        "api off the temporal network",
        lambda e: e.container(API)["NetworkSettings"]["Networks"].pop("acme-staging-temporal"),
        "api-dependencies",
        f"{API} is not on acme-staging-temporal, where acme-staging-temporal answers to {TEMPORAL_HOST}",
    ),
    (
        "temporal moved to another address",
        lambda e: _move(e.container("acme-staging-temporal"), "acme-staging-temporal", "10.210.5.11"),
        "temporal-frontend api-dependencies",
        f"frontend {TEMPORAL_ADDRESS} from container acme-staging-temporal: exit 1: Error: unable to health check",
    ),
    (
        "chroma listening on loopback only",
        lambda e: e.listeners["chroma"].update({8000: "loopback"}),
        "chroma-heartbeat api-dependencies",
        "http://acme-staging-chroma:8000/api/v2/heartbeat from container acme-staging-chroma: no HTTP answer "
        "(exit 7: bash: line 1: /dev/tcp/acme-staging-chroma/8000: Connection refused)",
    ),
    (
        "service as root",
        lambda e: e.container("acme-staging-redis")["Config"].update(User=""),
        "non-root",
        "acme-staging-redis: runs as root (user unset)",
    ),
    (
        "volume owner beyond its design",
        lambda e: e.container("acme-staging-chroma-volume-owner")["HostConfig"].update(
            NetworkMode="acme-staging-chroma", CapAdd=["CHOWN", "DAC_OVERRIDE"]
        ),
        "non-root",
        "acme-staging-chroma-volume-owner: a root volume-owner job with network mode 'acme-staging-chroma' "
        "(want 'none'); capabilities DAC_OVERRIDE beyond CHOWN",
    ),
    (
        "debug port on every interface",
        lambda e: _publish(e.container("acme-staging-temporal-ui"), "8080/tcp", "0.0.0.0", "18088"),
        "published-ports",
        "acme-staging-temporal-ui: 8080/tcp published on 0.0.0.0:18088, not on 127.0.0.1 (a debug port)",
    ),
]


@pytest.mark.parametrize(
    ("change", "checks", "message"), [(c, k, m) for _, c, k, m in BREAKAGES], ids=[b[0] for b in BREAKAGES]
)
def test_a_broken_stack_fails_the_check_naming_the_container(
    change: Callable[[FakeEngine], None], checks: str, message: str, engine: FakeEngine
) -> None:
    change(engine)
    results = run(engine_context(engine), *ENGINE_CHECKS)
    assert {r.name for r in results if r.status != "pass"} == set(checks.split())
    first = checks.split()[0]
    assert any(message in detail for detail in failures(results, first)), failures(results, first)


def test_unlabelled_container_is_found_by_name_and_fails_the_label_check(engine: FakeEngine) -> None:
    engine.container("acme-staging-redis")["Config"]["Labels"] = {}
    results = run(engine_context(engine), "services-running", "labels")
    assert statuses(results) == {"services-running": {"pass"}, "labels": {"fail"}}
    assert any(d.startswith("acme-staging-redis: app=None") for d in failures(results, "labels"))


def test_service_without_labels_or_its_name_is_missing(engine: FakeEngine) -> None:
    engine.container(API)["Config"]["Labels"] = {}
    results = run(engine_context(engine), "services-running")
    assert failures(results, "services-running") == [
        "api: no container (looked for label service=api and name acme-staging-api)"
    ]


def test_prometheus_target_down_fails_naming_it(engine: FakeEngine) -> None:
    targets = json.loads((DATA / "engine" / "prometheus-targets.json").read_text())
    targets["data"]["activeTargets"][3].update(
        health="down", lastError="dial tcp: lookup acme-staging-postgres-exporter"
    )

    def exec_handler(name: str, argv: list[str]) -> tuple[int, bytes, bytes]:
        if argv[-1].endswith("/api/v1/targets?state=active"):
            return 0, json.dumps(targets).encode(), b""
        return engine.stack_exec(name, argv)

    engine.exec_handler = exec_handler
    results = run(engine_context(engine), "prometheus-targets", "prometheus-rules")
    assert statuses(results) == {"prometheus-targets": {"fail"}, "prometheus-rules": {"pass"}}
    assert failures(results, "prometheus-targets") == [
        "target postgres (acme-staging-postgres-exporter:9187): down: dial tcp: lookup acme-staging-postgres-exporter"
    ]


def test_exec_returns_exit_code_and_separates_stderr(engine: FakeEngine) -> None:
    engine.exec_handler = lambda name, argv: (3, b"partial output\n", b"psql: error: connection refused\n")
    result = engine_context(engine).executor("ops").run(["psql", "-c", "SELECT 1"], 5)
    assert result == ProbeResult(3, "partial output\n", "psql: error: connection refused\n")
    assert result.summary() == "exit 3: psql: error: connection refused"
    assert engine.execs == [("acme-staging-ops", ["psql", "-c", "SELECT 1"])]


def test_probe_in_a_stopped_container_fails_clearly(engine: FakeEngine) -> None:
    engine.container("acme-staging-ops")["State"].update(Status="exited", Running=False, ExitCode=0)
    results = run(engine_context(engine), "postgres-ready", "redis-ping")
    assert {r.detail for r in results} == {"acme-staging-ops (service ops) is exited, not running"}


def test_engine_that_never_answers_fails_within_the_timeout(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the backlog; nothing ever answers
    try:
        document = outputs()
        ctx = context(document, docker_host=f"tcp://127.0.0.1:{silent.getsockname()[1]}", timeout=1.0)
        results = run(ctx, "docker-engine", "services-running")
    finally:
        silent.close()
    assert {r.status for r in results} == {"fail"}
    assert all("no answer within 1s" in r.detail or "timed out" in r.detail for r in results), results


def test_temporal_frontend_is_asked_at_the_address_it_binds(engine: FakeEngine) -> None:
    results = run(engine_context(engine), "temporal-frontend")
    assert_all_pass(results)
    assert results[0].detail == f"frontend {TEMPORAL_ADDRESS} from container acme-staging-temporal: SERVING"
    health = ["temporal", "operator", "cluster", "health", "--address", TEMPORAL_ADDRESS]
    assert engine.execs == [("acme-staging-temporal", health)]
    # The frontend binds that one address: asked on loopback, it would not answer.
    code, _, err = engine.stack_exec("acme-staging-temporal", probes.temporal_cluster_health("127.0.0.1:7233"))
    assert code == 1 and b"connection refused" in err


def test_dependency_probes_run_where_the_topology_allows(engine: FakeEngine) -> None:
    """ops probes what it shares a network with; Chroma and Temporal, which it does not, are
    probed from their own containers with bash. A stopped ops fails only its own probes."""
    results = run(engine_context(engine), "api-dependencies")
    assert [r.detail for r in results] == [
        f"{API} -> acme-staging-postgres:5432 over acme-staging-data: connected from container acme-staging-ops "
        "(python3)",
        f"{API} -> acme-staging-redis:6379 over acme-staging-data: connected from container acme-staging-ops (python3)",
        f"{API} -> acme-staging-chroma:8000 over acme-staging-chroma: connected from container acme-staging-chroma "
        "(bash)",
        f"{API} -> {TEMPORAL_ADDRESS} over acme-staging-temporal: connected from container acme-staging-temporal "
        "(bash)",
    ]
    engine.execs.clear()
    engine.container("acme-staging-ops")["State"].update(Status="exited", Running=False, ExitCode=0)
    results = run(engine_context(engine), "api-dependencies")
    assert [r.status for r in results] == ["fail", "fail", "pass", "pass"]
    assert failures(results, "api-dependencies") == [
        "acme-staging-postgres:5432: cannot probe: acme-staging-ops (service ops) is exited, not running",
        "acme-staging-redis:6379: cannot probe: acme-staging-ops (service ops) is exited, not running",
    ]
    assert {name for name, _ in engine.execs} == {"acme-staging-chroma", "acme-staging-temporal"}


def test_the_fake_engine_runs_only_what_each_image_has(engine: FakeEngine) -> None:
    """The recorded stack answers as its images would: python3 is not in Chroma's image, so a
    probe that asked for it there would fail (which is why the checks use bash there)."""
    chroma = engine.container("acme-staging-chroma")
    code, _, err = engine.stack_exec("acme-staging-chroma", probes.python_tcp_connect("acme-staging-chroma", 8000, 5))
    assert code == 126 and b'"python3": executable file not found' in err
    assert "python3" not in engine.programs(chroma) and "bash" in engine.programs(chroma)


def test_a_loopback_debug_port_is_fine_in_staging_and_refused_in_prod(engine: FakeEngine) -> None:
    _publish(engine.container("acme-staging-temporal-ui"), "8080/tcp", "127.0.0.1", "18088")
    unconfigured = run(engine_context(engine), "published-ports")
    assert failures(unconfigured, "published-ports") == [
        "acme-staging-temporal-ui: 8080/tcp published on 127.0.0.1:18088, which is not a configured debug port"
    ]
    document = outputs()
    document["verify"]["debug_ports"] = {"temporal-ui": 18088}
    results = run(engine_context(engine, document=document), "published-ports", "proxy-health-private")
    assert_all_pass(results)
    assert results[0].detail == (
        "only the proxy publishes ports; debug ports on loopback: acme-staging-temporal-ui 8080/tcp on 127.0.0.1:18088"
    )
    document = outputs()
    document["verify"]["environment"] = document["verify"]["labels"]["environment"] = "prod"
    results = run(engine_context(engine, document=document), "published-ports")
    assert failures(results, "published-ports") == [
        "acme-staging-temporal-ui: 8080/tcp published on 127.0.0.1:18088; in prod only the proxy publishes"
    ]


def test_multiplexed_stream_is_split_and_a_tty_stream_kept_whole() -> None:
    stream = frame(1, b"out-1 ") + frame(2, b"err") + frame(1, b"out-2")
    assert demultiplex(stream) == (b"out-1 out-2", b"err")
    assert demultiplex(b"plain tty output") == (b"plain tty output", b"")


# --------------------------------------------------------------------------------------------
# The rules, one by one


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("POSTGRES_PASSWORD", True),
        ("DB_PASS", True),
        ("MYSQL_PWD", True),
        ("REDISCLI_AUTH", True),
        ("API_KEY", True),
        ("STRIPE_APIKEY", True),
        ("GITHUB_TOKEN", True),
        ("SESSION_SECRET", True),
        ("AWS_CREDENTIALS", True),
        ("POSTGRES_PASSWORD_FILE", False),
        ("GF_SECURITY_ADMIN_PASSWORD__FILE", False),
        ("PGPASSFILE", False),
        ("TLS_KEY_PATH", False),
        ("POSTGRES_HOST_AUTH_METHOD", False),
        ("GF_AUTH_ANONYMOUS_ENABLED", False),
        ("GPG_KEY", False),  # the Python images' release-signing key fingerprint
        ("APP_ENV", False),
        ("PATH", False),
    ],
)
def test_secret_looking_names(name: str, secret: bool) -> None:
    assert secret_looking(name) is secret


def test_a_credentials_file_path_is_not_a_secret_but_inline_credentials_are() -> None:
    assert secret_variables(["GOOGLE_APPLICATION_CREDENTIALS=/run/stagecraft/secrets/gcp-key.json"]) == []
    inline = 'GOOGLE_APPLICATION_CREDENTIALS={"type": "service_account", "private_key": "..."}'
    assert secret_variables([inline]) == ["GOOGLE_APPLICATION_CREDENTIALS"]


@pytest.mark.parametrize(
    ("user", "root"),
    [
        ("", True),
        ("0", True),
        ("root", True),
        ("0:0", True),
        ("root:root", True),
        ("999:999", False),
        ("nobody", False),
    ],
)
def test_root_users(user: str, root: bool) -> None:
    assert is_root(user) is root


def test_a_flag_or_an_empty_value_is_not_a_secret() -> None:
    env = ["ENABLE_TOKEN_AUTH=true", "API_KEY=", "JWT_SECRET=s3cr3t-value", "TOKEN_TTL_SECONDS=1", "REDIS_AUTH=0"]
    assert secret_variables(env) == ["JWT_SECRET"]


def test_p95_is_the_nearest_rank() -> None:
    samples = [float(ms) for ms in range(1, 21)]  # 1..20 ms
    assert p95(samples) == 19.0
    assert judge_latency(samples, 19, "x").status == "pass"
    assert judge_latency(samples, 18, "x").status == "fail"
    assert judge_latency([5.0], 4, "x").detail == "x: p95 5.0 ms over 1 requests (limit 4 ms)"


def test_redirect_keeps_a_port_other_than_443() -> None:
    assert expected_redirect("a.example.com", 443, "/p?q=1") == "https://a.example.com/p?q=1"
    assert expected_redirect("a.example.com", 8443, "/p?q=1") == "https://a.example.com:8443/p?q=1"


def test_rate_limit_probe_is_bounded_by_the_burst() -> None:
    assert rate_limit_budget(40) == 61
    assert rate_limit_budget(5) == 16


def test_this_machine_can_offer_old_tls_for_the_refusal_checks() -> None:
    assert can_offer("1.0") is None and can_offer("1.1") is None


def test_old_tls_that_cannot_be_offered_is_skipped_and_is_not_a_pass(
    proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_checks, "can_offer", lambda version: f"no TLS {version} in this OpenSSL")
    results = run(proxy.context(), "tls-1.0-refused", "tls-1.2-accepted")
    assert statuses(results) == {"tls-1.0-refused": {"skip"}, "tls-1.2-accepted": {"pass"}}
    (skip,) = [r for r in results if r.status == "skip"]
    assert skip.detail == "cannot test that TLS 1.0 is refused: no TLS 1.0 in this OpenSSL"
    assert not all_passed(results)


def test_secret_wrapper_keeps_the_password_off_the_command_line(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("pa55 'word\n")
    argv = probes.with_secret_env("VERIFY_SECRET", str(secret), ["sh", "-c", 'printf "%s" "$VERIFY_SECRET"'])
    assert "pa55" not in " ".join(argv)
    assert LocalExecutor().run(argv, 10) == ProbeResult(0, "pa55 'word", "")
    with pytest.raises(ValueError, match="not an environment variable name"):
        probes.with_secret_env("X; rm -rf /", str(secret), ["true"])


def test_marker_sql_takes_hex_only() -> None:
    assert probes.marker_read_sql("0123456789abcdef") == [
        "SELECT token FROM stagecraft_verify.marker WHERE token = '0123456789abcdef'"
    ]
    with pytest.raises(ValueError, match="hex"):
        probes.marker_write_sql("x'); DROP TABLE users; --")


def test_the_recorded_outputs_match_the_staging_stack_file(configs: dict[str, Any], namings: dict[str, Any]) -> None:
    """The fixture is what the program exports for Pulumi.staging.yaml, so the checks above run
    against the real stack's values."""
    sc, naming = configs["staging"].stagecraft, namings["staging"]
    verify = outputs()["verify"]
    assert verify["domains"] == sc.domains.model_dump()
    assert verify["docker_host"] == configs["staging"].docker.host
    assert (verify["proxy"]["http_port"], verify["proxy"]["https_port"]) == (sc.proxy.http_port, sc.proxy.https_port)
    assert verify["rate_limit"] == {"per_minute": sc.proxy.rate_limit_per_minute, "burst": sc.proxy.rate_limit_burst}
    assert verify["cors_origins"] == sc.app.cors_origins
    assert verify["p95_latency_ms"] == sc.monitoring.alerts.p95_latency_ms
    assert verify["health_paths"] == {"api": sc.services.api.health_path, "web": sc.services.web.health_path}
    assert verify["labels"] == naming.labels()
    assert verify["name_prefix"] == naming.prefix + "-"
    assert verify["services"] == {service: naming.container(service) for service in verify["services"]}
    assert verify["databases"]["app"] == naming.database()


# --------------------------------------------------------------------------------------------
# The recordings are the program's own staging plan: they cannot drift apart silently

CONTAINER = "docker:index/container:Container"


def _plan_labels(resource: Any) -> dict[str, str]:
    return {item["label"]: item["value"] for item in resource.inputs.get("labels") or []}


def _carrier_upload(plan: Any, container: str, path: str) -> str:
    (carrier,) = [c for c in plan.by_type(CONTAINER) if c.inputs["name"] == container]
    return next(u["content"] for u in carrier.inputs["uploads"] if u["file"] == path)


def test_the_recorded_outputs_are_the_program_s_outputs(plans: dict[str, Any]) -> None:
    """outputs-staging.json is `pulumi stack output --json` of the staging plan (the CA is a real
    certificate here; the mock engine's is a placeholder)."""
    program = json.loads(json.dumps(plans["staging"].outputs))
    recorded = outputs()
    assert {k: v for k, v in recorded.items() if k != "tls_ca_certificate"} == {
        k: v for k, v in program.items() if k != "tls_ca_certificate"
    }, "the program's outputs changed: run `venv/bin/python tests/data/verify/record_engine.py`, then review"


def test_the_program_s_own_outputs_pass_every_engine_check_against_the_recording(
    plans: dict[str, Any], engine: FakeEngine
) -> None:
    """Targets built from the plan's outputs, checked against the recorded Engine: every check
    that needs no live server (the Engine, the probes' answers) passes."""
    document = json.loads(json.dumps(plans["staging"].outputs))
    document["tls_ca_certificate"] = outputs()["tls_ca_certificate"]
    assert_all_pass(run(engine_context(engine, document=document), *ENGINE_CHECKS))


def test_the_recorded_engine_mirrors_the_staging_plan(plans: dict[str, Any]) -> None:
    """Each of the plan's containers is recorded with its labels, user, environment, healthcheck,
    mounts, networks, aliases, fixed addresses, capabilities, ports, log options and state; the
    plan's networks and volumes exist as planned; the one other container is the prod stack's
    Postgres on its own network; Prometheus's targets and rules are the rendered ones. After a
    change to the program: `venv/bin/python tests/data/verify/record_engine.py`, then review."""
    plan = plans["staging"]
    engine_dir = DATA / "engine"
    recorded = {c["Name"].lstrip("/"): c for c in json.loads((engine_dir / "containers.json").read_text())}
    planned = {c.inputs["name"]: c for c in plan.by_type(CONTAINER)}
    ours = {n for n, c in recorded.items() if c["Config"]["Labels"].get("stack") == "staging"}
    assert ours == set(planned)
    assert set(recorded) - ours == {"acme-prod-postgres"}
    prod = recorded["acme-prod-postgres"]
    assert prod["Config"]["Labels"]["stack"] == "prod" and set(prod["NetworkSettings"]["Networks"]) == {
        "acme-prod-data"
    }

    for name, resource in planned.items():
        i, doc = resource.inputs, recorded[name]
        config, host = doc["Config"], doc["HostConfig"]
        labels = _plan_labels(resource)
        assert config["Labels"] == labels, name
        assert config["User"] == i["user"], name
        assert set(i.get("envs") or []) <= set(config["Env"]), name
        assert (config["Healthcheck"] or {}).get("Test") == (i.get("healthcheck") or {}).get("tests"), name
        if i.get("entrypoints"):
            assert config["Entrypoint"] == i["entrypoints"], name
        if i.get("command"):
            assert config["Cmd"] == i["command"], name
        named = {
            (m["Name"], m["Destination"], m["RW"])
            for m in doc["Mounts"]
            if not re.fullmatch(r"[0-9a-f]{64}", m["Name"])
        }
        assert named == {(m["source"], m["target"], not m.get("readOnly", False)) for m in i.get("mounts") or []}, name
        attachments = {a["name"]: a for a in i.get("networksAdvanced") or []}
        networks = doc["NetworkSettings"]["Networks"]
        assert set(networks) == (set(attachments) or {"none"}), name
        for network, attachment in attachments.items():
            assert networks[network]["Aliases"] == attachment.get("aliases"), (name, network)
            static = (networks[network]["IPAMConfig"] or {}).get("IPv4Address")
            assert static == attachment.get("ipv4Address"), (name, network)
        assert host["NetworkMode"] == (i.get("networkMode") or next(iter(attachments), "none")), name
        capabilities = i.get("capabilities") or {}
        assert (host["CapAdd"], host["CapDrop"]) == (capabilities.get("adds"), capabilities.get("drops")), name
        assert host["Privileged"] is bool(i.get("privileged")) and host["ReadonlyRootfs"] is bool(i.get("readOnly"))
        published = {
            f"{p['internal']}/tcp": [{"HostIp": p["ip"], "HostPort": str(p["external"])}] for p in i.get("ports") or []
        }
        assert host["PortBindings"] == published, name
        if labels.get("role") == "files-carrier":
            assert doc["State"]["Status"] == "created", name
            continue
        assert host["LogConfig"] == {"Type": i["logDriver"], "Config": i["logOpts"]}, name
        assert host["RestartPolicy"]["Name"] == i["restart"], name
        state = doc["State"]
        if i["mustRun"]:
            assert state["Running"] and state.get("Health", {}).get("Status", "healthy") == "healthy", name
        else:
            assert (state["Status"], state["ExitCode"]) == ("exited", 0), name

    networks = {n["Name"]: n for n in json.loads((engine_dir / "networks.json").read_text())}
    planned_networks = {n.inputs["name"]: n for n in plan.by_type("docker:index/network:Network")}
    assert {n for n in networks if n.startswith("acme-staging-")} == set(planned_networks)
    for name, resource in planned_networks.items():
        ipam = [{"Subnet": c["subnet"], "Gateway": c["gateway"]} for c in resource.inputs["ipamConfigs"]]
        assert networks[name]["IPAM"]["Config"] == ipam, name
        assert networks[name]["Internal"] is resource.inputs["internal"], name
        assert networks[name]["Labels"] == _plan_labels(resource), name
    volumes = {v["Name"]: v for v in json.loads((engine_dir / "volumes.json").read_text())["Volumes"]}
    planned_volumes = {v.inputs["name"]: v for v in plan.by_type("docker:index/volume:Volume")}
    assert {v for v in volumes if v.startswith("acme-staging-")} == set(planned_volumes)
    assert all(volumes[name]["Labels"] == _plan_labels(v) for name, v in planned_volumes.items())

    scrape = yaml.safe_load(
        _carrier_upload(plan, "acme-staging-prometheus-files", "/run/stagecraft/config/prometheus.yml")
    )
    targets = json.loads((engine_dir / "prometheus-targets.json").read_text())["data"]["activeTargets"]
    assert {(t["labels"]["job"], t["labels"]["instance"]) for t in targets} == {
        (job["job_name"], target) for job in scrape["scrape_configs"] for target in job["static_configs"][0]["targets"]
    }
    alerts = yaml.safe_load(_carrier_upload(plan, "acme-staging-prometheus-files", "/run/stagecraft/config/alerts.yml"))
    groups = json.loads((engine_dir / "prometheus-rules.json").read_text())["data"]["groups"]
    assert [(g["name"], [r["name"] for r in g["rules"]]) for g in groups] == [
        (g["name"], [r["alert"] for r in g["rules"]]) for g in alerts["groups"]
    ]
