"""Grafana's entrypoint (rendered) run by dash with a fake `grafana` on PATH and a fake image
entrypoint, both recording what they were given."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require_tool, service_containers

from components.services.grafana import render_entrypoint
from preflight.engine import Plan

# Characters a shell would trip over, and a leading dash a CLI would take for an option.
PASSWORD = "-p4ss w0rd $HOME `id` 'q' \"d\" \\ ; *"
RESET = [
    "cli",
    "--homepath",
    "/usr/share/grafana",
    "--config",
    "/etc/grafana/grafana.ini",
    "admin",
    "reset-admin-password",
    "--password-from-stdin",
]

FAKE_GRAFANA = """#!/bin/sh
printf '%s\\n' "$@" > {dir}/grafana.argv
cat > {dir}/grafana.stdin
env > {dir}/grafana.env
echo "Admin password changed successfully"
exit {code}
"""
FAKE_RUN = """#!/bin/sh
printf '%s\\n' "$#" "$@" > {dir}/run.argv
echo $$ > {dir}/run.pid
"""


@dataclass
class Outcome:
    code: int
    pid: int
    output: str
    fakes: Path

    def read(self, name: str) -> str | None:
        path = self.fakes / name
        return path.read_text() if path.exists() else None


def _run(tmp_path: Path, existing_database: bool, args: list[str], reset_exit: int = 0) -> Outcome:
    shell = require_tool("dash")
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    (fakes / "grafana").write_text(FAKE_GRAFANA.format(dir=fakes, code=reset_exit))
    (fakes / "run.sh").write_text(FAKE_RUN.format(dir=fakes))
    for fake in ("grafana", "run.sh"):
        (fakes / fake).chmod(0o755)
    data = tmp_path / "data"
    data.mkdir()
    if existing_database:
        (data / "grafana.db").write_bytes(b"SQLite format 3\0")
    secret = tmp_path / "grafana-admin-password"
    secret.write_text(PASSWORD)
    secret.chmod(0o400)
    script = tmp_path / "entrypoint.sh"
    script.write_text(render_entrypoint(str(secret), str(data), str(fakes / "run.sh")))
    process = subprocess.Popen(
        [shell, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={"PATH": f"{fakes}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    output, _ = process.communicate(timeout=30)
    return Outcome(process.returncode, process.pid, output.decode(), fakes)


def test_a_restart_sets_the_password_from_the_file_through_stdin(tmp_path: Path) -> None:
    """On the command line the password would be in /proc/<pid>/cmdline, which ps shows to every
    user of the container."""
    outcome = _run(tmp_path, existing_database=True, args=[])
    assert outcome.code == 0, outcome.output
    argv = (outcome.read("grafana.argv") or "").splitlines()
    assert argv == RESET
    assert outcome.read("grafana.stdin") == PASSWORD
    assert not any(part in line for line in argv for part in ("p4ss", "w0rd"))
    assert "p4ss" not in (outcome.read("grafana.env") or "")
    assert "p4ss" not in outcome.output  # nor in the container's log


def test_then_the_image_entrypoint_replaces_the_script_with_its_arguments(tmp_path: Path) -> None:
    """exec: the server gets Docker's signals itself (a graceful stop) and the arguments as given."""
    outcome = _run(tmp_path, existing_database=True, args=["cfg:default.log.level=warn", "two words"])
    assert outcome.code == 0
    assert outcome.read("run.argv") == "2\ncfg:default.log.level=warn\ntwo words\n"
    assert int(outcome.read("run.pid") or 0) == outcome.pid


def test_a_new_database_is_left_to_grafana(tmp_path: Path) -> None:
    """On the first start Grafana creates the admin from GF_SECURITY_ADMIN_PASSWORD__FILE itself;
    there is no database for the CLI to change yet."""
    outcome = _run(tmp_path, existing_database=False, args=[])
    assert outcome.code == 0
    assert outcome.read("grafana.argv") is None
    assert outcome.read("run.argv") == "0\n"
    assert int(outcome.read("run.pid") or 0) == outcome.pid


def test_a_failed_reset_does_not_start_grafana_with_the_old_password(tmp_path: Path) -> None:
    """A rotated password that did not take effect would leave the old one valid: the container
    fails (and Docker retries it) instead of serving with it."""
    outcome = _run(tmp_path, existing_database=True, args=[], reset_exit=1)
    assert outcome.code != 0
    assert outcome.read("run.argv") is None


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_container_runs_this_entrypoint(stack: str, plans: dict[str, Plan]) -> None:
    containers = service_containers(plans[stack])
    grafana = containers["grafana"]
    assert grafana.inputs["entrypoints"] == ["/bin/sh", "/run/stagecraft/config/entrypoint.sh"]
    assert not grafana.inputs.get("command")
    files = {u["file"]: u for u in containers["grafana-files"].inputs["uploads"]}
    script = files["/run/stagecraft/config/entrypoint.sh"]
    assert script["content"] == render_entrypoint("/run/stagecraft/secrets/grafana-admin-password")
    assert 'exec /run.sh "$@"' in script["content"]
    secret = files["/run/stagecraft/secrets/grafana-admin-password"]
    assert (secret["permissions"], secret["owner"], secret["content"]) == ("0400", "472", "[secret]")
    envs = dict(pair.split("=", 1) for pair in grafana.inputs["envs"])
    assert envs["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/stagecraft/secrets/grafana-admin-password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in envs
