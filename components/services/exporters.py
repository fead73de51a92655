"""The exporters that turn Postgres, Redis and the Docker host into Prometheus metrics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import Services
from components.containers.container import Attachment, secret_path
from components.containers.endpoints import Endpoint, ScrapeTarget
from components.containers.healthchecks import wget_check
from components.containers.service import ServiceComponent
from components.naming import Naming

POSTGRES_EXPORTER_PORT = 9187
REDIS_EXPORTER_PORT = 9121
NODE_EXPORTER_PORT = 9100
NOBODY = "65534"  # the images' `nobody` user
# The secrets the exporters read; the monitoring workload's grants follow from this list.
SECRETS = ("postgres-exporter-password",)


def render_redis_exporter_passwords(redis_url: str, password: str) -> str:
    """redis_exporter's password file: a JSON map of Redis URL to password."""
    return json.dumps({redis_url: password})


@dataclass(frozen=True)
class ExportersArgs:
    naming: Naming
    services: Services
    monitoring_network: docker.Network
    data_network: docker.Network
    postgres: Endpoint
    postgres_user: str
    postgres_password: pulumi.Input[str]
    redis: Endpoint
    redis_password: pulumi.Input[str]
    depends_on: Sequence[pulumi.Resource] = ()
    # The component these resources lived under before monitoring was split by concern.
    was_parent: pulumi.Input[str] | None = None


class Exporters(ServiceComponent):
    """Creates the Postgres exporter (its own read-only monitoring role), the Redis exporter and
    the node exporter (a read-only view of the host's file systems for the disk alert), each on
    the monitoring network, and publishes their scrape targets."""

    def __init__(self, name: str, args: ExportersArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:exporters:Exporters", name, args.naming, opts, was_parent=args.was_parent)
        naming = args.naming
        services = args.services
        user = f"{NOBODY}:{NOBODY}"
        self.postgres = self.container(
            "postgres",
            "postgres-exporter",
            services.postgres_exporter,
            networks=[
                Attachment(args.data_network),
                Attachment(args.monitoring_network, aliases=("postgres-exporter",)),
            ],
            env={
                "DATA_SOURCE_URI": f"{args.postgres.address}/postgres?sslmode=disable",
                "DATA_SOURCE_USER": args.postgres_user,
                "DATA_SOURCE_PASS_FILE": secret_path("postgres-exporter-password"),
            },
            secret_files={"postgres-exporter-password": args.postgres_password},
            user=user,
            file_owner=NOBODY,
            health_test=wget_check(POSTGRES_EXPORTER_PORT, "/metrics"),
            depends_on=args.depends_on,
        )
        redis_url = f"redis://{args.redis.address}"
        self.redis = self.container(
            "redis",
            "redis-exporter",
            services.redis_exporter,
            networks=[
                Attachment(args.data_network),
                Attachment(args.monitoring_network, aliases=("redis-exporter",)),
            ],
            env={"REDIS_ADDR": redis_url, "REDIS_PASSWORD_FILE": secret_path("redis-passwords.json")},
            secret_files={
                "redis-passwords.json": pulumi.Output.from_input(args.redis_password).apply(
                    lambda password: render_redis_exporter_passwords(redis_url, password)
                )
            },
            user=user,
            file_owner=NOBODY,
            health_test=wget_check(REDIS_EXPORTER_PORT, "/metrics"),
            depends_on=args.depends_on,
        )
        self.node = self.container(
            "node",
            "node-exporter",
            services.node_exporter,
            networks=[Attachment(args.monitoring_network, aliases=("node-exporter",))],
            # Read-only view of the host's file systems for the disk alert; as nobody, it
            # can stat mount points but read only world-readable files.
            command=[
                "--path.rootfs=/host",
                "--collector.filesystem.mount-points-exclude=^/(dev|proc|sys|run)($|/)",
            ],
            host_mounts={"/host": "/"},
            user=user,
            health_test=wget_check(NODE_EXPORTER_PORT, "/metrics"),
        )
        self.scrape_targets = [
            ScrapeTarget("postgres", Endpoint(naming.container("postgres-exporter"), POSTGRES_EXPORTER_PORT).address),
            ScrapeTarget("redis", Endpoint(naming.container("redis-exporter"), REDIS_EXPORTER_PORT).address),
            ScrapeTarget("node", Endpoint(naming.container("node-exporter"), NODE_EXPORTER_PORT).address),
        ]
        self.containers = [self.postgres.container, self.redis.container, self.node.container]
        self.register_outputs({})
