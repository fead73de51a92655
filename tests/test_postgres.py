"""Postgres: settings derived from the limit, and the init SQL run on a real Postgres."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port, require_tool

from components.naming import Naming
from components.services.postgres import (
    DatabaseLayout,
    init_command,
    postgres_tuning,
    render_init_sql,
    render_pgpass,
    server_command,
)

BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER_PASSWORD = "super-Secret-1"
PASSWORDS = {"app": "app-Pass-123", "temporal": "temporal-Pass-456", "monitor": "monitor-Pass-789"}


def test_tuning_follows_the_memory_limit() -> None:
    small, large = postgres_tuning(1024), postgres_tuning(4096)
    assert small["shared_buffers"] == "256MB"  # seed 003: 1 GB -> 256 MB
    assert small["effective_cache_size"] == "768MB"
    assert 90 <= int(small["max_connections"]) <= 110
    assert int(large["max_connections"]) > int(small["max_connections"])
    assert large["shared_buffers"] == "1024MB"
    work_mem_kb = int(small["work_mem"].removesuffix("kB"))
    # Every connection using a few work_mem buffers still fits beside shared_buffers.
    assert work_mem_kb * int(small["max_connections"]) * 3 <= (1024 - 256) * 1024


def test_pgpass_escapes_separators() -> None:
    assert render_pgpass("db", "a:b\\c") == "db:5432:*:postgres:a\\:b\\\\c\n"


@dataclass
class Server:
    port: int
    layout: DatabaseLayout
    sql: Path
    env: dict[str, str]

    def psql(self, user: str, database: str, sql: str, password: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(BIN.parent / "bin" / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                user,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-tAc",
                sql,
            ],
            env={**self.env, "PGPASSWORD": password},
            capture_output=True,
            text=True,
            timeout=30,
        )


def _as_postgres(command: list[str]) -> list[str]:
    """Postgres refuses to run as root; CI runs as root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    require_tool(str(BIN / "postgres"))
    # Not under pytest's 0700 temp tree: the postgres user must reach it.
    root = Path(tempfile.mkdtemp(prefix="stagecraft-pg-"))
    data, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    pwfile = root / "pwfile"
    pwfile.write_text(SUPERUSER_PASSWORD + "\n")
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (root, socket_dir, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
        root.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    subprocess.run(
        _as_postgres(
            [
                str(BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
            ]
        ),
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    port = free_port()
    # The server runs with the same settings the container gets (minus listen_addresses).
    options = " ".join(f"{a}" for a in server_command(1024)[1:]).replace(
        "listen_addresses=*", "listen_addresses=127.0.0.1"
    )
    subprocess.run(
        _as_postgres(
            [
                str(BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {port} -k {socket_dir} {options}",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    secrets = root / "secrets"
    secrets.mkdir()
    files = {}
    for key, password in PASSWORDS.items():
        path = secrets / key
        path.write_text(password)
        files[key] = str(path)
    layout = DatabaseLayout.for_naming(Naming(app="acme", environment="staging", stack="staging", project="p-1234"))
    sql = root / "init.sql"
    sql.write_text(render_init_sql(layout, files))
    try:
        yield Server(port=port, layout=layout, sql=sql, env=env)
    finally:
        subprocess.run(
            _as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            env=env,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def _apply(server: Server) -> subprocess.CompletedProcess[str]:
    """The init job's own command, pointed at the test server."""
    return subprocess.run(
        init_command("127.0.0.1", server.port, str(server.sql), psql=str(BIN / "psql")),
        env={**server.env, "PGPASSWORD": SUPERUSER_PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_init_sql_runs_and_is_idempotent(postgres: Server) -> None:
    first, second = _apply(postgres), _apply(postgres)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr


def test_each_role_reaches_only_its_own_databases(postgres: Server) -> None:
    assert _apply(postgres).returncode == 0
    layout = postgres.layout
    app_db, (temporal_db, visibility_db) = layout.app_database, layout.temporal_databases
    ok = postgres.psql(layout.app_user, app_db, "SELECT current_database()", PASSWORDS["app"])
    assert ok.returncode == 0 and ok.stdout.strip() == app_db, ok.stderr
    for database in (temporal_db, visibility_db):
        assert postgres.psql(layout.temporal_user, database, "SELECT 1", PASSWORDS["temporal"]).returncode == 0
    refused = [
        (layout.app_user, temporal_db, PASSWORDS["app"]),
        (layout.app_user, "postgres", PASSWORDS["app"]),
        (layout.temporal_user, app_db, PASSWORDS["temporal"]),
        (layout.temporal_user, "postgres", PASSWORDS["temporal"]),
        (layout.monitor_user, app_db, PASSWORDS["monitor"]),
    ]
    for user, database, password in refused:
        result = postgres.psql(user, database, "SELECT 1", password)
        assert result.returncode != 0, f"{user} reached {database}"
        assert "permission denied for database" in result.stderr
    assert postgres.psql(layout.monitor_user, "postgres", "SELECT 1", PASSWORDS["monitor"]).returncode == 0


def test_temporal_schema_jobs_create_step_finds_its_databases(postgres: Server) -> None:
    """temporal-sql-tool `create` runs CREATE DATABASE from Temporal's own database and treats
    "already exists" as done; without CREATEDB Postgres would refuse it before looking."""
    assert _apply(postgres).returncode == 0
    layout = postgres.layout
    default_db = layout.temporal_databases[0]
    for database in layout.temporal_databases:
        result = postgres.psql(layout.temporal_user, default_db, f"CREATE DATABASE {database}", PASSWORDS["temporal"])
        assert result.returncode != 0
        assert f'database "{database}" already exists' in result.stderr, result.stderr
    app = postgres.psql(layout.app_user, layout.app_database, "CREATE DATABASE sneaky", PASSWORDS["app"])
    assert "permission denied to create database" in app.stderr, app.stderr


def test_passwords_are_scram_and_wrong_ones_fail(postgres: Server) -> None:
    assert _apply(postgres).returncode == 0
    layout = postgres.layout
    stored = postgres.psql(
        "postgres",
        "postgres",
        f"SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = '{layout.app_user}'",
        SUPERUSER_PASSWORD,
    )
    assert stored.stdout.strip() == "t"
    assert postgres.psql(layout.app_user, layout.app_database, "SELECT 1", "wrong").returncode != 0


def test_app_role_owns_its_schema_but_cannot_create_roles(postgres: Server) -> None:
    assert _apply(postgres).returncode == 0
    layout = postgres.layout
    created = postgres.psql(
        layout.app_user, layout.app_database, "CREATE TABLE t (id int); DROP TABLE t;", PASSWORDS["app"]
    )
    assert created.returncode == 0, created.stderr
    escalate = postgres.psql(layout.app_user, layout.app_database, "CREATE ROLE intruder", PASSWORDS["app"])
    assert escalate.returncode != 0


def test_server_accepted_the_derived_settings(postgres: Server) -> None:
    shown = postgres.psql("postgres", "postgres", "SHOW shared_buffers", SUPERUSER_PASSWORD)
    assert shown.stdout.strip() == "256MB"
