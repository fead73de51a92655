"""Staging seed data: anonymize a production copy, verify it, load its dump, or generate fixtures.

    python -m stagecraft_ops.seed anonymize --database-url-file F --rules R --salt-file S [--dry-run]
    python -m stagecraft_ops.seed verify-anonymized --database-url-file F --source-values V
    python -m stagecraft_ops.seed load --database-url-file F --dump D [--seed-version V] [--force]
    python -m stagecraft_ops.seed generate --database-url-file F --spec P --salt-file S [--seed-version V] [--force]

Every command also takes --environment and/or --settings (or STAGECRAFT_ENVIRONMENT) and refuses
production, whether the job says so or the database does (its `stagecraft.environment` setting).

Exit codes: 0 done or nothing to do; 1 failed (database error, original values survive, pg_restore
failed); 2 bad input (arguments, rules/spec/settings file, rules that do not match the database);
3 refused by the database's state (already anonymized differently, dump not anonymized, version
clash, tables missing or referenced from outside the seed); 4 refused: production.

The connection string and the salt are read from files and never printed.

Rules file (anonymize), JSON:
    {"version": 1, "keep_values": ["n/a"],
     "tables": {"public.users": {"email": "email", "full_name": "name", "phone": "phone",
                                 "bio": "text", "last_login_ip": "null", "stripe_id": "hash"}}}
  kinds: name, email (@example.invalid), phone (same layout, digits replaced, starting 999), text
  (lorem words, same length, at least 8), hash (hex, 16-64), null (any nullable column). Blank
  values and keep_values stay as they are. A column on either side of a foreign key whose other
  side is listed must be listed with the same kind (a referencing column may be 'null').

Spec file (generate), JSON:
    {"version": 1, "tables": {"public.users": {"rows": 100, "columns": {
        "id": {"gen": "sequence", "start": 1, "step": 1}, "email": {"gen": "email"},
        "full_name": {"gen": "name"}, "phone": {"gen": "phone", "nulls": 0.2},
        "bio": {"gen": "text", "min_length": 20, "max_length": 200},
        "age": {"gen": "int", "min": 18, "max": 90}, "plan": {"gen": "choice", "values": ["free", "pro"]},
        "country": {"gen": "const", "value": "DE"}}},
      "public.orders": {"rows": 300, "columns": {"user_id": {"gen": "ref", "table": "public.users", "column": "id"}}}}}
  Every generator takes "nulls" (fraction of NULLs, 0 to below 1) except sequence. A foreign-key
  column must use "ref" to the key's target; refs of one row to one table pick the same parent row.

load and generate replace whole tables: each table with data in the archive (or in the spec) is
emptied and refilled in one transaction, with foreign keys checked at its end; rows added on
staging to those tables go with the old seed, other tables are untouched, and a table outside the
seed that references a seed table is refused. stagecraft_seed.loaded records every version
(version, source, sha256, loaded_at, tables, rows, current); loading the current version again
does nothing unless --force.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

from stagecraft_ops.anonymize import (
    MIN_LENGTH,
    AnonymizeReport,
    BadInputError,
    ColumnInfo,
    ForeignKey,
    ProductionRefusedError,
    RefusedError,
    SeedError,
    advisory_lock,
    anonymize,
    check_keys,
    digest,
    fake_email,
    fake_name,
    fake_phone,
    fake_text,
    foreign_keys,
    load_rules,
    parse_table_name,
    qualified,
    read_json,
    refresh_materialized_views,
    salt_fingerprint,
    table_columns,
    table_exists,
    user_triggers_disabled,
    verify,
)
from stagecraft_ops.anonymize import deferred_foreign_keys as _deferred

PRODUCTION_WORDS = ("prod", "production", "prd", "live")
MIN_SALT_LENGTH = 16
MARKER = "stagecraft_seed"

# --------------------------------------------------------------------------------------------
# Environment guard and secret files


def is_production(environment: str) -> bool:
    """True for 'prod', 'production', 'prod-eu', 'live_2' ...: the first word decides."""
    first = environment.strip().lower().replace("_", "-").split("-")[0]
    return first in PRODUCTION_WORDS


def resolve_environment(flag: str | None, settings: Path | None, env: Mapping[str, str]) -> str:
    """The environment this job runs for, from --environment, the settings file and STAGECRAFT_ENVIRONMENT.

    At least one must be given, all that are given must agree, and none may be production.
    """
    sources: dict[str, str] = {}
    if flag:
        sources["--environment"] = flag
    if settings is not None:
        document = read_json(settings, "settings file")
        value = document.get("environment") if isinstance(document, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise BadInputError(f"{settings}: environment: must be a non-empty string")
        sources[f"{settings}: environment"] = value
    if env.get("STAGECRAFT_ENVIRONMENT"):
        sources["STAGECRAFT_ENVIRONMENT"] = env["STAGECRAFT_ENVIRONMENT"]
    if not sources:
        raise BadInputError("--environment: required (or --settings / STAGECRAFT_ENVIRONMENT): staging, scratch, ...")
    for where, value in sources.items():
        if is_production(value):
            raise ProductionRefusedError(f"{where}: is {value!r}: refusing, seed data never goes into production")
    values = {value.strip().lower() for value in sources.values()}
    if len(values) > 1:
        listed = ", ".join(f"{where}={value!r}" for where, value in sources.items())
        raise BadInputError(f"the environment is given differently: {listed}")
    return values.pop()


def check_database_environment(conn: psycopg.Connection, environment: str) -> None:
    """Refuse a database whose own `stagecraft.environment` setting says production or another environment."""
    row = conn.execute("SELECT current_setting('stagecraft.environment', true)").fetchone()
    declared = (row[0] or "").strip() if row else ""
    if declared and is_production(declared):
        raise ProductionRefusedError(
            f"the database declares stagecraft.environment={declared!r}: refusing, seed data never goes into production"
        )
    if declared and declared.lower() != environment:
        raise RefusedError(
            f"the database declares stagecraft.environment={declared!r} but this job runs for {environment!r}"
        )


def read_secret(path: Path, what: str) -> str:
    """A secret's value from its file (trailing newline dropped); errors name the file, never the value."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(f"{path}: cannot read the {what}: {getattr(error, 'strerror', None) or error}") from None
    if not value:
        raise BadInputError(f"{path}: the {what} file is empty")
    return value


