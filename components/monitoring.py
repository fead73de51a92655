"""Prometheus, its exporters and alert rules, and Grafana."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import yaml

from components.config import AlertThresholds, Services
from components.config import Monitoring as MonitoringSettings
from components.container import (
    Attachment,
    ContainerArgs,
    HardenedContainer,
    config_path,
    data_volume,
    secret_path,
    tmpfs_options,
    wget_check,
)
from components.naming import Naming

PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
NOBODY = "65534"
GRAFANA_UID = "472"


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    address: str  # host:port
    metrics_path: str = "/metrics"


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
    """Seed 003's conditions with this environment's thresholds."""
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


def render_grafana_datasource(prometheus_url: str) -> str:
    document = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": "prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": prometheus_url,
                "isDefault": True,
                "editable": False,
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


def render_grafana_dashboard_provider(path: str) -> str:
    document = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "stagecraft",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "options": {"path": path},
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


def render_overview_dashboard(environment: str) -> str:
    def panel(index: int, title: str, expr: str, unit: str) -> dict:
        return {
            "id": index,
            "type": "timeseries",
            "title": title,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": "A", "expr": expr}],
        }

    dashboard = {
        "uid": f"stagecraft-{environment}",
        "title": f"stagecraft {environment} overview",
        "tags": ["stagecraft", environment],
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "panels": [
            panel(0, "Services up", "up", "none"),
            panel(
                1,
                "API p95 latency",
                'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{job="api"}[5m])))',
                "s",
            ),
            panel(2, "API 5xx rate", 'sum(rate(http_requests_total{job="api",status=~"5.."}[5m]))', "reqps"),
            panel(3, "Process CPU", "rate(process_cpu_seconds_total[5m])", "percentunit"),
            panel(4, "Process memory", "process_resident_memory_bytes", "bytes"),
            panel(5, "Postgres connections", "sum(pg_stat_activity_count)", "none"),
        ],
    }
    return json.dumps(dashboard, indent=2)


def render_redis_exporter_passwords(redis_url: str, password: str) -> str:
    return json.dumps({redis_url: password})


@dataclass(frozen=True)
class MonitoringArgs:
    naming: Naming
    services: Services
    settings: MonitoringSettings
    monitoring_network: docker.Network
    data_network: docker.Network
    app_network: docker.Network
    targets: Sequence[ScrapeTarget]
    process_limits: Sequence[ProcessLimit]
    postgres_host: str
    postgres_monitor_user: str
    postgres_monitor_password: pulumi.Input[str]
    redis_host: str
    redis_password: pulumi.Input[str]
    grafana_admin_password: pulumi.Input[str]
    grafana_domain: str
    grafana_ports: Sequence[docker.ContainerPortArgs] = ()
    protect: bool = False
    depends_on: Sequence[pulumi.Resource] = ()


class Monitoring(pulumi.ComponentResource):
    """Creates Prometheus (retention and scrape interval from config, a job per service that
    exposes metrics, seed 003's alerts with this environment's thresholds), exporters for
    Postgres, Redis and the Docker host's disk, and Grafana (admin password from a file,
    sign-up off, provisioned datasource and dashboard)."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:monitoring:Monitoring", name, None, opts)
        naming = args.naming
        services = args.services
        child = pulumi.ResourceOptions(parent=self)
        tmp = {"/tmp": tmpfs_options(16)}

        self.postgres_exporter = HardenedContainer(
            "postgres-exporter",
            ContainerArgs(
                naming=naming,
                service="postgres-exporter",
                settings=services.postgres_exporter,
                networks=[
                    Attachment(args.data_network),
                    Attachment(args.monitoring_network, aliases=("postgres-exporter",)),
                ],
                env={
                    "DATA_SOURCE_URI": f"{args.postgres_host}:5432/postgres?sslmode=disable",
                    "DATA_SOURCE_USER": args.postgres_monitor_user,
                    "DATA_SOURCE_PASS_FILE": secret_path("postgres-exporter-password"),
                },
                secret_files={"postgres-exporter-password": args.postgres_monitor_password},
                user=f"{NOBODY}:{NOBODY}",
                file_owner=NOBODY,
                tmpfs=tmp,
                health_test=wget_check(9187, "/metrics"),
                depends_on=args.depends_on,
            ),
            opts=child,
        )
        redis_url = f"redis://{args.redis_host}:6379"
        self.redis_exporter = HardenedContainer(
            "redis-exporter",
            ContainerArgs(
                naming=naming,
                service="redis-exporter",
                settings=services.redis_exporter,
                networks=[
                    Attachment(args.data_network),
                    Attachment(args.monitoring_network, aliases=("redis-exporter",)),
                ],
                env={
                    "REDIS_ADDR": redis_url,
                    "REDIS_PASSWORD_FILE": secret_path("redis-passwords.json"),
                },
                secret_files={
                    "redis-passwords.json": pulumi.Output.from_input(args.redis_password).apply(
                        lambda password: render_redis_exporter_passwords(redis_url, password)
                    )
                },
                user=f"{NOBODY}:{NOBODY}",
                file_owner=NOBODY,
                tmpfs=tmp,
                health_test=wget_check(9121, "/metrics"),
                depends_on=args.depends_on,
            ),
            opts=child,
        )
        self.node_exporter = HardenedContainer(
            "node-exporter",
            ContainerArgs(
                naming=naming,
                service="node-exporter",
                settings=services.node_exporter,
                networks=[Attachment(args.monitoring_network, aliases=("node-exporter",))],
                # Read-only view of the host's file systems for the disk alert; as nobody, it
                # can stat mount points but read only world-readable files.
                command=[
                    "--path.rootfs=/host",
                    "--collector.filesystem.mount-points-exclude=^/(dev|proc|sys|run)($|/)",
                ],
                host_mounts={"/host": "/"},
                user=f"{NOBODY}:{NOBODY}",
                tmpfs=tmp,
                health_test=wget_check(9100, "/metrics"),
            ),
            opts=child,
        )

        # Relative: Prometheus resolves rule files next to its config file.
        prometheus_config = render_prometheus_config(
            args.targets, args.settings.scrape_interval_s, ["alerts.yml"], naming.environment
        )
        self.prometheus_config = prometheus_config
        self.alert_rules = render_alert_rules(args.settings.alerts, args.process_limits, naming.environment)
        self.prometheus_volume = data_volume(naming, "prometheus", args.protect, self)
        self.prometheus = HardenedContainer(
            "prometheus",
            ContainerArgs(
                naming=naming,
                service="prometheus",
                settings=services.prometheus,
                networks=[Attachment(args.monitoring_network, aliases=("prometheus",))],
                command=[
                    f"--config.file={config_path('prometheus.yml')}",
                    "--storage.tsdb.path=/prometheus",
                    f"--storage.tsdb.retention.time={args.settings.retention_days}d",
                    "--web.listen-address=0.0.0.0:9090",
                ],
                config_files={"prometheus.yml": prometheus_config, "alerts.yml": self.alert_rules},
                user=f"{NOBODY}:{NOBODY}",
                file_owner=NOBODY,
                volumes={"/prometheus": self.prometheus_volume.name},
                tmpfs=tmp,
                health_test=wget_check(PROMETHEUS_PORT, "/-/ready"),
                depends_on=[
                    self.postgres_exporter.container,
                    self.redis_exporter.container,
                    self.node_exporter.container,
                ],
            ),
            opts=child,
        )

        self.grafana_volume = data_volume(naming, "grafana", args.protect, self)
        provisioning = "provisioning"
        self.grafana = HardenedContainer(
            "grafana",
            ContainerArgs(
                naming=naming,
                service="grafana",
                settings=services.grafana,
                networks=[
                    Attachment(args.monitoring_network),
                    Attachment(args.app_network, aliases=("grafana",)),
                ],
                env={
                    "GF_SECURITY_ADMIN_USER": "admin",
                    "GF_SECURITY_ADMIN_PASSWORD__FILE": secret_path("grafana-admin-password"),
                    "GF_USERS_ALLOW_SIGN_UP": "false",
                    "GF_AUTH_ANONYMOUS_ENABLED": "false",
                    "GF_SECURITY_COOKIE_SECURE": "true",
                    "GF_SECURITY_DISABLE_GRAVATAR": "true",
                    "GF_ANALYTICS_REPORTING_ENABLED": "false",
                    "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
                    "GF_SERVER_ROOT_URL": f"https://{args.grafana_domain}/",
                    "GF_PATHS_PROVISIONING": config_path(provisioning),
                },
                secret_files={"grafana-admin-password": args.grafana_admin_password},
                config_files={
                    f"{provisioning}/datasources/prometheus.yaml": render_grafana_datasource(
                        f"http://{naming.container('prometheus')}:{PROMETHEUS_PORT}"
                    ),
                    f"{provisioning}/dashboards/stagecraft.yaml": render_grafana_dashboard_provider(
                        config_path("dashboards")
                    ),
                    "dashboards/overview.json": render_overview_dashboard(naming.environment),
                },
                user=f"{GRAFANA_UID}:{GRAFANA_UID}",
                file_owner=GRAFANA_UID,
                volumes={"/var/lib/grafana": self.grafana_volume.name},
                tmpfs=tmp,
                health_test=wget_check(GRAFANA_PORT, "/api/health"),
                ports=args.grafana_ports,
                depends_on=[self.prometheus.container],
            ),
            opts=child,
        )
        self.register_outputs({"prometheus": self.prometheus.name, "grafana": self.grafana.name})
