"""Anonymize a scratch copy of the production database in place, and prove nothing personal survived.

The rules file lists the columns that hold personal data and what kind each holds. Every
non-empty value of those columns is replaced by a pseudonym derived from HMAC-SHA256 under the
stack's salt, so the same value always gets the same pseudonym (joins and foreign keys across
tables still match) while another salt gives other pseudonyms. The mapping is made injective
(distinct values stay distinct, so unique columns stay unique) and disjoint from every original
value (a pseudonym never equals any real value in the rules' columns). The rewrite runs in one
transaction that also checks, before it commits, that no original value is left in any text,
text-array or JSON column of the whole database.

The catalog helpers at the end (columns, foreign keys, deferral, trigger switching) are shared
with seed loading.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

KINDS = ("email", "hash", "name", "null", "phone", "text")
# Below these lengths a column cannot hold a pseudonym of its kind that is unique and recognisable.
MIN_LENGTH = {"email": 25, "hash": 8, "name": 4, "phone": 8, "text": 4}
MAX_ATTEMPTS = 1000
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_LOCK_ID = 0x5EED_0001  # pg_advisory_xact_lock key shared by every command that writes seed data


class SeedError(Exception):
    """A failure with a one-line message for the user; exit_code is what the command returns."""

    exit_code = 1


class BadInputError(SeedError):
    """A wrong file, key or argument (exit 2)."""

    exit_code = 2


class RefusedError(SeedError):
    """The database is in a state this command must not act on (exit 3)."""

    exit_code = 3


class ProductionRefusedError(SeedError):
    """The target is production: seed data never goes there (exit 4)."""

    exit_code = 4


# --------------------------------------------------------------------------------------------
# Pseudonyms


FIRST_NAMES = (
    "Ada", "Aiko", "Alma", "Amir", "Anika", "Ansel", "Aria", "Bo", "Bruno", "Cato", "Chen", "Cleo",
    "Dalia", "Dario", "Edda", "Elio", "Emre", "Esme", "Ezra", "Femi", "Freya", "Gael", "Greta", "Hana",
    "Hugo", "Ilse", "Ines", "Ivo", "Jana", "Joao", "Kai", "Kira", "Lars", "Lena", "Lior", "Luca",
    "Maya", "Milo", "Mira", "Nadia", "Nico", "Noor", "Omar", "Oskar", "Pia", "Quinn", "Rafa", "Ravi",
    "Rina", "Sami", "Sara", "Selin", "Tariq", "Tess", "Theo", "Uma", "Vera", "Vito", "Wren", "Xena",
    "Yara", "Yusuf", "Zane", "Zoe",
)  # fmt: skip
SYLLABLES = (
    "ba", "bel", "cor", "da", "den", "dor", "fa", "gar", "hol", "ka", "kem", "lan", "lin", "lo", "mar",
    "mes", "mo", "nen", "no", "par", "ri", "ros", "ru", "sa", "sel", "ta", "tor", "va", "ven", "wi",
    "za", "zel",
)  # fmt: skip
LOREM = (
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
    "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim",
    "ad", "minim", "veniam", "quis", "nostrud", "exercitation", "ullamco", "laboris", "nisi",
    "aliquip", "ex", "ea", "commodo", "consequat", "duis", "aute", "irure", "in", "voluptate",
    "velit", "esse", "cillum", "fugiat", "nulla", "pariatur", "excepteur", "sint", "occaecat",
)  # fmt: skip
EMAIL_DOMAIN = "example.invalid"  # reserved: mail to it is never delivered


def digest(salt: bytes, *parts: str | bytes) -> bytes:
    """HMAC-SHA256 of the parts (NUL-separated) under the salt."""
    message = b"\0".join(part if isinstance(part, bytes) else part.encode() for part in parts)
    return hmac.new(salt, message, hashlib.sha256).digest()


def salt_fingerprint(salt: bytes) -> str:
    """A short public name for a salt: tells two salts apart without revealing either."""
    return digest(salt, "stagecraft salt fingerprint").hex()[:16]


def _stream(seed: bytes) -> Iterator[int]:
    """An endless deterministic stream of bytes drawn from a digest."""
    counter = 0
    while True:
        yield from hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1


def fake_name(seed: bytes, limit: int | None = None) -> str:
    """'First Surname' with an invented surname (about two million combinations)."""
    stream = _stream(seed)
    first = FIRST_NAMES[next(stream) % len(FIRST_NAMES)]
    surname = "".join(SYLLABLES[next(stream) % len(SYLLABLES)] for _ in range(2 + next(stream) % 2))
    return f"{first} {surname.capitalize()}"[:limit]


def fake_email(seed: bytes, limit: int | None = None) -> str:
    """first.surname.tag@example.invalid, or u<hex>@example.invalid where that is too long."""
    first, surname = fake_name(seed).lower().split(" ")
    email = f"{first}.{surname}.{seed[8:11].hex()}@{EMAIL_DOMAIN}"
    if limit is None or len(email) <= limit:
        return email
    return f"u{seed.hex()[: min(16, limit - len(EMAIL_DOMAIN) - 2)]}@{EMAIL_DOMAIN}"


def fake_phone(seed: bytes, like: str, limit: int | None = None) -> str:
    """The layout of `like` (punctuation and length) with every digit replaced.

    The first three digits become 999: no country or North American area code 999 is assigned,
    so nothing sent from staging reaches a real number.
    """
    stream = _stream(seed)
    digits = sum(character.isdigit() for character in like)
    if digits < 6:
        like = "+999 000 0000"
    out, position = [], 0
    for character in like:
        if character.isdigit():
            out.append("9" if position < 3 else str(next(stream) % 10))
            position += 1
        else:
            out.append(character)
    return "".join(out)[:limit]


def fake_text(seed: bytes, length: int, limit: int | None = None) -> str:
    """Lorem-like words cut to `length` characters (at least 8), ending without a space."""
    length = max(length, 8) if limit is None else min(max(length, 8), limit)
    stream = _stream(seed)
    words: list[str] = []
    size = -1
    while size < length:
        words.append(LOREM[next(stream) % len(LOREM)])
        size += len(words[-1]) + 1
    text = " ".join(words)[:length].capitalize()
    return text[:-1] + "." if text.endswith(" ") else text


def fake_hash(seed: bytes, length: int, limit: int | None = None) -> str:
    """Hex characters, as long as the original (16 to 64), for opaque identifiers."""
    size = min(max(length, 16), 64)
    return seed.hex()[: size if limit is None else min(size, limit)]


def pseudonym(kind: str, salt: bytes, value: str, attempt: int = 0, limit: int | None = None) -> str:
    """The replacement for `value` under `salt`; `attempt` > 0 gives the next candidate on a clash."""
    seed = digest(salt, kind, str(attempt), value)
    if kind == "name":
        return fake_name(seed, limit)
    if kind == "email":
        return fake_email(seed, limit)
    if kind == "phone":
        return fake_phone(seed, value, limit)
    if kind == "text":
        return fake_text(seed, len(value), limit)
    if kind == "hash":
        return fake_hash(seed, len(value), limit)
    raise ValueError(f"no pseudonym for kind {kind!r}")


def build_mapping(
    kind: str, salt: bytes, values: Iterable[str], forbidden: set[str], limit: int | None
) -> dict[str, str]:
    """Injective original -> pseudonym map whose pseudonyms avoid every value in `forbidden`.

    Values are visited in the order of their own HMAC, so on a clash the winner depends only on
    the salt and the set of values, never on the order rows come back from the database.
    """
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for value in sorted(values, key=lambda v: digest(salt, "order", kind, v)):
        for attempt in range(MAX_ATTEMPTS):
            candidate = pseudonym(kind, salt, value, attempt, limit)
            if candidate not in forbidden and candidate not in taken:
                break
        else:
            raise SeedError(f"no unique {kind} pseudonym within {limit} characters after {MAX_ATTEMPTS} tries")
        taken.add(candidate)
        mapping[value] = candidate
    return mapping


# --------------------------------------------------------------------------------------------
# Rules file


@dataclass(frozen=True)
class Rules:
    """The validated rules file: table -> column -> kind, plus values that are never personal."""

    path: Path
    tables: Mapping[tuple[str, str], Mapping[str, str]]
    keep_values: frozenset[str]
    sha256: str

    def kind(self, schema: str, table: str, column: str) -> str | None:
        return self.tables.get((schema, table), {}).get(column)


def parse_table_name(text: str, where: str) -> tuple[str, str]:
    """'schema.table' -> (schema, table), or BadInputError naming `where`."""
    parts = text.split(".")
    if len(parts) != 2 or not all(_IDENTIFIER.match(part) for part in parts):
        raise BadInputError(f"{where}: name tables as schema.table with plain identifiers (got {text!r})")
    return parts[0], parts[1]


def read_json(path: Path, what: str) -> Any:
    """A JSON document, or BadInputError naming the file and the position of the syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(f"{path}: cannot read the {what}: {getattr(error, 'strerror', None) or error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInputError(
            f"{path}: not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None


def check_keys(document: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """BadInputError for the first key not in `allowed`."""
    allowed = tuple(allowed)
    for key in document:
        if key not in allowed:
            raise BadInputError(f"{where}{key}: unknown key (allowed: {', '.join(allowed)})")


def load_rules(path: Path) -> Rules:
    """Read and validate a rules file; errors name the file and the key."""
    document = read_json(path, "rules file")
    if not isinstance(document, dict):
        raise BadInputError(f"{path}: must be a JSON object with version and tables")
    check_keys(document, ("version", "tables", "keep_values"), f"{path}: ")
    if document.get("version") != 1:
        raise BadInputError(f"{path}: version: must be 1 (got {document.get('version')!r})")
    tables = document.get("tables")
    if not isinstance(tables, dict) or not tables:
        raise BadInputError(f"{path}: tables: must be a non-empty object of schema.table -> {{column: kind}}")
    parsed: dict[tuple[str, str], dict[str, str]] = {}
    for name, columns in tables.items():
        key = parse_table_name(name, f"{path}: tables.{name}")
        if not isinstance(columns, dict) or not columns:
            raise BadInputError(f"{path}: tables.{name}: must be a non-empty object of column -> kind")
        for column, kind in columns.items():
            if kind not in KINDS:
                raise BadInputError(
                    f"{path}: tables.{name}.{column}: unknown kind {kind!r} (allowed: {', '.join(KINDS)})"
                )
        parsed[key] = dict(columns)
    keep = document.get("keep_values", [])
    if not isinstance(keep, list) or not all(isinstance(value, str) for value in keep):
        raise BadInputError(f"{path}: keep_values: must be a list of strings")
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return Rules(path, parsed, frozenset(keep), hashlib.sha256(canonical).hexdigest())


# --------------------------------------------------------------------------------------------
# Catalog


@dataclass(frozen=True)
class ColumnInfo:
    """What the catalog says about one column."""

    name: str
    type: str
    category: str  # pg_type.typcategory: S string, N numeric, A array, U user (json) ...
    element_category: str | None
    max_length: int | None
    not_null: bool
    has_default: bool
    generated: bool
    identity: bool

    @property
    def is_string(self) -> bool:
        return self.category == "S"


@dataclass(frozen=True)
class ForeignKey:
    """One foreign key constraint: child columns -> parent columns, pairwise."""

    name: str
    child: tuple[str, str]
    parent: tuple[str, str]
    pairs: tuple[tuple[str, str], ...]
    deferrable: bool


def table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    row = conn.execute(
        "SELECT c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (schema, table),
    ).fetchone()
    return row is not None and row[0] in ("r", "p")


def table_columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, ColumnInfo]:
    """Every live column of a table, by name."""
    rows = conn.execute(
        """
        SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typcategory, et.typcategory,
               CASE WHEN bt.typname IN ('varchar', 'bpchar')
                         AND COALESCE(NULLIF(a.atttypmod, -1), t.typtypmod) > 4
                    THEN COALESCE(NULLIF(a.atttypmod, -1), t.typtypmod) - 4 END,
               a.attnotnull, a.atthasdef, a.attgenerated <> '', a.attidentity <> ''
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
        JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
        LEFT JOIN pg_catalog.pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
        WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        (schema, table),
    ).fetchall()
    return {row[0]: ColumnInfo(*row) for row in rows}


def foreign_keys(conn: psycopg.Connection) -> list[ForeignKey]:
    """Every foreign key of the database (partition copies left out: the parent's stands for them)."""
    rows = conn.execute(
        """
        SELECT c.conname, cn.nspname, cc.relname, pn.nspname, pc.relname, c.condeferrable,
               ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(num, i)
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num ORDER BY k.i),
               ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(num, i)
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num ORDER BY k.i)
        FROM pg_catalog.pg_constraint c
        JOIN pg_catalog.pg_class cc ON cc.oid = c.conrelid
        JOIN pg_catalog.pg_namespace cn ON cn.oid = cc.relnamespace
        JOIN pg_catalog.pg_class pc ON pc.oid = c.confrelid
        JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
        WHERE c.contype = 'f' AND c.conparentid = 0
        ORDER BY cn.nspname, cc.relname, c.conname
        """
    ).fetchall()
    return [
        ForeignKey(name, (cs, ct), (ps, pt), tuple(zip(child_cols, parent_cols, strict=True)), deferrable)
        for name, cs, ct, ps, pt, deferrable, child_cols, parent_cols in rows
    ]


def qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def advisory_lock(conn: psycopg.Connection) -> None:
    """Serialise seed writers on one database (released at the end of the transaction)."""
    conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (_LOCK_ID,))


@contextmanager
def deferred_foreign_keys(conn: psycopg.Connection, keys: Iterable[ForeignKey]) -> Iterator[None]:
    """Defer the given foreign keys' checks to the end of the block, then check them and restore.

    A key that is NOT DEFERRABLE is made DEFERRABLE for the block (this needs table ownership, not
    superuser) and put back afterwards. On leaving the block every deferred check runs at once; a
    violation raises and the caller's transaction rolls back, catalog changes included. On an
    exception inside the block nothing is restored: the rollback does that.
    """
    keys = list(keys)
    altered = [key for key in keys if not key.deferrable]
    for key in altered:
        conn.execute(
            sql.SQL("ALTER TABLE {} ALTER CONSTRAINT {} DEFERRABLE INITIALLY DEFERRED").format(
                qualified(*key.child), sql.Identifier(key.name)
            )
        )
    for key in keys:
        conn.execute(sql.SQL("SET CONSTRAINTS {} DEFERRED").format(qualified(key.child[0], key.name)))
    yield
    conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for key in altered:
        conn.execute(
            sql.SQL("ALTER TABLE {} ALTER CONSTRAINT {} NOT DEFERRABLE").format(
                qualified(*key.child), sql.Identifier(key.name)
            )
        )


@contextmanager
def referencing_indexes(conn: psycopg.Connection, keys: Iterable[ForeignKey]) -> Iterator[None]:
    """Index, for the block, the referencing columns of keys that have no index on them, then drop it.

    Changing a referenced value makes Postgres look up the referencing rows once per changed row;
    without an index each look-up reads the whole referencing table, so rewriting 100,000 emails
    referenced from an unindexed 300,000-row table would take hours instead of seconds.
    """
    created: list[sql.Composed] = []
    for key in keys:
        columns = [child for child, _ in key.pairs]
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i"
            " WHERE i.indrelid = %s::regclass AND i.indpred IS NULL"
            " AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_catalog.pg_attribute a"
            "      WHERE a.attrelid = i.indrelid AND a.attnum = ANY ((i.indkey::int2[])[0:%s - 1]))"
            "     = (SELECT array_agg(c ORDER BY c) FROM unnest(%s::text[]) c))",
            (qualified(*key.child).as_string(conn), len(columns), columns),
        ).fetchone()
        if row and row[0]:
            continue
        name = sql.Identifier(f"stagecraft_tmp_{len(created)}_{key.name}"[:63])
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} ({})").format(
                name, qualified(*key.child), sql.SQL(", ").join(map(sql.Identifier, columns))
            )
        )
        created.append(sql.SQL("{}.{}").format(sql.Identifier(key.child[0]), name))
    yield
    for index in created:
        conn.execute(sql.SQL("DROP INDEX {}").format(index))


