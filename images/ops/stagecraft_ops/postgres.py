"""Postgres: consistent dumps with a matching inventory, restores, and the comparison of the two.

A dump and its inventory describe the same moment: one REPEATABLE READ transaction exports its
snapshot, ``pg_dump --snapshot`` dumps exactly that snapshot while the transaction stays open,
and the row counts and content checksums are queried in it. Sequences are not transactional, so
their values are read from the dump's own ``SEQUENCE SET`` entries: what a restore will set.

The password reaches libpq and the Postgres programs only through a 0600 PGPASSFILE in the work
directory; it is never on a command line or in a child's environment.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from stagecraft_ops.errors import OperationError, log
from stagecraft_ops.manifest import DatabaseInfo, SequenceValue, TableStat
from stagecraft_ops.settings import Settings, read_secret

# Row text depends on these settings; pin them so a checksum means the same in every session.
SESSION_OPTIONS = " ".join(
    f"-c {option}"
    for option in (
        "TimeZone=UTC",
        "DateStyle=ISO,YMD",
        "IntervalStyle=postgres",
        "extra_float_digits=1",
        "bytea_output=hex",
        "statement_timeout=0",
        "idle_in_transaction_session_timeout=0",
    )
)
MAINTENANCE_DATABASE = "postgres"
LOCK_WAIT = "300s"  # pg_dump gives up if a migration holds a table lock longer than this
SETVAL = re.compile(r"^SELECT pg_catalog\.setval\('((?:[^']|'')+)', (-?\d+), (true|false)\);$")

# Tables and sequences outside the catalogs, not temporary; ``%(extensions)s`` true includes
# those an extension owns (their data is the extension's, recreated with it, so tables skip them).
USER_RELATIONS = """
SELECT n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = %(kind)s AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND (%(extensions)s OR NOT EXISTS (
    SELECT 1 FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'))
ORDER BY 1, 2
"""
# Order-independent content checksum: the sum of each row's md5 (first 64 bits, signed) as a
# decimal. Needs no sort and no collation, and changes when any row's content changes.
TABLE_STAT = (
    "SELECT count(*), coalesce(sum(('x' || substr(md5(ROW(t.*)::text), 1, 16))::bit(64)::bigint::numeric), 0)::text"
    " FROM ONLY {}.{} AS t"
)
DATABASE_INFO = """
SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
       current_setting('server_version')
FROM pg_database d WHERE d.datname = current_database()
"""


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


class Postgres:
    """Access to the stack's Postgres as the configured superuser, for one command's run."""

    def __init__(self, settings: Settings, work_dir: Path) -> None:
        self.settings = settings.postgres
        password = read_secret(settings, "postgres.password_file", self.settings.password_file)
        self.passfile = work_dir / "pgpass"
        line = ":".join(
            _pgpass_field(part)
            for part in (self.settings.host, str(self.settings.port), "*", self.settings.user, password)
        )
        descriptor = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(line + "\n")

    def close(self) -> None:
        self.passfile.unlink(missing_ok=True)

    def program(self, name: str) -> str:
        return str(Path(self.settings.bin_dir) / name) if self.settings.bin_dir else name

    def env(self) -> dict[str, str]:
        """A child's whole environment: where programs are and where the password file is."""
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "PGPASSFILE": str(self.passfile),
            "PGCONNECT_TIMEOUT": "15",
            "LC_ALL": "C.UTF-8",
        }

    def connection_args(self) -> list[str]:
        return [
            "--host",
            self.settings.host,
            "--port",
            str(self.settings.port),
            "--username",
            self.settings.user,
            "--no-password",
        ]

    @contextmanager
    def connect(self, database: str) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit connection to ``database`` with the checksum session settings."""
        try:
            connection = psycopg.connect(
                host=self.settings.host,
                port=self.settings.port,
                user=self.settings.user,
                dbname=database,
                passfile=str(self.passfile),
                connect_timeout=15,
                application_name="stagecraft-ops",
                options=SESSION_OPTIONS,
                autocommit=True,
            )
        except psycopg.Error as error:
            raise OperationError(
                f"postgres {self.settings.host}:{self.settings.port}/{database}: {_first_line(error)}"
            ) from None
        try:
            yield connection
        except psycopg.Error as error:
            raise OperationError(f"postgres {database}: {_first_line(error)}") from None
        finally:
            connection.close()

    def run(self, what: str, args: Sequence[str]) -> str:
        """Run a Postgres program; on failure say which and quote the end of its error output."""
        try:
            result = subprocess.run(args, env=self.env(), capture_output=True, text=True, check=False)
        except OSError as error:
            raise OperationError(f"{what}: cannot run {args[0]} ({error.strerror})") from None
        if result.returncode != 0:
            raise OperationError(f"{what} failed (exit {result.returncode}): {_tail(result.stderr)}")
        return result.stdout


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _tail(text: str, lines: int = 4) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) if kept else "no error output"


def _relations(connection: psycopg.Connection[Any], kind: str, extensions: bool = False) -> list[tuple[str, str, str]]:
    rows = connection.execute(USER_RELATIONS, {"kind": kind, "extensions": extensions}).fetchall()
    return [(str(schema), str(name), str(quoted)) for schema, name, quoted in rows]


def table_stats(connection: psycopg.Connection[Any]) -> tuple[TableStat, ...]:
    """Row count and content checksum of every user table, in the connection's snapshot."""
    stats = []
    for schema, table, _quoted in _relations(connection, "r"):
        query = sql.SQL(TABLE_STAT).format(sql.Identifier(schema), sql.Identifier(table))
        rows, checksum = connection.execute(query).fetchone()  # type: ignore[misc]
        stats.append(TableStat(schema=schema, table=table, rows=int(rows), checksum=str(checksum)))
    return tuple(stats)


def dump_database(pg: Postgres, database: str, target: Path) -> DatabaseInfo:
    """``pg_dump --format=custom`` of ``database`` into ``target``, with its inventory."""
    errors = target.with_suffix(".stderr")
    with pg.connect(database) as connection:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        with connection.transaction():
            snapshot = str(connection.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
            owner, encoding, collate, ctype, version = connection.execute(DATABASE_INFO).fetchone()  # type: ignore[misc]
            # Every sequence pg_dump may set a value for, an extension's configuration ones included.
            listed = _relations(connection, "S", extensions=True)
            sequence_names = {quoted: (schema, name) for schema, name, quoted in listed}
            command = [
                pg.program("pg_dump"),
                *pg.connection_args(),
                "--format=custom",
                f"--snapshot={snapshot}",
                f"--lock-wait-timeout={LOCK_WAIT}",
                f"--file={target}",
                f"--dbname={database}",
            ]
            with errors.open("w", encoding="utf-8") as stderr:
                try:
                    process = subprocess.Popen(command, env=pg.env(), stdout=subprocess.DEVNULL, stderr=stderr)
                except OSError as error:
                    raise OperationError(f"pg_dump {database}: cannot run {command[0]} ({error.strerror})") from None
                try:
                    # Counted while pg_dump runs: same snapshot, half the wall time.
                    tables = table_stats(connection)
                except BaseException:
                    process.kill()
                    process.wait()
                    raise
                code = process.wait()
    if code != 0:
        raise OperationError(f"pg_dump {database} failed (exit {code}): {_tail(errors.read_text(encoding='utf-8'))}")
    errors.unlink(missing_ok=True)
    sequences = dump_sequences(pg, target, sequence_names)
    return DatabaseInfo(
        name=database,
        owner=str(owner),
        encoding=str(encoding),
        collate=str(collate),
        ctype=str(ctype),
        server_version=str(version),
        tables=tables,
        sequences=sequences,
    )


def dump_sequences(pg: Postgres, dump: Path, names: dict[str, tuple[str, str]]) -> tuple[SequenceValue, ...]:
    """The value every ``SEQUENCE SET`` entry of the archive restores."""
    listing = pg.run("pg_restore --list", [pg.program("pg_restore"), "--list", str(dump)])
    entries = [line for line in listing.splitlines() if " SEQUENCE SET " in line and not line.startswith(";")]
    if not entries:
        return ()
    selection = dump.with_suffix(".sequences")
    selection.write_text("\n".join(entries) + "\n", encoding="utf-8")
    script = pg.run(
        "pg_restore (sequence values)",
        [pg.program("pg_restore"), f"--use-list={selection}", "--file=-", str(dump)],
    )
    selection.unlink(missing_ok=True)
    values = []
    for line in script.splitlines():
        match = SETVAL.match(line)
        if match is None:
            continue
        quoted = match.group(1).replace("''", "'")
        if quoted not in names:
            raise OperationError(f"pg_dump wrote a value for sequence {quoted}, which the snapshot does not list")
        schema, name = names[quoted]
        values.append(
            SequenceValue(
                schema=schema, sequence=name, last_value=int(match.group(2)), is_called=match.group(3) == "true"
            )
        )
    if len(values) != len(entries):
        raise OperationError(
            f"{dump.name}: found {len(values)} sequence values for {len(entries)} SEQUENCE SET entries"
        )
    return tuple(sorted(values, key=lambda value: (value.schema, value.sequence)))


def sequence_values(
    connection: psycopg.Connection[Any], wanted: Sequence[SequenceValue]
) -> dict[str, tuple[int, bool] | None]:
    """Current ``(last_value, is_called)`` of each wanted sequence, None where it does not exist."""
    found: dict[str, tuple[int, bool] | None] = {}
    existing = {(schema, name) for schema, name, _quoted in _relations(connection, "S", extensions=True)}
    for value in wanted:
        if (value.schema, value.sequence) not in existing:
            found[value.label] = None
            continue
        query = sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
            sql.Identifier(value.schema), sql.Identifier(value.sequence)
        )
        last_value, is_called = connection.execute(query).fetchone()  # type: ignore[misc]
        found[value.label] = (int(last_value), bool(is_called))
    return found


def compare(pg: Postgres, database: str, expected: DatabaseInfo) -> list[str]:
    """Every way ``database`` differs from the backup's inventory; empty when it matches."""
    with pg.connect(database) as connection:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with connection.transaction():
            actual = {stat.label: stat for stat in table_stats(connection)}
            sequences = sequence_values(connection, expected.sequences)
    differences = []
    for stat in expected.tables:
        found = actual.pop(stat.label, None)
        if found is None:
            differences.append(f"table {stat.label}: missing ({stat.rows} rows in the backup)")
        elif found.rows != stat.rows:
            differences.append(f"table {stat.label}: {stat.rows} rows in the backup, {found.rows} restored")
        elif found.checksum != stat.checksum:
            differences.append(f"table {stat.label}: same row count ({stat.rows}) but the content checksum differs")
    differences += [f"table {label}: restored but not in the backup" for label in sorted(actual)]
    for value in expected.sequences:
        current = sequences.get(value.label)
        if current is None:
            differences.append(f"sequence {value.label}: missing")
        elif current != (value.last_value, value.is_called):
            differences.append(
                f"sequence {value.label}: {value.last_value} (is_called {value.is_called}) in the backup, "
                f"{current[0]} (is_called {current[1]}) restored"
            )
    return differences


def _terminate(connection: psycopg.Connection[Any], database: str) -> int:
    rows = connection.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        [database],
    ).fetchall()
    return len(rows)


