"""Redis: the rendered config and ACL file loaded by a real redis-server, which then gives each
client exactly its own commands."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port, require_tool, wait_for_port

from components.services.redis import ACL_RULES, auth_ping, maxmemory_mb, render_acl, render_redis_conf

PASSWORDS = {
    "app": "r3dis-App#word!%",
    "exporter": "r3dis-Exporter-2",
    "backup": "r3dis-Backup-3",
    "healthcheck": "r3dis-Health-4",
    "verify": "r3dis-Verify-5",
}


@dataclass
class RedisServer:
    port: int
    directory: Path

    def cli(self, *args: str, user: str | None = None, password: str | None = None) -> str:
        env = {"PATH": "/usr/bin:/bin"}
        if password is not None:
            env["REDISCLI_AUTH"] = password
        login = ["--user", user] if user else []
        result = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *login, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return (result.stdout + result.stderr).strip()

    def as_user(self, user: str, *args: str) -> str:
        return self.cli(*args, user=user, password=PASSWORDS[user])


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require_tool("redis-server")
    port = free_port()
    acl = tmp_path / "users.acl"
    acl.write_text(render_acl(PASSWORDS))
    data = tmp_path / "data"
    data.mkdir()
    conf = tmp_path / "redis.conf"
    conf.write_text(
        render_redis_conf(512, str(acl), data_dir=str(data), port=port).replace("bind * -::*", "bind 127.0.0.1")
    )
    process = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port)
        yield RedisServer(port=port, directory=tmp_path)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_acl_file_holds_no_password() -> None:
    acl = render_acl(PASSWORDS)
    assert all(password not in acl for password in PASSWORDS.values())
    assert acl.startswith("user default off")
    assert set(ACL_RULES) == set(PASSWORDS)


def test_nobody_gets_in_without_a_user_and_password(redis_server: RedisServer) -> None:
    assert "NOAUTH" in redis_server.cli("SET", "k", "v")
    assert "PONG" not in redis_server.cli("PING", password=PASSWORDS["app"])  # as `default`
    assert "PONG" not in redis_server.cli("PING", user="app", password="wrong")


def test_the_app_uses_data_but_cannot_wipe_reconfigure_or_replicate(redis_server: RedisServer) -> None:
    assert redis_server.as_user("app", "SET", "k", "v") == "OK"
    assert redis_server.as_user("app", "GET", "k") == "v"
    assert redis_server.as_user("app", "PUBLISH", "events", "hello").isdigit()
    for command in (("FLUSHALL",), ("FLUSHDB",), ("REPLICAOF", "10.0.0.1", "6379"), ("CONFIG", "SET", "dir", "/")):
        assert "NOPERM" in redis_server.as_user("app", *command), command
    assert redis_server.as_user("app", "GET", "k") == "v"


def test_the_exporter_reads_state_and_nothing_else(redis_server: RedisServer) -> None:
    assert "redis_version" in redis_server.as_user("exporter", "INFO", "server")
    maxmemory = redis_server.as_user("exporter", "CONFIG", "GET", "maxmemory").split()
    assert int(maxmemory[1]) == maxmemory_mb(512) * 1024 * 1024 == 384 * 1024 * 1024
    assert redis_server.as_user("exporter", "CONFIG", "GET", "maxmemory-policy").split()[1] == "allkeys-lru"
    assert redis_server.as_user("exporter", "CONFIG", "GET", "appendonly").split()[1] == "yes"
    for command in (("SET", "k", "v"), ("GET", "k"), ("FLUSHALL",), ("CONFIG", "SET", "appendonly", "no")):
        assert "NOPERM" in redis_server.as_user("exporter", *command), command


def test_the_backup_user_streams_a_snapshot_and_nothing_else(redis_server: RedisServer) -> None:
    redis_server.as_user("app", "SET", "kept", "yes")
    rdb = redis_server.directory / "backup.rdb"
    redis_server.as_user("backup", "--rdb", str(rdb))
    assert rdb.read_bytes().startswith(b"REDIS")
    assert "NOPERM" in redis_server.as_user("backup", "GET", "kept")
    assert "NOPERM" in redis_server.as_user("backup", "FLUSHALL")


def test_healthcheck_needs_pong_after_auth(redis_server: RedisServer) -> None:
    """The container's healthcheck command, run against the real server."""

    def check(password: str) -> int:
        password_file = redis_server.directory / "healthcheck-password"
        password_file.write_text(password)
        command = auth_ping(str(password_file), port=redis_server.port)
        return subprocess.run(["sh", "-c", command], timeout=10).returncode

    assert check(PASSWORDS["healthcheck"]) == 0
    assert check("not-the-password") != 0
    # A bare ping exits 0 even when refused: that is why the check greps for PONG.
    assert subprocess.run(["redis-cli", "-p", str(redis_server.port), "ping"], capture_output=True).returncode == 0
    # The healthcheck user can ping and do nothing else.
    assert "NOPERM" in redis_server.as_user("healthcheck", "GET", "k")


def test_the_live_check_touches_only_its_marker_keys(redis_server: RedisServer) -> None:
    redis_server.as_user("app", "SET", "session:1", "secret-data")
    assert redis_server.as_user("verify", "SET", "stagecraft:verify:t1", "x", "EX", "60") == "OK"
    assert redis_server.as_user("verify", "GET", "stagecraft:verify:t1") == "x"
    assert "NOPERM" in redis_server.as_user("verify", "GET", "session:1")
    assert "NOPERM" in redis_server.as_user("verify", "FLUSHALL")
