"""Prometheus: a scrape job per service that exposes metrics, the alert rules, and where alerts
go (Alertmanager)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components import yaml_io
from components.config import AlertThresholds, Service
from components.config import Monitoring as MonitoringSettings
from components.containers.container import Attachment, config_path
from components.containers.endpoints import Endpoint, ScrapeTarget
from components.containers.healthchecks import wget_check
from components.containers.service import ServiceComponent
from components.naming import Naming

PORT = 9090
DAY_S = 24 * 3600
WEEK_S = 7 * DAY_S
# How long a backup or restore drill may run, on top of its schedule's period and grace.
LONGEST_RUN_S = 3600
# Where each alert's runbook section is: docs/runbook.md#alert-<alert name, lower case>.
RUNBOOK = "docs/runbook.md#alert-{}"

# The scrape job that watches each long-running service (by its container's service label), or
# None for the services that expose no metrics endpoint (their healthchecks watch them). The ops
# container's results reach Prometheus through the node exporter's textfile collector.
WATCHING_JOB: Mapping[str, str | None] = {
    "api": "api",
    "postgres": "postgres",
    "postgres-exporter": "postgres",
    "redis": "redis",
    "redis-exporter": "redis",
    "temporal": "temporal",
    "proxy": "nginx",
    "nginx-exporter": "nginx",
    "node-exporter": "node",
    "ops": "node",
    "prometheus": "prometheus",
    "alertmanager": "alertmanager",
    "grafana": "grafana",
    "chroma": None,
    "web": None,
    "temporal-ui": None,
    "certbot": None,
}


@dataclass(frozen=True)
class ProcessLimit:
    """A job whose process metrics are checked against its container's limits."""

    job: str
    cpus: float
    memory_mb: int


@dataclass(frozen=True)
class OpsAges:
    """How old, in seconds, the last successful backup and the last successful restore drill may
    be before an alert fires."""

    backup_s: int
    drill_s: int


def allowed_age_s(period_s: int, grace_minutes: int, longest_run_s: int = LONGEST_RUN_S) -> int:
    """The age a last success reaches just before the next run must have succeeded: one period
    of the schedule, the grace a run may start late by, and the time a run may take."""
    return period_s + grace_minutes * 60 + longest_run_s


# The ops tool's defaults: backups daily, drills weekly, runs up to 60 minutes late.
DEFAULT_OPS_AGES = OpsAges(backup_s=allowed_age_s(DAY_S, 60), drill_s=allowed_age_s(WEEK_S, 60))


def render_prometheus_config(
    targets: Sequence[ScrapeTarget],
    scrape_interval_s: int,
    rule_files: Sequence[str],
    environment: str,
    alertmanagers: Sequence[str] = (),
) -> str:
    """prometheus.yml: a job per target, the environment on every series and alert, and the
    Alertmanagers (host:port) alerts are sent to."""
    config: dict = {
        "global": {
            "scrape_interval": f"{scrape_interval_s}s",
            "evaluation_interval": f"{scrape_interval_s}s",
            "external_labels": {"environment": environment},
        },
    }
    if alertmanagers:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
    config["rule_files"] = list(rule_files)
    config["scrape_configs"] = [
        {
            "job_name": target.job,
            "metrics_path": target.metrics_path,
            "static_configs": [{"targets": [target.address]}],
        }
        for target in targets
    ]
    return "# stagecraft: rendered, do not edit\n" + yaml_io.dump(config)


def scrape_jobs(config_text: str) -> set[str]:
    """The job names of a rendered prometheus.yml."""
    config = yaml_io.load(config_text) or {}
    return {job["job_name"] for job in config.get("scrape_configs") or []}


def unwatched(services: Iterable[str], config_text: str) -> list[str]:
    """The long-running services (container service labels) no scrape job of ``config_text``
    watches: those whose job is missing, and those stagecraft does not know at all. Services
    with no metrics endpoint (see WATCHING_JOB) count as watched by their healthchecks."""
    jobs = scrape_jobs(config_text)
    missing = []
    for service in sorted(set(services)):
        if service not in WATCHING_JOB:
            missing.append(service)
        elif WATCHING_JOB[service] is not None and WATCHING_JOB[service] not in jobs:
            missing.append(service)
    return missing


