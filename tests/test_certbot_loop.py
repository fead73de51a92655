"""certbot's entrypoint (the rendered loop) run by dash against a fake `certbot` on PATH that
records each command line and succeeds or fails as the test says."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require_tool

from components.services.proxy import render_certbot_loop

DOMAINS = ["acme.example.com", "api.acme.example.com", "grafana.acme.example.com"]
EMAIL = "ops@acme.example.com"
WAIT_S = 30.0

# Records its arguments, one per line, in calls/<n>; answers with line n of `outcomes` (fail: exit
# 1); a successful certonly writes the certificate where certbot would.
FAKE_CERTBOT = """#!/bin/sh
dir={dir}
n=$(($(ls "$dir/calls" | wc -l) + 1))
printf '%s\\n' "$@" > "$dir/calls/$n"
if [ "$(sed -n "${{n}}p" "$dir/outcomes")" = fail ]; then
    echo "fake certbot: failing" >&2
    exit 1
fi
if [ "$1" = certonly ]; then
    config= name=
    while [ $# -gt 0 ]; do
        case "$1" in
            --config-dir) config=$2 ;;
            --cert-name) name=$2 ;;
        esac
        shift
    done
    mkdir -p "$config/live/$name"
    echo certificate > "$config/live/$name/fullchain.pem"
    echo key > "$config/live/$name/privkey.pem"
