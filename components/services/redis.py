"""Redis 7: password required, memory-bounded, persistent."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import RedisService
from components.containers.container import (
    Attachment,
    config_path,
    secret_path,
)
from components.containers.endpoints import Endpoint
from components.containers.service import ServiceComponent
from components.naming import Naming

PORT = 6379
REDIS_UID = "999"  # the `redis` user of the official image


def maxmemory_mb(memory_mb: int) -> int:
    """Leave a quarter of the container limit for fork-on-save and buffers."""
    return max(16, memory_mb * 3 // 4)


def render_redis_conf(memory_mb: int, auth_file: str, data_dir: str = "/data", port: int = PORT) -> str:
    """redis.conf; the password comes from ``auth_file`` (a `requirepass` line) via include."""
    return "\n".join(
        [
            "# stagecraft: rendered, do not edit",
            f"port {port}",
            "bind * -::*",
            "protected-mode yes",
            f"include {auth_file}",
            f"maxmemory {maxmemory_mb(memory_mb)}mb",
            "maxmemory-policy allkeys-lru",
            "appendonly yes",
            "appendfsync everysec",
            f"dir {data_dir}",
            "save 900 1 300 10 60 10000",
            "loglevel notice",
            'logfile ""',
            "enable-debug-command no",
            "enable-module-command no",
            "",
        ]
    )


def auth_ping(password_file: str, port: int = PORT) -> str:
    """Healthcheck: a bare `redis-cli ping` exits 0 on NOAUTH, so authenticate and require PONG."""
    return f'REDISCLI_AUTH="$(cat {password_file})" redis-cli -h 127.0.0.1 -p {port} ping | grep -qx PONG'


def render_auth_conf(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace('"', '\\"')
    return f'requirepass "{escaped}"\n'


@dataclass(frozen=True)
class RedisArgs:
    naming: Naming
    settings: RedisService
    data_network: docker.Network
    password: pulumi.Input[str]
    protect: bool = False


class Redis(ServiceComponent):
    """Creates the Redis server: AUTH required (password from a file), `maxmemory` derived
    from the container limit with `allkeys-lru`, append-only persistence on a named volume."""

    def __init__(self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:redis:Redis", name, args.naming, opts)
        naming = args.naming
        self.endpoint = Endpoint(naming.container("redis"), PORT)
        self.volume = self.data_volume("redis", args.protect)
        self.server = self.container(
            "server",
            "redis",
            args.settings,
            networks=[Attachment(args.data_network, aliases=("redis",))],
            command=["redis-server", config_path("redis.conf")],
            secret_files={
                "redis-auth.conf": pulumi.Output.from_input(args.password).apply(render_auth_conf),
                "redis-password": args.password,
            },
            config_files={"redis.conf": render_redis_conf(args.settings.memory_mb, secret_path("redis-auth.conf"))},
            user=f"{REDIS_UID}:{REDIS_UID}",
            file_owner=REDIS_UID,
            health_test=["CMD-SHELL", auth_ping(secret_path("redis-password"))],
            volumes={"/data": self.volume.name},
        )
        self.register_outputs({"host": self.endpoint.host})
