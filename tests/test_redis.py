"""Redis: the rendered config loaded by a real redis-server, which then insists on AUTH."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port, require_tool, wait_for_port

from components.services.redis import auth_ping, maxmemory_mb, render_auth_conf, render_redis_conf

PASSWORD = "r3dis-Pass#word!%"


@dataclass
class RedisServer:
    port: int
    password_file: Path

    def cli(self, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin"}
        if password is not None:
            env["REDISCLI_AUTH"] = password
        return subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require_tool("redis-server")
    port = free_port()
    auth = tmp_path / "redis-auth.conf"
    auth.write_text(render_auth_conf(PASSWORD))
    password_file = tmp_path / "redis-password"
    password_file.write_text(PASSWORD)
    data = tmp_path / "data"
    data.mkdir()
    conf = tmp_path / "redis.conf"
    conf.write_text(
        render_redis_conf(512, str(auth), data_dir=str(data), port=port).replace("bind * -::*", "bind 127.0.0.1")
    )
    process = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port)
        yield RedisServer(port=port, password_file=password_file)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_commands_without_auth_are_refused(redis_server: RedisServer) -> None:
    result = redis_server.cli("SET", "k", "v")
    assert "NOAUTH" in result.stdout + result.stderr
    assert redis_server.cli("PING", password="wrong").stdout.strip() != "PONG"


def test_auth_with_the_file_password_works(redis_server: RedisServer) -> None:
    assert redis_server.cli("SET", "k", "v", password=PASSWORD).stdout.strip() == "OK"
    assert redis_server.cli("GET", "k", password=PASSWORD).stdout.strip() == "v"


def test_memory_policy_and_persistence(redis_server: RedisServer) -> None:
    maxmemory = redis_server.cli("CONFIG", "GET", "maxmemory", password=PASSWORD).stdout.split()
    assert int(maxmemory[1]) == maxmemory_mb(512) * 1024 * 1024 == 384 * 1024 * 1024
    policy = redis_server.cli("CONFIG", "GET", "maxmemory-policy", password=PASSWORD).stdout.split()
    assert policy[1] == "allkeys-lru"
    assert redis_server.cli("CONFIG", "GET", "appendonly", password=PASSWORD).stdout.split()[1] == "yes"


def test_healthcheck_needs_pong_after_auth(redis_server: RedisServer) -> None:
    """The container's healthcheck command, run against the real server."""

    def check(password_file: Path) -> int:
        return subprocess.run(["sh", "-c", auth_ping(str(password_file), redis_server.port)], timeout=10).returncode

    assert check(redis_server.password_file) == 0
    wrong = redis_server.password_file.with_name("wrong")
    wrong.write_text("not-the-password")
    assert check(wrong) != 0
    # A bare ping exits 0 even when refused: that is why the check greps for PONG.
    assert subprocess.run(["redis-cli", "-p", str(redis_server.port), "ping"], capture_output=True).returncode == 0