_ENABLE = {"O": "ENABLE TRIGGER", "A": "ENABLE ALWAYS TRIGGER", "R": "ENABLE REPLICA TRIGGER"}


@contextmanager
def user_triggers_disabled(conn: psycopg.Connection, tables: Iterable[tuple[str, str]]) -> Iterator[None]:
    """Switch off the enabled user triggers of the tables for the block, each back to its own mode after.

    Seed writes must change exactly the data they name: an audit or updated_at trigger would add
    rows or timestamps that differ on every run.
    """
    enabled: list[tuple[tuple[str, str], str, str]] = []
    for schema, table in tables:
        for name, mode in conn.execute(
            "SELECT t.tgname, t.tgenabled FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND NOT t.tgisinternal AND t.tgenabled <> 'D'",
            (schema, table),
        ).fetchall():
            enabled.append(((schema, table), name, mode))
    for table, name, _ in enabled:
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(qualified(*table), sql.Identifier(name)))
    yield
    for table, name, mode in enabled:
        conn.execute(
            sql.SQL("ALTER TABLE {} {} {}").format(qualified(*table), sql.SQL(_ENABLE[mode]), sql.Identifier(name))
        )


# --------------------------------------------------------------------------------------------
# Checking the rules against the database


@dataclass(frozen=True)
class Target:
    """One rules column, resolved against the catalog; `limit` is shared by its foreign-key group."""

    schema: str
    table: str
    column: str
    kind: str
    info: ColumnInfo
    limit: int | None = None

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}.{self.column}"


