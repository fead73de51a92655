"""The operations tool's backup command and CLI, against real Postgres, Redis and a GCS emulator."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool
from ops_fixtures import (
    APP_DB,
    OPS,
    OTHER_DB,
    PG_PASSWORD,
    REDIS_BACKUP_PASSWORD,
    PostgresServer,
    database_state,
    gcs_emulator,
    postgres_server,
    read_metrics,
    redis_server,
    seed_database,
    storage_client,
    write_settings,
)
from stagecraft_ops.__main__ import main

BUCKET = "acme-staging-backups"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        seed_database(server, APP_DB)
        seed_database(server, OTHER_DB)
        yield server


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    with gcs_emulator() as host:
        yield host


@pytest.fixture
def bucket(emulator: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    """A fresh bucket per test; the tool finds the emulator through STORAGE_EMULATOR_HOST."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    name = f"backups-{request.node.name.replace('_', '-')[:40].strip('-')}"
    return storage_client(emulator).create_bucket(name)


def settings_for(tmp_path: Path, pg: PostgresServer, bucket: Any, **overrides: Any) -> Path:
    postgres = {"port": pg.port, "databases": [APP_DB, OTHER_DB], **overrides.pop("postgres", {})}
    return write_settings(tmp_path, bucket=bucket.name, postgres=postgres, **overrides)


def manifest_of(bucket: Any) -> tuple[str, dict[str, Any]]:
    names = [blob.name for blob in bucket.list_blobs(prefix="manifests/")]
    assert len(names) == 1, names
    return names[0], json.loads(bucket.blob(names[0]).download_as_bytes())


def make_chroma(directory: Path) -> None:
    (directory / "0b1c").mkdir(parents=True)
    (directory / "chroma.sqlite3").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    (directory / "0b1c" / "data_level0.bin").write_bytes(os.urandom(4096))


def test_postgres_backup_uploads_dumps_whose_manifest_matches_the_database(
    tmp_path: Path, pg: PostgresServer, bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path, pg, bucket)
    assert main(["--settings", str(settings), "backup", "--only", "postgres", "--reason", "pre-migration"]) == 0

    name, manifest = manifest_of(bucket)
    assert manifest["complete"] is True and manifest["reason"] == "pre-migration" and manifest["stack"] == "staging"
    identifier = manifest["id"]
    assert name == f"manifests/{identifier[:4]}/{identifier[4:6]}/{identifier[6:8]}/{identifier}.json"
    artifacts = {artifact["name"]: artifact for artifact in manifest["artifacts"]}
    assert set(artifacts) == {f"postgres/{APP_DB}", f"postgres/{OTHER_DB}"}
    dump = artifacts[f"postgres/{APP_DB}"]
    assert dump["object"] == f"postgres/{identifier[:4]}/{identifier[4:6]}/{identifier[6:8]}/{identifier}-{APP_DB}.dump"
    content = bucket.blob(dump["object"]).download_as_bytes()
    assert content.startswith(b"PGDMP")  # custom format
    assert hashlib.sha256(content).hexdigest() == dump["sha256"] and len(content) == dump["bytes"]

    # The recorded inventory agrees with an independent look at the database.
    state = database_state(pg, APP_DB)
    tables = {f"{t['schema']}.{t['table']}": t for t in dump["database"]["tables"]}
    assert tables["public.customers"]["rows"] == state["public.customers"][0] == 300
    assert tables["public.orders"]["rows"] == state["public.orders"][0] == 630
    assert tables["public.Audit Log"]["rows"] == 25 and tables["public.empty_table"]["rows"] == 0
    assert tables["billing.invoices"]["rows"] == 60
    sequences = {
        f"{s['schema']}.{s['sequence']}": (s["last_value"], s["is_called"]) for s in dump["database"]["sequences"]
    }
    assert sequences["public.orders_id_seq"] == tuple(state["public.orders_id_seq"]) == (700, True)
    assert sequences["public.invoice_numbers"] == (5000, True)
    assert dump["database"]["owner"] == "acme_app"

    output = capsys.readouterr()
    assert PG_PASSWORD not in output.out + output.err
    assert list((tmp_path / "work").iterdir()) == []  # work files and the PGPASSFILE are gone


