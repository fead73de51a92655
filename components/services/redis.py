"""Redis 7: one ACL user per client, memory-bounded, persistent."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
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
# The keys `preflight verify` may write (a marker written, read back and deleted).
VERIFY_KEY_PREFIX = "stagecraft:verify:"
# One ACL user per client, each allowed only what it needs; the `default` user is off.
ACL_RULES = {
    # The application: data commands, but nothing that wipes, reconfigures or replicates.
    "app": "~* &* +@all -@dangerous -@admin +info +client|setname +client|getname +client|id",
    # The metrics exporter reads server state and nothing else.
    "exporter": (
        "-@all +@connection +ping +info +config|get +client|list +slowlog|get +slowlog|len +latency|latest +dbsize"
    ),
    # Backups stream a snapshot the way a replica would, and do nothing else.
    "backup": "-@all +@connection +ping +sync +psync +replconf",
    # The container's own healthcheck.
    "healthcheck": "-@all +ping",
    # `preflight verify`: proves data persists with a short-lived marker key, and no other key.
    "verify": f"~{VERIFY_KEY_PREFIX}* -@all +@connection +ping +set +get +del +exists +ttl",
}
# Which generated secret holds each user's password.
USER_SECRETS = {
    "app": "redis-password",
    "exporter": "redis-exporter-password",
    "backup": "redis-backup-password",
    "healthcheck": "redis-healthcheck-password",
    "verify": "redis-verify-password",
}


def maxmemory_mb(memory_mb: int) -> int:
    """Leave a quarter of the container limit for fork-on-save and buffers."""
    return max(16, memory_mb * 3 // 4)


def render_redis_conf(memory_mb: int, acl_file: str, data_dir: str = "/data", port: int = PORT) -> str:
    """redis.conf; the users and their password hashes come from ``acl_file``."""
    return "\n".join(
        [
            "# stagecraft: rendered, do not edit",
            f"port {port}",
            "bind * -::*",
            "protected-mode yes",
            f"aclfile {acl_file}",
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


def render_acl(passwords: Mapping[str, str]) -> str:
    """users.acl: ``default`` off, then one user per client with the SHA-256 of its password (the
    file holds no password) and only the commands in ACL_RULES."""
    lines = ["user default off nopass nocommands"]
    for user, rules in ACL_RULES.items():
        digest = hashlib.sha256(passwords[user].encode()).hexdigest()
        lines.append(f"user {user} on #{digest} resetchannels {rules}")
    return "\n".join(lines) + "\n"


def auth_ping(password_file: str, user: str = "healthcheck", port: int = PORT) -> str:
    """Healthcheck: a bare `redis-cli ping` exits 0 on NOAUTH, so authenticate and require PONG."""
    return f'REDISCLI_AUTH="$(cat {password_file})" redis-cli --user {user} -h 127.0.0.1 -p {port} ping | grep -qx PONG'


@dataclass(frozen=True)
class RedisArgs:
    naming: Naming
    settings: RedisService
    data_network: docker.Network
    # Each ACL user's password (see USER_SECRETS).
    passwords: Mapping[str, pulumi.Input[str]]
    protect: bool = False


class Redis(ServiceComponent):
    """Creates the Redis server: one ACL user per client with only the commands it needs (the
    default user off, password hashes only), `maxmemory` derived from the container limit with
    `allkeys-lru`, append-only persistence on a named volume."""

    def __init__(self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:redis:Redis", name, args.naming, opts)
        self.endpoint = Endpoint(args.naming.container("redis"), PORT)
        self.volume = self.data_volume("redis", args.protect)
        users = list(ACL_RULES)
        acl = pulumi.Output.all(*(args.passwords[user] for user in users)).apply(
            lambda values: render_acl(dict(zip(users, values, strict=True)))
        )
        self.server = self.container(
            "server",
            "redis",
            args.settings,
            networks=[Attachment(args.data_network, aliases=("redis",))],
            command=["redis-server", config_path("redis.conf")],
            secret_files={"users.acl": acl, "redis-healthcheck-password": args.passwords["healthcheck"]},
            config_files={"redis.conf": render_redis_conf(args.settings.memory_mb, secret_path("users.acl"))},
            health_test=["CMD-SHELL", auth_ping(secret_path("redis-healthcheck-password"))],
            volumes={"/data": self.volume.name},
        )
        self.register_outputs({"host": self.endpoint.host})