@dataclass(frozen=True)
class Plan:
    """The rules resolved against the catalog: what to rewrite, in which table order, which keys to defer."""

    targets: tuple[Target, ...]
    table_order: tuple[tuple[str, str], ...]
    keys: tuple[ForeignKey, ...]


def check_rules(conn: psycopg.Connection, rules: Rules) -> Plan:
    """Resolve the rules against the live catalog; BadInputError lists every problem, one per line.

    Checks: tables and columns exist; a pseudonym kind needs a string column long enough for it;
    `null` needs a nullable column; nothing generated; and every foreign key that touches a rules
    column has its other side in the rules with the same kind (a child may instead be `null`).
    """
    problems: list[str] = []
    targets: dict[tuple[str, str, str], Target] = {}
    for (schema, table), columns in rules.tables.items():
        where = f"{rules.path}: tables.{schema}.{table}"
        if not table_exists(conn, schema, table):
            problems.append(f"{where}: no such table in the database")
            continue
        catalog = table_columns(conn, schema, table)
        for column, kind in columns.items():
            info = catalog.get(column)
            if info is None:
                problems.append(f"{where}.{column}: no such column in {schema}.{table}")
                continue
            problem = _column_problem(kind, info)
            if problem:
                problems.append(f"{where}.{column}: {problem}")
                continue
            targets[(schema, table, column)] = Target(schema, table, column, kind, info)
    keys = [key for key in foreign_keys(conn) if _touches(key, targets)]
    groups = _Groups(targets)
    for key in keys:
        for child_column, parent_column in key.pairs:
            child = targets.get((*key.child, child_column))
            parent = targets.get((*key.parent, parent_column))
            if child is None and parent is None:
                continue
            link = f"{'.'.join(key.child)}.{child_column} -> {'.'.join(key.parent)}.{parent_column} ({key.name})"
            if child is not None and child.kind == "null":
                continue
            if child is None:
                problems.append(
                    f"{rules.path}: tables.{'.'.join(key.child)}.{child_column}: references a rules column through"
                    f" {link}; list it with kind {parent.kind!r} (or 'null')"  # type: ignore[union-attr]
                )
            elif parent is None:
                problems.append(
                    f"{rules.path}: tables.{'.'.join(key.parent)}.{parent_column}: is referenced by a rules column"
                    f" through {link}; list it with kind {child.kind!r}, or make the child 'null'"
                )
            elif child.kind != parent.kind:
                problems.append(
                    f"{rules.path}: tables.{'.'.join(key.child)}.{child_column}: kind {child.kind!r} differs from"
                    f" {parent.kind!r} on the other side of {link}"
                )
            else:
                groups.join(child, parent)
    if problems:
        raise BadInputError("\n".join(problems))
    resolved = tuple(groups.with_limits())
    tables = sorted({(t.schema, t.table) for t in resolved})
    return Plan(resolved, _children_first(tables, keys), tuple(keys))


