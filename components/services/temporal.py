"""Temporal: the server on its own Postgres databases, its schema and namespace jobs, the UI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker

from components import yaml_io
from components.config import Service, TemporalService
from components.containers.container import (
    CONFIG_DIR,
    SECRETS_DIR,
    Attachment,
    HardenedContainer,
    config_path,
    secret_path,
)
from components.containers.endpoints import Endpoint, ScrapeTarget
from components.containers.healthchecks import wget_check
from components.containers.service import ServiceComponent
from components.naming import Naming

FRONTEND_PORT = 7233
FRONTEND_HTTP_PORT = 7243
METRICS_PORT = 9090
UI_PORT = 8080
SCHEMA_DIR = "/etc/temporal/schema/postgresql/v12"
# The server binds one fixed address on the Temporal network, and tells its peers that address.
SERVER_HOST_INDEX = 10
# Internal ports of the four services in the one server process (the image's defaults).
SERVICE_PORTS = {
    "frontend": {"grpcPort": FRONTEND_PORT, "membershipPort": 6933, "httpPort": FRONTEND_HTTP_PORT},
    "history": {"grpcPort": 7234, "membershipPort": 6934},
    "matching": {"grpcPort": 7235, "membershipPort": 6935},
    "worker": {"grpcPort": 7239, "membershipPort": 6939},
}
# History shards are fixed when the cluster is created and must never change afterwards.
HISTORY_SHARDS = 4
UI_HOME = "/home/ui-server"
# The secrets Temporal's containers read; its workload's grants follow from this list.
SECRETS = ("temporal-db-password",)


def render_dynamic_config(retention_days: int) -> str:
    document = {
        "limit.maxIDLength": [{"value": 255}],
        "system.forceSearchAttributesCacheRefreshOnRead": [{"value": False}],
        "frontend.namespaceRPS": [{"value": 2400}],
        # Informational; the namespace job sets the namespace's retention.
        "history.defaultWorkflowRetentionTTL": [{"value": f"{retention_days * 24}h"}],
    }
    return "# stagecraft: rendered, do not edit\n" + yaml_io.dump(document)


def _datastore(postgres: Endpoint, user: str, password: str, database: str, max_conns: int) -> dict[str, Any]:
    return {
        "sql": {
            "pluginName": "postgres12",
            "databaseName": database,
            "connectAddr": postgres.address,
            "connectProtocol": "tcp",
            "user": user,
            "password": password,
            "maxConns": max_conns,
            "maxIdleConns": max_conns,
            "maxConnLifetime": "1h",
        }
    }


def render_server_config(
    postgres: Endpoint,
    user: str,
    password: str,
    databases: Sequence[str],
    address: str,
    dynamic_config_file: str,
    log_level: str = "info",
) -> str:
    """The server's whole config (what the image would render at start, which needs a writable
    root file system): its databases, one address it binds and announces, Prometheus metrics,
    archival off. It holds the database password, so it is delivered as a secret file."""
    default, visibility = databases
    document = {
        "log": {"stdout": True, "level": log_level},
        "persistence": {
            "numHistoryShards": HISTORY_SHARDS,
            "defaultStore": "default",
            "visibilityStore": "visibility",
            "datastores": {
                "default": _datastore(postgres, user, password, default, 20),
                "visibility": _datastore(postgres, user, password, visibility, 10),
            },
        },
        "global": {
            "membership": {"maxJoinDuration": "30s", "broadcastAddress": address},
            "pprof": {"port": 0},
            "metrics": {"prometheus": {"timerType": "histogram", "listenAddress": f"0.0.0.0:{METRICS_PORT}"}},
        },
        "services": {name: {"rpc": {**ports, "bindOnIP": address}} for name, ports in SERVICE_PORTS.items()},
        "clusterMetadata": {
            "enableGlobalNamespace": False,
            "failoverVersionIncrement": 10,
            "masterClusterName": "active",
            "currentClusterName": "active",
            "clusterInformation": {
                "active": {
                    "enabled": True,
                    "initialFailoverVersion": 1,
                    "rpcName": "frontend",
                    "rpcAddress": f"{address}:{FRONTEND_PORT}",
                    "httpAddress": f"{address}:{FRONTEND_HTTP_PORT}",
                }
            },
        },
        "dcRedirectionPolicy": {"policy": "noop"},
        # Nothing is written to the container's file system.
        "archival": {"history": {"state": "disabled"}, "visibility": {"state": "disabled"}},
        "namespaceDefaults": {"archival": {"history": {"state": "disabled"}, "visibility": {"state": "disabled"}}},
        "dynamicConfigClient": {"filepath": dynamic_config_file, "pollInterval": "60s"},
    }
    return "# stagecraft: rendered, do not edit\n" + yaml_io.dump(document)


def server_command(config_dir: str) -> list[str]:
    """Start all four services on the rendered config, bypassing the image's entrypoint."""
    return ["temporal-server", "--root", "/", "--config", config_dir, "--env", "docker", "--allow-no-auth", "start"]