fi
"""


@dataclass
class Loop:
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def config_dir(self) -> Path:
        return self.root / "letsencrypt"

    def calls(self) -> list[list[str]]:
        directory = self.root / "fake" / "calls"
        return [(directory / str(n)).read_text().splitlines() for n in range(1, len(list(directory.iterdir())) + 1)]

    def wait_for_calls(self, count: int) -> list[list[str]]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if len(self.calls()) >= count:
                return self.calls()
            assert self.process.poll() is None, f"the loop ended (exit {self.process.returncode})"
            time.sleep(0.05)
        raise AssertionError(f"certbot was called {len(self.calls())} times, not {count}")


@contextlib.contextmanager
def certbot_loop(
    root: Path, outcomes: Sequence[str] = (), staging_ca: bool = False, renewal_server: str | None = None
) -> Iterator[Loop]:
    """The loop, retrying every 0.2 s and renewing every second; ``renewal_server``: the CA of a
    certificate certbot already has, as its renewal file records it."""
    shell = require_tool("dash")
    fake = root / "fake"
    (fake / "calls").mkdir(parents=True)
    (fake / "outcomes").write_text("".join(f"{o}\n" for o in outcomes))
    (fake / "certbot").write_text(FAKE_CERTBOT.format(dir=fake))
    (fake / "certbot").chmod(0o755)
    config_dir = root / "letsencrypt"
    if renewal_server is not None:
        (config_dir / "renewal").mkdir(parents=True)
        (config_dir / "renewal" / "stagecraft.conf").write_text(
            f"version = 4.0.0\narchive_dir = x\n\n[renewalparams]\nauthenticator = webroot\nserver = {renewal_server}\n"
        )
        (config_dir / "live" / "stagecraft").mkdir(parents=True)
        for name in ("fullchain.pem", "privkey.pem"):
            (config_dir / "live" / "stagecraft" / name).write_text("existing\n")
    script = root / "certbot.sh"
    script.write_text(
        render_certbot_loop(
            DOMAINS,
            EMAIL,
            staging_ca,
            1,
            config_dir=str(config_dir),
            webroot=str(root / "webroot"),
            work_dir=str(root / "work"),
            heartbeat=str(root / "alive"),
            retry_every="0.2",
            sleep_unit="s",
        )
    )
    env = {**os.environ, "PATH": f"{fake}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    with (root / "loop.log").open("wb") as log:
        process = subprocess.Popen(
            [shell, str(script)], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield Loop(root, process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _common(root: Path) -> list[str]:
    return [
        "--config-dir",
        str(root / "letsencrypt"),
        "--work-dir",
        str(root / "work" / "work"),
        "--logs-dir",
        str(root / "work" / "logs"),
        "--non-interactive",
    ]


def _obtain(root: Path, staging: bool = False, force: bool = False) -> list[str]:
    names = [arg for domain in DOMAINS for arg in ("-d", domain)]
    return [
        "certonly",
        *_common(root),
        "--agree-tos",
        "--email",
        EMAIL,
        "--webroot",
        "-w",
        str(root / "webroot"),
        "--cert-name",
        "stagecraft",
        *names,
        *(["--staging"] if staging else []),
        "--keep-until-expiring",
        *(["--force-renewal"] if force else []),
    ]


def _renew(root: Path) -> list[str]:
    return ["renew", *_common(root), "--webroot", "-w", str(root / "webroot")]


def test_obtains_then_renews_and_no_failure_ends_the_loop(tmp_path: Path) -> None:
    """The container restarts only when the loop ends, and its healthcheck watches the heartbeat:
    a failing certbot (Let's Encrypt down, the proxy not answering yet) is retried instead."""
    with certbot_loop(tmp_path, ["fail", "ok", "ok", "fail", "ok"]) as loop:
        calls = loop.wait_for_calls(5)
        assert loop.process.poll() is None
        assert (tmp_path / "alive").exists()
        loop.process.send_signal(signal.SIGTERM)  # docker stop
        assert loop.process.wait(timeout=10) == 0
    # Until a certificate is issued it asks for one; after that only renewals, failed or not.
    assert calls[:5] == [_obtain(tmp_path)] * 2 + [_renew(tmp_path)] * 3
    assert (tmp_path / "letsencrypt" / "live" / "stagecraft" / "fullchain.pem").exists()
    log = (tmp_path / "loop.log").read_text()
    assert "no certificate for the configured names yet" in log and "renewal failed" in log


def test_the_staging_ca_is_asked_for_when_configured(tmp_path: Path) -> None:
    with certbot_loop(tmp_path, staging_ca=True) as loop:
        calls = loop.wait_for_calls(2)
    assert calls[:2] == [_obtain(tmp_path, staging=True), _renew(tmp_path)]


def test_a_certificate_already_there_is_checked_against_the_configured_names(tmp_path: Path) -> None:
    """A restart (or new names in the stack) asks certbot for the configured names first: an
    existing certificate is kept until it is due if it has them, and re-issued with them if not.
    Renewing it alone would keep serving the old names."""
    with certbot_loop(tmp_path, renewal_server="https://acme-v02.api.letsencrypt.org/directory") as loop:
        calls = loop.wait_for_calls(2)
    assert calls[:2] == [_obtain(tmp_path), _renew(tmp_path)]


def test_leaving_the_staging_ca_replaces_its_certificate(tmp_path: Path) -> None:
    """A staging certificate is untrusted: once the stack asks for the real CA it is replaced at
    once, not kept until it is due (and renewed from the staging CA again)."""
    staging = "https://acme-staging-v02.api.letsencrypt.org/directory"
    with certbot_loop(tmp_path, renewal_server=staging) as loop:
        calls = loop.wait_for_calls(2)
    assert calls[:2] == [_obtain(tmp_path, force=True), _renew(tmp_path)]
    # Still on the staging CA by choice: nothing is forced.
    with certbot_loop(tmp_path / "staying", staging_ca=True, renewal_server=staging) as loop:
        calls = loop.wait_for_calls(1)
    assert calls[0] == _obtain(tmp_path / "staying", staging=True)


@pytest.mark.parametrize("staging_ca", [False, True])
def test_no_secret_and_nothing_unexpected_on_the_command_line(tmp_path: Path, staging_ca: bool) -> None:
    """Every argument is one the loop means to pass (no key, no EAB HMAC, no token)."""
    with certbot_loop(tmp_path, staging_ca=staging_ca) as loop:
        calls = loop.wait_for_calls(2)
    allowed = set(_obtain(tmp_path, staging=True, force=True)) | set(_renew(tmp_path))
    for call in calls:
        assert set(call) <= allowed, call
