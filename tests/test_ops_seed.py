"""Staging seed data on a real Postgres 15: anonymize a production-like copy, load its dump, generate fixtures.

Every check after a command uses its own queries, not the tool's code: which original values are
left anywhere, orphaned foreign keys, uniqueness, NULL and row counts, byte-identical table copies.
"""

from __future__ import annotations

import json
import os
import pwd
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import ROOT, free_port, require_tool

sys.path.insert(0, str(ROOT / "images" / "ops"))

from stagecraft_ops import anonymize as anon
from stagecraft_ops import seed

BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER_PASSWORD = "seed-Super-Pass-1"
APP_PASSWORD = "seed-App-Pass-2"
SALT = "staging-salt-0123456789abcdef"
OTHER_SALT = "another-stack-salt-fedcba9876543210"

SCHEMA = """
CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email varchar(120) NOT NULL UNIQUE,
    full_name text,
    phone varchar(32),
    bio text,
    last_login_ip inet,
    referred_by varchar(120) REFERENCES users (email),
    tags text[],
    profile jsonb,
    updated_at timestamptz NOT NULL DEFAULT '2024-01-01T00:00:00Z'
);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    contact_email varchar(120) REFERENCES users (email) ON UPDATE NO ACTION,
    note text,
    total numeric(10, 2) NOT NULL
);
CREATE TABLE subscriptions (
    email varchar(120) NOT NULL REFERENCES users (email) ON UPDATE CASCADE,
    topic text NOT NULL,
    PRIMARY KEY (email, topic)
);
CREATE TABLE invites (
    id integer PRIMARY KEY,
    inviter_email varchar(120) REFERENCES users (email) ON UPDATE SET NULL
);
CREATE TABLE products (id integer PRIMARY KEY, name text NOT NULL, description text);
CREATE MATERIALIZED VIEW user_directory AS SELECT id, email, full_name FROM users;
"""
TABLES = {  # table -> ORDER BY for byte comparisons
    "users": "id",
    "orders": "id",
    "subscriptions": "email, topic",
    "invites": "id",
    "products": "id",
    "user_directory": "id",
}
RULES = {
    "version": 1,
    "keep_values": ["n/a"],
    "tables": {
        "public.users": {
            "email": "email",
            "full_name": "name",
            "phone": "phone",
            "bio": "text",
            "last_login_ip": "null",
            "referred_by": "email",
        },
        "public.orders": {"contact_email": "email"},
        "public.subscriptions": {"email": "email"},
        "public.invites": {"inviter_email": "email"},
    },
}
RULE_COLUMNS = [(t.split(".")[1], c) for t, cols in RULES["tables"].items() for c in cols]  # type: ignore[attr-defined]
FIRST = ["Anna", "Ben", "Carla", "David", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jonas"]
LAST = ["Meyer", "Okafor", "Silva", "Nguyen", "Kowalski", "Haddad", "Larsen", "Rossi"]


# --------------------------------------------------------------------------------------------
# A real Postgres 15 on 127.0.0.1


def _as_postgres(command: list[str]) -> list[str]:
    """Postgres refuses to run as root; CI runs as root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class Server:
    port: int
    root: Path
    env: dict[str, str]

    def url(self, database: str, user: str = "postgres", password: str = SUPERUSER_PASSWORD) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def url_file(self, directory: Path, database: str, **kwargs: str) -> Path:
        path = directory / f"url-{database}-{kwargs.get('user', 'postgres')}"
        path.write_text(self.url(database, **kwargs) + "\n")
        path.chmod(0o400)
        return path

    def connect(self, database: str = "postgres", **kwargs: str) -> Any:
        return psycopg.connect(self.url(database, **kwargs), autocommit=True)

    def execute(self, database: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect(database) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def copy_database(self, source: str, target: str) -> str:
        self.execute("postgres", f'DROP DATABASE IF EXISTS "{target}"')
        self.execute("postgres", f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
        return target

    def dump(self, database: str, path: Path) -> Path:
        connection = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        subprocess.run(
            [str(BIN / "pg_dump"), *connection, "-Fc", "-f", str(path), database],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        return path


@pytest.fixture(scope="module")
def pg() -> Iterator[Server]:
    require_tool(str(BIN / "postgres"))
    # Not under pytest's 0700 temp tree: the postgres user must reach it.
    root = Path(tempfile.mkdtemp(prefix="stagecraft-seed-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    pwfile = root / "pwfile"
    pwfile.write_text(SUPERUSER_PASSWORD + "\n")
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (root, sockets, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
        root.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    initdb = [str(BIN / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}"]
    subprocess.run(
        _as_postgres([*initdb, "--auth-host=scram-sha-256", "--auth-local=scram-sha-256"]),
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    port = free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [str(BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o", options, "start"]
    subprocess.run(_as_postgres(start), check=True, capture_output=True, env=env, timeout=120)
    pgpass = root / "pgpass"
    pgpass.write_text(f"127.0.0.1:{port}:*:postgres:{SUPERUSER_PASSWORD}\n")
    pgpass.chmod(0o600)
    server = Server(port, root, {**env, "PGPASSFILE": str(pgpass)})
    try:
        _build_source(server)
        yield server
    finally:
        subprocess.run(
            _as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            env=env,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def _build_source(server: Server) -> None:
    """A production-like database 'source': 300 users with repeated names and NULLs, 900 orders."""
    server.execute("postgres", f"CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}'")
    server.execute("postgres", "CREATE DATABASE source")
    rng = random.Random(7)  # noqa: S311 - reproducible test data, not a secret
    with server.connect("source") as conn:
        conn.execute(SCHEMA)
        emails: list[str] = []
        for i in range(300):
            first, last = rng.choice(FIRST), rng.choice(LAST)  # 80 names over 300 users: many repeats
            email = f"{first}.{last}.{i}@mail.example.com".lower()
            phone = None if i % 5 == 0 else ("n/a" if i % 29 == 0 else f"+1 (415) 555-{i:04d}")
            bio = None if i % 4 == 0 else ("" if i % 31 == 0 else f"Hi, I am {first} from {rng.choice(LAST)}ville.")
            ip = None if i % 3 == 0 else f"10.0.{i // 200}.{i % 200 + 1}"
            referred_by = emails[rng.randrange(len(emails))] if emails and i % 2 else None
            conn.execute(
                "INSERT INTO users (email, full_name, phone, bio, last_login_ip, referred_by, tags, profile)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    email,
                    None if i % 11 == 0 else f"{first} {last}",
                    phone,
                    bio,
                    ip,
                    referred_by,
                    ["vip"] if i % 7 == 0 else ["beta", "eu"],
                    json.dumps({"theme": "dark" if i % 2 else "light", "newsletter": bool(i % 3)}),
                ),
            )
            emails.append(email)
        for i in range(900):
            user = rng.randrange(300)
            conn.execute(
                "INSERT INTO orders (user_id, contact_email, note, total) VALUES (%s, %s, %s, %s)",
                (user + 1, None if i % 10 == 0 else emails[user], rng.choice(["Leave at door", None, "Gift"]), i),
            )
        for i in range(0, 300, 2):
            conn.execute("INSERT INTO subscriptions VALUES (%s, 'news'), (%s, 'offers')", (emails[i], emails[i]))
        for i in range(100):
            conn.execute("INSERT INTO invites VALUES (%s, %s)", (i, emails[(i * 7) % 300]))
        for i in range(50):
            conn.execute("INSERT INTO products VALUES (%s, %s, %s)", (i, f"Product {i}", f"A fine thing, model {i}"))
        conn.execute("REFRESH MATERIALIZED VIEW user_directory")


@pytest.fixture
def files(tmp_path: Path) -> Callable[[str, Any], Path]:
    """Write a JSON document or text under tmp_path and return its path."""

    def write(name: str, content: Any) -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    return write


@pytest.fixture(autouse=True)
def no_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STAGECRAFT_ENVIRONMENT", raising=False)


def table_bytes(server: Server, database: str) -> dict[str, bytes]:
    """Every table's full contents as COPY text, in a fixed order: equal bytes mean equal data."""
    return {table: table_bytes_of(server, database, table) for table in TABLES}


def table_bytes_of(server: Server, database: str, table: str) -> bytes:
    with server.connect(database) as conn, conn.cursor() as cursor:
        with cursor.copy(f"COPY (SELECT * FROM {table} ORDER BY {TABLES[table]}) TO STDOUT") as copy:
            return b"".join(bytes(chunk) for chunk in copy)


def originals(server: Server) -> set[str]:
    """Every non-blank value of the rules' columns in the source, as text (placeholders left out)."""
    values: set[str] = set()
    for table, column in RULE_COLUMNS:
        for (value,) in server.execute("source", f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL"):
            values.add(str(value))
    return {v for v in values if v.strip() and v != "n/a"}


def all_text_values(server: Server, database: str) -> dict[str, set[str]]:
    """Every string in every text, text[] and JSON column of every table and materialized view."""
    found: dict[str, set[str]] = {}
    columns = server.execute(
        database,
        "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind IN ('r', 'm')"
        " AND a.attnum > 0 AND NOT a.attisdropped",
    )
    for schema, relation, column, type_name in columns:
        if type_name not in ("text", "character varying", "text[]", "jsonb"):
            continue
        strings: set[str] = set()
        for (value,) in server.execute(database, f'SELECT "{column}" FROM "{schema}"."{relation}"'):
            stack = [value]
            while stack:
                item = stack.pop()
                if isinstance(item, str):
                    strings.add(item)
                elif isinstance(item, list):
                    stack.extend(item)
                elif isinstance(item, dict):
                    stack.extend(item.values())
        found[f"{schema}.{relation}.{column}"] = strings
    return found


def orphans(server: Server, database: str) -> dict[str, int]:
    return {
        name: server.execute(database, query)[0][0]
        for name, query in {
            "orders.user_id": "SELECT count(*) FROM orders o LEFT JOIN users u ON u.id = o.user_id WHERE u.id IS NULL",
            "orders.contact_email": "SELECT count(*) FROM orders o LEFT JOIN users u ON u.email = o.contact_email"
            " WHERE o.contact_email IS NOT NULL AND u.id IS NULL",
            "users.referred_by": "SELECT count(*) FROM users c LEFT JOIN users p ON p.email = c.referred_by"
            " WHERE c.referred_by IS NOT NULL AND p.id IS NULL",
            "subscriptions.email": "SELECT count(*) FROM subscriptions s LEFT JOIN users u ON u.email = s.email"
            " WHERE u.id IS NULL",
            "invites.inviter_email": "SELECT count(*) FROM invites i LEFT JOIN users u ON u.email = i.inviter_email"
            " WHERE i.inviter_email IS NOT NULL AND u.id IS NULL",
        }.items()
    }


def revalidate_foreign_keys(server: Server, database: str) -> list[str]:
    """Drop and re-add every foreign key NOT VALID, then VALIDATE it (rolled back): Postgres rechecks every row."""
    with server.connect(database) as conn:
        keys = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f'"
        ).fetchall()
        with conn.transaction() as transaction:
            for table, name, definition in keys:
                conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
                conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition} NOT VALID")
                conn.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")
            raise psycopg.Rollback(transaction)
    return [name for _, name, _ in keys]