def render_ui_config(frontend: Endpoint, namespace: str, port: int = UI_PORT) -> str:
    """The UI's config (the image would render it at start): the frontend it talks to, no
    cross-origin access, secure cookies, no version check calling home."""
    document = {
        "temporalGrpcAddress": frontend.address,
        "port": port,
        "publicPath": "",
        "enableUi": True,
        "defaultNamespace": namespace,
        "notifyOnNewVersion": False,
        "showTemporalSystemNamespace": False,
        "cors": {"cookieInsecure": False, "allowOrigins": []},
        "auth": {"enabled": False, "providers": []},
        "hideLogs": False,
    }
    return "# stagecraft: rendered, do not edit\n" + yaml_io.dump(document)


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
    temporal_network: docker.Network
    monitoring_network: docker.Network
    # The server's fixed address on the Temporal network.
    server_address: str
    postgres: Endpoint
    user: str
    databases: tuple[str, str]
    password: pulumi.Input[str]
    ui_ports: Sequence[docker.ContainerPortArgs] = ()
    after: Sequence[HardenedContainer] = ()


class Temporal(ServiceComponent):
    """Creates Temporal: a one-shot schema job (temporal-sql-tool) that must succeed before the
    server starts; the server on its own rendered config, read-only like every container; a
    one-shot job that creates or updates the namespace once the cluster is healthy; and the UI.

    The frontend has no authentication, so the server answers only on the Temporal network,
    shared with its real clients (the API, the UI and the jobs); the UI joins that network alone
    and is never behind the public proxy (in staging it can be published on 127.0.0.1)."""

    def __init__(self, name: str, args: TemporalArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:temporal:Temporal", name, args.naming, opts)
        naming = args.naming
        # The frontend listens only on its address on the Temporal network. Clients that share
        # other networks with the server would get whichever of its addresses Docker's DNS
        # answers first for its name, so they are given the address itself.
        self.endpoint = Endpoint(args.server_address, FRONTEND_PORT)
        # Metrics listen on every interface; Prometheus reaches them on the monitoring network.
        self.scrape_targets = [ScrapeTarget("temporal", Endpoint(naming.container("temporal"), METRICS_PORT).address)]
        self.schema_job = self.container(
            "schema",
            "temporal-schema",
            args.admin_settings,
            networks=[Attachment(args.data_network)],
            entrypoint=["/bin/sh", config_path("schema.sh")],
            secret_files={"temporal-db-password": args.password},
            config_files={"schema.sh": render_schema_script(args.postgres, args.user, args.databases)},
            executable_files=frozenset({"schema.sh"}),
            one_shot=True,
            after=args.after,
        )
        server_config = pulumi.Output.from_input(args.password).apply(
            lambda password: render_server_config(
                args.postgres, args.user, password, args.databases, args.server_address, config_path("dynamic.yaml")
            )
        )
        self.server = self.container(
            "server",
            "temporal",
            args.settings,
            networks=[
                Attachment(args.data_network),
                Attachment(args.temporal_network, aliases=("temporal",), ipv4_address=args.server_address),
                Attachment(args.monitoring_network, aliases=("temporal",)),
            ],
            entrypoint=server_command(SECRETS_DIR),
            # The config dir holds docker.yaml, the server's config with the database password.
            secret_files={"docker.yaml": server_config},
            config_files={"dynamic.yaml": render_dynamic_config(args.settings.retention_days)},
            tmp_mb=64,
            health_test=[
                "CMD-SHELL",
                f"temporal operator cluster health --address {args.server_address}:{FRONTEND_PORT} | grep -q SERVING",
            ],
            after=[self.schema_job],
        )
        self.namespace_job = self.container(
            "namespace",
            "temporal-namespace",
            args.admin_settings,
            networks=[Attachment(args.temporal_network)],
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
            networks=[Attachment(args.temporal_network, aliases=("temporal-ui",))],
            entrypoint=[f"{UI_HOME}/ui-server", "--root", "/", "--config", CONFIG_DIR, "--env", "docker", "start"],
            config_files={"docker.yaml": render_ui_config(self.endpoint, args.settings.namespace)},
            health_test=wget_check(UI_PORT, "/healthz"),
            ports=args.ui_ports,
            after=[self.namespace_job],
        )
        self.register_outputs({"address": self.endpoint.address})