def read_salt(path: Path) -> bytes:
    salt = read_secret(path, "salt")
    if len(salt) < MIN_SALT_LENGTH:
        raise BadInputError(f"{path}: the salt must be at least {MIN_SALT_LENGTH} characters")
    return salt.encode()


class _Scrubber:
    """Removes the connection string and its password from anything about to be printed."""

    def __init__(self, url: str) -> None:
        self.secrets = [url]
        try:
            password = psycopg.conninfo.conninfo_to_dict(url).get("password")
        except psycopg.ProgrammingError:
            password = None
        if password:
            self.secrets.append(str(password))

    def __call__(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "[secret]")
        return text


def connect(url_file: Path) -> tuple[psycopg.Connection, _Scrubber]:
    """An autocommit connection from the URL in url_file, and the scrubber for messages about it."""
    url = read_secret(url_file, "database URL")
    scrub = _Scrubber(url)
    try:
        return psycopg.connect(url, autocommit=True, application_name="stagecraft-seed"), scrub
    except (psycopg.Error, ValueError) as error:
        raise SeedError(f"cannot connect to the database named in {url_file}: {scrub(str(error)).strip()}") from None


# --------------------------------------------------------------------------------------------
# Marker of what staging holds


def _ensure_loaded_table(conn: psycopg.Connection) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS stagecraft_seed")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS stagecraft_seed.loaded (version text PRIMARY KEY, source text NOT NULL,"
        " sha256 text NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now(), tables text[] NOT NULL,"
        " rows bigint NOT NULL, current boolean NOT NULL DEFAULT false)"
    )
    conn.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS loaded_one_current ON stagecraft_seed.loaded (current) WHERE current"
    )


@dataclass(frozen=True)
class SeedResult:
    """What load or generate did: nothing (already current) or replaced these tables."""

    version: str
    sha256: str
    noop: bool
    tables: tuple[str, ...] = ()
    rows: int = 0


def _current_or_refuse(conn: psycopg.Connection, version: str, sha: str, force: bool) -> bool:
    """True when `version` is already the current seed (so nothing to do); RefusedError on a version clash."""
    row = conn.execute("SELECT sha256, current FROM stagecraft_seed.loaded WHERE version = %s", (version,)).fetchone()
    if row is None:
        return False
    if row[0] != sha:
        raise RefusedError(
            f"seed version {version!r} was loaded from different content; give the new one its own version"
        )
    return bool(row[1]) and not force


def _record(conn: psycopg.Connection, source: str, result: SeedResult) -> None:
    conn.execute("UPDATE stagecraft_seed.loaded SET current = false WHERE current")
    conn.execute(
        "INSERT INTO stagecraft_seed.loaded (version, source, sha256, tables, rows, current)"
        " VALUES (%s, %s, %s, %s, %s, true) ON CONFLICT (version) DO UPDATE SET loaded_at = now(),"
        " tables = EXCLUDED.tables, rows = EXCLUDED.rows, current = true",
        (result.version, source, result.sha256, list(result.tables), result.rows),
    )


