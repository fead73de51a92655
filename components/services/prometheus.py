"""Prometheus: a scrape job per service that exposes metrics, and the alert rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import yaml

from components.config import AlertThresholds, Service
from components.config import Monitoring as MonitoringSettings
from components.containers.container import Attachment, config_path
from components.containers.endpoints import Endpoint, ScrapeTarget
from components.containers.healthchecks import wget_check
from components.containers.service import ServiceComponent
from components.naming import Naming

PORT = 9090


@dataclass(frozen=True)
class ProcessLimit:
    """A job whose process metrics are checked against its container's limits."""

    job: str
    cpus: float
    memory_mb: int


def render_prometheus_config(
    targets: Sequence[ScrapeTarget], scrape_interval_s: int, rule_files: Sequence[str], environment: str
) -> str:
    config = {
        "global": {
            "scrape_interval": f"{scrape_interval_s}s",
            "evaluation_interval": f"{scrape_interval_s}s",
            "external_labels": {"environment": environment},
        },
        "rule_files": list(rule_files),
        "scrape_configs": [
            {
                "job_name": target.job,
                "metrics_path": target.metrics_path,
                "static_configs": [{"targets": [target.address]}],
            }
            for target in targets
        ],
    }
    return "# stagecraft: rendered, do not edit\n" + yaml.safe_dump(config, sort_keys=False)


def alert_rules(thresholds: AlertThresholds, limits: Sequence[ProcessLimit], environment: str) -> list[dict]:
    """API latency and errors, host disk, services and data stores down, and each process's CPU
    and memory against its container's limits, with this environment's thresholds."""
    labels = {"environment": environment}

    def rule(name: str, expr: str, duration: str, severity: str, summary: str) -> dict:
        return {
            "alert": name,
            "expr": expr,
            "for": duration,
            "labels": {**labels, "severity": severity},
            "annotations": {"summary": summary},
        }

    rules = [
        rule(
            "ApiLatencyP95High",
            'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{job="api"}[5m])))'
            f" > {thresholds.p95_latency_ms / 1000:g}",
            "5m",
            "warning",
            f"API p95 latency above {thresholds.p95_latency_ms} ms",
        ),
        rule(
            "ApiErrorRateHigh",
            '100 * sum(rate(http_requests_total{job="api",status=~"5.."}[5m]))'
            f' / sum(rate(http_requests_total{{job="api"}}[5m])) > {thresholds.error_rate_percent:g}',
            "2m",
            "critical",
            f"API 5xx rate above {thresholds.error_rate_percent:g}%",
        ),
        rule(
            "HostDiskUsageHigh",
            '100 * (1 - node_filesystem_avail_bytes{mountpoint="/"} / node_filesystem_size_bytes{mountpoint="/"})'
            f" > {thresholds.disk_percent}",
            "5m",
            "warning",
            f"Docker host disk above {thresholds.disk_percent}%",
        ),
        rule(
            "ServiceDown",
            "up == 0",
            f"{thresholds.down_minutes}m",
            "critical",
            "{{ $labels.job }} has been unreachable for " + f"{thresholds.down_minutes} minutes",
        ),
        rule(
            "PostgresDown",
            "pg_up == 0",
            f"{thresholds.down_minutes}m",
            "critical",
            "Postgres does not answer the exporter",
        ),
        rule(
            "RedisDown",
            "redis_up == 0",
            f"{thresholds.down_minutes}m",
            "critical",
            "Redis does not answer the exporter",
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
                f"{limit.job} uses more than {thresholds.cpu_percent}% of its {limit.cpus:g} CPUs",
            )
        )
        rules.append(
            rule(
                f"MemoryHigh_{limit.job}",
                f'100 * process_resident_memory_bytes{{job="{limit.job}"}} / {limit.memory_mb * 1024 * 1024}'
                f" > {thresholds.memory_percent}",
                "5m",
                "warning",
                f"{limit.job} uses more than {thresholds.memory_percent}% of its {limit.memory_mb} MB",
            )
        )
    return rules


def render_alert_rules(thresholds: AlertThresholds, limits: Sequence[ProcessLimit], environment: str) -> str:
    document = {"groups": [{"name": "stagecraft", "rules": alert_rules(thresholds, limits, environment)}]}
    return "# stagecraft: rendered, do not edit\n" + yaml.safe_dump(document, sort_keys=False)


@dataclass(frozen=True)
class PrometheusArgs:
    naming: Naming
    settings: Service
    monitoring: MonitoringSettings
    monitoring_network: docker.Network
    # Every other service's scrape targets; Prometheus adds its own.
    targets: Sequence[ScrapeTarget]
    process_limits: Sequence[ProcessLimit]
    protect: bool = False
    depends_on: Sequence[pulumi.Resource] = ()
    # The component these resources lived under before monitoring was split by concern.
    was_parent: pulumi.Input[str] | None = None


class Prometheus(ServiceComponent):
    """Creates Prometheus: retention and scrape interval from config, a job per scrape target it
    is given plus itself, and the alert rules with this environment's thresholds."""

    def __init__(self, name: str, args: PrometheusArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:prometheus:Prometheus", name, args.naming, opts, was_parent=args.was_parent)
        naming = args.naming
        self.endpoint = Endpoint(naming.container("prometheus"), PORT)
        self.scrape_targets = [ScrapeTarget("prometheus", Endpoint("127.0.0.1", PORT).address)]
        # Relative: Prometheus resolves rule files next to its config file.
        self.config = render_prometheus_config(
            [*self.scrape_targets, *args.targets], args.monitoring.scrape_interval_s, ["alerts.yml"], naming.environment
        )
        self.alert_rules = render_alert_rules(args.monitoring.alerts, args.process_limits, naming.environment)
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
