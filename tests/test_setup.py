"""scripts/setup on a machine that is not a CI runner: installs what is missing, waits for the
apt lock, and never stops or disables anyone's services; on CI it stops what it just installed."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

# Fake system tools: each records its arguments in $CALLS. dpkg-query reports every package as
# missing, python3 makes a venv whose pip records too.
FAKES = {
    "apt-get": 'echo "apt-get $*" >> "$CALLS"',
    "dpkg-query": "exit 1",
    "systemctl": 'echo "systemctl $*" >> "$CALLS"',
    "service": 'echo "service $*" >> "$CALLS"',
    "sudo": '"$@"',
    "id": "echo 0",
    "python3": (
        'echo "python3 $*" >> "$CALLS"\n'
        "mkdir -p venv/bin\n"
        'printf \'#!/bin/sh\\necho "pip $*" >> "$CALLS"\\n\' > venv/bin/pip\n'
        "chmod +x venv/bin/pip"
    ),
}


def _run_setup(tmp_path: Path, ci: bool) -> list[str]:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "setup", checkout / "scripts" / "setup")
    fakes = tmp_path / "bin"
    fakes.mkdir()
    for name, body in FAKES.items():
        path = fakes / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    for tool in ("dirname", "grep", "cat", "mkdir", "chmod", "printf"):
        found = shutil.which(tool)
        if found:
            (fakes / tool).symlink_to(found)
    calls = tmp_path / "calls"
    calls.touch()
    environment = {"PATH": str(fakes), "CALLS": str(calls), "HOME": str(tmp_path)}
    if ci:
        environment["CI"] = "true"
    result = subprocess.run(
        [bash, str(checkout / "scripts" / "setup")],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return calls.read_text().splitlines()


def test_a_users_services_are_never_stopped(tmp_path: Path) -> None:
    calls = _run_setup(tmp_path, ci=False)
    installs = [call for call in calls if call.startswith("apt-get") and " install " in call]
    assert installs and all("DPkg::Lock::Timeout=" in call for call in calls if call.startswith("apt-get"))
    assert not [call for call in calls if call.startswith(("systemctl", "service"))]
    assert any(call.startswith("pip install") and "requirements-dev.txt" in call for call in calls)


def test_on_ci_the_services_it_installed_are_stopped(tmp_path: Path) -> None:
    calls = _run_setup(tmp_path, ci=True)
    stopped = {call.split()[-1] for call in calls if call.startswith("systemctl disable --now")}
    assert stopped == {
        "nginx",
        "prometheus",
        "prometheus-alertmanager",
        "prometheus-node-exporter",
        "postgresql",
        "redis-server",
    }