def _outside_references(keys: Iterable[ForeignKey], tables: set[tuple[str, str]]) -> list[str]:
    return sorted(
        f"{'.'.join(key.child)} ({key.name})" for key in keys if key.parent in tables and key.child not in tables
    )


def _replace_guard(conn: psycopg.Connection, tables: set[tuple[str, str]]) -> list[ForeignKey]:
    """The keys to defer while the tables are replaced; RefusedError if a table outside them references them."""
    keys = foreign_keys(conn)
    outside = _outside_references(keys, tables)
    if outside:
        raise RefusedError(
            "these tables reference seed tables but get no seed data, so replacing would leave them dangling: "
            + ", ".join(outside)
        )
    return [key for key in keys if key.child in tables or key.parent in tables]


# --------------------------------------------------------------------------------------------
# load: an anonymized pg_dump archive into staging


@dataclass(frozen=True)
class TocEntry:
    line: str
    kind: str
    schema: str
    name: str


def _toc_entry(line: str) -> TocEntry | None:
    """'3351; 0 16385 TABLE DATA public users owner' -> TocEntry('TABLE DATA', 'public', 'users')."""
    for kind in ("TABLE DATA", "SEQUENCE SET"):
        marker = f" {kind} "
        if marker in line and not line.startswith(";"):
            rest = line.split(marker, 1)[1].split(" ")
            if len(rest) >= 2:
                return TocEntry(line, kind, rest[0], rest[1])
    return None


def read_toc(dump: Path, pg_restore: str) -> list[TocEntry]:
    """The data entries of a custom-format archive (BadInputError if it is not one)."""
    try:
        result = subprocess.run([pg_restore, "-l", str(dump)], capture_output=True, text=True, check=False)
    except OSError as error:
        raise BadInputError(f"--pg-restore: cannot run {pg_restore}: {error.strerror}") from None
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["unreadable"])[-1]
        raise BadInputError(f"{dump}: not a pg_dump custom-format archive: {reason}")
    return [entry for entry in map(_toc_entry, result.stdout.splitlines()) if entry is not None]


