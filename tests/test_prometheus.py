"""Prometheus config and alert rules, checked and unit-tested by the real promtool; the scrape
jobs checked against the services they must watch."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require_tool

from components.config import StackConfig
from components.containers.endpoints import ScrapeTarget
from components.naming import Naming
from components.services import alertmanager, exporters, grafana
from components.services.prometheus import (
    DAY_S,
    DEFAULT_OPS_AGES,
    WATCHING_JOB,
    OpsAges,
    ProcessLimit,
    alert_rules,
    allowed_age_s,
    render_alert_rules,
    render_prometheus_config,
    scrape_jobs,
    unwatched,
)

TARGETS = [ScrapeTarget("prometheus", "127.0.0.1:9090"), ScrapeTarget("api", "acme-staging-api:8001")]
# Short ages, so the unit tests below see a backup and a drill become overdue within an hour.
AGES = OpsAges(backup_s=600, drill_s=900)
# Samples per input series (one a minute), and when the alerts are checked.
STEPS = 70
EVAL = "60m"


def _limits(config: StackConfig) -> list[ProcessLimit]:
    services = config.stagecraft.services
    return [ProcessLimit("api", services.api.cpus, services.api.memory_mb)]


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _rules(config: StackConfig, ages: OpsAges = AGES) -> list[dict[str, Any]]:
    return alert_rules(config.stagecraft.monitoring.alerts, _limits(config), config.environment, ages)


def _write(directory: Path, config: StackConfig, ages: OpsAges = AGES) -> None:
    monitoring = config.stagecraft.monitoring
    (directory / "alerts.yml").write_text(
        render_alert_rules(monitoring.alerts, _limits(config), config.environment, ages)
    )
    (directory / "prometheus.yml").write_text(
        render_prometheus_config(
            TARGETS,
            monitoring.scrape_interval_s,
            ["alerts.yml"],
            config.environment,
            alertmanagers=[f"acme-{config.environment}-alertmanager:9093"],
        )
    )


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_promtool_accepts_config_and_rules(stack: str, configs: dict[str, StackConfig], tmp_path: Path) -> None:
    _write(tmp_path, configs[stack], DEFAULT_OPS_AGES)
    config = _promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert config.returncode == 0, config.stdout + config.stderr
    rules = _promtool("check", "rules", "alerts.yml", cwd=tmp_path)
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_alerts_go_to_alertmanager() -> None:
    config = yaml.safe_load(render_prometheus_config(TARGETS, 15, ["alerts.yml"], "prod", ["acme-prod-am:9093"]))
    assert config["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["acme-prod-am:9093"]}]}]}
    assert config["global"]["external_labels"] == {"environment": "prod"}
    assert "alerting" not in yaml.safe_load(render_prometheus_config(TARGETS, 15, ["alerts.yml"], "prod"))


def test_thresholds_differ_per_environment(configs: dict[str, StackConfig]) -> None:
    def exprs(stack: str) -> dict[str, str]:
        return {r["alert"]: r["expr"] for r in _rules(configs[stack])}

    staging, prod = exprs("staging"), exprs("prod")
    assert staging["ApiErrorRateHigh"] != prod["ApiErrorRateHigh"]
    assert staging["ApiLatencyP95High"].endswith("> 2") and prod["ApiLatencyP95High"].endswith("> 0.5")


def test_allowed_ages_follow_the_schedule() -> None:
    assert allowed_age_s(DAY_S, 60) == DAY_S + 2 * 3600
    assert DEFAULT_OPS_AGES == OpsAges(backup_s=26 * 3600, drill_s=7 * DAY_S + 2 * 3600)
    rules = {r["alert"]: r["expr"] for r in _rules_for_ages(OpsAges(backup_s=93600, drill_s=612000))}
    assert "> 93600 " in rules["BackupMissing"] and "> 612000 " in rules["RestoreDrillMissing"]


def _rules_for_ages(ages: OpsAges) -> list[dict[str, Any]]:
    from components.config import AlertThresholds

    return alert_rules(AlertThresholds(), [], "staging", ages)


# Every alert's runbook section.
RUNBOOK_ANCHORS = {
    "ApiLatencyP95High": "alert-apilatencyp95high",
    "ApiErrorRateHigh": "alert-apierrorratehigh",
    "HostDiskUsageHigh": "alert-hostdiskusagehigh",
    "ServiceDown": "alert-servicedown",
    "PostgresDown": "alert-postgresdown",
    "RedisDown": "alert-redisdown",
    "ProxyDown": "alert-proxydown",
    "TemporalDown": "alert-temporaldown",
    "ContainerRestarting": "alert-containerrestarting",
    "BackupMissing": "alert-backupmissing",
    "BackupFailed": "alert-backupfailed",
    "RestoreDrillMissing": "alert-restoredrillmissing",
    "RestoreDrillFailed": "alert-restoredrillfailed",
    "AlertmanagerNotificationsFailing": "alert-alertmanagernotificationsfailing",
    "CpuHigh_api": "alert-cpuhigh",
    "MemoryHigh_api": "alert-memoryhigh",
}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_every_alert_says_where_what_and_how_bad(stack: str, configs: dict[str, StackConfig]) -> None:
    rules = _rules(configs[stack])
    assert {r["alert"]: r["annotations"]["runbook"] for r in rules} == {
        name: f"docs/runbook.md#{anchor}" for name, anchor in RUNBOOK_ANCHORS.items()
    }
    for rule in rules:
        assert rule["labels"]["environment"] == stack, rule["alert"]
        assert rule["labels"]["severity"] in alertmanager.REPEAT_INTERVALS or rule["labels"]["severity"] == "info"
        assert rule["labels"]["service"] and rule["annotations"]["summary"], rule["alert"]


def test_every_runbook_link_lands_on_its_section(project_root: Path) -> None:
    """An alert that links to a section the runbook does not have leaves the person paged with
    nothing to read."""
    runbook = (project_root / "docs" / "runbook.md").read_text()
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', runbook))
    assert set(RUNBOOK_ANCHORS.values()) <= anchors


def _series(name: str, values: str) -> dict[str, str]:
    return {"series": name, "values": values}


NODE = 'job="node",instance="acme-staging-node-exporter:9100"'
PG = 'job="postgres",instance="acme-staging-postgres-exporter:9187"'
REDIS = 'job="redis",instance="acme-staging-redis-exporter:9121"'
AM = 'job="alertmanager",instance="acme-staging-alertmanager:9093"'


def _firing_series(config: StackConfig) -> list[dict[str, str]]:
    api = config.stagecraft.services.api
    n = STEPS
    return [
        _series('http_request_duration_seconds_bucket{job="api",le="0.1"}', f"0+0x{n}"),
        _series('http_request_duration_seconds_bucket{job="api",le="10"}', f"0+10x{n}"),
        _series('http_request_duration_seconds_bucket{job="api",le="+Inf"}', f"0+10x{n}"),
        _series('http_requests_total{job="api",status="500"}', f"0+10x{n}"),
        _series('http_requests_total{job="api",status="200"}', f"0+10x{n}"),
        _series('node_filesystem_avail_bytes{mountpoint="/"}', f"5x{n}"),
        _series('node_filesystem_size_bytes{mountpoint="/"}', f"100x{n}"),
        _series('up{job="api",instance="api:8001"}', f"0x{n}"),
        _series('up{job="temporal",instance="temporal:9090"}', f"0x{n}"),
        _series("pg_up", f"0x{n}"),
        _series("redis_up", f"0x{n}"),
        _series("nginx_up", f"0x{n}"),
        # The whole CPU budget, and the whole memory limit.
        _series('process_cpu_seconds_total{job="api"}', f"0+{60 * api.cpus:g}x{n}"),
        _series('process_resident_memory_bytes{job="api"}', f"{api.memory_mb * 1024 * 1024}x{n}"),
        # Restarts every minute: the API, the Postgres exporter and its server (same job and
        # instance, told apart by the process label), and Redis (its uptime starting over).
        _series('process_start_time_seconds{job="api",instance="api:8001"}', f"0+60x{n}"),
        _series(f"process_start_time_seconds{{{PG}}}", f"0+60x{n}"),
        _series(f"pg_postmaster_start_time_seconds{{{PG}}}", f"0+60x{n}"),
        _series(f"redis_uptime_in_seconds{{{REDIS}}}", " ".join(["60", "0"] * (n // 2))),
        # The last successful backup and drill at time 0, and the last runs failed.
        _series(f"stagecraft_backup_last_success_timestamp_seconds{{{NODE}}}", f"0x{n}"),
        _series(f"stagecraft_backup_last_run_success{{{NODE}}}", f"0x{n}"),
        _series(f"stagecraft_restore_drill_last_success_timestamp_seconds{{{NODE}}}", f"0x{n}"),
        _series(f"stagecraft_restore_drill_last_run_success{{{NODE}}}", f"0x{n}"),
        _series(f'alertmanager_notifications_failed_total{{{AM},integration="email"}}', f"0+1x{n}"),
    ]


def _healthy_series() -> list[dict[str, str]]:
    n = STEPS
    return [
        _series('http_request_duration_seconds_bucket{job="api",le="0.1"}', f"0+10x{n}"),
        _series('http_request_duration_seconds_bucket{job="api",le="+Inf"}', f"0+10x{n}"),
        _series('http_requests_total{job="api",status="200"}', f"0+10x{n}"),
        _series('node_filesystem_avail_bytes{mountpoint="/"}', f"80x{n}"),
        _series('node_filesystem_size_bytes{mountpoint="/"}', f"100x{n}"),
        _series('up{job="api",instance="api:8001"}', f"1x{n}"),
        _series('up{job="temporal",instance="temporal:9090"}', f"1x{n}"),
        _series("pg_up", f"1x{n}"),
        _series("redis_up", f"1x{n}"),
        _series("nginx_up", f"1x{n}"),
        _series('process_cpu_seconds_total{job="api"}', f"0+1x{n}"),
        _series('process_resident_memory_bytes{job="api"}', f"1000x{n}"),
        _series('process_start_time_seconds{job="api",instance="api:8001"}', f"100x{n}"),
        _series(f"pg_postmaster_start_time_seconds{{{PG}}}", f"100x{n}"),
        _series(f"redis_uptime_in_seconds{{{REDIS}}}", f"0+60x{n}"),
        # A backup and a drill that succeeded a minute ago, every minute.
        _series(f"stagecraft_backup_last_success_timestamp_seconds{{{NODE}}}", f"0+60x{n}"),
        _series(f"stagecraft_backup_last_run_success{{{NODE}}}", f"1x{n}"),
        _series(f"stagecraft_restore_drill_last_success_timestamp_seconds{{{NODE}}}", f"0+60x{n}"),
        _series(f"stagecraft_restore_drill_last_run_success{{{NODE}}}", f"1x{n}"),
        _series(f'alertmanager_notifications_failed_total{{{AM},integration="email"}}', f"0x{n}"),
    ]


def _labels_of(series: str) -> dict[str, str]:
    inner = series[series.index("{") + 1 : -1]
    return dict((part.split("=", 1)[0], part.split("=", 1)[1].strip('"')) for part in inner.split(","))


def _alert(rule: dict[str, Any], extra: dict[str, str] | None = None) -> dict[str, Any]:
    """One expected alert: the rule's labels plus the series' ones, templates filled in."""
    labels = {**rule["labels"], **(extra or {})}

    def fill(text: str) -> str:
        for key, value in labels.items():
            text = text.replace("{{ $labels." + key + " }}", value)
        return text

    return {
        "exp_labels": {key: fill(value) for key, value in labels.items()},
        "exp_annotations": {key: fill(value) for key, value in rule["annotations"].items()},
    }


def _expected(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """The alerts each rule raises on the firing series, with the labels they carry."""
    name = rule["alert"]
    node = _labels_of("{" + NODE + "}")
    if name == "ServiceDown":  # the API; Temporal has its own alert
        return [_alert(rule, {"job": "api", "instance": "api:8001"})]
    if name == "TemporalDown":
        return [_alert(rule, {"job": "temporal", "instance": "temporal:9090"})]
    if name == "HostDiskUsageHigh":
        return [_alert(rule, {"mountpoint": "/"})]
    if name.startswith(("CpuHigh_", "MemoryHigh_")):
        return [_alert(rule, {"job": "api"})]
    if name == "ContainerRestarting":
        pg = _labels_of("{" + PG + "}")
        return [
            _alert(rule, {"job": "api", "instance": "api:8001", "process": "api"}),
            _alert(rule, {**pg, "process": "postgres"}),
            _alert(rule, {**pg, "process": "postgres-server"}),
            _alert(rule, {**_labels_of("{" + REDIS + "}"), "process": "redis-server"}),
        ]
    if name in ("BackupMissing", "BackupFailed", "RestoreDrillMissing", "RestoreDrillFailed"):
        return [_alert(rule, node)]
    if name == "AlertmanagerNotificationsFailing":
        return [_alert(rule, {"integration": "email"})]
    return [_alert(rule)]


def _unit_test(directory: Path, groups: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    tests = {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": groups}
    (directory / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    return _promtool("test", "rules", "tests.yml", cwd=directory)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_every_alert_fires_on_synthetic_series(stack: str, configs: dict[str, StackConfig], tmp_path: Path) -> None:
    config = configs[stack]
    _write(tmp_path, config)
    rules = _rules(config)
    result = _unit_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": _firing_series(config),
                "alert_rule_test": [
                    {"eval_time": EVAL, "alertname": rule["alert"], "exp_alerts": _expected(rule)} for rule in rules
                ],
            },
            {
                "interval": "1m",
                "input_series": _healthy_series(),
                "alert_rule_test": [
                    {"eval_time": EVAL, "alertname": rule["alert"], "exp_alerts": []} for rule in rules
                ],
            },
        ],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(rules) == len(RUNBOOK_ANCHORS)


def test_missing_backup_and_drill_metrics_fire(configs: dict[str, StackConfig], tmp_path: Path) -> None:
    """No backup or drill ever recorded (the textfile is gone, or nothing ran yet): the overdue
    alerts fire once the absence has lasted their `for`, and not before."""
    config = configs["prod"]
    _write(tmp_path, config)
    rules = {r["alert"]: r for r in _rules(config)}
    healthy = [s for s in _healthy_series() if not s["series"].startswith("stagecraft_")]
    overdue = ("BackupMissing", "RestoreDrillMissing")
    result = _unit_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": healthy,
                "alert_rule_test": [
                    *({"eval_time": "20m", "alertname": name, "exp_alerts": []} for name in overdue),
                    *({"eval_time": "40m", "alertname": name, "exp_alerts": [_alert(rules[name])]} for name in overdue),
                    {"eval_time": "40m", "alertname": "BackupFailed", "exp_alerts": []},
                ],
            }
        ],
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# Watch everything: every long-running service has a scrape job.

NAMING = Naming(app="acme", environment="staging", stack="staging", project="p-1234")
# What the composition passes Prometheus: each service's published targets (Prometheus adds its own).
COMPOSED_TARGETS = [
    ScrapeTarget("prometheus", "127.0.0.1:9090"),
    ScrapeTarget("api", "acme-staging-api:8001"),
    ScrapeTarget("temporal", "acme-staging-temporal:9090"),
    *exporters.scrape_targets(NAMING, nginx=True),
    grafana.scrape_target(NAMING),
    alertmanager.scrape_target(NAMING),
]
LONG_RUNNING = [
    "postgres",
    "postgres-exporter",
    "redis",
    "redis-exporter",
    "chroma",
    "temporal",
    "temporal-ui",
    "api",
    "web",
    "proxy",
    "nginx-exporter",
    "node-exporter",
    "ops",
    "prometheus",
    "alertmanager",
    "grafana",
]


def _composed_config(targets: list[ScrapeTarget]) -> str:
    return render_prometheus_config(targets, 15, ["alerts.yml"], "staging", ["acme-staging-alertmanager:9093"])


def test_the_rendered_config_has_a_job_per_watched_service() -> None:
    assert scrape_jobs(_composed_config(COMPOSED_TARGETS)) == {
        "prometheus",
        "api",
        "temporal",
        "postgres",
        "redis",
        "node",
        "nginx",
        "grafana",
        "alertmanager",
    }
    assert unwatched(LONG_RUNNING, _composed_config(COMPOSED_TARGETS)) == []
    # Only the services with no metrics endpoint go without a job.
    assert {service for service, job in WATCHING_JOB.items() if job is None} == {
        "chroma",
        "web",
        "temporal-ui",
        "certbot",
    }


def test_a_missing_job_or_an_unknown_service_is_reported() -> None:
    without_nginx = [target for target in COMPOSED_TARGETS if target.job != "nginx"]
    assert unwatched(LONG_RUNNING, _composed_config(without_nginx)) == ["nginx-exporter", "proxy"]
    assert unwatched([*LONG_RUNNING, "mailer"], _composed_config(COMPOSED_TARGETS)) == ["mailer"]
