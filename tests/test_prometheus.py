"""Prometheus config and alert rules, checked and unit-tested by the real promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require_tool

from components.config import StackConfig
from components.containers.endpoints import ScrapeTarget
from components.services.prometheus import ProcessLimit, alert_rules, render_alert_rules, render_prometheus_config

TARGETS = [ScrapeTarget("prometheus", "127.0.0.1:9090"), ScrapeTarget("api", "acme-staging-api:8001")]


def _limits(config: StackConfig) -> list[ProcessLimit]:
    services = config.stagecraft.services
    return [ProcessLimit("api", services.api.cpus, services.api.memory_mb)]


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _write(directory: Path, config: StackConfig) -> None:
    monitoring = config.stagecraft.monitoring
    (directory / "alerts.yml").write_text(render_alert_rules(monitoring.alerts, _limits(config), config.environment))
    (directory / "prometheus.yml").write_text(
        render_prometheus_config(TARGETS, monitoring.scrape_interval_s, ["alerts.yml"], config.environment)
    )


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_promtool_accepts_config_and_rules(stack: str, configs: dict[str, StackConfig], tmp_path: Path) -> None:
    _write(tmp_path, configs[stack])
    config = _promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert config.returncode == 0, config.stdout + config.stderr
    rules = _promtool("check", "rules", "alerts.yml", cwd=tmp_path)
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_thresholds_differ_per_environment(configs: dict[str, StackConfig]) -> None:
    def exprs(stack: str) -> dict[str, str]:
        config = configs[stack]
        return {r["alert"]: r["expr"] for r in alert_rules(config.stagecraft.monitoring.alerts, _limits(config), stack)}

    staging, prod = exprs("staging"), exprs("prod")
    assert staging["ApiErrorRateHigh"] != prod["ApiErrorRateHigh"]
    assert staging["ApiLatencyP95High"].endswith("> 2") and prod["ApiLatencyP95High"].endswith("> 0.5")


def _firing_series(config: StackConfig) -> list[dict[str, str]]:
    api = config.stagecraft.services.api
    return [
        {"series": 'http_request_duration_seconds_bucket{job="api",le="0.1"}', "values": "0+0x30"},
        {"series": 'http_request_duration_seconds_bucket{job="api",le="10"}', "values": "0+10x30"},
        {"series": 'http_request_duration_seconds_bucket{job="api",le="+Inf"}', "values": "0+10x30"},
        {"series": 'http_requests_total{job="api",status="500"}', "values": "0+10x30"},
        {"series": 'http_requests_total{job="api",status="200"}', "values": "0+10x30"},
        {"series": 'node_filesystem_avail_bytes{mountpoint="/"}', "values": "5x30"},
        {"series": 'node_filesystem_size_bytes{mountpoint="/"}', "values": "100x30"},
        {"series": 'up{job="api",instance="api:8001"}', "values": "0x30"},
        {"series": "pg_up", "values": "0x30"},
        {"series": "redis_up", "values": "0x30"},
        # The whole CPU budget, and the whole memory limit.
        {"series": 'process_cpu_seconds_total{job="api"}', "values": f"0+{60 * api.cpus:g}x30"},
        {"series": 'process_resident_memory_bytes{job="api"}', "values": f"{api.memory_mb * 1024 * 1024}x30"},
    ]


def _healthy_series() -> list[dict[str, str]]:
    return [
        {"series": 'http_request_duration_seconds_bucket{job="api",le="0.1"}', "values": "0+10x30"},
        {"series": 'http_request_duration_seconds_bucket{job="api",le="+Inf"}', "values": "0+10x30"},
        {"series": 'http_requests_total{job="api",status="200"}', "values": "0+10x30"},
        {"series": 'node_filesystem_avail_bytes{mountpoint="/"}', "values": "80x30"},
        {"series": 'node_filesystem_size_bytes{mountpoint="/"}', "values": "100x30"},
        {"series": 'up{job="api",instance="api:8001"}', "values": "1x30"},
        {"series": "pg_up", "values": "1x30"},
        {"series": "redis_up", "values": "1x30"},
        {"series": 'process_cpu_seconds_total{job="api"}', "values": "0+1x30"},
        {"series": 'process_resident_memory_bytes{job="api"}', "values": "1000x30"},
    ]


def _expected(rule: dict[str, Any]) -> dict[str, Any]:
    labels = dict(rule["labels"])
    summary = rule["annotations"]["summary"]
    if rule["alert"] == "ServiceDown":
        labels.update({"job": "api", "instance": "api:8001"})
        summary = summary.replace("{{ $labels.job }}", "api")
    if rule["alert"] == "HostDiskUsageHigh":
        labels["mountpoint"] = "/"
    if rule["alert"].startswith(("CpuHigh_", "MemoryHigh_")):
        labels["job"] = "api"
    return {"exp_labels": labels, "exp_annotations": {"summary": summary}}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_every_alert_fires_on_synthetic_series(stack: str, configs: dict[str, StackConfig], tmp_path: Path) -> None:
    config = configs[stack]
    _write(tmp_path, config)
    rules = alert_rules(config.stagecraft.monitoring.alerts, _limits(config), stack)
    tests = {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": _firing_series(config),
                "alert_rule_test": [
                    {"eval_time": "25m", "alertname": rule["alert"], "exp_alerts": [_expected(rule)]} for rule in rules
                ],
            },
            {
                "interval": "1m",
                "input_series": _healthy_series(),
                "alert_rule_test": [
                    {"eval_time": "25m", "alertname": rule["alert"], "exp_alerts": []} for rule in rules
                ],
            },
        ],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = _promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(rules) >= 8
