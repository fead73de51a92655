"""Shared fixtures: the project's stack files, loaded configs, plans and a mock-engine runner."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.config import StackConfig, load_from_file  # noqa: E402
from components.naming import Naming  # noqa: E402
from components.platform import naming_for  # noqa: E402
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