def drop_database(pg: Postgres, database: str) -> bool:
    """Drop ``database`` if it exists, ending its sessions; True when there was one to drop."""
    with pg.connect(MAINTENANCE_DATABASE) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if exists is None:
            return False
        ended = _terminate(connection, database)
        if ended:
            log("postgres", f"{database}: ended {ended} other session(s)")
        connection.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
    return True


def restore_in_place(pg: Postgres, info: DatabaseInfo, dump: Path) -> None:
    """Replace ``info.name`` with the dump: end its sessions, drop it, and let ``pg_restore
    --create`` recreate it as the archive describes it (owner, encoding, locale, database grants
    and settings) before restoring its contents. Stops at the first error."""
    if drop_database(pg, info.name):
        log("postgres", f"{info.name}: dropped the current database")
    pg.run(
        f"pg_restore {info.name}",
        [
            pg.program("pg_restore"),
            *pg.connection_args(),
            "--create",
            "--exit-on-error",
            f"--dbname={MAINTENANCE_DATABASE}",
            str(dump),
        ],
    )


def restore_into(pg: Postgres, info: DatabaseInfo, dump: Path, target: str) -> None:
    """Restore the dump into a new database ``target`` (a drill's scratch copy), created with
    the original's encoding and locale, in one transaction that stops at the first error."""
    with pg.connect(MAINTENANCE_DATABASE) as connection:
        connection.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
                sql.Identifier(target), sql.Literal(info.encoding), sql.Literal(info.collate), sql.Literal(info.ctype)
            )
        )
    pg.run(
        f"pg_restore into {target}",
        [
            pg.program("pg_restore"),
            *pg.connection_args(),
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={target}",
            str(dump),
        ],
    )


def scratch_databases(pg: Postgres, database: str) -> list[str]:
    """Scratch copies of ``database`` a drill left behind (it was killed before dropping them)."""
    pattern = f"^{re.escape(database)}_drill_[0-9]{{8}}t[0-9]{{6}}z$"
    with pg.connect(MAINTENANCE_DATABASE) as connection:
        rows = connection.execute("SELECT datname FROM pg_database WHERE datname ~ %s ORDER BY 1", [pattern]).fetchall()
    return [str(row[0]) for row in rows]