def _column_problem(kind: str, info: ColumnInfo) -> str | None:
    if info.generated:
        return "is a generated column; it cannot be rewritten"
    if kind == "null":
        return f"kind 'null' needs a nullable column ({info.type} is NOT NULL)" if info.not_null else None
    if not info.is_string:
        return f"kind {kind!r} needs a text column (type is {info.type}); use 'null' or leave it out"
    if info.max_length is not None and info.max_length < MIN_LENGTH[kind]:
        return f"kind {kind!r} needs room for {MIN_LENGTH[kind]} characters ({info.type} is too short)"
    return None


def _touches(key: ForeignKey, targets: Mapping[tuple[str, str, str], Target]) -> bool:
    return any((*key.child, child) in targets or (*key.parent, parent) in targets for child, parent in key.pairs)


class _Groups:
    """Union-find over rules columns joined by foreign keys: each group shares one length limit."""

    def __init__(self, targets: Mapping[tuple[str, str, str], Target]) -> None:
        self.targets = targets
        self.parent: dict[str, str] = {t.label: t.label for t in targets.values()}

    def find(self, label: str) -> str:
        while self.parent[label] != label:
            self.parent[label] = self.parent[self.parent[label]]
            label = self.parent[label]
        return label

    def join(self, a: Target, b: Target) -> None:
        self.parent[self.find(a.label)] = self.find(b.label)

    def with_limits(self) -> Iterator[Target]:
        limits: dict[str, int | None] = {}
        for target in self.targets.values():
            root, length = self.find(target.label), target.info.max_length
            if root not in limits:
                limits[root] = length
            elif length is not None:
                known = limits[root]
                limits[root] = length if known is None else min(known, length)
        for key in sorted(self.targets):
            target = self.targets[key]
            yield Target(
                target.schema, target.table, target.column, target.kind, target.info, limits[self.find(target.label)]
            )