def _restore_script(dump: Path, pg_restore: str, entries: Sequence[TocEntry]) -> Iterator[bytes]:
    """pg_restore's data-only SQL for the selected entries, streamed line by line (no connection of its own)."""
    with tempfile.TemporaryDirectory(prefix="stagecraft-seed-") as scratch:
        listing = Path(scratch) / "list"
        listing.write_text("".join(entry.line + "\n" for entry in entries))
        errors = Path(scratch) / "stderr"
        with errors.open("wb") as stderr:
            process = subprocess.Popen(
                [pg_restore, "--data-only", "--no-owner", "--no-privileges", "-L", str(listing), "-f", "-", str(dump)],
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
            assert process.stdout is not None
            yield from process.stdout
            if process.wait() != 0:
                reason = (errors.read_text(errors="replace").strip().splitlines() or ["failed"])[-1]
                raise SeedError(f"{dump}: pg_restore failed: {reason}")


_ALLOWED_STATEMENTS = (b"SET ", b"SELECT pg_catalog.set_config(", b"SELECT pg_catalog.setval(")


def apply_script(conn: psycopg.Connection, lines: Iterator[bytes]) -> int:
    """Run a data-only restore script on conn; returns the rows copied.

    Only what a data-only archive contains is accepted: COPY blocks, SET, set_config and setval.
    psql meta-commands and comments are skipped; anything else is refused, so an archive cannot
    run arbitrary SQL under the loader's role.
    """
    rows, pending = 0, b""
    with conn.cursor() as cursor:
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if not pending and (not line.strip() or line.startswith((b"--", b"\\"))):
                continue
            if not pending and line.startswith(b"COPY ") and line.endswith(b" FROM stdin;"):
                rows += _copy_block(cursor, line[: -len(b" FROM stdin;")] + b" FROM STDIN", lines)
                continue
            pending += line + b"\n"
            if line.endswith(b";"):
                if not pending.startswith(_ALLOWED_STATEMENTS):
                    raise SeedError(f"the archive holds a statement a data-only restore never has: {pending[:60]!r}")
                cursor.execute(pending.decode())
                pending = b""
    return rows


def _copy_block(cursor: psycopg.Cursor, statement: bytes, lines: Iterator[bytes]) -> int:
    rows, buffer = 0, bytearray()
    with cursor.copy(statement.decode()) as copy:
        for raw in lines:
            if raw.rstrip(b"\r\n") == b"\\.":
                break
            buffer += raw
            rows += 1
            if len(buffer) >= 1 << 16:
                copy.write(bytes(buffer))
                buffer.clear()
        else:
            raise SeedError("the archive's data ends inside a COPY block")
        if buffer:
            copy.write(bytes(buffer))
    return rows


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _is_anonymized(dump: Path, pg_restore: str, toc: Sequence[TocEntry]) -> bool:
    marker = [e for e in toc if e.kind == "TABLE DATA" and (e.schema, e.name) == (MARKER, "anonymized")]
    if not marker:
        return False
    in_copy, rows = False, 0
    for raw in _restore_script(dump, pg_restore, marker):
        line = raw.rstrip(b"\r\n")
        if line.startswith(b"COPY "):
            in_copy = True
        elif line == b"\\.":
            in_copy = False
        elif in_copy:
            rows += 1
    return rows > 0


def load_dump(
    conn: psycopg.Connection,
    dump: Path,
    version: str | None = None,
    *,
    force: bool = False,
    exclude: Iterable[tuple[str, str]] = (),
    pg_restore: str = "pg_restore",
) -> SeedResult:
    """Replace the data of the archive's tables with the archive's, in one transaction.

    The archive must come from an anonymized database (it carries stagecraft_seed.anonymized).
    Every table with data in the archive (minus `exclude` and the stagecraft_seed schema) is
    emptied and refilled, and the sequences those tables own are set as dumped; other tables are
    not touched. Foreign keys are checked once, at the end; on any error the previous seed stays.
    If `version` (default: from the file's SHA-256) is already the current seed, nothing happens
    (unless force); a version recorded with other content raises RefusedError.
    """
    sha = file_sha256(dump)
    version = version or f"dump-{sha[:16]}"
    toc = read_toc(dump, pg_restore)
    if not _is_anonymized(dump, pg_restore, toc):
        raise RefusedError(f"{dump}: has no stagecraft_seed.anonymized record; only anonymized copies may be loaded")
    excluded = set(exclude)
    data = [e for e in toc if e.kind == "TABLE DATA" and e.schema != MARKER and (e.schema, e.name) not in excluded]
    tables = {(e.schema, e.name) for e in data}
    with conn.transaction():
        advisory_lock(conn)
        _ensure_loaded_table(conn)
        if _current_or_refuse(conn, version, sha, force):
            return SeedResult(version, sha, noop=True)
        missing = sorted(".".join(t) for t in tables if not table_exists(conn, *t))
        if missing:
            raise RefusedError(
                f"{dump}: has data for tables this database lacks (run its migrations?): {', '.join(missing)}"
            )
        keys = _replace_guard(conn, tables)
        owned = _owned_sequences(conn)
        sequences = [
            e for e in toc
            if e.kind == "SEQUENCE SET" and (e.schema, e.name) in owned and owned[(e.schema, e.name)] in tables | {None}
        ]  # fmt: skip
        ordered = sorted(tables)
        with user_triggers_disabled(conn, ordered), _deferred(conn, keys):
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(qualified(*t) for t in ordered)))
            rows = apply_script(conn, _restore_script(dump, pg_restore, [*data, *sequences]))
        refresh_materialized_views(conn)
        result = SeedResult(version, sha, noop=False, tables=tuple(".".join(t) for t in ordered), rows=rows)
        _record(conn, "dump", result)
    return result


def _owned_sequences(conn: psycopg.Connection) -> dict[tuple[str, str], tuple[str, str] | None]:
    """Every sequence -> the table that owns it (serial/identity), or None."""
    rows = conn.execute(
        """
        SELECT sn.nspname, s.relname, tn.nspname, t.relname
        FROM pg_catalog.pg_class s JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
        LEFT JOIN pg_catalog.pg_depend d ON d.objid = s.oid AND d.classid = 'pg_catalog.pg_class'::regclass
             AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')
        LEFT JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
        LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
        WHERE s.relkind = 'S'
        """
    ).fetchall()
    return {(a, b): ((c, d) if c else None) for a, b, c, d in rows}


# --------------------------------------------------------------------------------------------
# generate: deterministic fixtures from a spec


GENERATORS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "sequence": {"start": int, "step": int},
    "int": {"min": int, "max": int},
    "choice": {"values": list},
    "const": {"value": (str, int, float, bool, type(None))},
    "name": {},
    "email": {},
    "phone": {},
    "text": {"min_length": int, "max_length": int},
    "ref": {"table": str, "column": str},
}
_REQUIRED = {"int": ("min", "max"), "choice": ("values",), "const": ("value",), "ref": ("table", "column")}
_STRING_GENERATORS = ("name", "email", "phone", "text")
MAX_ROWS = 10_000_000


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    gen: str
    params: Mapping[str, Any]
    nulls: float


