"""A release of a stateless service drops no request: the new version is healthy before the old
one goes, and the proxy, with the rendered config, finds whichever runs through DNS when requests
arrive. Run with the real nginx in a private network namespace (root only)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter

import pytest
from conftest import ROOT, require_tool

from preflight.engine import Plan


def _can_unshare() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("ip") is not None


def test_a_release_behind_the_proxy_drops_no_request() -> None:
    require_tool("nginx")
    require_tool("openssl")
    if not _can_unshare():
        if os.environ.get("CI"):
            pytest.fail("the release test needs root, unshare and ip (a private network namespace)")
        pytest.skip("needs root, unshare and ip for a private network namespace")
    script = ROOT / "tests" / "zero_downtime_scenario.py"
    result = subprocess.run(
        ["unshare", "-n", "--", sys.executable, str(script)], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    statuses, versions = report["statuses"], report["versions"]
    assert len(statuses) == 220
    assert Counter(statuses) == {200: 220}, report["error_log"]
    # Every request was answered, first by the old version, at the end by the new one alone.
    assert versions[:40] == ["old"] * 40
    assert versions[-60:] == ["new"] * 60


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_stateless_services_roll_and_stateful_ones_keep_their_names(stack: str, plans: dict[str, Plan]) -> None:
    from conftest import service_containers

    containers = service_containers(plans[stack])
    by_urn = {r.urn: r for r in plans[stack].resources}
    for service in ("api", "web"):
        container = containers[service]
        name = container.inputs["name"]
        assert name.startswith(f"acme-{stack}-{service}-") and len(name) == len(f"acme-{stack}-{service}-") + 8
        aliases = {alias for n in container.inputs["networksAdvanced"] for alias in n.get("aliases", [])}
        assert f"acme-{stack}-{service}" in aliases
        assert by_urn[container.urn] is not None
    for service in ("postgres", "redis", "chroma", "temporal", "proxy", "prometheus", "grafana"):
        assert containers[service].inputs["name"] == f"acme-{stack}-{service}"