def _children_first(tables: list[tuple[str, str]], keys: Iterable[ForeignKey]) -> tuple[tuple[str, str], ...]:
    """Tables ordered so a referencing table comes before the table it references (cycles: by name).

    Rewriting children first means ON UPDATE CASCADE / SET NULL / RESTRICT actions of a parent
    find no child still holding an old value, so none of them fires.
    """
    referenced_by: dict[tuple[str, str], set[tuple[str, str]]] = {table: set() for table in tables}
    for key in keys:
        if key.child != key.parent and key.child in referenced_by and key.parent in referenced_by:
            referenced_by[key.parent].add(key.child)
    order: list[tuple[str, str]] = []
    remaining = set(tables)
    while remaining:
        ready = sorted(t for t in remaining if not (referenced_by[t] & remaining)) or sorted(remaining)[:1]
        for table in ready:
            order.append(table)
            remaining.discard(table)
    return tuple(order)


# --------------------------------------------------------------------------------------------
# Rewriting


@dataclass
class AnonymizeReport:
    """What an anonymize run did (or, with dry_run, would have done)."""

    already_done: bool = False
    rows: dict[str, int] = field(default_factory=dict)  # schema.table -> rows rewritten
    distinct: dict[str, int] = field(default_factory=dict)  # schema.table.column -> distinct values replaced
    scanned_columns: int = 0