@dataclass(frozen=True)
class TableSpec:
    schema: str
    table: str
    rows: int
    columns: tuple[ColumnSpec, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.schema, self.table)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True)
class Spec:
    path: Path
    tables: tuple[TableSpec, ...]  # parents before the tables that reference them
    sha256: str


def load_spec(path: Path) -> Spec:
    """Read and validate a generate spec; errors name the file and the key."""
    document = read_json(path, "spec file")
    if not isinstance(document, dict):
        raise BadInputError(f"{path}: must be a JSON object with version and tables")
    check_keys(document, ("version", "tables"), f"{path}: ")
    if document.get("version") != 1:
        raise BadInputError(f"{path}: version: must be 1 (got {document.get('version')!r})")
    tables = document.get("tables")
    if not isinstance(tables, dict) or not tables:
        raise BadInputError(f"{path}: tables: must be a non-empty object of schema.table -> {{rows, columns}}")
    parsed = {}
    for name, body in tables.items():
        where = f"{path}: tables.{name}"
        schema, table = parse_table_name(name, where)
        if not isinstance(body, dict):
            raise BadInputError(f"{where}: must be an object with rows and columns")
        check_keys(body, ("rows", "columns"), f"{where}.")
        rows = body.get("rows")
        if not isinstance(rows, int) or isinstance(rows, bool) or not 0 <= rows <= MAX_ROWS:
            raise BadInputError(f"{where}.rows: must be a whole number from 0 to {MAX_ROWS} (got {rows!r})")
        columns = body.get("columns")
        if not isinstance(columns, dict) or not columns:
            raise BadInputError(f"{where}.columns: must be a non-empty object of column -> generator")
        parsed[name] = TableSpec(
            schema, table, rows, tuple(_column_spec(f"{where}.columns.{c}", c, g) for c, g in columns.items())
        )
    for name, table_spec in parsed.items():
        for column in table_spec.columns:
            if column.gen == "ref":
                _check_ref(path, name, column, parsed)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return Spec(path, _parents_first(path, parsed), hashlib.sha256(canonical).hexdigest())


def _column_spec(where: str, name: str, body: Any) -> ColumnSpec:
    if not isinstance(body, dict) or not isinstance(body.get("gen"), str):
        raise BadInputError(f"{where}: must be an object with gen (one of {', '.join(GENERATORS)})")
    gen = body["gen"]
    if gen not in GENERATORS:
        raise BadInputError(f"{where}.gen: unknown generator {gen!r} (allowed: {', '.join(GENERATORS)})")
    allowed = GENERATORS[gen]
    check_keys(body, ("gen", "nulls", *allowed), f"{where}.")
    for key in _REQUIRED.get(gen, ()):
        if key not in body:
            raise BadInputError(f"{where}.{key}: required for gen {gen!r}")
    for key, kind in allowed.items():
        if key in body and (not isinstance(body[key], kind) or (kind is int and isinstance(body[key], bool))):
            raise BadInputError(f"{where}.{key}: has the wrong type ({type(body[key]).__name__})")
    nulls = body.get("nulls", 0)
    if isinstance(nulls, bool) or not isinstance(nulls, int | float) or not 0 <= nulls < 1:
        raise BadInputError(f"{where}.nulls: must be a fraction from 0 to below 1 (got {nulls!r})")
    params = {key: value for key, value in body.items() if key not in ("gen", "nulls")}
    if gen == "sequence" and (params.get("step", 1) == 0 or nulls):
        raise BadInputError(f"{where}: a sequence needs a non-zero step and no nulls")
    if gen == "int" and params["min"] > params["max"]:
        raise BadInputError(f"{where}.max: must be >= min (got {params['max']} < {params['min']})")
    if gen == "text":
        low, high = params.setdefault("min_length", 20), params.setdefault("max_length", 200)
        if not 0 <= low <= high:
            raise BadInputError(f"{where}.max_length: must be >= min_length >= 0 (got {low}..{high})")
    if gen == "choice" and (
        not params["values"] or not all(isinstance(v, str | int | float | bool) for v in params["values"])
    ):
        raise BadInputError(f"{where}.values: must be a non-empty list of strings or numbers")
    return ColumnSpec(name, gen, params, float(nulls))


