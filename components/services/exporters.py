"""The exporters that turn Postgres, Redis and the Docker host into Prometheus metrics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import Services
from components.containers.container import Attachment, HardenedContainer, secret_path
from components.containers.endpoints import Endpoint, ScrapeTarget
from components.containers.healthchecks import wget_check
from components.containers.service import ServiceComponent
from components.naming import Naming

POSTGRES_EXPORTER_PORT = 9187
REDIS_EXPORTER_PORT = 9121
NODE_EXPORTER_PORT = 9100
# The secrets the exporters read; the monitoring workload's grants follow from this list.
SECRETS = ("postgres-exporter-password", "redis-exporter-password")


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
    redis_user: str
    redis_password: pulumi.Input[str]
    # Jobs that must have succeeded first (the Postgres exporter's role is made by one).
    after: Sequence[HardenedContainer] = ()
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
            health_test=wget_check(POSTGRES_EXPORTER_PORT, "/metrics"),
            after=args.after,
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
            env={
                "REDIS_ADDR": redis_url,
                "REDIS_USER": args.redis_user,
                "REDIS_PASSWORD_FILE": secret_path("redis-passwords.json"),
            },
            secret_files={
                "redis-passwords.json": pulumi.Output.from_input(args.redis_password).apply(
                    lambda password: render_redis_exporter_passwords(redis_url, password)
                )
            },
            health_test=wget_check(REDIS_EXPORTER_PORT, "/metrics"),
            depends_on=args.depends_on,
        )
        self.node = self.container(
            "node",
            "node-exporter",
            services.node_exporter,
            networks=[Attachment(args.monitoring_network, aliases=("node-exporter",))],
            # No bind mount of the host: /proc reports the host's CPUs and memory, and the
            # container's root file system is the one holding Docker's data (and so every
            # volume), which is the disk the disk alert is about.
            command=["--collector.filesystem.mount-points-exclude=^/(dev|proc|sys|run|etc)($|/)"],
            health_test=wget_check(NODE_EXPORTER_PORT, "/metrics"),
        )
        self.scrape_targets = [
            ScrapeTarget("postgres", Endpoint(naming.container("postgres-exporter"), POSTGRES_EXPORTER_PORT).address),
            ScrapeTarget("redis", Endpoint(naming.container("redis-exporter"), REDIS_EXPORTER_PORT).address),
            ScrapeTarget("node", Endpoint(naming.container("node-exporter"), NODE_EXPORTER_PORT).address),
        ]
        self.containers = [self.postgres.container, self.redis.container, self.node.container]
        self.register_outputs({})