def _value_expression(column: str) -> sql.Composed:
    """A column's value as text through its type's output function (inet '10.0.0.1', not '10.0.0.1/32')."""
    return sql.SQL("pg_catalog.format('%s', {})").format(sql.Identifier(column))


def _distinct_values(conn: psycopg.Connection, target: Target) -> set[str]:
    query = sql.SQL("SELECT DISTINCT {} FROM {} WHERE {} IS NOT NULL").format(
        _value_expression(target.column), qualified(target.schema, target.table), sql.Identifier(target.column)
    )
    with conn.cursor(binary=False) as cursor:
        cursor.execute(query)
        return {row[0] for row in cursor}


def _is_placeholder(value: str, keep: frozenset[str]) -> bool:
    return not value.strip() or value in keep


def anonymize(conn: psycopg.Connection, rules: Rules, salt: bytes, *, dry_run: bool = False) -> AnonymizeReport:
    """Rewrite the rules' columns in place, in one transaction, then prove no original survived.

    Run once on a fresh copy: the transaction records the salt's fingerprint and the rules'
    SHA-256 in stagecraft_seed.anonymized. A second run with the same salt and rules is a no-op
    (already_done); with another salt or other rules it raises RefusedError, because the data is no longer
    the original and anonymizing pseudonyms again would only hide that. conn must be in autocommit
    mode (the function opens its own transaction).
    """
    report = AnonymizeReport()
    with conn.transaction() as transaction:
        advisory_lock(conn)
        previous = _previous_run(conn)
        plan = check_rules(conn, rules)
        if previous is not None:
            if previous == (salt_fingerprint(salt), rules.sha256):
                report.already_done = True
                return report
            raise RefusedError(
                "this database was already anonymized with another salt or other rules;"
                " restore a fresh copy of the backup and anonymize that"
            )
        originals, per_target = _collect(conn, plan, rules.keep_values)
        forbidden = originals | rules.keep_values
        mappings = _mappings(plan, per_target, salt, forbidden)
        _load_temp_tables(conn, mappings, originals)
        with (
            user_triggers_disabled(conn, plan.table_order),
            referencing_indexes(conn, plan.keys),
            deferred_foreign_keys(conn, plan.keys),
        ):
            for schema, table in plan.table_order:
                targets = [t for t in plan.targets if (t.schema, t.table) == (schema, table)]
                report.rows[f"{schema}.{table}"] = _rewrite(conn, schema, table, targets, mappings)
        for target in plan.targets:
            report.distinct[target.label] = len(per_target[target.label])
        refresh_materialized_views(conn)
        survivors, report.scanned_columns = surviving_values(conn, "stagecraft_originals")
        if survivors:
            where = ", ".join(f"{label} ({count} rows)" for label, count in sorted(survivors.items()))
            raise SeedError(f"original values would survive in {where}; nothing was changed (add those columns)")
        _record_run(conn, salt, rules, report)
        if dry_run:
            raise psycopg.Rollback(transaction)  # leaves the block quietly, everything undone
    return report