def test_checksums_change_with_content_but_not_with_row_order(tmp_path: Path, pg: PostgresServer, bucket: Any) -> None:
    """Two backups around an update of one value: only that table's checksum moves."""
    from stagecraft_ops import postgres as ops_postgres
    from stagecraft_ops.settings import load

    settings = load(str(settings_for(tmp_path, pg, bucket)))
    work = tmp_path / "w"
    work.mkdir()
    access = ops_postgres.Postgres(settings, work)
    try:
        with access.connect(APP_DB) as connection:
            before = {t.label: t for t in ops_postgres.table_stats(connection)}
        pg.query(APP_DB, 'UPDATE "Audit Log" SET t = \'changed\' WHERE "select" = 3')
        pg.query(APP_DB, "CLUSTER orders USING orders_pkey")  # physical order changes, content does not
        with access.connect(APP_DB) as connection:
            after = {t.label: t for t in ops_postgres.table_stats(connection)}
    finally:
        pg.query(APP_DB, 'UPDATE "Audit Log" SET t = \'entry 3\' WHERE "select" = 3')
        access.close()
    assert before["public.Audit Log"].rows == after["public.Audit Log"].rows
    assert before["public.Audit Log"].checksum != after["public.Audit Log"].checksum
    assert before["public.orders"] == after["public.orders"]


def test_full_backup_writes_metrics_promtool_accepts(tmp_path: Path, pg: PostgresServer, bucket: Any) -> None:
    with redis_server(tmp_path / "redis") as redis:
        redis.cli("SET", "session:1", "alice")
        make_chroma(tmp_path / "chroma")
        settings = settings_for(tmp_path, pg, bucket, redis={"port": redis.port})
        assert main(["--settings", str(settings), "backup", "--reason", "scheduled"]) == 0

    _, manifest = manifest_of(bucket)
    kinds = sorted(artifact["kind"] for artifact in manifest["artifacts"])
    assert kinds == ["chroma", "postgres", "postgres", "redis"]
    rdb = next(a for a in manifest["artifacts"] if a["kind"] == "redis")
    assert rdb["object"].endswith(f"{manifest['id']}-redis.rdb")
    assert bucket.blob(rdb["object"]).download_as_bytes().startswith(b"REDIS")

    prom = tmp_path / "metrics" / "stagecraft_backup.prom"
    values = read_metrics(prom)
    assert values["stagecraft_backup_last_run_success"] == 1
    assert (
        values["stagecraft_backup_last_success_timestamp_seconds"]
        == values["stagecraft_backup_last_run_timestamp_seconds"]
    )
    for artifact in manifest["artifacts"]:
        assert values[f'stagecraft_backup_artifact_bytes{{artifact="{artifact["name"]}"}}'] == artifact["bytes"]
    assert [p.name for p in prom.parent.iterdir()] == ["stagecraft_backup.prom"]  # no temp file left
    promtool = require_tool("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=prom.read_text(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_failing_component_leaves_the_others_backed_up_and_fails_the_run(
    tmp_path: Path, pg: PostgresServer, bucket: Any
) -> None:
    """Redis is down: Postgres and Chroma are still uploaded and listed, the run exits 1, the
    metrics say it failed and keep the previous success time."""
    make_chroma(tmp_path / "chroma")
    prom = tmp_path / "metrics" / "stagecraft_backup.prom"
    prom.parent.mkdir()
    prom.write_text(
        "stagecraft_backup_last_success_timestamp_seconds 1700000000\n"
        'stagecraft_backup_artifact_bytes{artifact="redis"} 1234\n'
    )
    settings = settings_for(tmp_path, pg, bucket)  # redis port 1: nothing listens
    assert main(["--settings", str(settings), "backup"]) == 1

    _, manifest = manifest_of(bucket)
    assert manifest["complete"] is False
    assert sorted(a["kind"] for a in manifest["artifacts"]) == ["chroma", "postgres", "postgres"]
    assert len(manifest["failures"]) == 1 and manifest["failures"][0].startswith("redis:")
    values = read_metrics(prom)
    assert values["stagecraft_backup_last_run_success"] == 0
    assert values["stagecraft_backup_last_success_timestamp_seconds"] == 1700000000
    assert values['stagecraft_backup_artifact_bytes{artifact="redis"}'] == 1234
    assert values['stagecraft_backup_artifact_bytes{artifact="chroma"}'] > 0


def test_redis_backup_user_needs_its_password(tmp_path: Path, pg: PostgresServer, bucket: Any) -> None:
    with redis_server(tmp_path / "redis") as redis:
        settings = settings_for(tmp_path, pg, bucket, redis={"port": redis.port})
        (tmp_path / "secrets" / "redis").write_text("wrong-password")
        assert main(["--settings", str(settings), "backup", "--only", "redis"]) == 1
    assert list(bucket.list_blobs()) == []  # no artifact, no manifest
    assert REDIS_BACKUP_PASSWORD not in (tmp_path / "metrics" / "stagecraft_backup.prom").read_text()


