"""The restore drill on real Postgres and a GCS emulator; the scheduler under an injected clock;
the service's heartbeat, healthcheck and SIGTERM handling."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ops_fixtures import (
    APP_DB,
    OPS,
    PostgresServer,
    gcs_emulator,
    postgres_server,
    read_metrics,
    seed_database,
    storage_client,
    write_settings,
)
from stagecraft_ops import metrics, schedule
from stagecraft_ops.__main__ import main
from stagecraft_ops.settings import load


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        seed_database(server, APP_DB)
        yield server


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    with gcs_emulator() as host:
        yield host


@pytest.fixture
def bucket(emulator: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    return storage_client(emulator).create_bucket(f"d-{request.node.name.replace('_', '-')[:50].strip('-')}")


@pytest.fixture
def backed_up(tmp_path: Path, pg: PostgresServer, bucket: Any) -> tuple[Path, str, dict[str, Any]]:
    """Settings, and one good Postgres backup: its manifest's name and content."""
    settings = write_settings(tmp_path, bucket=bucket.name, postgres={"port": pg.port})
    assert main(["--settings", str(settings), "backup", "--only", "postgres"]) == 0
    names = [blob.name for blob in bucket.list_blobs(prefix="manifests/")]
    return settings, names[0], json.loads(bucket.blob(names[0]).download_as_bytes())


def scratch_databases(pg: PostgresServer) -> list[tuple[Any, ...]]:
    return pg.query("postgres", "SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{APP_DB}_drill_%"])


def drill_metrics(tmp_path: Path) -> dict[str, float]:
    return read_metrics(tmp_path / "metrics" / "stagecraft_restore_drill.prom")


