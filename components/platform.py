"""The whole environment: identities, secrets and buckets (and, wired here, the services)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker

from components.api import Api, ApiArgs, Endpoints
from components.chroma import Chroma, ChromaArgs
from components.config import WORKLOADS, StackConfig
from components.identity import Identities, IdentitiesArgs
from components.monitoring import Monitoring, MonitoringArgs, ProcessLimit, ScrapeTarget
from components.naming import Naming
from components.network import Networks, NetworksArgs, host_address
from components.postgres import Postgres, PostgresArgs
from components.proxy import ProxyArgs, ReverseProxy, Upstreams
from components.redis import Redis, RedisArgs
from components.secrets import Secrets, SecretsArgs, SecretSpec
from components.storage import OBJECT_PREFIXES, BucketGrant, Buckets, StorageArgs
from components.temporal import METRICS_PORT, SERVER_HOST_INDEX, Temporal, TemporalArgs
from components.web import Web, WebArgs

# Which workload may read which generated secret. Nothing else gets secretAccessor.
SECRET_ACCESSORS: Mapping[str, tuple[str, ...]] = {
    "postgres-superuser-password": ("backup",),
    "app-db-password": ("api",),
    "temporal-db-password": ("temporal",),
    "redis-password": ("api",),
    "grafana-admin-password": ("monitoring",),
    "api-secret-key": ("api",),
    "jwt-signing-key": ("api",),
    "postgres-exporter-password": ("monitoring",),
}

# Which workload gets which role on which bucket.
BUCKET_ROLES: tuple[tuple[str, str, str], ...] = (
    ("uploads", "api", "roles/storage.objectUser"),
    ("backups", "backup", "roles/storage.objectCreator"),
    ("backups", "backup", "roles/storage.objectViewer"),
)


def naming_for(config: StackConfig, stack: str) -> Naming:
    sc = config.stagecraft
    return Naming(
        app=sc.app_name,
        environment=sc.environment,
        stack=stack,
        project=config.gcp.project,
        branch=sc.git_branch,
    )


@dataclass(frozen=True)
class PlatformArgs:
    config: StackConfig
    stack: str


class Platform(pulumi.ComponentResource):
    """Creates one environment of the application from its validated stack config.

    The building blocks get only what they need: names and labels from ``Naming``, identities
    from ``Identities``, and each other's outputs passed in explicitly.
    """

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:platform:Platform", name, None, opts)
        config = args.config
        sc = config.stagecraft
        project = config.gcp.project
        self.naming = naming = naming_for(config, args.stack)
        child = pulumi.ResourceOptions(parent=self)

        self.identities = Identities(
            "identities",
            IdentitiesArgs(
                naming=naming,
                project=project,
                workloads=WORKLOADS,
                project_roles=sc.identity.project_roles,
            ),
            opts=child,
        )
        members = {workload: self.identities.member(workload) for workload in WORKLOADS}

        specs = [
            SecretSpec(name=name, accessors=accessors, generation=sc.secrets.generations.get(name, 1))
            for name, accessors in SECRET_ACCESSORS.items()
        ]
        specs += [
            SecretSpec(name=name, accessors=tuple(provided.accessors), provided=provided.value)
            for name, provided in sc.secrets.provided.items()
        ]
        self.secrets = Secrets(
            "secrets",
            SecretsArgs(
                naming=naming,
                project=project,
                settings=sc.secrets,
                specs=specs,
                members=members,
                protect=config.is_prod,
            ),
            opts=child,
        )

        self.storage = Buckets(
            "storage",
            StorageArgs(
                naming=naming,
                project=project,
                settings=sc.storage,
                is_prod=config.is_prod,
                grants=[
                    BucketGrant(bucket=bucket, workload=workload, role=role, member=members[workload])
                    for bucket, workload, role in BUCKET_ROLES
                ],
            ),
            opts=child,
        )

        self._containers(config)

        self.outputs: dict[str, Any] = {
            "environment": sc.environment,
            "domains": sc.domains.model_dump(),
            "service_accounts": self.identities.emails,
            "buckets": self.storage.names,
            "object_prefixes": {purpose: list(prefixes) for purpose, prefixes in OBJECT_PREFIXES.items()},
            "secret_ids": self.secrets.secret_ids,
            "networks": self.networks.names,
            "databases": {
                "app": self.postgres.layout.app_database,
                "temporal": self.postgres.layout.temporal_databases[0],
                "temporal_visibility": self.postgres.layout.temporal_databases[1],
            },
            "database_users": {
                "app": self.postgres.layout.app_user,
                "temporal": self.postgres.layout.temporal_user,
                "monitor": self.postgres.layout.monitor_user,
            },
            "urls": {name: _https_url(domain, sc.proxy.https_port) for name, domain in sc.domains.model_dump().items()},
        }
        ca_certificate = getattr(self.proxy, "ca_certificate", None)
        if ca_certificate is not None:
            # Public: lets smoke checks and browsers trust staging's self-signed certificate.
            self.outputs["tls_ca_certificate"] = ca_certificate
        self.register_outputs(self.outputs)

    def _containers(self, config: StackConfig) -> None:
        """The application stack on the Docker host, each service gated on its dependencies."""
        sc = config.stagecraft
        services = sc.services
        naming = self.naming
        protect = config.is_prod
        secrets = self.secrets.values
        child = pulumi.ResourceOptions(parent=self)

        self.networks = Networks("networks", NetworksArgs(naming=naming, settings=sc.network), opts=child)
        nets = self.networks.networks

        self.postgres = Postgres(
            "postgres",
            PostgresArgs(
                naming=naming,
                settings=services.postgres,
                data_network=nets["data"],
                superuser_password=secrets["postgres-superuser-password"],
                app_password=secrets["app-db-password"],
                temporal_password=secrets["temporal-db-password"],
                monitor_password=secrets["postgres-exporter-password"],
                protect=protect,
            ),
            opts=child,
        )
        layout = self.postgres.layout
        self.redis = Redis(
            "redis",
            RedisArgs(
                naming=naming,
                settings=services.redis,
                data_network=nets["data"],
                password=secrets["redis-password"],
                protect=protect,
            ),
            opts=child,
        )
        self.chroma = Chroma(
            "chroma",
            ChromaArgs(naming=naming, settings=services.chroma, data_network=nets["data"], protect=protect),
            opts=child,
        )
        self.temporal = Temporal(
            "temporal",
            TemporalArgs(
                naming=naming,
                settings=services.temporal,
                ui_settings=services.temporal_ui,
                admin_settings=services.temporal_admin_tools,
                data_network=nets["data"],
                app_network=nets["app"],
                monitoring_network=nets["monitoring"],
                server_address=host_address(sc.network.data, SERVER_HOST_INDEX),
                postgres_host=self.postgres.host,
                user=layout.temporal_user,
                databases=layout.temporal_databases,
                password=secrets["temporal-db-password"],
                cors_origins=sc.app.cors_origins,
                ui_ports=debug_port(sc.debug_ports.temporal_ui, 8080),
                depends_on=[self.postgres.init_job.container],
            ),
            opts=child,
        )
        self.api = Api(
            "api",
            ApiArgs(
                naming=naming,
                settings=services.api,
                app=sc.app,
                endpoints=Endpoints(
                    postgres_host=self.postgres.host,
                    database=layout.app_database,
                    database_user=layout.app_user,
                    redis_host=self.redis.host,
                    chroma_url=f"http://{self.chroma.host}:{self.chroma.port}",
                    temporal_address=self.temporal.address,
                    temporal_namespace=services.temporal.namespace,
                ),
                secrets=secrets,
                data_network=nets["data"],
                app_network=nets["app"],
                monitoring_network=nets["monitoring"],
                gcp_project=config.gcp.project,
                ports=debug_port(sc.debug_ports.api, services.api.port),
                depends_on=[
                    self.postgres.init_job.container,
                    self.redis.server.container,
                    self.chroma.server.container,
                    self.temporal.namespace_job.container,
                ],
            ),
            opts=child,
        )
        self.web = Web(
            "web",
            WebArgs(
                naming=naming,
                settings=services.web,
                app=sc.app,
                api_url=f"https://{sc.domains.api}",
                app_network=nets["app"],
                ports=debug_port(sc.debug_ports.web, services.web.port),
                depends_on=[self.api.server.container],
            ),
            opts=child,
        )
        self.monitoring = Monitoring(
            "monitoring",
            MonitoringArgs(
                naming=naming,
                services=services,
                settings=sc.monitoring,
                monitoring_network=nets["monitoring"],
                data_network=nets["data"],
                app_network=nets["app"],
                targets=[
                    ScrapeTarget("prometheus", "127.0.0.1:9090"),
                    ScrapeTarget("api", f"{self.api.host}:{services.api.port}", services.api.metrics_path),
                    ScrapeTarget("temporal", f"{self.temporal.host}:{METRICS_PORT}"),
                    ScrapeTarget("postgres", f"{naming.container('postgres-exporter')}:9187"),
                    ScrapeTarget("redis", f"{naming.container('redis-exporter')}:9121"),
                    ScrapeTarget("node", f"{naming.container('node-exporter')}:9100"),
                    ScrapeTarget("grafana", f"{naming.container('grafana')}:3000"),
                ],
                process_limits=[
                    ProcessLimit(job, settings.cpus, settings.memory_mb)
                    for job, settings in (
                        ("api", services.api),
                        ("temporal", services.temporal),
                        ("prometheus", services.prometheus),
                        ("grafana", services.grafana),
                    )
                ],
                postgres_host=self.postgres.host,
                postgres_monitor_user=layout.monitor_user,
                postgres_monitor_password=secrets["postgres-exporter-password"],
                redis_host=self.redis.host,
                redis_password=secrets["redis-password"],
                grafana_admin_password=secrets["grafana-admin-password"],
                grafana_domain=sc.domains.grafana,
                grafana_ports=debug_port(sc.debug_ports.grafana, 3000),
                protect=protect,
                depends_on=[self.postgres.init_job.container, self.redis.server.container],
            ),
            opts=child,
        )
        self.proxy = ReverseProxy(
            "proxy",
            ProxyArgs(
                naming=naming,
                settings=services.proxy,
                proxy=sc.proxy,
                domains=sc.domains,
                cors_origins=sc.app.cors_origins,
                upstreams=Upstreams(
                    api=f"{self.api.host}:{services.api.port}",
                    web=f"{self.web.host}:{services.web.port}",
                    grafana=f"{naming.container('grafana')}:3000",
                ),
                edge_network=nets["edge"],
                app_network=nets["app"],
                depends_on=[self.api.server.container, self.web.server.container, self.monitoring.grafana.container],
            ),
            opts=child,
        )


def _https_url(domain: str, port: int) -> str:
    return f"https://{domain}" if port == 443 else f"https://{domain}:{port}"


def debug_port(host_port: int | None, container_port: int) -> list[docker.ContainerPortArgs]:
    """A staging debug port, published on 127.0.0.1 only (seed 000's port plan)."""
    if host_port is None:
        return []
    return [docker.ContainerPortArgs(internal=container_port, external=host_port, ip="127.0.0.1")]