def run(*argv: str | Path) -> int:
    return seed.main([str(a) for a in argv])


def anonymize_copy(
    pg: Server, tmp_path: Path, name: str, salt: str = SALT, rules: Any = None, *extra: str
) -> tuple[int, str]:
    """A fresh copy of 'source' called `name`, anonymized by the CLI; returns (exit code, database)."""
    database = pg.copy_database("source", name)
    rules_file = tmp_path / f"rules-{name}.json"
    rules_file.write_text(json.dumps(rules or RULES))
    salt_file = tmp_path / f"salt-{name}"
    salt_file.write_text(salt + "\n")
    code = run(
        "anonymize",
        "--database-url-file",
        pg.url_file(tmp_path, database),
        "--rules",
        rules_file,
        "--salt-file",
        salt_file,
        "--environment",
        "scratch",
        *extra,
    )
    return code, database


# --------------------------------------------------------------------------------------------
# anonymize


def test_anonymize_leaves_no_original_and_keeps_every_relationship(
    pg: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = table_bytes(pg, "source")
    code, db = anonymize_copy(pg, tmp_path, "anon_main")
    out, err = capsys.readouterr()
    assert code == 0, err
    assert SUPERUSER_PASSWORD not in out + err

    # No original value of any rules column is left in any text, array or JSON column, the view included.
    secret = originals(pg)
    assert len(secret) > 700
    for column, strings in all_text_values(pg, db).items():
        assert not (strings & secret), f"{column} still holds original values"
    assert not any(value in out + err for value in secret)

    # Relationships: no orphans, and Postgres itself re-checks every key from scratch.
    assert orphans(pg, db) == dict.fromkeys(orphans(pg, "source"), 0)
    assert len(revalidate_foreign_keys(pg, db)) == 5
    assert pg.execute(db, "SELECT bool_or(condeferrable) FROM pg_constraint WHERE contype = 'f'") == [(False,)]
    same_user = "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id WHERE o.contact_email <> u.email"
    assert pg.execute(db, same_user) == pg.execute("source", same_user) == [(0,)]

    # Counts: rows, NULLs, distinct values (unique stays unique, repeated names stay repeated).
    for table in ("users", "orders", "subscriptions", "invites", "products"):
        assert pg.execute(db, f"SELECT count(*) FROM {table}") == pg.execute("source", f"SELECT count(*) FROM {table}")
    for table, column in RULE_COLUMNS:
        stats = f"SELECT count(*) FILTER (WHERE {column} IS NULL), count(DISTINCT {column}) FROM {table}"
        if column == "last_login_ip":
            assert pg.execute(db, stats) == [(300, 0)]
        else:
            assert pg.execute(db, stats) == pg.execute("source", stats), f"{table}.{column}"
    assert pg.execute(db, "SELECT count(*) = count(DISTINCT email) FROM users") == [(True,)]
    pairs = pg.execute(db, "SELECT id, full_name FROM users WHERE full_name IS NOT NULL ORDER BY id")
    source_names = dict(pg.execute("source", "SELECT id, full_name FROM users"))
    mapping: dict[str, set[str]] = {}
    for user_id, name in pairs:
        mapping.setdefault(source_names[user_id], set()).add(name)
    assert all(len(names) == 1 for names in mapping.values())  # one real name -> one pseudonym
    assert len({next(iter(n)) for n in mapping.values()}) == len(mapping)  # two real names -> two pseudonyms

    # Shapes: reserved mail domain, phone layout kept and unroutable, placeholders and blanks untouched.
    assert pg.execute(db, "SELECT count(*) FROM users WHERE email NOT LIKE '%@example.invalid'") == [(0,)]
    phones = dict(pg.execute(db, "SELECT id, phone FROM users WHERE phone IS NOT NULL"))
    for user_id, original in pg.execute("source", "SELECT id, phone FROM users WHERE phone IS NOT NULL"):
        if original == "n/a":
            assert phones[user_id] == "n/a"
        else:
            new = phones[user_id]
            assert len(new) == len(original) and new != original
            assert [c for c in new if not c.isdigit()] == [c for c in original if not c.isdigit()]
            assert "".join(c for c in new if c.isdigit()).startswith("999")
    blank = "SELECT count(*) FROM users WHERE bio = ''"
    assert pg.execute(db, blank) == pg.execute("source", blank) != [(0,)]

    # Only the rules' columns changed; the user trigger did not fire and is enabled again.
    after = table_bytes(pg, db)
    untouched = "SELECT id, tags, profile, updated_at FROM users ORDER BY id"
    assert pg.execute(db, untouched) == pg.execute("source", untouched)
    assert pg.execute(db, "SELECT id, user_id, note, total FROM orders ORDER BY id") == pg.execute(
        "source", "SELECT id, user_id, note, total FROM orders ORDER BY id"
    )
    assert after["products"] == before["products"]
    assert pg.execute(db, "SELECT tgenabled FROM pg_trigger WHERE tgname = 'users_touch'") == [("O",)]
    indexes = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
    assert pg.execute(db, indexes) == pg.execute("source", indexes)  # the rewrite's temporary indexes are gone


def test_same_salt_gives_identical_data_and_another_salt_other_data(pg: Server, tmp_path: Path) -> None:
    assert anonymize_copy(pg, tmp_path, "anon_a")[0] == 0
    assert anonymize_copy(pg, tmp_path, "anon_b")[0] == 0
    assert anonymize_copy(pg, tmp_path, "anon_other", OTHER_SALT)[0] == 0
    assert table_bytes(pg, "anon_a") == table_bytes(pg, "anon_b")
    ours = dict(pg.execute("anon_a", "SELECT id, email FROM users"))
    theirs = dict(pg.execute("anon_other", "SELECT id, email FROM users"))
    assert all(ours[key] != theirs[key] for key in ours)


def test_second_run_is_a_noop_with_the_same_salt_and_refused_with_another(
    pg: Server, tmp_path: Path, files: Callable[[str, Any], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, db = anonymize_copy(pg, tmp_path, "anon_twice")
    assert code == 0
    first = table_bytes(pg, db)
    common = ["--database-url-file", pg.url_file(tmp_path, db), "--rules", files("r.json", RULES)]
    capsys.readouterr()
    assert run("anonymize", *common, "--salt-file", files("s1", SALT), "--environment", "scratch") == 0
    assert "already anonymized" in capsys.readouterr().out
    assert run("anonymize", *common, "--salt-file", files("s2", OTHER_SALT), "--environment", "scratch") == 3
    assert "fresh copy" in capsys.readouterr().err
    assert table_bytes(pg, db) == first


def test_dry_run_checks_everything_and_changes_nothing(pg: Server, tmp_path: Path) -> None:
    code, db = anonymize_copy(pg, tmp_path, "anon_dry", SALT, None, "--dry-run")
    assert code == 0
    assert table_bytes(pg, db) == table_bytes(pg, "source")
    assert pg.execute(db, "SELECT to_regclass('stagecraft_seed.anonymized')") == [(None,)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["tables"]["public.users"].update(nickname="name"), "tables.public.users.nickname: no such column"),
        (lambda r: r["tables"].update({"public.ghosts": {"x": "name"}}), "tables.public.ghosts: no such table"),
        (lambda r: r["tables"].pop("public.orders"), "tables.public.orders.contact_email: references a rules column"),
        (lambda r: r["tables"]["public.users"].update(id="name"), "needs a text column"),
    ],
    ids=["missing-column", "missing-table", "unlisted-foreign-key", "wrong-type"],
)
def test_rules_that_do_not_match_the_database_fail_before_any_change(
    pg: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Callable[[Any], None], message: str
) -> None:
    rules = json.loads(json.dumps(RULES))
    change(rules)
    code, db = anonymize_copy(pg, tmp_path, "anon_bad", SALT, rules)
    assert code == 2
    assert message in capsys.readouterr().err
    assert table_bytes(pg, db) == table_bytes(pg, "source")
    assert pg.execute(db, "SELECT to_regclass('stagecraft_seed.anonymized')") == [(None,)]


def test_a_copy_of_personal_data_in_an_unlisted_column_blocks_the_commit(
    pg: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = pg.copy_database("source", "anon_leak")
    pg.execute(db, "UPDATE products SET description = (SELECT email FROM users WHERE id = 5) WHERE id = 3")
    pg.execute(db, "UPDATE users SET profile = profile || jsonb_build_object('nick', full_name) WHERE id = 7")
    before = table_bytes(pg, db)
    rules_file = tmp_path / "leak.json"
    rules_file.write_text(json.dumps(RULES))
    salt_file = tmp_path / "leak-salt"
    salt_file.write_text(SALT)
    code = run("anonymize", "--database-url-file", pg.url_file(tmp_path, db), "--rules", rules_file,
               "--salt-file", salt_file, "--environment", "scratch")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "public.products.description (1 rows)" in err and "public.users.profile (1 rows)" in err
    assert table_bytes(pg, db) == before


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ("{not json", "not valid JSON"),
        ({"version": 2, "tables": {}}, "version: must be 1"),
        ({"version": 1, "tables": {"public.users": {"email": "mail"}}}, "tables.public.users.email: unknown kind"),
        ({"version": 1, "tables": {"users": {"email": "email"}}}, "tables.users: name tables as schema.table"),
        ({"version": 1, "tables": {"public.users": {"email": "email"}}, "extra": 1}, "extra: unknown key"),
        ({"version": 1, "tables": {"public.users": {}}}, "tables.public.users: must be a non-empty object"),
    ],
)
def test_a_bad_rules_file_is_one_line_naming_file_and_key(
    tmp_path: Path, files: Callable[[str, Any], Path], capsys: pytest.CaptureFixture[str], content: Any, key: str
) -> None:
    rules = files("rules.json", content)
    nowhere = files("url", "postgresql://x:y@127.0.0.1:1/none")  # never reached: the file is checked first
    code = run("anonymize", "--database-url-file", nowhere, "--rules", rules, "--salt-file", files("s", SALT),
               "--environment", "staging")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and str(rules) in err and key in err


