"""Redis: an RDB snapshot over the replication protocol, and an offline restore.

``redis-cli --rdb`` asks the server for a full sync, the same point-in-time RDB a replica gets.
It authenticates as the backup ACL user (``user``), with the password passed to redis-cli only
in its ``REDISCLI_AUTH`` variable. The user needs ``-@all +sync +replconf`` and nothing else.

A restore writes the RDB as ``dump.rdb`` and as the base of a fresh append-only directory: with
``appendonly yes`` Redis 7 loads only the AOF and would ignore a lone dump.rdb (it starts empty).
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from stagecraft_ops.datadir import move_aside, place_file
from stagecraft_ops.errors import OperationError, UsageError
from stagecraft_ops.settings import Settings, read_secret

RDB_FILE = "dump.rdb"
AOF_DIR = "appendonlydir"
AOF_NAME = "appendonly.aof"
RDB_EOF = 0xFF
TIMEOUT_S = 3600


def check_rdb(path: Path) -> None:
    """An RDB starts with ``REDIS`` and a 4-digit version and, from version 5 on, ends with the
    EOF opcode and an 8-byte checksum: a cheap guard against an empty or truncated transfer."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(9)
        if size < 18 or not head.startswith(b"REDIS") or not head[5:9].isdigit():
            raise OperationError(f"{path.name}: not an RDB file (it starts with {head[:9]!r})")
        handle.seek(size - 9)
        if int(head[5:9]) >= 5 and handle.read(1)[0] != RDB_EOF:
            raise OperationError(f"{path.name}: the RDB has no end marker; the transfer was cut short")


def fetch_rdb(settings: Settings, target: Path) -> None:
    """A consistent snapshot of the stack's Redis, written to ``target``."""
    password = read_secret(settings, "redis.password_file", settings.redis.password_file)
    command = [
        "redis-cli",
        "-h",
        settings.redis.host,
        "-p",
        str(settings.redis.port),
        "--user",
        settings.redis.user,
        "--rdb",
        str(target),
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REDISCLI_AUTH": password}
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except OSError as error:
        raise OperationError(f"redis: cannot run redis-cli ({error.strerror})") from None
    except subprocess.TimeoutExpired:
        raise OperationError(f"redis: no complete RDB after {TIMEOUT_S} s") from None
    output = " | ".join(line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip())
    if result.returncode != 0 or not target.exists():
        raise OperationError(f"redis {settings.redis.host}:{settings.redis.port}: redis-cli --rdb failed: {output}")
    check_rdb(target)


def server_answers(settings: Settings) -> bool:
    """True when something answers PING at the configured Redis address (so it still runs)."""
    try:
        with socket.create_connection((settings.redis.host, settings.redis.port), timeout=2) as connection:
            connection.sendall(b"PING\r\n")
            return bool(connection.recv(64))
    except OSError:
        return False


def refuse_if_running(settings: Settings) -> None:
    """A running Redis would overwrite restored files with its own data when it next saves."""
    if server_answers(settings):
        raise UsageError(
            f"--redis-data-dir: Redis at {settings.redis.host}:{settings.redis.port} is running; "
            "stop it first (it would overwrite the restored data when it saves)"
        )


def restore_rdb(settings: Settings, rdb: Path, data_dir: Path, stamp: str) -> Path | None:
    """Install ``rdb`` into the stopped server's ``data_dir``; returns where the old files went."""
    refuse_if_running(settings)
    aside = move_aside(data_dir, stamp, [RDB_FILE, AOF_DIR])
    place_file(rdb, data_dir / RDB_FILE)
    aof_dir = data_dir / AOF_DIR
    aof_dir.mkdir(mode=0o755)
    base = f"{AOF_NAME}.1.base.rdb"
    place_file(rdb, aof_dir / base)
    manifest = aof_dir / f"{AOF_NAME}.manifest"
    manifest.write_text(f"file {base} seq 1 type b\n", encoding="utf-8")
    return aside