def alert_rules(
    thresholds: AlertThresholds, limits: Sequence[ProcessLimit], environment: str, ops_ages: OpsAges
) -> list[dict]:
    """API latency and errors, host disk, services, data stores, the proxy and Temporal down,
    processes restarting over and over, each process's CPU and memory against its container's
    limits, backups and restore drills failed or overdue (``ops_ages``), and notifications that
    Alertmanager cannot deliver; with this environment's thresholds. Every alert carries the
    environment, a severity and the service it is about, a summary and a runbook section."""
    labels = {"environment": environment}
    down = f"{thresholds.down_minutes}m"

    def rule(
        name: str, expr: str, duration: str, severity: str, service: str, summary: str, runbook: str | None = None
    ) -> dict:
        return {
            "alert": name,
            "expr": expr,
            "for": duration,
            "labels": {**labels, "severity": severity, "service": service},
            "annotations": {"summary": summary, "runbook": RUNBOOK.format((runbook or name).lower())},
        }

    def overdue(metric: str, max_age_s: int) -> str:
        # Fires on an old last success, and when there is none at all (never ran, file lost).
        return f"time() - {metric} > {max_age_s} or absent({metric})"

    def restarts(expr: str, process: str, source: str = "", regex: str = "") -> str:
        # Each count names the process it is about (a fixed name, or one taken from a label),
        # so `or` keeps a server's restarts apart from its exporter's (same job and instance).
        return f'label_replace({expr}, "process", "{process}", "{source}", "{regex}") > 2'

    rules = [
        rule(
            "ApiLatencyP95High",
            'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{job="api"}[5m])))'
            f" > {thresholds.p95_latency_ms / 1000:g}",
            "5m",
            "warning",
            "api",
            f"API p95 latency above {thresholds.p95_latency_ms} ms",
        ),
        rule(
            "ApiErrorRateHigh",
            '100 * sum(rate(http_requests_total{job="api",status=~"5.."}[5m]))'
            f' / sum(rate(http_requests_total{{job="api"}}[5m])) > {thresholds.error_rate_percent:g}',
            "2m",
            "critical",
            "api",
            f"API 5xx rate above {thresholds.error_rate_percent:g}%",
        ),
        rule(
            "HostDiskUsageHigh",
            '100 * (1 - node_filesystem_avail_bytes{mountpoint="/"} / node_filesystem_size_bytes{mountpoint="/"})'
            f" > {thresholds.disk_percent}",
            "5m",
            "warning",
            "host",
            f"Docker host disk above {thresholds.disk_percent}%",
        ),
        rule(
            "ServiceDown",
            # Temporal has an alert of its own.
            'up{job!="temporal"} == 0',
            down,
            "critical",
            "{{ $labels.job }}",
            "{{ $labels.job }} has been unreachable for " + f"{thresholds.down_minutes} minutes",
        ),
        rule("PostgresDown", "pg_up == 0", down, "critical", "postgres", "Postgres does not answer the exporter"),
        rule("RedisDown", "redis_up == 0", down, "critical", "redis", "Redis does not answer the exporter"),
        rule(
            "ProxyDown",
            "nginx_up == 0",
            down,
            "critical",
            "proxy",
            f"nginx has not answered its exporter for {thresholds.down_minutes} minutes",
        ),
        rule(
            "TemporalDown",
            'up{job="temporal"} == 0',
            down,
            "critical",
            "temporal",
            f"The Temporal server has been unreachable for {thresholds.down_minutes} minutes",
        ),
        rule(
            "ContainerRestarting",
            " or ".join(
                [
                    restarts("changes(process_start_time_seconds[30m])", "$1", "job", "(.*)"),
                    restarts("changes(pg_postmaster_start_time_seconds[30m])", "postgres-server"),
                    restarts("resets(redis_uptime_in_seconds[30m])", "redis-server"),
                ]
            ),
            "0s",
            "warning",
            "{{ $labels.process }}",
            "{{ $labels.process }} restarted more than twice in the last 30 minutes",
        ),
        rule(
            "BackupMissing",
            overdue("stagecraft_backup_last_success_timestamp_seconds", ops_ages.backup_s),
            "30m",
            "critical",
            "backup",
            f"No successful backup in the last {ops_ages.backup_s / 3600:g} hours (or none recorded)",
        ),
        rule(
            "BackupFailed",
            "stagecraft_backup_last_run_success == 0",
            "0s",
            "warning",
            "backup",
            "The last backup failed",
        ),
        rule(
            "RestoreDrillMissing",
            overdue("stagecraft_restore_drill_last_success_timestamp_seconds", ops_ages.drill_s),
            "30m",
            "warning",
            "restore-drill",
            f"No successful restore drill in the last {ops_ages.drill_s / 3600:g} hours (or none recorded)",
        ),
        rule(
            "RestoreDrillFailed",
            "stagecraft_restore_drill_last_run_success == 0",
            "0s",
            "critical",
            "restore-drill",
            "The last restore drill failed: the latest backups may not restore",
        ),
        rule(
            "AlertmanagerNotificationsFailing",
            "sum by (integration) (rate(alertmanager_notifications_failed_total[15m])) > 0",
            "10m",
            "critical",
            "alertmanager",
            "Alertmanager cannot deliver {{ $labels.integration }} notifications",
        ),
    ]
    for limit in limits:
        rules.append(
            rule(
                f"CpuHigh_{limit.job}",
                f'100 * rate(process_cpu_seconds_total{{job="{limit.job}"}}[5m]) / {limit.cpus:g}'
                f" > {thresholds.cpu_percent}",
                "10m",
                "warning",
                limit.job,
                f"{limit.job} uses more than {thresholds.cpu_percent}% of its {limit.cpus:g} CPUs",
                runbook="CpuHigh",
            )
        )
        rules.append(
            rule(
                f"MemoryHigh_{limit.job}",
                f'100 * process_resident_memory_bytes{{job="{limit.job}"}} / {limit.memory_mb * 1024 * 1024}'
                f" > {thresholds.memory_percent}",
                "5m",
                "warning",
                limit.job,
                f"{limit.job} uses more than {thresholds.memory_percent}% of its {limit.memory_mb} MB",
                runbook="MemoryHigh",
            )
        )
    return rules


