"""Shared fixtures: the project's stack files, loaded configs, plans and a mock-engine runner."""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.composition.platform import naming_for  # noqa: E402
from components.config import StackConfig, load_from_file  # noqa: E402
from components.naming import Naming  # noqa: E402
from preflight.engine import Plan, capture, plan  # noqa: E402

STACKS = ("staging", "prod")


def stack_document(stack: str) -> dict[str, Any]:
    """The parsed Pulumi.<stack>.yaml, to copy and break in tests."""
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())


@pytest.fixture
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def configs() -> dict[str, StackConfig]:
    return {stack: load_from_file(ROOT / f"Pulumi.{stack}.yaml") for stack in STACKS}


@pytest.fixture(scope="session")
def plans() -> dict[str, Plan]:
    """Both stacks planned end to end under the mock engine (once per session)."""
    return {stack: plan(stack) for stack in STACKS}


@pytest.fixture
def namings(configs: dict[str, StackConfig]) -> dict[str, Naming]:
    return {stack: naming_for(config, stack) for stack, config in configs.items()}


@pytest.fixture
def write_stack(tmp_path: Path) -> Callable[..., Path]:
    """Write a (modified) stack document to a temp file named like a stack file."""

    def write(document: dict[str, Any], name: str = "Pulumi.staging.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(copy.deepcopy(document), sort_keys=False))
        return path

    return write


@pytest.fixture
def run_mocked() -> Callable[[str, Callable[[], Any]], Plan]:
    """Run a function that builds components under the mock engine; return what it registered."""

    def run(stack: str, build: Callable[[], Any]) -> Plan:
        return capture(stack, build)

    return run


# --------------------------------------------------------------------------------------------
# Real servers for the rendered-config tests: 127.0.0.1 only, free ports, stopped afterwards.


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def self_signed_certificate(directory: Path, names: Sequence[str], stem: str = "tls") -> tuple[Path, Path]:
    """A throwaway P-256 certificate valid one day for the DNS ``names`` (subject CN=``stem``)
    and its key, written to ``<stem>.crt`` and ``<stem>.key`` in ``directory``."""
    import subprocess

    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={stem}"),
            *("-addext", "subjectAltName=" + ",".join(f"DNS:{name}" for name in names)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory for a test's nginx: its workers run unprivileged, so it lives outside
    pytest's 0700 temp tree, readable by them; removed afterwards."""
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="stagecraft-nginx-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def require_tool(path: str) -> str:
    """The Debian program a test needs; `.ci/run` installs them all, so missing means skip locally."""
    import shutil

    found = shutil.which(path) or (path if Path(path).exists() else None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing; scripts/setup installs it")
        pytest.skip(f"{path} is not installed (run scripts/setup)")
    return found


# --------------------------------------------------------------------------------------------
# Finding resources by what they are, not by their logical names.


def service_containers(plan: Plan) -> dict[str, Any]:
    """Docker containers keyed by the service they run (their `service` label); a files
    carrier is `<service>-files`."""
    found = {}
    for container in plan.by_type("docker:index/container:Container"):
        labels = {label["label"]: label["value"] for label in container.inputs.get("labels", [])}
        key = labels["service"] + ("-files" if labels.get("role") == "files-carrier" else "")
        found[key] = container
    return found


def labelled(plan: Plan, type_: str, label: str) -> dict[str, Any]:
    """Resources of a type keyed by one of their (GCP) labels, e.g. buckets by `purpose`."""
    return {r.inputs["labels"][label]: r for r in plan.by_type(type_)}
