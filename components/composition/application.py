"""The application layer: one environment's containers on the Docker host, each service handed
the endpoints, secrets and networks it needs, and gated on what it really depends on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.cloud.secrets import read_secret
from components.composition.urls import https_url
from components.config import StackConfig
from components.containers.endpoints import Endpoint
from components.containers.network import Networks, NetworksArgs, host_address
from components.containers.service import ServiceComponent
from components.naming import Naming
from components.resources import child
from components.services import grafana
from components.services.alertmanager import Alertmanager, AlertmanagerArgs, EmailSettings
from components.services.api import Api, ApiArgs, Dependencies
from components.services.chroma import Chroma, ChromaArgs
from components.services.exporters import Exporters, ExportersArgs
from components.services.grafana import Grafana, GrafanaArgs
from components.services.ops import DataStores, Operations, OperationsArgs, SeedJob, SeedJobArgs
from components.services.postgres import Postgres, PostgresArgs
from components.services.prometheus import (
    DAY_S,
    WEEK_S,
    OpsAges,
    ProcessLimit,
    Prometheus,
    PrometheusArgs,
    allowed_age_s,
)
from components.services.proxy import STATUS_PORT, ProxyArgs, ReverseProxy, Upstreams
from components.services.redis import USER_SECRETS as REDIS_USER_SECRETS
from components.services.redis import Redis, RedisArgs
from components.services.temporal import SERVER_HOST_INDEX, UI_PORT, Temporal, TemporalArgs
from components.services.web import Web, WebArgs


def debug_port(host_port: int | None, container_port: int) -> list[docker.ContainerPortArgs]:
    """A staging debug port, published on 127.0.0.1 only."""
    if host_port is None:
        return []
    return [docker.ContainerPortArgs(internal=container_port, external=host_port, ip="127.0.0.1")]


@dataclass(frozen=True)
class ApplicationLayerArgs:
    config: StackConfig
    naming: Naming
    # The secrets' values by name (secret Outputs), delivered to containers as files.
    secrets: Mapping[str, pulumi.Output[str]]
    # Service account key files (JSON, secret) of the workloads that have one.
    key_files: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)
    # Bucket names by purpose (uploads, backups).
    buckets: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)


class ApplicationLayer(pulumi.ComponentResource):
    """Creates the networks and every service of one environment: Postgres, Redis, ChromaDB,
    Temporal, the API and web front end, the exporters, Prometheus, Grafana and the reverse
    proxy. Services never see each other's modules; this layer passes each one the others'
    published endpoints and scrape targets."""

    def __init__(self, name: str, args: ApplicationLayerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:application:ApplicationLayer", name, None, opts)
        config, naming, secrets = args.config, args.naming, args.secrets
        sc = config.stagecraft
        services = sc.services
        protect = config.is_prod
        # Before the layers existed these components were the platform's own children, and
        # Prometheus, Grafana and the exporters lived in one monitoring component.
        previous_parent = opts.parent if opts else None
        previous_monitoring = pulumi.create_urn(
            "monitoring", "stagecraft:monitoring:Monitoring", parent=previous_parent
        )

        def was(old: str) -> pulumi.ResourceOptions:
            return child(self, was=old, was_parent=previous_parent)

        self.networks = Networks(
            f"{name}-networks", NetworksArgs(naming=naming, settings=sc.network), opts=was("networks")
        )
        nets = self.networks.networks

        self.postgres = Postgres(
            f"{name}-postgres",
            PostgresArgs(
                naming=naming,
                settings=services.postgres,
                data_network=nets["data"],
                superuser_password=secrets["postgres-superuser-password"],
                app_password=secrets["app-db-password"],
                temporal_password=secrets["temporal-db-password"],
                monitor_password=secrets["postgres-exporter-password"],
                client_networks=[sc.network.data],
                protect=protect,
            ),
            opts=was("postgres"),
        )
        layout = self.postgres.layout
        self.redis = Redis(
            f"{name}-redis",
            RedisArgs(
                naming=naming,
                settings=services.redis,
                data_network=nets["data"],
                passwords={user: secrets[secret] for user, secret in REDIS_USER_SECRETS.items()},
                protect=protect,
            ),
            opts=was("redis"),
        )
        self.chroma = Chroma(
            f"{name}-chroma",
            ChromaArgs(naming=naming, settings=services.chroma, chroma_network=nets["chroma"], protect=protect),
            opts=was("chroma"),
        )
        self.temporal = Temporal(
            f"{name}-temporal",
            TemporalArgs(
                naming=naming,
                settings=services.temporal,
                ui_settings=services.temporal_ui,
                admin_settings=services.temporal_admin_tools,
                data_network=nets["data"],
                temporal_network=nets["temporal"],
                monitoring_network=nets["monitoring"],
                server_address=host_address(sc.network.temporal, SERVER_HOST_INDEX),
                postgres=self.postgres.endpoint,
                user=layout.temporal_user,
                databases=layout.temporal_databases,
                password=secrets["temporal-db-password"],
                ui_ports=debug_port(sc.debug_ports.temporal_ui, UI_PORT),
                after=[self.postgres.init_job],
            ),
            opts=was("temporal"),
        )
        self.ops = Operations(
            f"{name}-ops",
            OperationsArgs(
                naming=naming,
                settings=sc.ops,
                backup=sc.backup,
                postgres_image=services.postgres.image,
                data_network=nets["data"],
                egress_network=nets["egress"],
                stores=DataStores(
                    postgres=self.postgres.endpoint,
                    databases=[layout.app_database, *layout.temporal_databases],
                    drill_databases=[layout.app_database],
                    redis=self.redis.endpoint,
                    redis_user="backup",
                    chroma_volume=self.chroma.volume,
                ),
                backups_bucket=args.buckets["backups"],
                secrets=secrets,
                gcp_key=args.key_files.get("backup"),
                prod=config.is_prod,
                protect=protect,
                after=[self.postgres.init_job],
            ),
            opts=child(self),
        )
        pre_migration = self.ops.pre_migration_backup(services.api.image, after=[self.postgres.init_job])
        self.api = Api(
            f"{name}-api",
            ApiArgs(
                naming=naming,
                settings=services.api,
                app=sc.app,
                dependencies=Dependencies(
                    postgres=self.postgres.endpoint,
                    database=layout.app_database,
                    database_user=layout.app_user,
                    redis=self.redis.endpoint,
                    redis_user="app",
                    chroma=self.chroma.endpoint,
                    temporal=self.temporal.endpoint,
                    temporal_namespace=services.temporal.namespace,
                ),
                secrets=secrets,
                data_network=nets["data"],
                app_network=nets["app"],
                chroma_network=nets["chroma"],
                temporal_network=nets["temporal"],
                monitoring_network=nets["monitoring"],
                gcp_project=config.gcp.project,
                gcp_key=args.key_files.get("api"),
                ports=debug_port(sc.debug_ports.api, services.api.port),
                # The migration needs the database and a backup to roll back to; the API also
                # needs Temporal's namespace, Redis and Chroma.
                migrate_after=[self.postgres.init_job, pre_migration],
                after=[self.temporal.namespace_job],
                depends_on=[self.redis.server.container, self.chroma.server.container],
            ),
            opts=was("api"),
        )
        if sc.seed is not None:
            self.seed = SeedJob(
                f"{name}-seed",
                SeedJobArgs(
                    naming=naming,
                    seed=sc.seed,
                    ops=self.ops,
                    data_network=nets["data"],
                    egress_network=nets["egress"],
                    postgres=self.postgres.endpoint,
                    database=layout.app_database,
                    database_user=layout.app_user,
                    database_password=secrets["app-db-password"],
                    salt=secrets["seed-salt"],
                    uploads_bucket=args.buckets["uploads"],
                    gcp_key=args.key_files.get("api"),
                    after=[self.api.migration],
                ),
                opts=child(self),
            )
        self.web = Web(
            f"{name}-web",
            WebArgs(
                naming=naming,
                settings=services.web,
                app=sc.app,
                api_url=https_url(sc.domains.api, sc.proxy.https_port),
                app_network=nets["app"],
                ports=debug_port(sc.debug_ports.web, services.web.port),
            ),
            opts=was("web"),
        )
        alerting = sc.alerting
        self.alertmanager = Alertmanager(
            f"{name}-alertmanager",
            AlertmanagerArgs(
                naming=naming,
                settings=services.alertmanager,
                monitoring_network=nets["monitoring"],
                egress_network=nets["alerting"],
                email=EmailSettings(
                    smarthost=alerting.email.smarthost,
                    sender=alerting.email.sender,
                    to=alerting.email.to,
                    username=alerting.email.username,
                )
                if alerting.email
                else None,
                smtp_password=read_secret(alerting.email.password_secret, config.gcp.project)
                if alerting.email
                else None,
                webhook_url=read_secret(alerting.webhook.url_secret, config.gcp.project) if alerting.webhook else None,
                webhook_channel=alerting.webhook.channel if alerting.webhook else None,
                protect=protect,
            ),
            opts=child(self),
        )
        self.exporters = Exporters(
            f"{name}-exporters",
            ExportersArgs(
                naming=naming,
                services=services,
                monitoring_network=nets["monitoring"],
                data_network=nets["data"],
                postgres=self.postgres.endpoint,
                postgres_user=layout.monitor_user,
                postgres_password=secrets["postgres-exporter-password"],
                redis=self.redis.endpoint,
                redis_user="exporter",
                redis_password=secrets["redis-exporter-password"],
                proxy_status=Endpoint(naming.container("proxy"), STATUS_PORT),
                nginx_exporter=services.nginx_exporter,
                app_network=nets["app"],
                textfile_volume=self.ops.metrics_volume,
                after=[self.postgres.init_job],
                depends_on=[self.redis.server.container],
                was_parent=previous_monitoring,
            ),
            opts=child(self),
        )
        self.prometheus = Prometheus(
            f"{name}-prometheus",
            PrometheusArgs(
                naming=naming,
                settings=services.prometheus,
                monitoring=sc.monitoring,
                monitoring_network=nets["monitoring"],
                targets=[
                    *self.api.scrape_targets,
                    *self.temporal.scrape_targets,
                    *self.exporters.scrape_targets,
                    *self.alertmanager.scrape_targets,
                    grafana.scrape_target(naming),
                ],
                alertmanager=self.alertmanager.endpoint,
                ops_ages=OpsAges(
                    backup_s=allowed_age_s(DAY_S, sc.backup.grace_minutes),
                    drill_s=allowed_age_s(
                        DAY_S if sc.backup.drill_schedule.startswith("daily") else WEEK_S, sc.backup.grace_minutes
                    ),
                ),
                process_limits=[
                    ProcessLimit(job, settings.cpus, settings.memory_mb)
                    for job, settings in (
                        ("api", services.api),
                        ("temporal", services.temporal),
                        ("prometheus", services.prometheus),
                        ("grafana", services.grafana),
                    )
                ],
                protect=protect,
                was_parent=previous_monitoring,
            ),
            opts=child(self),
        )
        self.grafana = Grafana(
            f"{name}-grafana",
            GrafanaArgs(
                naming=naming,
                settings=services.grafana,
                monitoring_network=nets["monitoring"],
                app_network=nets["app"],
                prometheus=self.prometheus.endpoint,
                admin_password=secrets["grafana-admin-password"],
                domain=sc.domains.grafana,
                ports=debug_port(sc.debug_ports.grafana, grafana.PORT),
                protect=protect,
                was_parent=previous_monitoring,
            ),
            opts=child(self),
        )
        self.proxy = ReverseProxy(
            f"{name}-proxy",
            ProxyArgs(
                naming=naming,
                settings=services.proxy,
                proxy=sc.proxy,
                domains=sc.domains,
                cors_origins=sc.app.cors_origins,
                upstreams=Upstreams(
                    api=self.api.endpoint.address,
                    web=self.web.endpoint.address,
                    grafana=self.grafana.endpoint.address,
                ),
                edge_network=nets["edge"],
                app_network=nets["app"],
                gcp_project=config.gcp.project,
                status_allow=[sc.network.app],
                protect=protect,
            ),
            opts=was("proxy"),
        )
        self.service_components: list[ServiceComponent] = [
            self.postgres,
            self.redis,
            self.chroma,
            self.temporal,
            self.ops,
            self.api,
            *([self.seed] if sc.seed is not None else []),
            self.web,
            self.alertmanager,
            self.exporters,
            self.prometheus,
            self.grafana,
            self.proxy,
        ]
        self.register_outputs({"networks": self.networks.names})