def _check_ref(path: Path, name: str, column: ColumnSpec, tables: Mapping[str, TableSpec]) -> None:
    where = f"{path}: tables.{name}.columns.{column.name}"
    if column.params["table"] == name:
        raise BadInputError(f"{where}.table: a table cannot refer to itself in a spec")
    target = tables.get(column.params["table"])
    if target is None:
        raise BadInputError(f"{where}.table: {column.params['table']!r} is not a table of this spec")
    if column.params["column"] not in {c.name for c in target.columns}:
        raise BadInputError(f"{where}.column: {column.params['column']!r} is not generated for {target.label}")
    if target.rows == 0 and column.nulls < 1:
        raise BadInputError(f"{where}: refers to {target.label}, which gets no rows")


def _parents_first(path: Path, tables: Mapping[str, TableSpec]) -> tuple[TableSpec, ...]:
    needs = {
        name: {c.params["table"] for c in spec.columns if c.gen == "ref" and c.params["table"] != name}
        for name, spec in tables.items()
    }
    order: list[TableSpec] = []
    done: set[str] = set()
    while len(done) < len(tables):
        ready = sorted(name for name in tables if name not in done and needs[name] <= done)
        if not ready:
            stuck = ", ".join(sorted(set(tables) - done))
            raise BadInputError(f"{path}: tables: references go round in a circle among {stuck}")
        for name in ready:
            order.append(tables[name])
            done.add(name)
    return tuple(order)


