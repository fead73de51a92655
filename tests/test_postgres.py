"""Postgres: settings derived from the limit, and the init SQL run on a real Postgres."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
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
    readiness_check,
    render_entrypoint,
    render_init_sql,
    render_pg_hba,
    render_pgpass,
    render_superuser_sql,
    server_command,
)

BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER_PASSWORD = "super-Secret-1"
OLD_SUPERUSER_PASSWORD = "old-super-Secret-0"
PASSWORDS = {"app": "app-Pass-123", "temporal": "temporal-Pass-456", "monitor": "monitor-Pass-789"}


def test_tuning_follows_the_memory_limit() -> None:
    small, large = postgres_tuning(1024), postgres_tuning(4096)
    assert small["shared_buffers"] == "256MB"  # a quarter of 1 GB
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
    process: subprocess.Popen[str]
    root: Path

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


def _postgres_user() -> dict[str, object]:
    """subprocess arguments that run a process as the postgres OS user (when we are root)."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("postgres")
    return {"user": user.pw_uid, "group": user.pw_gid}


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    """A real Postgres 15 started the way the container starts it: the rendered entrypoint
    (standing in for the image's own entrypoint with the plain server), the rendered pg_hba.conf
    and the derived settings. initdb sets an old superuser password; the entrypoint must replace
    it with the one in the secret file."""
    require_tool(str(BIN / "postgres"))
    # Not under pytest's 0700 temp tree: the postgres user must reach it.
    root = Path(tempfile.mkdtemp(prefix="stagecraft-pg-"))
    data, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    pwfile = root / "initdb-password"
    pwfile.write_text(OLD_SUPERUSER_PASSWORD + "\n")
    superuser_file = root / "postgres-superuser-password"
    superuser_file.write_text(SUPERUSER_PASSWORD)
    port = free_port()
    hba = root / "pg_hba.conf"
    hba.write_text(render_pg_hba([]))
    sql_file = root / "superuser.sql"
    sql_file.write_text(render_superuser_sql(str(superuser_file)))
    image_entrypoint = root / "docker-entrypoint.sh"
    image_entrypoint.write_text(f'#!/bin/sh\nshift\nexec {BIN}/postgres -D {data} -p {port} -k {socket_dir} "$@"\n')
    image_entrypoint.chmod(0o755)
    entrypoint = root / "entrypoint.sh"
    ready = root / "ready"
    entrypoint.write_text(
        render_entrypoint(
            str(sql_file),
            ready_file=str(ready),
            entrypoint=str(image_entrypoint),
            socket_dir=str(socket_dir),
            port=port,
        )
    )
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (root, socket_dir, pwfile, superuser_file, hba, sql_file, entrypoint):
            os.chown(path, user.pw_uid, user.pw_gid)
        root.chmod(0o755)
    env = {"PATH": f"{BIN}:{os.environ['PATH']}", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
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
    # The server runs with the same settings the container gets (minus listen_addresses).
    command = [
        argument.replace("listen_addresses=*", "listen_addresses=127.0.0.1")
        for argument in server_command(1024, str(hba))
    ]
    process = subprocess.Popen(
        ["sh", str(entrypoint), *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **_postgres_user(),  # type: ignore[arg-type]
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
        deadline = time.monotonic() + 60
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not become ready: {process.stdout.read() if process.stdout else ''}")
            time.sleep(0.1)
        yield Server(port=port, layout=layout, sql=sql, env=env, process=process, root=root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            subprocess.run(["pkill", "-9", "-f", str(data)], check=False)
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


def test_the_server_applies_the_superuser_password_from_its_file(postgres: Server) -> None:
    """A rotation: the cluster was created with an old password; the entrypoint set the one in
    the secret file, over the socket, before reporting ready."""
    assert postgres.psql("postgres", "postgres", "SELECT 1", SUPERUSER_PASSWORD).returncode == 0
    old = postgres.psql("postgres", "postgres", "SELECT 1", OLD_SUPERUSER_PASSWORD)
    assert old.returncode != 0 and "password authentication failed" in old.stderr


def test_only_the_postgres_os_user_gets_in_over_the_socket(postgres: Server) -> None:
    """pg_hba: peer authentication for the superuser on the socket, nobody else there; TCP needs
    a password."""
    socket_dir = str(postgres.root / "socket")
    as_postgres = subprocess.run(
        [
            str(BIN / "psql"),
            "-h",
            socket_dir,
            "-p",
            str(postgres.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
            "SELECT current_user",
        ],
        env=postgres.env,
        capture_output=True,
        text=True,
        timeout=30,
        **_postgres_user(),  # type: ignore[arg-type]
    )
    assert as_postgres.stdout.strip() == "postgres", as_postgres.stderr
    assert _apply(postgres).returncode == 0
    other = subprocess.run(
        [
            str(BIN / "psql"),
            "-h",
            socket_dir,
            "-p",
            str(postgres.port),
            "-U",
            postgres.layout.app_user,
            "-d",
            postgres.layout.app_database,
            "-tAc",
            "SELECT 1",
        ],
        env={**postgres.env, "PGPASSWORD": PASSWORDS["app"]},
        capture_output=True,
        text=True,
        timeout=30,
        **_postgres_user(),  # type: ignore[arg-type]
    )
    assert other.returncode != 0 and "pg_hba.conf rejects connection" in other.stderr


def test_healthcheck_waits_for_the_password_to_be_applied(postgres: Server) -> None:
    """The container's healthcheck, with its paths pointed at the test server."""
    ready = postgres.root / "ready"
    command = readiness_check(postgres.port, str(ready))
    assert command[0] == "CMD-SHELL"
    env = {**postgres.env, "PGHOST": "127.0.0.1"}
    assert subprocess.run(["sh", "-c", command[1]], env=env, timeout=30).returncode == 0
    ready.rename(ready.with_suffix(".moved"))
    try:
        assert subprocess.run(["sh", "-c", command[1]], env=env, timeout=30).returncode != 0
    finally:
        ready.with_suffix(".moved").rename(ready)


def test_entrypoint_is_valid_posix_shell() -> None:
    script = render_entrypoint("/run/stagecraft/config/superuser.sql")
    assert subprocess.run(["sh", "-n"], input=script, text=True, timeout=10).returncode == 0
    assert "ALTER ROLE postgres" in render_superuser_sql("/x")
    assert "super-Secret" not in render_superuser_sql("/x")