def test_an_unwritable_metrics_directory_fails_the_run_after_the_upload(
    tmp_path: Path, pg: PostgresServer, bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    make_chroma(tmp_path / "chroma")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    settings = settings_for(tmp_path, pg, bucket, textfile_dir=str(blocker / "metrics"))
    assert main(["--settings", str(settings), "backup", "--only", "chroma"]) == 1
    assert f"textfile_dir: cannot write {blocker / 'metrics'}/stagecraft_backup.prom" in capsys.readouterr().err
    manifest_of(bucket)  # the backup itself was completed


# ---------------------------------------------------------------------------------------------
# Settings and CLI


def _run(tmp_path: Path, document: Any, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bad.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return subprocess.run(
        [sys.executable, "-m", "stagecraft_ops", "--settings", str(path), *args],
        cwd=OPS,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _valid(tmp_path: Path) -> dict[str, Any]:
    return json.loads(write_settings(tmp_path).read_text())


@pytest.mark.parametrize(
    ("change", "key", "allowed"),
    [
        (lambda d: d["postgres"].update(port="5432"), "postgres.port", "integer from 1 to 65535"),
        (lambda d: d.pop("bucket"), "bucket", "is required"),
        (lambda d: d["schedule"].update(drill="sunday 3am"), "schedule.drill", "'<mon|tue|...|sun> HH:MM'"),
        (lambda d: d["schedule"].update(backup_utc="24:00"), "schedule.backup_utc", "HH:MM"),
        (lambda d: d["postgres"].update(drill_databases=["other"]), "postgres.drill_databases", "not in databases"),
        (lambda d: d["redis"].update(password="hunter2"), "redis.password", "not a known key"),
        (lambda d: d.update(prod="yes"), "prod", "true or false"),
        (lambda d: d.update(work_dir="tmp/ops"), "work_dir", "absolute path"),
    ],
)
def test_bad_settings_exit_2_with_one_line_naming_file_and_key(
    tmp_path: Path, change: Any, key: str, allowed: str
) -> None:
    document = _valid(tmp_path)
    change(document)
    result = _run(tmp_path, document, "backup")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"bad.json: {key}: " in lines[0] and allowed in lines[0]
    assert "Traceback" not in result.stderr


def test_a_bad_credentials_file_exits_2_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "gcp-key.json"
    key.write_text(json.dumps({"type": "authorized_user"}))
    settings = write_settings(tmp_path, credentials_file=str(key))
    assert main(["--settings", str(settings), "backup", "--only", "chroma"]) == 2
    assert f"ops.json: credentials_file: {key} is not a service account key" in capsys.readouterr().err
    assert read_metrics(tmp_path / "metrics" / "stagecraft_backup.prom")["stagecraft_backup_last_run_success"] == 0
    key.unlink()
    assert main(["--settings", str(settings), "drill"]) == 2
    assert f"credentials_file: cannot read {key}" in capsys.readouterr().err


def test_unreadable_settings_and_secret_files_exit_2(tmp_path: Path) -> None:
    assert "not valid JSON (line 1" in _run(tmp_path, "{nope", "health").stderr
    document = _valid(tmp_path)
    document["postgres"]["password_file"] = str(tmp_path / "missing")
    result = _run(tmp_path, document, "drill")
    assert result.returncode == 2
    assert f"postgres.password_file: cannot read {tmp_path / 'missing'}" in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "stagecraft_ops", "health"],
        cwd=OPS,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "OPS_SETTINGS_FILE"},
        timeout=60,
    )
    assert missing.returncode == 2 and "OPS_SETTINGS_FILE" in missing.stderr


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    document = _valid(tmp_path)
    result = _run(tmp_path, document, "backup", "--only", "postgres,mysql")
    assert result.returncode == 2 and "--only: 'postgres,mysql'" in result.stderr
    assert _run(tmp_path, document, "backup", "--reason", "because").returncode == 2
    assert _run(tmp_path, document, "restore", "--backup", "yesterday").returncode == 2


@pytest.mark.parametrize("command", ["backup", "restore", "drill", "serve", "health", None])
def test_help_describes_every_command_and_its_exit_codes(command: str | None) -> None:
    args = [command, "--help"] if command else ["--help"]
    result = subprocess.run(
        [sys.executable, "-m", "stagecraft_ops", *args], cwd=OPS, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "exit codes:" in result.stdout and "  2  bad settings or usage" in result.stdout
    assert result.stderr == ""


def test_settings_reads_environment_variable(tmp_path: Path) -> None:
    path = write_settings(tmp_path)
    (tmp_path / "heartbeat").touch()
    result = subprocess.run(
        [sys.executable, "-m", "stagecraft_ops", "health"],
        cwd=OPS,
        capture_output=True,
        text=True,
        env={**os.environ, "OPS_SETTINGS_FILE": str(path)},
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