def _previous_run(conn: psycopg.Connection) -> tuple[str, str] | None:
    exists = conn.execute("SELECT pg_catalog.to_regclass('stagecraft_seed.anonymized') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(
        "SELECT salt_fingerprint, rules_sha256 FROM stagecraft_seed.anonymized ORDER BY anonymized_at DESC LIMIT 1"
    ).fetchone()
    return (row[0], row[1]) if row else None


def _collect(conn: psycopg.Connection, plan: Plan, keep: frozenset[str]) -> tuple[set[str], dict[str, set[str]]]:
    """Every original value (all rules columns, padded char values also trimmed) and each target's own."""
    originals: set[str] = set()
    per_target: dict[str, set[str]] = {}
    for target in plan.targets:
        values = {v for v in _distinct_values(conn, target) if not _is_placeholder(v, keep)}
        per_target[target.label] = values
        originals |= values
        originals |= {v.rstrip() for v in values if v.rstrip() != v and v.rstrip()}
    return originals, per_target


def _mappings(
    plan: Plan, per_target: Mapping[str, set[str]], salt: bytes, forbidden: set[str]
) -> dict[tuple[str, int | None], tuple[str, dict[str, str]]]:
    """One mapping per (kind, length limit); columns joined by a foreign key share one."""
    values: dict[tuple[str, int | None], set[str]] = {}
    for target in plan.targets:
        if target.kind != "null":
            values.setdefault((target.kind, target.limit), set()).update(per_target[target.label])
    return {
        key: (f"stagecraft_map_{index}", build_mapping(key[0], salt, group, forbidden, key[1]))
        for index, (key, group) in enumerate(sorted(values.items(), key=lambda item: (item[0][0], item[0][1] or 0)))
    }


def _load_temp_tables(
    conn: psycopg.Connection,
    mappings: Mapping[tuple[str, int | None], tuple[str, dict[str, str]]],
    originals: set[str],
) -> None:
    conn.execute("CREATE TEMP TABLE stagecraft_originals (v text PRIMARY KEY) ON COMMIT DROP")
    with conn.cursor() as cursor, cursor.copy("COPY pg_temp.stagecraft_originals (v) FROM STDIN") as copy:
        for value in originals:
            copy.write_row((value,))
    for name, mapping in mappings.values():
        conn.execute(
            sql.SQL("CREATE TEMP TABLE {} (old text PRIMARY KEY, new text NOT NULL) ON COMMIT DROP").format(
                sql.Identifier(name)
            )
        )
        with (
            conn.cursor() as cursor,
            cursor.copy(sql.SQL("COPY pg_temp.{} (old, new) FROM STDIN").format(sql.Identifier(name))) as copy,
        ):
            for old, new in mapping.items():
                copy.write_row((old, new))


def _rewrite(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    targets: list[Target],
    mappings: Mapping[tuple[str, int | None], tuple[str, dict[str, str]]],
) -> int:
    """One UPDATE per table: every rules column at once, values not in a mapping (placeholders) kept."""
    assignments, conditions = [], []
    for target in targets:
        column = sql.Identifier(target.column)
        conditions.append(sql.SQL("{} IS NOT NULL").format(column))
        if target.kind == "null":
            assignments.append(sql.SQL("{} = NULL").format(column))
            continue
        map_table = sql.Identifier(mappings[(target.kind, target.limit)][0])
        assignments.append(
            sql.SQL("{col} = COALESCE((SELECT m.new FROM pg_temp.{map} m WHERE m.old = {value}), {col}::text)").format(
                col=column, map=map_table, value=_value_expression(target.column)
            )
        )
    cursor = conn.execute(
        sql.SQL("UPDATE {} SET {} WHERE {}").format(
            qualified(schema, table), sql.SQL(", ").join(assignments), sql.SQL(" OR ").join(conditions)
        )
    )
    return cursor.rowcount