def generate_rows(
    spec: Spec, salt: bytes, limits: Mapping[tuple[str, str], int | None] | None = None
) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Every table's column names and rows, a pure function of the spec and the salt.

    Row i of a table gets, per column, a value drawn from HMAC(salt, table, column, i). All `ref`
    columns of one row that point at the same table take their values from the same parent row.
    Emails are unique within a column; a sequence is start + i * step. `limits` caps string
    lengths per (table, column), as check_spec reports them.
    """
    limits = limits or {}
    generated: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
    for table in spec.tables:
        names = [c.name for c in table.columns]
        columns = [
            _generate_column(table, column, salt, generated, limits.get((table.label, column.name)))
            for column in table.columns
        ]
        generated[table.label] = (names, list(zip(*columns, strict=True)) if columns else [])
    return generated


def _generate_column(
    table: TableSpec,
    column: ColumnSpec,
    salt: bytes,
    generated: Mapping[str, tuple[list[str], list[tuple[Any, ...]]]],
    limit: int | None,
) -> list[Any]:
    values: list[Any] = []
    seen: set[str] = set()
    params = column.params
    for i in range(table.rows):
        seed = digest(salt, "gen", table.label, column.name, str(i))
        if column.nulls and int.from_bytes(digest(salt, "null", table.label, column.name, str(i))[:8], "big") < (
            column.nulls * 2**64
        ):
            values.append(None)
            continue
        number = int.from_bytes(seed[:8], "big")
        if column.gen == "sequence":
            values.append(params.get("start", 1) + i * params.get("step", 1))
        elif column.gen == "int":
            values.append(params["min"] + number % (params["max"] - params["min"] + 1))
        elif column.gen == "choice":
            values.append(params["values"][number % len(params["values"])])
        elif column.gen == "const":
            values.append(params["value"])
        elif column.gen == "name":
            values.append(fake_name(seed, limit))
        elif column.gen == "phone":
            values.append(fake_phone(seed, "+999 000 000 0000", limit))
        elif column.gen == "text":
            low, high = params["min_length"], params["max_length"]
            length = low + number % (high - low + 1)
            values.append(fake_text(seed, length, limit)[:length] if length else "")
        elif column.gen == "email":
            attempt, email = 0, fake_email(seed, limit)
            while email in seen:
                attempt += 1
                email = fake_email(digest(salt, "gen", table.label, column.name, str(i), str(attempt)), limit)
            seen.add(email)
            values.append(email)
        else:  # ref
            parent_label = params["table"]
            parent_names, parent_rows = generated[parent_label]
            row = int.from_bytes(digest(salt, "ref", table.label, str(i), parent_label)[:8], "big") % len(parent_rows)
            values.append(parent_rows[row][parent_names.index(params["column"])])
    return values


def check_spec(conn: psycopg.Connection, spec: Spec) -> dict[tuple[str, str], int | None]:
    """Resolve the spec against the catalog; BadInputError lists every problem. Returns string column limits."""
    problems: list[str] = []
    limits: dict[tuple[str, str], int | None] = {}
    keys = foreign_keys(conn)
    for table in spec.tables:
        where = f"{spec.path}: tables.{table.label}"
        if not table_exists(conn, *table.key):
            problems.append(f"{where}: no such table in the database")
            continue
        catalog = table_columns(conn, *table.key)
        listed = {c.name: c for c in table.columns}
        for name, info in catalog.items():
            needs_value = info.not_null and not (info.has_default or info.identity or info.generated)
            if name not in listed and needs_value:
                problems.append(f"{where}.columns.{name}: is NOT NULL without a default; give it a generator")
        for column in table.columns:
            info = catalog.get(column.name)
            if info is None:
                problems.append(f"{where}.columns.{column.name}: no such column in {table.label}")
                continue
            problem = _generator_problem(column, info)
            if problem:
                problems.append(f"{where}.columns.{column.name}: {problem}")
            limits[(table.label, column.name)] = info.max_length
        for key in keys:
            if key.child != table.key:
                continue
            for child_column, parent_column in key.pairs:
                column = listed.get(child_column)
                expected = {"table": ".".join(key.parent), "column": parent_column}
                if column is not None and (column.gen != "ref" or dict(column.params) != expected):
                    problems.append(
                        f"{where}.columns.{child_column}: is a foreign key ({key.name}); use"
                        f' {{"gen": "ref", "table": "{expected["table"]}", "column": "{parent_column}"}}'
                    )
    if problems:
        raise BadInputError("\n".join(problems))
    return limits


def _generator_problem(column: ColumnSpec, info: ColumnInfo) -> str | None:
    if info.generated:
        return "is a generated column"
    if column.nulls and info.not_null:
        return "is NOT NULL, so nulls must be 0"
    if column.gen in _STRING_GENERATORS and not info.is_string:
        return f"gen {column.gen!r} needs a text column (type is {info.type})"
    if column.gen in ("sequence", "int") and info.category not in ("N", "S"):
        return f"gen {column.gen!r} needs a number or text column (type is {info.type})"
    minimum = MIN_LENGTH.get(column.gen)
    if minimum and info.max_length is not None and info.max_length < minimum:
        return f"gen {column.gen!r} needs room for {minimum} characters ({info.type} is too short)"
    return None


def generate(
    conn: psycopg.Connection, spec: Spec, salt: bytes, version: str | None = None, *, force: bool = False
) -> SeedResult:
    """Replace the spec's tables with generated rows, in one transaction; a no-op when already current.

    The version defaults to one derived from the spec and the salt's fingerprint, so the same spec
    and salt are recognised; with force (or another version) the rows are written again, and come
    out identical because they are a pure function of spec and salt. Serial and identity sequences
    are moved past the generated keys so the application can insert after them.
    """
    sha = hashlib.sha256(f"{spec.sha256}:{salt_fingerprint(salt)}".encode()).hexdigest()
    version = version or f"generated-{sha[:16]}"
    with conn.transaction():
        advisory_lock(conn)
        limits = check_spec(conn, spec)
        _ensure_loaded_table(conn)
        if _current_or_refuse(conn, version, sha, force):
            return SeedResult(version, sha, noop=True)
        tables = [t.key for t in spec.tables]
        keys = _replace_guard(conn, set(tables))
        rows = generate_rows(spec, salt, limits)
        count = 0
        with user_triggers_disabled(conn, tables), _deferred(conn, keys):
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(qualified(*t) for t in tables)))
            for table in spec.tables:
                names, values = rows[table.label]
                count += _copy_rows(conn, table, names, values)
        for table in spec.tables:
            _advance_sequences(conn, table)
        refresh_materialized_views(conn)
        result = SeedResult(version, sha, noop=False, tables=tuple(t.label for t in spec.tables), rows=count)
        _record(conn, "generate", result)
    return result


def _copy_rows(conn: psycopg.Connection, table: TableSpec, names: list[str], rows: list[tuple[Any, ...]]) -> int:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        qualified(*table.key), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(tuple(None if v is None else str(v) for v in row))
    return len(rows)


def _advance_sequences(conn: psycopg.Connection, table: TableSpec) -> None:
    for column in table_columns(conn, *table.key):
        row = conn.execute(
            "SELECT pg_catalog.pg_get_serial_sequence(%s, %s)", (str(qualified(*table.key).as_string(conn)), column)
        ).fetchone()
        if row and row[0]:
            conn.execute(
                sql.SQL(
                    "SELECT pg_catalog.setval(%s::regclass, m) FROM (SELECT max({}) AS m FROM {}) x WHERE m IS NOT NULL"
                ).format(sql.Identifier(column), qualified(*table.key)),
                (row[0],),
            )


# --------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stagecraft-seed", description="Seed data for staging, never production.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--database-url-file", type=Path, required=True, help="file holding the connection URL")
        sub.add_argument("--environment", help="the environment this job runs for (staging, scratch, ...)")
        sub.add_argument("--settings", type=Path, help="JSON settings file with an 'environment' key")
        return sub

    anon = command("anonymize", "rewrite the rules' columns of a scratch copy in place")
    anon.add_argument("--rules", type=Path, required=True)
    anon.add_argument("--salt-file", type=Path, required=True)
    anon.add_argument("--dry-run", action="store_true", help="do and check everything, then roll back")
    check = command("verify-anonymized", "prove no original value is left anywhere")
    check.add_argument("--source-values", type=Path, required=True, help="original values, one JSON string a line")
    load = command("load", "load an anonymized pg_dump archive into this database")
    load.add_argument("--dump", type=Path, required=True)
    load.add_argument("--seed-version")
    load.add_argument("--force", action="store_true", help="reload even if this version is current")
    load.add_argument("--exclude-table", action="append", default=[], metavar="SCHEMA.TABLE")
    load.add_argument("--pg-restore", default="pg_restore", help="pg_restore program (default: on PATH)")
    gen = command("generate", "write generated fixtures from a spec")
    gen.add_argument("--spec", type=Path, required=True)
    gen.add_argument("--salt-file", type=Path, required=True)
    gen.add_argument("--seed-version")
    gen.add_argument("--force", action="store_true", help="write again even if this version is current")
    return parser


def read_source_values(path: Path) -> list[str]:
    """Original values, one JSON string per line (so values may hold newlines); blank lines skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(
            f"{path}: cannot read the source values: {getattr(error, 'strerror', None) or error}"
        ) from None
    values = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, str):
            raise BadInputError(f"{path}: line {number}: must be one JSON string")
        values.append(value)
    return values


