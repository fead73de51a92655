"""The exporters that turn Postgres, Redis, the Docker host (with the ops container's backup and
restore-drill results) and nginx into Prometheus metrics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import Service, Services
from components.containers.container import Attachment, HardenedContainer, secret_path
from components.containers.endpoints import Endpoint, ScrapeTarget
from components.containers.healthchecks import wget_check
from components.containers.service import ServiceComponent
from components.naming import Naming

POSTGRES_EXPORTER_PORT = 9187
REDIS_EXPORTER_PORT = 9121
NODE_EXPORTER_PORT = 9100
NGINX_EXPORTER_PORT = 9113
# Where the node exporter reads the *.prom files the ops container writes (backup and drill results).
TEXTFILE_DIR = "/textfile"
# The image is built FROM scratch: no shell, no wget, only the exporter.
NGINX_EXPORTER_BINARY = "/usr/bin/nginx-prometheus-exporter"
# The secrets the exporters read; the monitoring workload's grants follow from this list.
SECRETS = ("postgres-exporter-password", "redis-exporter-password")


def render_redis_exporter_passwords(redis_url: str, password: str) -> str:
    """redis_exporter's password file: a JSON map of Redis URL to password."""
    return json.dumps({redis_url: password})


def nginx_exporter_command(proxy_host: str, status_port: int) -> list[str]:
    """nginx-prometheus-exporter's flags: read the proxy's stub_status page (served on its
    status port to the app network only) and serve metrics on the default port."""
    return [
        f"--nginx.scrape-uri=http://{proxy_host}:{status_port}/stub_status",
        f"--web.listen-address=:{NGINX_EXPORTER_PORT}",
    ]


def nginx_exporter_health_test() -> list[str]:
    """The only check the exporter's image can run is its own binary, so this proves the binary
    starts and nothing more; Prometheus's `up` for the nginx job (ServiceDown) and `nginx_up`
    (ProxyDown) are what really watch it and the proxy."""
    return ["CMD", NGINX_EXPORTER_BINARY, "--version"]


def node_exporter_command(textfile: bool) -> list[str]:
    """node_exporter's flags: file systems without the container's pseudo ones and, when the ops
    container's metrics volume is mounted, its textfile collector on that directory."""
    command = ["--collector.filesystem.mount-points-exclude=^/(dev|proc|sys|run|etc)($|/)"]
    if textfile:
        command.append(f"--collector.textfile.directory={TEXTFILE_DIR}")
    return command


def scrape_targets(naming: Naming, nginx: bool) -> list[ScrapeTarget]:
    """The exporters' scrape jobs: postgres, redis, node and (with the proxy's exporter) nginx."""
    targets = [
        ScrapeTarget("postgres", Endpoint(naming.container("postgres-exporter"), POSTGRES_EXPORTER_PORT).address),
        ScrapeTarget("redis", Endpoint(naming.container("redis-exporter"), REDIS_EXPORTER_PORT).address),
        ScrapeTarget("node", Endpoint(naming.container("node-exporter"), NODE_EXPORTER_PORT).address),
    ]
    if nginx:
        targets.append(ScrapeTarget("nginx", Endpoint(naming.container("nginx-exporter"), NGINX_EXPORTER_PORT).address))
    return targets


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
    # The proxy's stub_status: its endpoint (container name, status port) on the app network,
    # and the exporter's pinned image. Both are needed for the nginx exporter.
    proxy_status: Endpoint | None = None
    nginx_exporter: Service | None = None
    app_network: docker.Network | None = None
    # The volume the ops container writes its *.prom files into; mounted read-only.
    textfile_volume: docker.Volume | None = None
    # Jobs that must have succeeded first (the Postgres exporter's role is made by one).
    after: Sequence[HardenedContainer] = ()
    depends_on: Sequence[pulumi.Resource] = ()
    # The component these resources lived under before monitoring was split by concern.
    was_parent: pulumi.Input[str] | None = None


class Exporters(ServiceComponent):
    """Creates the Postgres exporter (its own read-only monitoring role), the Redis exporter, the
    node exporter (a read-only view of the host's file systems for the disk alert, and the ops
    container's backup and drill results through its textfile collector) and the nginx exporter
    (the proxy's stub_status, over the app network), each on the monitoring network, and
    publishes their scrape targets."""

    def __init__(self, name: str, args: ExportersArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:exporters:Exporters", name, args.naming, opts, was_parent=args.was_parent)
        naming = args.naming
        services = args.services
        nginx_parts = {
            "proxy_status": args.proxy_status,
            "nginx_exporter": args.nginx_exporter,
            "app_network": args.app_network,
        }
        given = [key for key, value in nginx_parts.items() if value is not None]
        if given and len(given) != len(nginx_parts):
            missing = ", ".join(key for key in nginx_parts if key not in given)
            raise ValueError(
                f"ExportersArgs: the nginx exporter needs proxy_status, nginx_exporter and app_network "
                f"together ({missing} missing)"
            )
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
            # Off by default: the server's start time, for the restart alert.
            command=["--collector.postmaster"],
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
            command=node_exporter_command(textfile=args.textfile_volume is not None),
            volumes={TEXTFILE_DIR: args.textfile_volume.name} if args.textfile_volume is not None else {},
            read_only_volumes=frozenset({TEXTFILE_DIR}),
            health_test=wget_check(NODE_EXPORTER_PORT, "/metrics"),
        )
        self.nginx: HardenedContainer | None = None
        if args.proxy_status is not None and args.nginx_exporter is not None and args.app_network is not None:
            self.nginx = self.container(
                "nginx",
                "nginx-exporter",
                args.nginx_exporter,
                networks=[
                    # The proxy serves stub_status to the app network's subnet only.
                    Attachment(args.app_network),
                    Attachment(args.monitoring_network, aliases=("nginx-exporter",)),
                ],
                command=nginx_exporter_command(args.proxy_status.host, args.proxy_status.port),
                health_test=nginx_exporter_health_test(),
                # No dependency on the proxy: it starts after Prometheus (which waits for the
                # exporters), and until it answers the exporter reports nginx_up 0.
            )
        self.scrape_targets = scrape_targets(naming, nginx=self.nginx is not None)
        self.register_outputs({})
