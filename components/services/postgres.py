"""Postgres 15: the application's and Temporal's databases, one role per database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import PostgresService
from components.containers.container import Attachment, config_path, secret_path, tmpfs_options
from components.containers.endpoints import Endpoint
from components.containers.service import ServiceComponent
from components.naming import Naming
from components.templates import render

PORT = 5432
SOCKET_DIR = "/var/run/postgresql"
READY_FILE = "/tmp/stagecraft-ready"
POSTGRES_UID = "999"  # the `postgres` user of the official image
# Connection limits per role: the app and Temporal share the server; the metrics role needs few.
CONNECTION_LIMITS = {"app": 200, "temporal": 200, "monitor": 5}


def postgres_tuning(memory_mb: int) -> dict[str, str]:
    """Memory settings derived from the container's limit: a quarter for shared buffers (1 GB ->
    256 MB), three quarters as the cache estimate, about 100 connections per GB."""
    shared_buffers = memory_mb // 4
    effective_cache = memory_mb * 3 // 4
    max_connections = max(20, min(500, memory_mb // 10))
    work_mem_kb = max(1024, min(64 * 1024, (memory_mb - shared_buffers) * 1024 // (max_connections * 3)))
    return {
        "shared_buffers": f"{shared_buffers}MB",
        "effective_cache_size": f"{effective_cache}MB",
        "work_mem": f"{work_mem_kb}kB",
        "maintenance_work_mem": f"{max(16, memory_mb // 16)}MB",
        "max_connections": str(max_connections),
        "password_encryption": "scram-sha-256",
        "listen_addresses": "*",
    }


def server_command(memory_mb: int, hba_file: str) -> list[str]:
    command = ["postgres"]
    for key, value in {**postgres_tuning(memory_mb), "hba_file": hba_file}.items():
        command += ["-c", f"{key}={value}"]
    return command


def render_pg_hba(client_networks: Sequence[str]) -> str:
    """pg_hba.conf: the superuser over the socket by peer authentication (the server sets its own
    password that way); everyone else over TCP with scram-sha-256, from the stack's data network
    only."""
    return render("pg_hba.conf.j2", client_networks=list(client_networks))


def render_superuser_sql(password_file: str) -> str:
    return render("superuser.sql.j2", password_file=password_file)


def render_entrypoint(
    superuser_sql: str,
    ready_file: str = READY_FILE,
    entrypoint: str = "docker-entrypoint.sh",
    socket_dir: str = SOCKET_DIR,
    port: int = PORT,
) -> str:
    """The server's entrypoint: the image's own, then the superuser's password applied from its
    file, then a ready marker the healthcheck looks for."""
    return render(
        "postgres-entrypoint.sh.j2",
        ready_file=ready_file,
        entrypoint=entrypoint,
        socket_dir=socket_dir,
        port=port,
        superuser_sql=superuser_sql,
    )


@dataclass(frozen=True)
class DatabaseLayout:
    """Who owns which database; every name comes from ``Naming``."""

    app_database: str
    app_user: str
    temporal_databases: tuple[str, str]
    temporal_user: str
    monitor_user: str

    @classmethod
    def for_naming(cls, naming: Naming) -> DatabaseLayout:
        return cls(
            app_database=naming.database(),
            app_user=naming.database_user("app"),
            temporal_databases=(naming.database("temporal"), naming.database("temporal_visibility")),
            temporal_user=naming.database_user("temporal"),
            monitor_user=naming.database_user("monitor"),
        )


def render_init_sql(layout: DatabaseLayout, password_files: Mapping[str, str]) -> str:
    """Idempotent psql script: roles (passwords read from files, stored as SCRAM), one database
    per owner, CONNECT revoked from PUBLIC so each role reaches only its own databases.

    ``password_files`` maps ``app``, ``temporal`` and ``monitor`` to files holding the passwords.
    Temporal's role alone has CREATEDB: temporal-sql-tool's ``create`` step needs it even when the
    database exists (Postgres checks the privilege first); it still reaches only its own databases.
    """
    users = {"app": layout.app_user, "temporal": layout.temporal_user, "monitor": layout.monitor_user}
    roles = [
        {
            "key": key,
            "name": users[key],
            "password_file": password_files[key],
            "connection_limit": CONNECTION_LIMITS[key],
            "createdb": key == "temporal",
        }
        for key in ("app", "temporal", "monitor")
    ]
    databases = [{"name": layout.app_database, "owner": layout.app_user}]
    databases += [{"name": name, "owner": layout.temporal_user} for name in layout.temporal_databases]
    return render("init.sql.j2", roles=roles, databases=databases, monitor_user=layout.monitor_user)


def init_command(host: str, port: int, sql_file: str, psql: str = "psql") -> list[str]:
    """The init job: the script as the superuser, stopping at the first error."""
    connection = ["-h", host, "-p", str(port), "-U", "postgres", "-d", "postgres"]
    return [psql, *connection, "-v", "ON_ERROR_STOP=1", "-f", sql_file]


def render_pgpass(host: str, password: str, port: int = PORT) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"{host}:{port}:*:postgres:{escaped}\n"


def readiness_check(port: int = PORT, ready_file: str = READY_FILE) -> list[str]:
    """Ready once the entrypoint applied the superuser's password, and the real server accepts
    TCP connections (the first-start init server listens on the socket only)."""
    return ["CMD-SHELL", f"test -f {ready_file} && pg_isready -q -h 127.0.0.1 -p {port} -U postgres -d postgres"]


@dataclass(frozen=True)
class PostgresArgs:
    naming: Naming
    settings: PostgresService
    data_network: docker.Network
    superuser_password: pulumi.Input[str]
    app_password: pulumi.Input[str]
    temporal_password: pulumi.Input[str]
    monitor_password: pulumi.Input[str]
    # The networks whose containers may connect (the stack's data network).
    client_networks: Sequence[str] = ()
    protect: bool = False


class Postgres(ServiceComponent):
    """Creates the Postgres 15 server (scram-sha-256 over TCP from the data network only,
    memory settings derived from its limit, data on a named volume that prod protects and
    retains) and a one-shot job that applies the roles-and-databases script once the server is
    healthy. The server sets its superuser's password from the secret file on every start, so
    rotating that secret needs nothing more than an update."""

    def __init__(self, name: str, args: PostgresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:postgres:Postgres", name, args.naming, opts)
        self.layout = DatabaseLayout.for_naming(args.naming)
        self.endpoint = Endpoint(args.naming.container("postgres"), PORT)
        self.volume = self.data_volume("postgres", args.protect)
        network = [Attachment(args.data_network, aliases=("postgres",))]
        superuser_sql = config_path("superuser.sql")
        self.server = self.container(
            "server",
            "postgres",
            args.settings,
            network,
            entrypoint=["/bin/sh", config_path("entrypoint.sh")],
            command=server_command(args.settings.memory_mb, config_path("pg_hba.conf")),
            env={
                "POSTGRES_USER": "postgres",
                "POSTGRES_PASSWORD_FILE": secret_path("postgres-superuser-password"),
                "POSTGRES_INITDB_ARGS": "--auth-host=scram-sha-256 --auth-local=scram-sha-256",
                "POSTGRES_HOST_AUTH_METHOD": "scram-sha-256",
                "PGDATA": "/var/lib/postgresql/data/pgdata",
            },
            secret_files={"postgres-superuser-password": args.superuser_password},
            config_files={
                "entrypoint.sh": render_entrypoint(superuser_sql),
                "pg_hba.conf": render_pg_hba(args.client_networks),
                "superuser.sql": render_superuser_sql(secret_path("postgres-superuser-password")),
            },
            executable_files=frozenset({"entrypoint.sh"}),
            health_test=readiness_check(),
            volumes={"/var/lib/postgresql/data": self.volume.name},
            tmp_mb=64,
            tmpfs={SOCKET_DIR: tmpfs_options(owner=POSTGRES_UID, mode="0775")},
            shm_size_mb=max(64, args.settings.memory_mb // 4),
            # Postgres shuts down fast and cleanly on SIGINT; the entrypoint passes it on.
            stop_signal="SIGINT",
        )
        password_files = {
            "app": secret_path("app-db-password"),
            "temporal": secret_path("temporal-db-password"),
            "monitor": secret_path("postgres-exporter-password"),
        }
        host = self.endpoint.host
        self.init_job = self.container(
            "init",
            "postgres-init",
            args.settings,
            network,
            command=init_command(host, PORT, config_path("init.sql")),
            env={"PGPASSFILE": secret_path("pgpass"), "PGCONNECT_TIMEOUT": "10"},
            secret_files={
                "pgpass": pulumi.Output.from_input(args.superuser_password).apply(
                    lambda password: render_pgpass(host, password)
                ),
                "app-db-password": args.app_password,
                "temporal-db-password": args.temporal_password,
                "postgres-exporter-password": args.monitor_password,
            },
            config_files={"init.sql": render_init_sql(self.layout, password_files)},
            one_shot=True,
            depends_on=[self.server.container],
        )
        self.register_outputs({"host": self.endpoint.host, "database": self.layout.app_database})
