"""Postgres 15: the application's and Temporal's databases, one role per database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import PostgresService
from components.container import (
    Attachment,
    ContainerArgs,
    HardenedContainer,
    config_path,
    data_volume,
    secret_path,
    tmpfs_options,
)
from components.naming import Naming

PORT = 5432
POSTGRES_UID = "999"  # the `postgres` user of the official image


def postgres_tuning(memory_mb: int) -> dict[str, str]:
    """Memory settings derived from the container's limit (seed 003: 1 GB -> 256 MB buffers,
    about 100 connections)."""
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


def server_command(memory_mb: int) -> list[str]:
    command = ["postgres"]
    for key, value in postgres_tuning(memory_mb).items():
        command += ["-c", f"{key}={value}"]
    return command


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


def _role(name: str, password_var: str, connection_limit: int, createdb: bool = False) -> str:
    return (
        f"SELECT 'CREATE ROLE {name} LOGIN' WHERE NOT EXISTS "
        f"(SELECT FROM pg_roles WHERE rolname = '{name}') \\gexec\n"
        f"ALTER ROLE {name} WITH LOGIN NOSUPERUSER {'CREATEDB' if createdb else 'NOCREATEDB'} NOCREATEROLE "
        f"NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {connection_limit} PASSWORD :'{password_var}';\n"
    )


def _database(name: str, owner: str) -> str:
    return (
        f"SELECT 'CREATE DATABASE {name} OWNER {owner}' WHERE NOT EXISTS "
        f"(SELECT FROM pg_database WHERE datname = '{name}') \\gexec\n"
        f"ALTER DATABASE {name} OWNER TO {owner};\n"
        f"REVOKE ALL ON DATABASE {name} FROM PUBLIC;\n"
        f"GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {owner};\n"
    )


def render_init_sql(layout: DatabaseLayout, password_files: Mapping[str, str]) -> str:
    """Idempotent psql script: roles (passwords read from files, stored as SCRAM), one database
    per owner, CONNECT revoked from PUBLIC so each role reaches only its own databases.

    ``password_files`` maps ``app``, ``temporal`` and ``monitor`` to files holding the passwords.
    """
    lines = [
        "-- stagecraft: databases and roles. Safe to re-run; passwords are re-applied (rotation).",
        "\\set ON_ERROR_STOP on",
        "SET password_encryption = 'scram-sha-256';",
    ]
    for key in ("app", "temporal", "monitor"):
        lines.append(f"\\set {key}_password `cat '{password_files[key]}'`")
    sql = "\n".join(lines) + "\n"
    sql += _role(layout.app_user, "app_password", 200)
    # temporal-sql-tool's `create` step needs CREATEDB even when the database exists (Postgres
    # checks the privilege first); it still reaches only the databases it owns.
    sql += _role(layout.temporal_user, "temporal_password", 200, createdb=True)
    sql += _role(layout.monitor_user, "monitor_password", 5)
    sql += f"GRANT pg_monitor TO {layout.monitor_user};\n"
    sql += _database(layout.app_database, layout.app_user)
    for database in layout.temporal_databases:
        sql += _database(database, layout.temporal_user)
    # The maintenance databases: only the superuser and the metrics exporter.
    sql += "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;\n"
    sql += f"GRANT CONNECT ON DATABASE postgres TO {layout.monitor_user};\n"
    sql += "REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;\n"
    # Nobody but the owner creates objects in an application database's public schema.
    for database in (layout.app_database, *layout.temporal_databases):
        sql += f"\\connect {database}\nREVOKE ALL ON SCHEMA public FROM PUBLIC;\n"
        owner = layout.app_user if database == layout.app_database else layout.temporal_user
        sql += f"ALTER SCHEMA public OWNER TO {owner};\n"
    return sql


def init_command(host: str, port: int, sql_file: str, psql: str = "psql") -> list[str]:
    """The init job: the script as the superuser, stopping at the first error."""
    return [
        psql,
        "-h",
        host,
        "-p",
        str(port),
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-f",
        sql_file,
    ]


def render_pgpass(host: str, password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"{host}:{PORT}:*:postgres:{escaped}\n"


@dataclass(frozen=True)
class PostgresArgs:
    naming: Naming
    settings: PostgresService
    data_network: docker.Network
    superuser_password: pulumi.Input[str]
    app_password: pulumi.Input[str]
    temporal_password: pulumi.Input[str]
    monitor_password: pulumi.Input[str]
    protect: bool = False


class Postgres(pulumi.ComponentResource):
    """Creates the Postgres 15 server (scram-sha-256 everywhere, memory settings derived from its
    limit, data on a named volume that prod protects and retains) and a one-shot job that
    applies the roles-and-databases script once the server is healthy."""

    def __init__(self, name: str, args: PostgresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:postgres:Postgres", name, None, opts)
        naming = args.naming
        self.layout = DatabaseLayout.for_naming(naming)
        self.host = naming.container("postgres")
        self.port = PORT
        self.volume = data_volume(naming, "postgres", args.protect, self)
        network = [Attachment(args.data_network, aliases=("postgres",))]
        self.server = HardenedContainer(
            "postgres",
            ContainerArgs(
                naming=naming,
                service="postgres",
                settings=args.settings,
                networks=network,
                command=server_command(args.settings.memory_mb),
                env={
                    "POSTGRES_USER": "postgres",
                    "POSTGRES_PASSWORD_FILE": secret_path("postgres-superuser-password"),
                    "POSTGRES_INITDB_ARGS": "--auth-host=scram-sha-256 --auth-local=scram-sha-256",
                    "POSTGRES_HOST_AUTH_METHOD": "scram-sha-256",
                    "PGDATA": "/var/lib/postgresql/data/pgdata",
                },
                secret_files={"postgres-superuser-password": args.superuser_password},
                user=f"{POSTGRES_UID}:{POSTGRES_UID}",
                file_owner=POSTGRES_UID,
                # TCP on 127.0.0.1: the init-time server listens on the socket only, so this
                # stays unhealthy until the real server accepts connections.
                health_test=[
                    "CMD",
                    "pg_isready",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(PORT),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                ],
                volumes={"/var/lib/postgresql/data": self.volume.name},
                tmpfs={
                    "/var/run/postgresql": tmpfs_options(owner=POSTGRES_UID, mode="0775"),
                    "/tmp": tmpfs_options(64),
                },
                shm_size_mb=max(64, args.settings.memory_mb // 4),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        password_files = {
            "app": secret_path("app-db-password"),
            "temporal": secret_path("temporal-db-password"),
            "monitor": secret_path("postgres-exporter-password"),
        }
        self.init_job = HardenedContainer(
            "postgres-init",
            ContainerArgs(
                naming=naming,
                service="postgres-init",
                settings=args.settings,
                networks=network,
                command=init_command(self.host, PORT, config_path("init.sql")),
                env={"PGPASSFILE": secret_path("pgpass"), "PGCONNECT_TIMEOUT": "10"},
                secret_files={
                    "pgpass": pulumi.Output.from_input(args.superuser_password).apply(
                        lambda password: render_pgpass(self.host, password)
                    ),
                    "app-db-password": args.app_password,
                    "temporal-db-password": args.temporal_password,
                    "postgres-exporter-password": args.monitor_password,
                },
                config_files={"init.sql": render_init_sql(self.layout, password_files)},
                user=f"{POSTGRES_UID}:{POSTGRES_UID}",
                file_owner=POSTGRES_UID,
                tmpfs={"/tmp": tmpfs_options(16)},
                one_shot=True,
                depends_on=[self.server.container],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"host": self.host, "database": self.layout.app_database})