def test_drill_passes_on_a_good_backup_and_drops_its_scratch_database(
    tmp_path: Path, pg: PostgresServer, backed_up: tuple[Path, str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, name, _ = backed_up
    # A scratch copy an interrupted drill left behind is cleaned up too.
    pg.query("postgres", f"CREATE DATABASE {APP_DB}_drill_20200101t000000z")
    capsys.readouterr()
    assert main(["--settings", str(settings), "drill"]) == 0
    out = capsys.readouterr().out
    assert f"restore drill of {name} passed: postgres/{APP_DB}" in out
    assert f"dropped {APP_DB}_drill_20200101t000000z, left behind by an interrupted drill" in out
    assert scratch_databases(pg) == []
    values = drill_metrics(tmp_path)
    assert values["stagecraft_restore_drill_last_run_success"] == 1
    assert values["stagecraft_restore_drill_last_success_timestamp_seconds"] == pytest.approx(time.time(), abs=60)


def _previous_success(tmp_path: Path) -> None:
    prom = tmp_path / "metrics" / "stagecraft_restore_drill.prom"
    prom.parent.mkdir(exist_ok=True)
    prom.write_text("stagecraft_restore_drill_last_success_timestamp_seconds 1700000000\n")


def test_drill_fails_when_the_manifest_counts_no_longer_match(
    tmp_path: Path, pg: PostgresServer, bucket: Any, backed_up: tuple[Path, str, dict[str, Any]]
) -> None:
    settings, name, manifest = backed_up
    for table in manifest["artifacts"][0]["database"]["tables"]:
        if table["table"] == "customers":
            table["rows"] = 299
    bucket.blob(name).upload_from_string(json.dumps(manifest))
    _previous_success(tmp_path)

    result = subprocess.run(
        [sys.executable, "-m", "stagecraft_ops", "--settings", str(settings), "drill"],
        cwd=OPS,
        env={**os.environ, "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "postgres/acme_staging: table public.customers: 299 rows in the backup, 300 restored" in result.stderr
    assert scratch_databases(pg) == []
    values = drill_metrics(tmp_path)
    assert values["stagecraft_restore_drill_last_run_success"] == 0
    assert values["stagecraft_restore_drill_last_success_timestamp_seconds"] == 1700000000


def test_drill_fails_on_a_dump_that_no_longer_restores(
    tmp_path: Path,
    pg: PostgresServer,
    bucket: Any,
    backed_up: tuple[Path, str, dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A truncated dump whose manifest entry was updated to match: the checksum check passes,
    pg_restore fails, and the drill says so."""
    settings, name, manifest = backed_up
    artifact = manifest["artifacts"][0]
    truncated = bucket.blob(artifact["object"]).download_as_bytes()[: artifact["bytes"] * 2 // 3]
    bucket.blob(artifact["object"]).upload_from_string(truncated)
    artifact["sha256"], artifact["bytes"] = hashlib.sha256(truncated).hexdigest(), len(truncated)
    bucket.blob(name).upload_from_string(json.dumps(manifest))
    _previous_success(tmp_path)

    capsys.readouterr()
    assert main(["--settings", str(settings), "drill"]) == 1
    error = capsys.readouterr().err
    assert f"postgres/acme_staging: pg_restore into {APP_DB}_drill_" in error and "failed (exit 1)" in error
    assert "pg_restore: error:" in error
    assert scratch_databases(pg) == []
    values = drill_metrics(tmp_path)
    assert values["stagecraft_restore_drill_last_run_success"] == 0
    assert values["stagecraft_restore_drill_last_success_timestamp_seconds"] == 1700000000


def test_drill_with_no_backup_fails_and_says_so(tmp_path: Path, pg: PostgresServer, bucket: Any) -> None:
    settings = write_settings(tmp_path, bucket=bucket.name, postgres={"port": pg.port})
    assert main(["--settings", str(settings), "drill"]) == 1
    assert drill_metrics(tmp_path)["stagecraft_restore_drill_last_run_success"] == 0


def test_a_backup_under_concurrent_writes_matches_its_own_dump(tmp_path: Path, pg: PostgresServer, bucket: Any) -> None:
    """Rows and sequence values keep changing while the backup runs; the manifest still
    describes exactly what the dump restores, so the drill passes. (Counting outside the dump's
    snapshot, or reading sequences live, would record values the dump does not hold.)"""
    settings = write_settings(tmp_path, bucket=bucket.name, postgres={"port": pg.port})
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        with pg.connect(APP_DB) as connection:
            while not stop.is_set():
                connection.execute("INSERT INTO orders (customer_id, amount) VALUES (1, 1)")
                connection.execute("SELECT nextval('invoice_numbers')")
                written[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while written[0] < 20:
            time.sleep(0.01)
        before = written[0]
        assert main(["--settings", str(settings), "backup", "--only", "postgres"]) == 0
        during = written[0] - before
    finally:
        stop.set()
        thread.join()
    assert during > 10  # the writer really wrote while the backup ran
    assert main(["--settings", str(settings), "drill"]) == 0
    assert scratch_databases(pg) == []


# ---------------------------------------------------------------------------------------------
# The scheduler, driven by an injected clock


class FakeClock:
    """Time that moves only when the service sleeps (or a job takes time)."""

    def __init__(self, start: datetime, end: datetime, stop: Any) -> None:
        self.now = start
        self.end = end
        self.stop = stop

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert 0 < seconds <= 30  # the heartbeat is never more than 30 s old
        self.now += timedelta(seconds=seconds)
        if self.now >= self.end:
            self.stop.set()


def _service(
    settings_path: Path, start: datetime, days: float, jobs: list[schedule.Job] | None = None
) -> tuple[schedule.Service, FakeClock, dict[str, list[datetime]]]:
    settings = load(str(settings_path))
    stop = threading.Event()
    clock = FakeClock(start, start + timedelta(days=days), stop)
    runs: dict[str, list[datetime]] = {"backup": [], "drill": []}
    if jobs is None:
        jobs = [
            schedule.Job("backup", settings.schedule.backup, lambda: runs["backup"].append(clock())),
            schedule.Job("drill", settings.schedule.drill, lambda: runs["drill"].append(clock())),
        ]
    return schedule.Service(settings, jobs, clock=clock, sleep=clock.sleep, stop=stop), clock, runs


MONDAY = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


def test_a_simulated_week_runs_one_backup_a_day_and_one_drill(tmp_path: Path) -> None:
    service, _clock, runs = _service(write_settings(tmp_path), MONDAY, days=7)
    service.run()
    assert runs["backup"] == [MONDAY + timedelta(days=day, hours=2) for day in range(7)]
    assert runs["drill"] == [datetime(2026, 11, 29, 3, 0, tzinfo=UTC)]  # Sunday 03:00
    assert (tmp_path / "heartbeat").exists()


def test_a_late_start_catches_up_within_the_grace_period_only(tmp_path: Path) -> None:
    settings = write_settings(tmp_path, schedule={"drill": "daily 03:00", "grace_minutes": 60})
    service, _clock, runs = _service(settings, MONDAY + timedelta(hours=2, minutes=30), days=0.1)
    service.run()
    assert runs["backup"] == [MONDAY + timedelta(hours=2, minutes=30)]  # at once: 30 min late
    assert runs["drill"] == [MONDAY + timedelta(hours=3)]

    service, _clock, runs = _service(settings, MONDAY + timedelta(hours=4, minutes=1), days=0.5)
    service.run()
    assert runs == {"backup": [], "drill": []}  # both slots are more than 60 min old


def test_a_restart_does_not_repeat_a_backup_that_succeeded(tmp_path: Path) -> None:
    """The real jobs read their last success from the metrics files, so a restart at 02:20 after
    the 02:00 backup succeeded does not back up again (a failed one would get another attempt)."""
    settings_path = write_settings(tmp_path)
    finished = MONDAY + timedelta(hours=2, minutes=5)
    metrics.record_run(str(tmp_path / "metrics"), "backup", finished.timestamp(), 300, True)
    settings = load(str(settings_path))
    jobs = schedule.default_jobs(settings)
    assert jobs[0].done_through == finished
    service, _clock, _runs = _service(settings_path, MONDAY + timedelta(hours=2, minutes=20), days=0.01, jobs=jobs)
    assert service.due(jobs[0], MONDAY + timedelta(hours=2, minutes=20)) is None
    assert service.due(jobs[0], MONDAY + timedelta(days=1, hours=2)) == MONDAY + timedelta(days=1, hours=2)


def test_a_failing_backup_is_recorded_and_the_loop_goes_on(tmp_path: Path, bucket: Any) -> None:
    """The real backup job against servers that are down: each day's run fails, the metrics say
    so, and the service keeps running and tries again the next day."""
    settings_path = write_settings(tmp_path, bucket=bucket.name, schedule={"drill": "daily 03:00"})
    settings = load(str(settings_path))
    holder: dict[str, FakeClock] = {}
    jobs = schedule.default_jobs(settings, clock=lambda: holder["clock"]())
    service, clock, _runs = _service(settings_path, MONDAY, days=2, jobs=jobs)
    holder["clock"] = clock
    service.run()

    backup_values = read_metrics(tmp_path / "metrics" / "stagecraft_backup.prom")
    assert backup_values["stagecraft_backup_last_run_success"] == 0
    # The last attempt was the second day's, so the first failure did not stop the loop.
    assert (
        backup_values["stagecraft_backup_last_run_timestamp_seconds"]
        == (MONDAY + timedelta(days=1, hours=2)).timestamp()
    )
    assert "stagecraft_backup_last_success_timestamp_seconds" not in backup_values
    drill_values = drill_metrics(tmp_path)
    assert drill_values["stagecraft_restore_drill_last_run_success"] == 0
    assert (
        drill_values["stagecraft_restore_drill_last_run_timestamp_seconds"]
        == (MONDAY + timedelta(days=1, hours=3)).timestamp()
    )


def test_serve_heartbeats_passes_health_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    far = (now + timedelta(hours=12)).strftime("%H:%M")  # nothing falls due while the test runs
    settings = write_settings(tmp_path, schedule={"backup_utc": far, "drill": f"daily {far}"})
    heartbeat = tmp_path / "heartbeat"
    command = [sys.executable, "-m", "stagecraft_ops", "--settings", str(settings)]
    assert subprocess.run([*command, "health"], cwd=OPS, capture_output=True, timeout=60).returncode == 1

    service = subprocess.Popen([*command, "serve"], cwd=OPS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not heartbeat.exists() and time.monotonic() < deadline and service.poll() is None:
            time.sleep(0.05)
        assert heartbeat.exists(), service.stderr.read() if service.poll() is not None else "no heartbeat"
        health = subprocess.run([*command, "health"], cwd=OPS, capture_output=True, text=True, timeout=60)
        assert health.returncode == 0, health.stdout
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=30)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    assert service.returncode == 0, err
    assert "SIGTERM received; stopping" in out and out.rstrip().endswith("serve: stopped")
    assert "Traceback" not in err

    stale = time.time() - 121
    os.utime(heartbeat, (stale, stale))
    health = subprocess.run([*command, "health"], cwd=OPS, capture_output=True, text=True, timeout=60)
    assert health.returncode == 1 and "is 121 s old" in health.stdout


def test_sigterm_during_a_backup_stops_it_and_cleans_up(tmp_path: Path, bucket: Any) -> None:
    """The backup slot is due at start; Redis accepts the connection and never answers, so the
    backup hangs in redis-cli. SIGTERM ends redis-cli, removes the work files, exits 0."""
    stalled = socket.socket()
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(1)
    now = datetime.now(UTC)
    (tmp_path / "chroma").mkdir()
    settings = write_settings(
        tmp_path,
        bucket=bucket.name,
        redis={"port": stalled.getsockname()[1]},
        schedule={"backup_utc": now.strftime("%H:%M"), "drill": f"daily {(now + timedelta(hours=12)):%H:%M}"},
    )
    service = subprocess.Popen(
        [sys.executable, "-m", "stagecraft_ops", "--settings", str(settings), "serve"],
        cwd=OPS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in service.stdout or ()], daemon=True).start()
    try:
        stalled.settimeout(30)
        connection, _ = stalled.accept()  # redis-cli is connected and waiting for the RDB
        work = list((tmp_path / "work").iterdir())
        assert len(work) == 1 and work[0].name.startswith("backup-")
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)
        connection.settimeout(10)
        assert connection.recv(1024 * 1024) is not None  # drains what redis-cli sent
        assert connection.recv(1024) == b""  # redis-cli is gone: the connection is closed
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
        stalled.close()
    output = []
    while not lines.empty():
        output.append(lines.get())
    text = "".join(output)
    assert service.returncode == 0, (service.stderr.read() if service.stderr else "") + text
    assert "backup: slot" in text and "the running job was interrupted and cleaned up" in text
    assert list((tmp_path / "work").iterdir()) == []
