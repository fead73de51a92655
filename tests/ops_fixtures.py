"""Real servers for the operations tool's tests: Postgres 15 (scram-sha-256), redis-server with a
backup ACL user and a GCS emulator, all on 127.0.0.1 and free ports, stopped afterwards; plus
the settings file and independent queries that check what the tool did."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import ROOT, free_port, require_tool, wait_for_port

OPS = ROOT / "images" / "ops"
if str(OPS) not in sys.path:
    sys.path.insert(0, str(OPS))

# Without credentials, google-auth would look for a cloud metadata server off this machine; the
# tests (and every tool process they start) must only ever talk to 127.0.0.1.
os.environ["NO_GCE_CHECK"] = "true"
os.environ["GCE_METADATA_HOST"] = os.environ["GCE_METADATA_IP"] = "127.0.0.1:9"

with warnings.catch_warnings():
    # google-api-core announces, once at import, the end of its Python 3.11 support in 2027.
    warnings.simplefilter("ignore", FutureWarning)
    import google.api_core  # noqa: F401

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Separators and a backslash: the PGPASSFILE escaping must hold.
PG_PASSWORD = "pg:super\\Secret-1"
REDIS_ADMIN_PASSWORD = "redis-Admin-2"
REDIS_BACKUP_PASSWORD = "redis:Backup-3"
APP_DB = "acme_staging"
OTHER_DB = "acme_staging_temporal"


def _as_postgres(command: list[str]) -> list[str]:
    """Postgres refuses to run as root; CI runs as root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class PostgresServer:
    port: int
    root: Path

    def connect(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", password=PG_PASSWORD, dbname=database, autocommit=True
        )

    def query(self, database: str, text: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect(database) as connection:
            cursor = connection.execute(text, params)
            return cursor.fetchall() if cursor.description else []

    def exists(self, database: str) -> bool:
        return bool(self.query("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", [database]))


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """initdb + postgres 15 with password auth (scram-sha-256) only, on 127.0.0.1."""
    require_tool(str(PG_BIN / "postgres"))
    # Not under pytest's 0700 temp tree: the postgres user must reach it when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="stagecraft-ops-pg-"))
    data, socket_dir, pwfile = root / "data", root / "socket", root / "pwfile"
    socket_dir.mkdir()
    pwfile.write_text(PG_PASSWORD + "\n")
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (root, socket_dir, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
        root.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    initdb = [
        str(PG_BIN / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        f"--pwfile={pwfile}",
        "--auth-host=scram-sha-256",
        "--auth-local=scram-sha-256",
    ]
    subprocess.run(_as_postgres(initdb), check=True, capture_output=True, env=env, timeout=120)
    port = free_port()
    options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o", options, "start"]
    subprocess.run(_as_postgres(start), check=True, capture_output=True, env=env, timeout=120)
    try:
        yield PostgresServer(port=port, root=root)
    finally:
        stop = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run(_as_postgres(stop), capture_output=True, env=env, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


SEED_SQL = [
    "CREATE ROLE acme_app LOGIN",
    "CREATE DATABASE {db} OWNER acme_app",
    "REVOKE ALL ON DATABASE {db} FROM PUBLIC",
    "GRANT CONNECT, TEMPORARY ON DATABASE {db} TO acme_app",
]
SCHEMA_SQL = [
    "ALTER SCHEMA public OWNER TO acme_app",
    "REVOKE ALL ON SCHEMA public FROM PUBLIC",
    "SET ROLE acme_app",
    "CREATE TABLE customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL,"
    " created timestamptz NOT NULL, score double precision, avatar bytea)",
    "CREATE TABLE orders (id serial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers (id),"
    " amount numeric(10, 2), placed date, note text)",
    "CREATE SEQUENCE invoice_numbers START 1000",
    # A quoted name and columns called t and select: the checksum query must quote and alias.
    'CREATE TABLE "Audit Log" (t text, "select" int)',
    "CREATE SCHEMA billing",
    "CREATE TABLE billing.invoices (number bigint PRIMARY KEY DEFAULT nextval('invoice_numbers'), total numeric)",
    "CREATE TABLE empty_table (id int)",
    "INSERT INTO customers (name, created, score, avatar)"
    " SELECT 'customer ' || g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 hour', g / 7.0,"
    " decode(md5(g::text), 'hex') FROM generate_series(1, 300) g",
    "INSERT INTO orders (customer_id, amount, placed, note)"
    " SELECT 1 + g % 300, g * 1.25, date '2026-01-01' + g % 365, CASE WHEN g % 5 = 0 THEN NULL ELSE 'o' || g END"
    " FROM generate_series(1, 700) g",
    # Deleted rows leave the serial past the row count; nextval calls move a free sequence on.
    "DELETE FROM orders WHERE id % 10 = 0",
    "SELECT nextval('invoice_numbers') FROM generate_series(1, 40)",
    "INSERT INTO billing.invoices (total) SELECT g FROM generate_series(1, 60) g",
    "INSERT INTO \"Audit Log\" SELECT 'entry ' || g, g FROM generate_series(1, 25) g",
    "SELECT setval('invoice_numbers', 5000)",
]
TABLES = ("public.customers", "public.orders", 'public."Audit Log"', "billing.invoices", "public.empty_table")
SEQUENCES = ("public.customers_id_seq", "public.orders_id_seq", "public.invoice_numbers")


def seed_database(server: PostgresServer, database: str = APP_DB) -> None:
    """A database shaped like the app's: owned by its role, an identity and a serial column, a
    foreign key, several hundred rows, sequences past the row count, two schemas."""
    if not server.query("postgres", "SELECT 1 FROM pg_roles WHERE rolname = 'acme_app'"):
        server.query("postgres", SEED_SQL[0])
    for statement in SEED_SQL[1:]:
        server.query("postgres", statement.format(db=database))
    with server.connect(database) as connection:
        for statement in SCHEMA_SQL:
            connection.execute(statement)


def database_state(server: PostgresServer, database: str = APP_DB) -> dict[str, Any]:
    """An independent picture of the database: rows and an ordered md5 of each table, every
    sequence's value, owner and grants. Uses none of the tool's queries."""
    state: dict[str, Any] = {}
    with server.connect(database) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        for table in TABLES:
            count, digest = connection.execute(
                f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text COLLATE \"C\"), ''))"
                f" FROM {table} x"
            ).fetchone()
            state[table] = (count, digest)
        for sequence in SEQUENCES:
            state[sequence] = connection.execute(f"SELECT last_value, is_called FROM {sequence}").fetchone()
        state["owner"], state["acl"] = connection.execute(
            "SELECT pg_get_userbyid(datdba), datacl::text FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    return state


@contextmanager
def gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator in this process, in memory; yields its host:port."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def storage_client(emulator: str) -> Any:
    """The real google-cloud-storage client, pointed at the emulator."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": emulator})


@dataclass
class RedisServer:
    port: int
    data: Path
    process: subprocess.Popen[bytes]

    def cli(self, *args: str, user: str = "default", password: str = REDIS_ADMIN_PASSWORD) -> str:
        result = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--user", user, *args],
            env={"PATH": "/usr/bin:/bin", "REDISCLI_AUTH": password},
            capture_output=True,
            text=True,
            timeout=10,
        )
        return result.stdout.strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@contextmanager
def redis_server(directory: Path, data: Path | None = None) -> Iterator[RedisServer]:
    """redis-server like the stack's (appendonly yes), with a backup ACL user that may only sync."""
    require_tool("redis-server")
    directory.mkdir(parents=True, exist_ok=True)
    data = data or directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                f"port {port}",
                "bind 127.0.0.1",
                "appendonly yes",
                # Full syncs start at once instead of waiting 5 s for more replicas to join.
                "repl-diskless-sync-delay 0",
                f"dir {data}",
                f"user default on >{REDIS_ADMIN_PASSWORD} ~* &* +@all",
                f'user backup on ">{REDIS_BACKUP_PASSWORD}" -@all +sync +replconf',
                "",
            ]
        )
    )
    process = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(port=port, data=data, process=process)
    try:
        wait_for_port(port)
        yield server
    finally:
        server.stop()


def write_settings(directory: Path, **overrides: Any) -> Path:
    """A settings file for the tool; ``overrides`` replace top-level keys."""
    secrets = directory / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "postgres").write_text(PG_PASSWORD + "\n")
    (secrets / "redis").write_text(REDIS_BACKUP_PASSWORD)
    document: dict[str, Any] = {
        "stack": "staging",
        "environment": "staging",
        "prod": False,
        "bucket": "acme-staging-backups",
        "credentials_file": None,
        "postgres": {
            "host": "127.0.0.1",
            "port": 1,
            "user": "postgres",
            "password_file": str(secrets / "postgres"),
            "databases": [APP_DB],
            "drill_databases": [APP_DB],
            "bin_dir": str(PG_BIN),
        },
        "redis": {"host": "127.0.0.1", "port": 1, "user": "backup", "password_file": str(secrets / "redis")},
        "chroma": {"data_dir": str(directory / "chroma")},
        "schedule": {"backup_utc": "02:00", "drill": "sun 03:00", "grace_minutes": 60},
        "textfile_dir": str(directory / "metrics"),
        "heartbeat_file": str(directory / "heartbeat"),
        "work_dir": str(directory / "work"),
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    path = directory / "ops.json"
    path.write_text(json.dumps(document, indent=2))
    return path


def read_metrics(path: Path) -> dict[str, float]:
    """``name{labels}`` -> value, from a textfile the tool wrote."""
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values
