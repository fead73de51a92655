"""The operations tool's restore command: real Postgres, Redis and files, through a GCS emulator."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ops_fixtures import (
    APP_DB,
    OTHER_DB,
    PostgresServer,
    database_state,
    gcs_emulator,
    postgres_server,
    redis_server,
    seed_database,
    storage_client,
    write_settings,
)
from stagecraft_ops import backup
from stagecraft_ops.__main__ import main
from stagecraft_ops.settings import load


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def app_db(pg: PostgresServer) -> Iterator[PostgresServer]:
    """A freshly seeded app database for each test."""
    seed_database(pg, APP_DB)
    try:
        yield pg
    finally:
        pg.query("postgres", f"DROP DATABASE IF EXISTS {APP_DB} WITH (FORCE)")


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    with gcs_emulator() as host:
        yield host


@pytest.fixture
def bucket(emulator: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    return storage_client(emulator).create_bucket(f"r-{request.node.name.replace('_', '-')[:50].strip('-')}")


def settings_for(tmp_path: Path, pg: PostgresServer, bucket: Any, **overrides: Any) -> Path:
    postgres = {"port": pg.port, **overrides.pop("postgres", {})}
    return write_settings(tmp_path, bucket=bucket.name, postgres=postgres, **overrides)


def only_manifest(bucket: Any) -> str:
    names = [blob.name for blob in bucket.list_blobs(prefix="manifests/")]
    assert len(names) == 1, names
    return names[0]


def test_round_trip_latest_loses_no_row(tmp_path: Path, app_db: PostgresServer, bucket: Any) -> None:
    settings = settings_for(tmp_path, app_db, bucket)
    original = database_state(app_db)
    assert main(["--settings", str(settings), "backup", "--only", "postgres"]) == 0
    app_db.query("postgres", f"DROP DATABASE {APP_DB} WITH (FORCE)")
    assert not app_db.exists(APP_DB)

    assert main(["--settings", str(settings), "restore", "--backup", "latest", "--only", "postgres"]) == 0
    restored = database_state(app_db)
    assert restored == original  # every table's rows and content, every sequence, owner and grants
    assert restored["public.orders"][0] == 630 and restored["public.orders_id_seq"] == (700, True)
    assert "acme_app=CTc/acme_app" in restored["acl"]  # the database grants came back with --create
    # The next insert continues after the old values instead of colliding with restored rows.
    app_db.query(APP_DB, "INSERT INTO orders (customer_id, amount) VALUES (1, 1)")
    assert app_db.query(APP_DB, "SELECT max(id) FROM orders") == [(701,)]


def test_restore_by_manifest_name_goes_back_to_that_backup(
    tmp_path: Path, app_db: PostgresServer, bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load(str(settings_for(tmp_path, app_db, bucket)))
    original = database_state(app_db)
    first = backup.run(settings, "manual", ("postgres",), clock=lambda: datetime(2026, 11, 25, 2, 0, tzinfo=UTC))
    app_db.query(APP_DB, "INSERT INTO customers (name, created) VALUES ('late', now())")
    app_db.query(APP_DB, "DELETE FROM orders WHERE id < 100")
    later = backup.run(settings, "manual", ("postgres",), clock=lambda: datetime(2026, 11, 26, 2, 0, tzinfo=UTC))
    assert first.object == "manifests/2026/11/25/20261125T020000Z.json"
    assert later.object == "manifests/2026/11/26/20261126T020000Z.json"

    capsys.readouterr()
    assert main(["--settings", settings.source, "restore", "--backup", first.object, "--only", "postgres"]) == 0
    assert database_state(app_db) == original
    out = capsys.readouterr().out
    assert f"restored from gs://{bucket.name}/{first.object}" in out
    assert "5 tables, 1015 rows and 3 sequences match the backup" in out

    # "latest" is the later backup, with its own contents.
    assert main(["--settings", settings.source, "restore", "--only", "postgres"]) == 0
    assert app_db.query(APP_DB, "SELECT count(*) FROM customers WHERE name = 'late'") == [(1,)]


def test_a_corrupted_artifact_is_refused_before_anything_is_touched(
    tmp_path: Path, app_db: PostgresServer, bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path, app_db, bucket)
    assert main(["--settings", str(settings), "backup", "--only", "postgres"]) == 0
    manifest = json.loads(bucket.blob(only_manifest(bucket)).download_as_bytes())
    dump_object = manifest["artifacts"][0]["object"]
    blob = bucket.blob(dump_object)
    content = bytearray(blob.download_as_bytes())
    content[len(content) // 2] ^= 0xFF  # one flipped byte in the middle of the dump
    blob.upload_from_string(bytes(content))
    app_db.query(APP_DB, "INSERT INTO customers (name, created) VALUES ('after the backup', now())")
    before = database_state(app_db)
    oid = app_db.query("postgres", "SELECT oid FROM pg_database WHERE datname = %s", [APP_DB])

    capsys.readouterr()
    assert main(["--settings", str(settings), "restore", "--only", "postgres"]) == 1
    error = capsys.readouterr().err
    assert f"gs://{bucket.name}/{dump_object}: sha256" in error and "nothing was restored" in error
    assert database_state(app_db) == before  # the same database (not dropped and recreated), unchanged
    assert app_db.query("postgres", "SELECT oid FROM pg_database WHERE datname = %s", [APP_DB]) == oid


def test_prod_restores_need_the_stack_name_confirmed(
    tmp_path: Path, app_db: PostgresServer, bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path, app_db, bucket, stack="prod", environment="prod", prod=True)
    assert main(["--settings", str(settings), "backup", "--only", "postgres"]) == 0
    app_db.query(APP_DB, "INSERT INTO customers (name, created) VALUES ('after the backup', now())")
    capsys.readouterr()

    assert main(["--settings", str(settings), "restore", "--only", "postgres"]) == 2
    assert "Pass --confirm-prod prod" in capsys.readouterr().err
    assert main(["--settings", str(settings), "restore", "--only", "postgres", "--confirm-prod", "staging"]) == 2
    assert "--confirm-prod: 'staging' is not this stack ('prod')" in capsys.readouterr().err
    assert app_db.query(APP_DB, "SELECT count(*) FROM customers") == [(301,)]  # untouched

    assert main(["--settings", str(settings), "restore", "--only", "postgres", "--confirm-prod", "prod"]) == 0
    assert app_db.query(APP_DB, "SELECT count(*) FROM customers") == [(300,)]


def test_restore_reports_a_database_that_does_not_match_its_manifest(
    tmp_path: Path, app_db: PostgresServer, bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest whose counts no longer describe the dump: the restore runs, then says which
    table differs and exits 1."""
    settings = settings_for(tmp_path, app_db, bucket)
    assert main(["--settings", str(settings), "backup", "--only", "postgres"]) == 0
    name = only_manifest(bucket)
    manifest = json.loads(bucket.blob(name).download_as_bytes())
    for table in manifest["artifacts"][0]["database"]["tables"]:
        if table["table"] == "orders":
            table["rows"] += 1
    bucket.blob(name).upload_from_string(json.dumps(manifest))
    capsys.readouterr()
    assert main(["--settings", str(settings), "restore", "--only", "postgres"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH postgres/acme_staging: table public.orders: 631 rows in the backup, 630 restored" in out


def test_restore_one_database_leaves_the_others_alone(
    tmp_path: Path, app_db: PostgresServer, bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_database(app_db, OTHER_DB)
    try:
        settings = settings_for(
            tmp_path, app_db, bucket, postgres={"port": app_db.port, "databases": [APP_DB, OTHER_DB]}
        )
        assert main(["--settings", str(settings), "backup", "--only", "postgres"]) == 0
        for database in (APP_DB, OTHER_DB):
            app_db.query(database, 'DELETE FROM "Audit Log"')
        args = ["--settings", str(settings), "restore", "--only", "postgres"]
        assert main([*args, "--database", "acme_prod"]) == 2
        assert "--database: 'acme_prod' is not one of" in capsys.readouterr().err
        assert main([*args, "--database", OTHER_DB]) == 0
        assert app_db.query(OTHER_DB, 'SELECT count(*) FROM "Audit Log"') == [(25,)]
        assert app_db.query(APP_DB, 'SELECT count(*) FROM "Audit Log"') == [(0,)]
    finally:
        app_db.query("postgres", f"DROP DATABASE IF EXISTS {OTHER_DB} WITH (FORCE)")


# ---------------------------------------------------------------------------------------------
# Redis and Chroma: offline restores into data directories


def test_redis_round_trip_into_a_fresh_data_dir(tmp_path: Path, pg: PostgresServer, bucket: Any) -> None:
    with redis_server(tmp_path / "redis") as source:
        for index in range(200):
            source.cli("SET", f"session:{index}", f"user-{index}")
        source.cli("HSET", "profile:1", "name", "alice", "plan", "pro")
        settings = settings_for(tmp_path, pg, bucket, redis={"port": source.port})
        assert main(["--settings", str(settings), "backup", "--only", "redis"]) == 0

        target = tmp_path / "restored"
        target.mkdir()
        # Restoring while the configured Redis still runs is refused: it would overwrite the files.
        assert main(["--settings", str(settings), "restore", "--only", "redis", "--redis-data-dir", str(target)]) == 2
        assert list(target.iterdir()) == []

    # A leftover append-only directory would win over the RDB at start; it must be set aside.
    stale = target / "appendonlydir"
    stale.mkdir()
    (stale / "appendonly.aof.1.base.rdb").write_bytes(b"stale")
    (stale / "appendonly.aof.manifest").write_text("file appendonly.aof.1.base.rdb seq 1 type b\n")
    assert main(["--settings", str(settings), "restore", "--only", "redis", "--redis-data-dir", str(target)]) == 0
    aside = [entry for entry in target.iterdir() if entry.name.startswith(".stagecraft-replaced-")]
    assert len(aside) == 1 and (aside[0] / "appendonlydir" / "appendonly.aof.1.base.rdb").read_bytes() == b"stale"
    assert (target / "dump.rdb").read_bytes().startswith(b"REDIS")

    with redis_server(tmp_path / "second", data=target) as second:  # appendonly yes, like the stack's
        assert second.cli("GET", "session:199") == "user-199"
        assert second.cli("DBSIZE") == "201"
        assert second.cli("HGET", "profile:1", "plan") == "pro"


def _chroma_tree(root: Path) -> None:
    root.mkdir()
    database = sqlite3.connect(root / "chroma.sqlite3")
    database.execute("CREATE TABLE embeddings (id INTEGER PRIMARY KEY, doc TEXT)")
    database.executemany("INSERT INTO embeddings (doc) VALUES (?)", [(f"document {i}",) for i in range(500)])
    database.commit()
    database.close()
    segment = root / "6f1c2a9e-segment"
    segment.mkdir()
    for name in ("data_level0.bin", "length.bin", "link_lists.bin"):
        (segment / name).write_bytes(os.urandom(4096))
    # Past 8 MiB the client switches to a resumable upload; the emulator must take that too.
    (segment / "header.bin").write_bytes(os.urandom(9 * 1024 * 1024))
    (root / "empty-dir").mkdir()


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        path.relative_to(root).as_posix(): (path.read_bytes() if path.is_file() else None)
        for path in sorted(root.rglob("*"))
        if not path.relative_to(root).as_posix().startswith(".stagecraft-replaced-")
    }


def test_chroma_round_trips_byte_for_byte(tmp_path: Path, pg: PostgresServer, bucket: Any) -> None:
    source = tmp_path / "chroma"
    _chroma_tree(source)
    settings = settings_for(tmp_path, pg, bucket)
    assert main(["--settings", str(settings), "backup", "--only", "chroma"]) == 0

    assert main(["--settings", str(settings), "restore", "--only", "chroma"]) == 2  # no --chroma-data-dir
    target = tmp_path / "restored"
    target.mkdir()
    (target / "old.sqlite3").write_bytes(b"previous data")
    assert main(["--settings", str(settings), "restore", "--only", "chroma", "--chroma-data-dir", str(target)]) == 0
    assert _tree(target) == _tree(source)
    aside = next(target.glob(".stagecraft-replaced-*"))
    assert (aside / "old.sqlite3").read_bytes() == b"previous data"
    count = sqlite3.connect(target / "chroma.sqlite3").execute("SELECT count(*) FROM embeddings").fetchone()
    assert count == (500,)


def test_chroma_archive_with_an_entry_outside_the_directory_is_refused(tmp_path: Path) -> None:
    import tarfile

    from stagecraft_ops import chroma
    from stagecraft_ops.errors import OperationError

    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../outside")
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(OperationError, match="outside the data directory"):
        chroma.extract(evil, target, "20261126T000000Z")
    assert not (tmp_path / "outside").exists() and list(target.iterdir()) == []