def refresh_materialized_views(conn: psycopg.Connection) -> None:
    """Materialized views hold copies of rows: refresh every populated one after the rows changed."""
    views = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'm' AND c.relispopulated ORDER BY 1, 2"
    ).fetchall()
    for schema, name in views:
        conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(qualified(schema, name)))


def _record_run(conn: psycopg.Connection, salt: bytes, rules: Rules, report: AnonymizeReport) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS stagecraft_seed")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS stagecraft_seed.anonymized (salt_fingerprint text NOT NULL,"
        " rules_sha256 text NOT NULL, anonymized_at timestamptz NOT NULL DEFAULT now(),"
        " columns integer NOT NULL, rows bigint NOT NULL)"
    )
    conn.execute(
        "INSERT INTO stagecraft_seed.anonymized (salt_fingerprint, rules_sha256, columns, rows)"
        " VALUES (%s, %s, %s, %s)",
        (salt_fingerprint(salt), rules.sha256, len(report.distinct), sum(report.rows.values())),
    )


# --------------------------------------------------------------------------------------------
# Proving nothing survived


def scannable_columns(conn: psycopg.Connection) -> list[tuple[str, str, str, str]]:
    """(schema, relation, column, shape) for every text, text-array and JSON column of user tables and views.

    shape is 'text', 'array' or 'json'. System and temporary schemas are left out.
    """
    return [
        tuple(row)  # type: ignore[misc]
        for row in conn.execute(
            """
            SELECT n.nspname, c.relname, a.attname,
                   CASE WHEN t.typcategory = 'S' THEN 'text'
                        WHEN t.typcategory = 'A' AND et.typcategory = 'S' THEN 'array'
                        ELSE 'json' END
            FROM pg_catalog.pg_attribute a
            JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
            LEFT JOIN pg_catalog.pg_type et ON et.oid = t.typelem
            WHERE c.relkind IN ('r', 'm') AND a.attnum > 0 AND NOT a.attisdropped
              AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
              AND (t.typcategory = 'S' OR (t.typcategory = 'A' AND et.typcategory = 'S')
                   OR t.typname IN ('json', 'jsonb'))
            ORDER BY 1, 2, a.attnum
            """
        ).fetchall()
    ]


def surviving_values(conn: psycopg.Connection, originals_table: str) -> tuple[dict[str, int], int]:
    """Rows per column that still hold a value of pg_temp.<originals_table>(v), and how many columns were scanned.

    A text column matches on its whole value, an array on any element, a JSON document on any
    string anywhere inside it. Text merely containing an original (a name inside a sentence) is
    not found: list such free-text columns in the rules as 'text' or 'null'.
    """
    found: dict[str, int] = {}
    columns = scannable_columns(conn)
    originals = sql.SQL("(SELECT v FROM pg_temp.{})").format(sql.Identifier(originals_table))
    for schema, relation, column, shape in columns:
        ident = sql.Identifier(column)
        if shape == "text":
            condition = sql.SQL("pg_catalog.format('%s', {}) IN {}").format(ident, originals)
        elif shape == "array":
            condition = sql.SQL("EXISTS (SELECT 1 FROM unnest({}) e WHERE pg_catalog.format('%s', e) IN {})").format(
                ident, originals
            )
        else:
            condition = sql.SQL(
                "EXISTS (SELECT 1 FROM jsonb_path_query({}::jsonb, 'strict $.**') j"
                " WHERE jsonb_typeof(j) = 'string' AND (j #>> '{{}}') IN {})"
            ).format(ident, originals)
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {}").format(qualified(schema, relation), condition)
        ).fetchone()
        if row and row[0]:
            found[f"{schema}.{relation}.{column}"] = int(row[0])
    return found, len(columns)


def verify(conn: psycopg.Connection, values: Iterable[str]) -> tuple[dict[str, int], int]:
    """surviving_values for an explicit list of original values (blank ones ignored), read-only."""
    with conn.transaction() as transaction:
        conn.execute("CREATE TEMP TABLE stagecraft_check (v text PRIMARY KEY) ON COMMIT DROP")
        with conn.cursor() as cursor, cursor.copy("COPY pg_temp.stagecraft_check (v) FROM STDIN") as copy:
            for value in {v for v in values if v.strip()}:
                copy.write_row((value,))
        result = surviving_values(conn, "stagecraft_check")
        raise psycopg.Rollback(transaction)  # leaves the block quietly; the temp table goes with it
    return result
