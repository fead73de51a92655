"""Grafana dashboards (components/dashboards/*.json): every query parses in the real promtool,
panels have unique ids, use the provisioned Prometheus datasource and do not overlap."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require_tool

from components.services.grafana import DASHBOARDS_DIR, dashboard_names, render_dashboard

# Grafana refuses dashboard uids longer than this.
UID_MAX = 40


def _dashboard(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS_DIR / f"{name}.json").read_text())


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(a name for the query, its PromQL) for every target of every panel."""
    return [
        (f"panel_{panel['id']}_{target['refId']}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def _check_queries(queries: list[tuple[str, str]], directory: Path) -> subprocess.CompletedProcess[str]:
    """promtool parses each query as a recording rule's expression."""
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": name, "expr": expr} for name, expr in queries]}]}
    (directory / "queries.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    return subprocess.run(
        [require_tool("promtool"), "check", "rules", "queries.yml"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_dashboards_are_there() -> None:
    assert set(dashboard_names()) >= {"overview", "application", "data-services", "system"}


@pytest.mark.parametrize("name", dashboard_names())
def test_every_query_parses(name: str, tmp_path: Path) -> None:
    queries = _queries(_dashboard(name))
    assert queries and all(expr.strip() for _, expr in queries)
    result = _check_queries(queries, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout


def test_a_broken_query_is_caught(tmp_path: Path) -> None:
    result = _check_queries([("panel_1_A", "sum by (job) (rate(http_requests_total[5m])")], tmp_path)
    assert result.returncode != 0


def _overlaps(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
    )


@pytest.mark.parametrize("name", dashboard_names())
def test_panels_are_unique_on_prometheus_and_laid_out(name: str) -> None:
    panels = _dashboard(name)["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    for index, panel in enumerate(panels):
        for other in panels[index + 1 :]:
            assert not _overlaps(panel["gridPos"], other["gridPos"]), (panel["title"], other["title"])


@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_dashboards_get_distinct_short_uids(environment: str) -> None:
    rendered = [json.loads(render_dashboard(name, environment)) for name in dashboard_names()]
    uids = [dashboard["uid"] for dashboard in rendered]
    assert len(set(uids)) == len(uids)
    assert all(len(uid) <= UID_MAX and environment in uid for uid in uids)


def test_the_system_dashboard_shows_backups_and_drills() -> None:
    exprs = " ".join(expr for _, expr in _queries(_dashboard("system")))
    for metric in (
        "stagecraft_backup_last_success_timestamp_seconds",
        "stagecraft_backup_last_run_success",
        "stagecraft_restore_drill_last_success_timestamp_seconds",
        "stagecraft_restore_drill_last_run_success",
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_filesystem_avail_bytes",
    ):
        assert metric in exprs


def test_the_application_dashboard_shows_latency_quantiles_by_job() -> None:
    exprs = [expr for _, expr in _queries(_dashboard("application"))]
    for quantile in ("0.5", "0.95", "0.99"):
        assert (
            f"histogram_quantile({quantile}, sum by (job, le) (rate(http_request_duration_seconds_bucket[5m])))"
            in exprs
        )