def render_alert_rules(
    thresholds: AlertThresholds, limits: Sequence[ProcessLimit], environment: str, ops_ages: OpsAges
) -> str:
    document = {"groups": [{"name": "stagecraft", "rules": alert_rules(thresholds, limits, environment, ops_ages)}]}
    return "# stagecraft: rendered, do not edit\n" + yaml_io.dump(document)


@dataclass(frozen=True)
class PrometheusArgs:
    naming: Naming
    settings: Service
    monitoring: MonitoringSettings
    monitoring_network: docker.Network
    # Every other service's scrape targets; Prometheus adds its own.
    targets: Sequence[ScrapeTarget]
    process_limits: Sequence[ProcessLimit]
    # Where alerts go; without it Prometheus evaluates the rules but notifies no one.
    alertmanager: Endpoint | None = None
    # How overdue a backup or restore drill may be; pass the stack's own schedule's ages.
    ops_ages: OpsAges = DEFAULT_OPS_AGES
    protect: bool = False
    depends_on: Sequence[pulumi.Resource] = ()
    # The component these resources lived under before monitoring was split by concern.
    was_parent: pulumi.Input[str] | None = None


class Prometheus(ServiceComponent):
    """Creates Prometheus: retention and scrape interval from config, a job per scrape target it
    is given plus itself, the alert rules with this environment's thresholds, and Alertmanager
    as where firing alerts go."""

    def __init__(self, name: str, args: PrometheusArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:prometheus:Prometheus", name, args.naming, opts, was_parent=args.was_parent)
        naming = args.naming
        self.endpoint = Endpoint(naming.container("prometheus"), PORT)
        self.scrape_targets = [ScrapeTarget("prometheus", Endpoint("127.0.0.1", PORT).address)]
        # Relative: Prometheus resolves rule files next to its config file.
        self.config = render_prometheus_config(
            [*self.scrape_targets, *args.targets],
            args.monitoring.scrape_interval_s,
            ["alerts.yml"],
            naming.environment,
            alertmanagers=[args.alertmanager.address] if args.alertmanager else (),
        )
        self.alert_rules = render_alert_rules(
            args.monitoring.alerts, args.process_limits, naming.environment, args.ops_ages
        )
        self.volume = self.data_volume("prometheus", args.protect)
        self.server = self.container(
            "server",
            "prometheus",
            args.settings,
            networks=[Attachment(args.monitoring_network, aliases=("prometheus",))],
            command=[
                f"--config.file={config_path('prometheus.yml')}",
                "--storage.tsdb.path=/prometheus",
                f"--storage.tsdb.retention.time={args.monitoring.retention_days}d",
                f"--web.listen-address=0.0.0.0:{PORT}",
            ],
            config_files={"prometheus.yml": self.config, "alerts.yml": self.alert_rules},
            volumes={"/prometheus": self.volume.name},
            health_test=wget_check(PORT, "/-/ready"),
            depends_on=args.depends_on,
        )
        self.register_outputs({"name": self.server.name})