# --------------------------------------------------------------------------------------------
# production guard, secrets


@pytest.mark.parametrize("command", ["anonymize", "verify-anonymized", "load", "generate"])
def test_every_command_refuses_production(
    pg: Server, tmp_path: Path, files: Callable[[str, Any], Path], capsys: pytest.CaptureFixture[str], command: str
) -> None:
    db = pg.copy_database("source", "prod_guard")
    before = table_bytes(pg, db)
    extra = {
        "anonymize": ["--rules", files("r.json", RULES), "--salt-file", files("s", SALT)],
        "verify-anonymized": ["--source-values", files("v.jsonl", '"x"\n')],
        "load": ["--dump", files("d.dump", "")],
        "generate": ["--spec", files("p.json", {"version": 1, "tables": {}}), "--salt-file", files("s", SALT)],
    }[command]
    url = pg.url_file(tmp_path, db)
    assert run(command, "--database-url-file", url, "--environment", "prod", *extra) == 4
    assert "never goes into production" in capsys.readouterr().err
    settings = files("settings.json", {"environment": "production"})
    assert run(command, "--database-url-file", url, "--settings", settings, *extra) == 4
    assert table_bytes(pg, db) == before


def test_production_is_refused_from_the_environment_variable_and_from_the_database(
    pg: Server, tmp_path: Path, files: Callable[[str, Any], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = pg.copy_database("source", "prod_declared")
    args = ["anonymize", "--rules", files("r.json", RULES), "--salt-file", files("s", SALT)]
    url = pg.url_file(tmp_path, db)
    monkeypatch.setenv("STAGECRAFT_ENVIRONMENT", "prod")
    assert run(*args, "--database-url-file", url) == 4
    monkeypatch.delenv("STAGECRAFT_ENVIRONMENT")
    # The job says staging, but the database itself says prod (ALTER DATABASE ... SET).
    pg.execute("postgres", f"ALTER DATABASE {db} SET stagecraft.environment = 'prod'")
    assert run(*args, "--database-url-file", url, "--environment", "staging") == 4
    assert table_bytes(pg, db) == table_bytes(pg, "source")
    assert run(*args, "--database-url-file", url) == 2  # no environment at all: refused as bad usage


def test_connection_failures_name_the_file_but_never_print_the_password(
    pg: Server, tmp_path: Path, files: Callable[[str, Any], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong-url"
    wrong.write_text(pg.url("source", password="Wrong-Password-77"))
    code = run("verify-anonymized", "--database-url-file", wrong, "--source-values", files("v", '"a"\n'),
               "--environment", "staging")  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1
    assert str(wrong) in err and "Wrong-Password-77" not in out + err


def test_pseudonyms_stay_unique_and_avoid_real_values_even_when_short() -> None:
    values = {f"Person {i}" for i in range(400)}
    forbidden = values | {anon.pseudonym("name", b"k" * 16, v, 0, 6) for v in list(values)[:50]}
    mapping = anon.build_mapping("name", b"k" * 16, values, forbidden, 6)
    assert len(set(mapping.values())) == len(values)
    assert not set(mapping.values()) & forbidden
    assert all(len(v) <= 6 for v in mapping.values())
    assert mapping == anon.build_mapping("name", b"k" * 16, sorted(values, reverse=True), forbidden, 6)


# --------------------------------------------------------------------------------------------
# verify-anonymized


def test_verify_finds_original_values_and_passes_a_clean_copy(
    pg: Server, tmp_path: Path, files: Callable[[str, Any], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, db = anonymize_copy(pg, tmp_path, "anon_verify")
    assert code == 0
    values = files("values.jsonl", "".join(json.dumps(v) + "\n" for v in sorted(originals(pg))))
    args = ["verify-anonymized", "--source-values", values, "--environment", "scratch"]
    capsys.readouterr()
    assert run(*args, "--database-url-file", pg.url_file(tmp_path, db)) == 0
    assert run(*args, "--database-url-file", pg.url_file(tmp_path, "source")) == 1
    assert "public.users.email: 300 rows hold an original value" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# load


@pytest.fixture(scope="module")
def dumps(pg: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Archives: v1 and v2 anonymized under two salts, and a raw copy that was never anonymized."""
    directory = tmp_path_factory.mktemp("dumps")
    assert anonymize_copy(pg, directory, "dump_v1")[0] == 0
    assert anonymize_copy(pg, directory, "dump_v2", OTHER_SALT)[0] == 0
    return {
        "v1": pg.dump("dump_v1", directory / "v1.dump"),
        "v2": pg.dump("dump_v2", directory / "v2.dump"),
        "raw": pg.dump("source", directory / "raw.dump"),
    }


def staging_database(pg: Server, name: str) -> str:
    """An empty staging database whose tables belong to the non-superuser app role, as migrations make them."""
    pg.execute("postgres", f"DROP DATABASE IF EXISTS {name}")
    pg.execute("postgres", f"CREATE DATABASE {name} OWNER app")
    pg.execute(name, "ALTER SCHEMA public OWNER TO app")
    with pg.connect(name, user="app", password=APP_PASSWORD) as conn:
        conn.execute(SCHEMA)
    return name


def test_load_is_idempotent_per_version_and_a_new_version_replaces_the_data(
    pg: Server, tmp_path: Path, dumps: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db = staging_database(pg, "staging_load")
    url = pg.url_file(tmp_path, db, user="app", password=APP_PASSWORD)

    def load(dump: str, version: str, *extra: str) -> int:
        return run("load", "--database-url-file", url, "--dump", dumps[dump], "--seed-version", version,
                   "--environment", "staging", "--pg-restore", str(BIN / "pg_restore"), *extra)  # fmt: skip

    assert load("v1", "2024-06") == 0
    loaded = table_bytes(pg, db)
    v1 = table_bytes(pg, "dump_v1")
    assert loaded == v1  # every table, and the materialized view refreshed from them
    assert len(revalidate_foreign_keys(pg, db)) == 5
    # The dumped identity positions came along: the app can insert right away.
    pg.execute(db, "INSERT INTO users (email) VALUES ('tester@example.invalid')")

    capsys.readouterr()
    assert load("v1", "2024-06") == 0
    assert "already loaded; nothing to do" in capsys.readouterr().out
    assert pg.execute(db, "SELECT count(*) FROM users WHERE email = 'tester@example.invalid'") == [(1,)]

    assert load("v2", "2024-07") == 0
    loaded, v2 = table_bytes(pg, db), table_bytes(pg, "dump_v2")
    assert loaded == {**v2, "products": loaded["products"]}  # the tester's product went with the old seed
    assert loaded["products"] == v2["products"]
    assert orphans(pg, db) == dict.fromkeys(orphans(pg, db), 0)
    marker = "SELECT version, current FROM stagecraft_seed.loaded ORDER BY version"
    assert pg.execute(db, marker) == [("2024-06", False), ("2024-07", True)]

    # A version name already used for other content, and a dump that was never anonymized: refused.
    assert load("v1", "2024-07") == 3
    assert load("raw", "2024-08") == 3
    assert "only anonymized copies may be loaded" in capsys.readouterr().err
    # A load that fails halfway leaves the previous seed whole.
    pg.execute(db, "ALTER TABLE orders ADD CONSTRAINT small_totals CHECK (total < 800) NOT VALID")
    assert load("v1", "2024-09") == 1
    assert table_bytes(pg, db)["users"] == v2["users"]
    assert pg.execute(db, "SELECT version FROM stagecraft_seed.loaded WHERE current") == [("2024-07",)]


def test_load_refuses_a_database_that_lacks_a_dumped_table_unless_it_is_excluded(
    pg: Server, tmp_path: Path, dumps: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db = staging_database(pg, "staging_short")
    pg.execute(db, "DROP TABLE products")
    url = pg.url_file(tmp_path, db, user="app", password=APP_PASSWORD)
    code = run("load", "--database-url-file", url, "--dump", dumps["v1"], "--environment", "staging",
               "--pg-restore", str(BIN / "pg_restore"))  # fmt: skip
    assert code == 3
    assert "public.products" in capsys.readouterr().err
    assert pg.execute(db, "SELECT count(*) FROM users") == [(0,)]
    # Leaving that table out of the load is the way through.
    code = run("load", "--database-url-file", url, "--dump", dumps["v1"], "--environment", "staging",
               "--pg-restore", str(BIN / "pg_restore"), "--exclude-table", "public.products")  # fmt: skip
    assert code == 0
    assert table_bytes_of(pg, db, "users") == table_bytes(pg, "dump_v1")["users"]


# --------------------------------------------------------------------------------------------
# generate

SPEC = {
    "version": 1,
    "tables": {
        "public.users": {
            "rows": 120,
            "columns": {
                "id": {"gen": "sequence", "start": 1},
                "email": {"gen": "email"},
                "full_name": {"gen": "name"},
                "phone": {"gen": "phone", "nulls": 0.2},
                "bio": {"gen": "text", "min_length": 10, "max_length": 80, "nulls": 0.3},
            },
        },
        "public.orders": {
            "rows": 400,
            "columns": {
                "id": {"gen": "sequence", "start": 1},
                "user_id": {"gen": "ref", "table": "public.users", "column": "id"},
                "contact_email": {"gen": "ref", "table": "public.users", "column": "email"},
                "note": {"gen": "choice", "values": ["Gift", "Leave at door"], "nulls": 0.5},
                "total": {"gen": "int", "min": 1, "max": 500},
            },
        },
        "public.subscriptions": {
            "rows": 0,
            "columns": {
                "email": {"gen": "ref", "table": "public.users", "column": "email"},
                "topic": {"gen": "const", "value": "news"},
            },
        },
        "public.invites": {
            "rows": 50,
            "columns": {
                "id": {"gen": "sequence"},
                "inviter_email": {"gen": "ref", "table": "public.users", "column": "email", "nulls": 0.1},
            },
        },
        "public.products": {
            "rows": 30,
            "columns": {"id": {"gen": "sequence"}, "name": {"gen": "text", "min_length": 5, "max_length": 20}},
        },
    },
}


def test_generate_is_deterministic_idempotent_and_keeps_keys(
    pg: Server, tmp_path: Path, files: Callable[[str, Any], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db = staging_database(pg, "staging_gen")
    url = pg.url_file(tmp_path, db, user="app", password=APP_PASSWORD)
    args = ["generate", "--database-url-file", url, "--spec", files("spec.json", SPEC), "--environment", "staging"]
    salt = files("salt", SALT)

    assert run(*args, "--salt-file", salt) == 0
    first = table_bytes(pg, db)
    counts = "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM orders), (SELECT count(*) FROM products)"
    assert pg.execute(db, counts) == [(120, 400, 30)]
    assert orphans(pg, db) == dict.fromkeys(orphans(pg, db), 0)
    assert len(revalidate_foreign_keys(pg, db)) == 5
    same_user = "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id WHERE o.contact_email <> u.email"
    assert pg.execute(db, same_user) == [(0,)]
    assert pg.execute(db, "SELECT count(*) FILTER (WHERE phone IS NULL) BETWEEN 10 AND 40 FROM users") == [(True,)]

    capsys.readouterr()
    assert run(*args, "--salt-file", salt) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert run(*args, "--salt-file", salt, "--force") == 0  # written again: same bytes, no duplicates
    assert table_bytes(pg, db) == first
    assert pg.execute(db, counts) == [(120, 400, 30)]
    # Sequences moved past the generated keys: the application inserts without clashing.
    pg.execute(db, "INSERT INTO orders (user_id, total) VALUES (1, 9)")
    pg.execute(db, "DELETE FROM orders WHERE id > 400")

    assert run(*args, "--salt-file", files("other", OTHER_SALT)) == 0
    assert table_bytes(pg, db)["users"] != first["users"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["tables"]["public.orders"]["columns"]["user_id"].update(table="public.nope"), "user_id.table"),
        (lambda s: s["tables"]["public.users"]["columns"].update(age={"gen": "int", "min": 1, "max": 2}), "no such"),
        (lambda s: s["tables"]["public.orders"]["columns"].pop("total"), "orders.columns.total: is NOT NULL"),
        (lambda s: s["tables"]["public.users"]["columns"]["email"].update(gen="uuid"), "unknown generator"),
        (lambda s: s["tables"].pop("public.subscriptions"), "public.subscriptions"),
    ],
    ids=["ref-unknown-table", "missing-column", "not-null-uncovered", "unknown-generator", "dangling-referrer"],
)
def test_a_bad_spec_is_reported_before_any_change(
    pg: Server,
    tmp_path: Path,
    files: Callable[[str, Any], Path],
    capsys: pytest.CaptureFixture[str],
    change: Callable[[Any], None],
    message: str,
) -> None:
    db = staging_database(pg, "staging_badspec")
    pg.execute(db, "INSERT INTO products VALUES (1, 'kept', NULL)")
    spec = json.loads(json.dumps(SPEC))
    change(spec)
    url = pg.url_file(tmp_path, db, user="app", password=APP_PASSWORD)
    code = run("generate", "--database-url-file", url, "--spec", files("bad.json", spec),
               "--salt-file", files("s", SALT), "--environment", "staging")  # fmt: skip
    assert code in (2, 3)
    assert message in capsys.readouterr().err
    assert pg.execute(db, "SELECT name FROM products") == [("kept",)]
