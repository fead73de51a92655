"""Temporal: the server on its own Postgres databases, its schema and namespace jobs, the UI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import Service, TemporalService
from components.containers.container import Attachment, config_path, secret_path
from components.containers.endpoints import Endpoint, ScrapeTarget
from components.containers.healthchecks import wget_check
from components.containers.service import ServiceComponent
from components.naming import Naming

FRONTEND_PORT = 7233
METRICS_PORT = 9090
UI_PORT = 8080
SCHEMA_DIR = "/etc/temporal/schema/postgresql/v12"
# Fixed address on the data network: Temporal binds 0.0.0.0 and must broadcast one address.
SERVER_HOST_INDEX = 10
# The secrets Temporal's containers read; its workload's grants follow from this list.
SECRETS = ("temporal-db-password",)


def render_dynamic_config(retention_days: int) -> str:
    return "\n".join(
        [
            "# stagecraft: rendered, do not edit",
            "limit.maxIDLength:",
            "  - value: 255",
            "system.forceSearchAttributesCacheRefreshOnRead:",
            "  - value: false",
            "frontend.namespaceRPS:",
            "  - value: 2400",
            "history.defaultWorkflowRetentionTTL:",  # informational; the namespace job sets it
            f"  - value: {retention_days * 24}h",
            "",
        ]
    )


def render_server_entrypoint() -> str:
    """The server image reads its database password from POSTGRES_PWD only: this wrapper reads
    the file into the process environment (never the container's) and hands over."""
    return "\n".join(
        [
            "#!/bin/sh",
            "set -eu",
            f'POSTGRES_PWD="$(cat {secret_path("temporal-db-password")})"',
            "export POSTGRES_PWD",
            'exec /etc/temporal/entrypoint.sh "$@"',
            "",
        ]
    )


def render_schema_script(postgres: Endpoint, user: str, databases: Sequence[str]) -> str:
    """Create both databases, then set up or upgrade their schemas; every step is safe to re-run.

    The Postgres init job normally creates the databases first (and revokes everyone else's
    access); ``create`` then finds them and does nothing. It connects to Temporal's own
    database (``--defaultdb``), since the role may not connect to the maintenance database.
    """
    default, visibility = databases
    lines = [
        "#!/bin/sh",
        "set -eu",
        f'SQL_PASSWORD="$(cat {secret_path("temporal-db-password")})"',
        "export SQL_PASSWORD",
        f'tool() {{ temporal-sql-tool --plugin postgres12 --ep {postgres.host} -p {postgres.port} -u {user} "$@"; }}',
        f"tool --db {default} create --defaultdb {default}",
        f"tool --db {visibility} create --defaultdb {default}",
        f"tool --db {default} setup-schema -v 0.0",
        f"tool --db {default} update-schema -d {SCHEMA_DIR}/temporal/versioned",
        f"tool --db {visibility} setup-schema -v 0.0",
        f"tool --db {visibility} update-schema -d {SCHEMA_DIR}/visibility/versioned",
        "",
    ]
    return "\n".join(lines)


def render_namespace_script(address: str, namespace: str, retention_days: int) -> str:
    return "\n".join(
        [
            "#!/bin/sh",
            "set -eu",
            f"if temporal operator namespace describe --address {address} --namespace {namespace} \\",
            "  >/dev/null 2>&1; then",
            f"  temporal operator namespace update --address {address} --namespace {namespace} "
            f"--retention {retention_days * 24}h",
            "else",
            f"  temporal operator namespace create --address {address} --namespace {namespace} "
            f"--retention {retention_days * 24}h",
            "fi",
            "",
        ]
    )


@dataclass(frozen=True)
class TemporalArgs:
    naming: Naming
    settings: TemporalService
    ui_settings: Service
    admin_settings: Service
    data_network: docker.Network
    app_network: docker.Network
    monitoring_network: docker.Network
    server_address: str
    postgres: Endpoint
    user: str
    databases: tuple[str, str]
    password: pulumi.Input[str]
    cors_origins: Sequence[str]
    ui_ports: Sequence[docker.ContainerPortArgs] = ()
    depends_on: Sequence[pulumi.Resource] = ()


class Temporal(ServiceComponent):
    """Creates Temporal: a one-shot schema job (temporal-sql-tool) that finishes before the
    server starts, the server (Prometheus metrics, dynamic config file), a one-shot job that
    creates the namespace once the cluster is healthy, and the Temporal UI."""

    def __init__(self, name: str, args: TemporalArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:temporal:Temporal", name, args.naming, opts)
        naming = args.naming
        self.endpoint = Endpoint(naming.container("temporal"), FRONTEND_PORT)
        self.scrape_targets = [ScrapeTarget("temporal", Endpoint(self.endpoint.host, METRICS_PORT).address)]
        data = Attachment(args.data_network)
        password_file = {"temporal-db-password": args.password}
        self.schema_job = self.container(
            "schema",
            "temporal-schema",
            args.admin_settings,
            networks=[data],
            entrypoint=["/bin/sh", config_path("schema.sh")],
            secret_files=password_file,
            config_files={"schema.sh": render_schema_script(args.postgres, args.user, args.databases)},
            executable_files=frozenset({"schema.sh"}),
            one_shot=True,
            depends_on=args.depends_on,
        )
        self.server = self.container(
            "server",
            "temporal",
            args.settings,
            networks=[
                Attachment(args.data_network, aliases=("temporal",), ipv4_address=args.server_address),
                Attachment(args.monitoring_network, aliases=("temporal",)),
            ],
            entrypoint=["/bin/sh", config_path("entrypoint.sh")],
            env={
                "DB": "postgres12",
                "DB_PORT": str(args.postgres.port),
                "POSTGRES_SEEDS": args.postgres.host,
                "POSTGRES_USER": args.user,
                "DBNAME": args.databases[0],
                "VISIBILITY_DBNAME": args.databases[1],
                "DYNAMIC_CONFIG_FILE_PATH": config_path("dynamic.yaml"),
                "PROMETHEUS_ENDPOINT": f"0.0.0.0:{METRICS_PORT}",
                "BIND_ON_IP": "0.0.0.0",
                "TEMPORAL_BROADCAST_ADDRESS": args.server_address,
                "LOG_LEVEL": "info",
            },
            secret_files=password_file,
            config_files={
                "entrypoint.sh": render_server_entrypoint(),
                "dynamic.yaml": render_dynamic_config(args.settings.retention_days),
            },
            executable_files=frozenset({"entrypoint.sh"}),
            # The image renders its config file into /etc/temporal/config at start, so its
            # root filesystem stays writable; everything else is as hardened as the rest.
            read_only=False,
            tmp_mb=64,
            health_test=[
                "CMD-SHELL",
                f"temporal operator cluster health --address 127.0.0.1:{FRONTEND_PORT} | grep -q SERVING",
            ],
            depends_on=[self.schema_job.container],
        )
        self.namespace_job = self.container(
            "namespace",
            "temporal-namespace",
            args.admin_settings,
            networks=[data],
            entrypoint=["/bin/sh", config_path("namespace.sh")],
            config_files={
                "namespace.sh": render_namespace_script(
                    self.endpoint.address, args.settings.namespace, args.settings.retention_days
                )
            },
            executable_files=frozenset({"namespace.sh"}),
            one_shot=True,
            depends_on=[self.server.container],
        )
        self.ui = self.container(
            "ui",
            "temporal-ui",
            args.ui_settings,
            networks=[Attachment(args.data_network), Attachment(args.app_network, aliases=("temporal-ui",))],
            env={
                "TEMPORAL_ADDRESS": self.endpoint.address,
                "TEMPORAL_UI_PORT": str(UI_PORT),
                "TEMPORAL_CORS_ORIGINS": ",".join(args.cors_origins),
                "TEMPORAL_DEFAULT_NAMESPACE": args.settings.namespace,
            },
            # The UI renders its config file at start; see the server above.
            read_only=False,
            health_test=wget_check(UI_PORT, "/healthz"),
            ports=args.ui_ports,
            depends_on=[self.namespace_job.container],
        )
        self.register_outputs({"address": self.endpoint.address})