def _run(args: argparse.Namespace, out: IO[str]) -> int:
    environment = resolve_environment(args.environment, args.settings, os.environ)
    # Validate every local file before touching the database.
    if args.command == "anonymize":
        rules, salt = load_rules(args.rules), read_salt(args.salt_file)
    elif args.command == "generate":
        spec, salt = load_spec(args.spec), read_salt(args.salt_file)
    elif args.command == "verify-anonymized":
        values = read_source_values(args.source_values)
    else:
        excluded = [parse_table_name(t, f"--exclude-table {t}") for t in args.exclude_table]
        if not args.dump.is_file():
            raise BadInputError(f"--dump: {args.dump}: no such file")
    conn, scrub = connect(args.database_url_file)
    try:
        with conn:
            check_database_environment(conn, environment)
            if args.command == "anonymize":
                return _print_anonymize(anonymize(conn, rules, salt, dry_run=args.dry_run), args.dry_run, out)
            if args.command == "verify-anonymized":
                survivors, scanned = verify(conn, values)
                return _print_verify(survivors, scanned, len(values), out)
            if args.command == "load":
                result = load_dump(
                    conn, args.dump, args.seed_version, force=args.force, exclude=excluded, pg_restore=args.pg_restore
                )
            else:
                result = generate(conn, spec, salt, args.seed_version, force=args.force)
            return _print_seed(result, out)
    except psycopg.Error as error:
        # The primary message only: DETAIL lines quote row values, which may be personal data.
        primary = error.diag.message_primary or type(error).__name__
        raise SeedError(f"database error ({error.sqlstate or 'no SQLSTATE'}): {scrub(primary)}") from None


def _print_anonymize(report: AnonymizeReport, dry_run: bool, out: IO[str]) -> int:
    if report.already_done:
        print("already anonymized with this salt and these rules; nothing to do", file=out)
        return 0
    for table, rows in report.rows.items():
        print(f"{table}: {rows} rows rewritten", file=out)
    print(
        f"{'dry run, rolled back' if dry_run else 'anonymized'}: {len(report.distinct)} columns,"
        f" {sum(report.distinct.values())} distinct values replaced; no original value in any of"
        f" {report.scanned_columns} text/JSON columns",
        file=out,
    )
    return 0


def _print_verify(survivors: Mapping[str, int], scanned: int, count: int, out: IO[str]) -> int:
    if survivors:
        for label, rows in sorted(survivors.items()):
            print(f"{label}: {rows} rows hold an original value", file=out)
        return 1
    print(f"verified: none of {count} original values in any of {scanned} text/JSON columns", file=out)
    return 0


def _print_seed(result: SeedResult, out: IO[str]) -> int:
    if result.noop:
        print(f"seed version {result.version} is already loaded; nothing to do", file=out)
    else:
        print(f"loaded seed version {result.version}: {result.rows} rows into {', '.join(result.tables)}", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one seed command; returns the exit code (see the module docstring)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args, sys.stdout)
    except SeedError as error:
        print(str(error), file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
