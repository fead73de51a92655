"""The long-running service: a daily backup, a weekly (or daily) restore drill, a heartbeat.

Each job has a slot in UTC. A slot is due once the clock passes it and stays due for
``grace_minutes`` (so a restart, or a backup running long past the drill's slot, does not lose
it); each slot runs at most once. After a restart, slots before the job's last success in its
metrics file count as done, so an interrupted or failed run gets one more attempt within the
grace period. A failed run is logged and shows in the metrics; the loop goes on.

The heartbeat file is touched every loop (at most 30 s apart) and every 30 s while a job runs;
``health`` passes while it is younger than 120 s. The clock and the sleep are injectable.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from stagecraft_ops import metrics
from stagecraft_ops.errors import EXIT_FAILED, EXIT_OK, OperationError, UsageError, log
from stagecraft_ops.runtime import Clock, iso, utc_now
from stagecraft_ops.settings import Settings, Slot, read_secret

HEARTBEAT_S = 30.0
HEALTHY_S = 120.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def latest_slot(slot: Slot, now: datetime) -> datetime:
    """The most recent time at or before ``now`` that ``slot`` names."""
    candidate = now.replace(hour=slot.hour, minute=slot.minute, second=0, microsecond=0)
    if slot.weekday is None:
        return candidate if candidate <= now else candidate - timedelta(days=1)
    candidate -= timedelta(days=(now.weekday() - slot.weekday) % 7)
    return candidate if candidate <= now else candidate - timedelta(days=7)


def next_slot(slot: Slot, now: datetime) -> datetime:
    """The first time after ``now`` that ``slot`` names."""
    return latest_slot(slot, now) + timedelta(days=1 if slot.weekday is None else 7)


@dataclass
class Job:
    name: str
    slot: Slot
    run: Callable[[], object]
    done_through: datetime = EPOCH


class Terminated(BaseException):
    """SIGTERM arrived while a job ran; unwinds the job so its cleanup runs."""


@contextmanager
def heartbeat_while(path: Path) -> Iterator[None]:
    """Touch ``path`` every 30 s from a helper thread while the body runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                touch(path)
            except OSError:
                pass  # logged by the loop, which touches it too

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


class Service:
    """The scheduler loop; ``clock``, ``sleep`` and the jobs are injectable for tests."""

    def __init__(
        self,
        settings: Settings,
        jobs: list[Job],
        clock: Clock = utc_now,
        sleep: Callable[[float], object] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.clock = clock
        self.stop = stop or threading.Event()
        self.sleep = sleep or self.stop.wait
        self.grace = timedelta(minutes=settings.schedule.grace_minutes)
        self.heartbeat = Path(settings.heartbeat_file)
        self.job_running = False

    def due(self, job: Job, now: datetime) -> datetime | None:
        slot = latest_slot(job.slot, now)
        return slot if slot > job.done_through and now - slot <= self.grace else None

    def run_job(self, job: Job, slot: datetime) -> None:
        log("serve", f"{job.name}: slot {iso(slot)} is due")
        self.job_running = True
        try:
            with heartbeat_while(self.heartbeat):
                job.run()
            log("serve", f"{job.name}: done")
        except (OperationError, UsageError) as error:
            log("serve", f"{job.name}: FAILED: {error}")
        except Exception as error:  # noqa: BLE001 - a failing run must never stop the service
            log("serve", f"{job.name}: FAILED unexpectedly: {type(error).__name__}: {error}")
        finally:
            self.job_running = False
            job.done_through = slot

    def step(self) -> float:
        """Run every due job, touch the heartbeat; return how long to sleep."""
        for job in self.jobs:
            slot = self.due(job, self.clock())
            if slot is not None:
                self.run_job(job, slot)
        try:
            touch(self.heartbeat)
        except OSError as error:  # the healthcheck turns unhealthy; the schedule itself goes on
            log("serve", f"cannot touch the heartbeat file {self.heartbeat}: {error.strerror}")
        now = self.clock()
        upcoming = min(next_slot(job.slot, now) for job in self.jobs)
        return max(1.0, min(HEARTBEAT_S, (upcoming - now).total_seconds()))

    def run(self) -> None:
        """Loop until ``stop`` is set."""
        for job in self.jobs:
            log("serve", f"{job.name}: next slot {iso(next_slot(job.slot, self.clock()))}")
        while not self.stop.is_set():
            delay = self.step()
            if not self.stop.is_set():
                self.sleep(delay)


def _last_success(settings: Settings, file_name: str, prefix: str) -> datetime:
    found = metrics.read(Path(settings.textfile_dir) / file_name, prefix).last_success
    return datetime.fromtimestamp(found, UTC) if found is not None else EPOCH


def default_jobs(settings: Settings, clock: Clock = utc_now) -> list[Job]:
    """The real jobs: the scheduled backup and the drill."""
    from stagecraft_ops import backup, drill  # the client libraries, only where a job can run

    return [
        Job(
            name="backup",
            slot=settings.schedule.backup,
            run=lambda: backup.run(settings, reason="scheduled", clock=clock),
            done_through=_last_success(settings, metrics.BACKUP_FILE, metrics.BACKUP_PREFIX),
        ),
        Job(
            name="drill",
            slot=settings.schedule.drill,
            run=lambda: drill.run(settings, clock=clock),
            done_through=_last_success(settings, metrics.DRILL_FILE, metrics.DRILL_PREFIX),
        ),
    ]


def serve(settings: Settings) -> int:
    """Run the service until SIGTERM or SIGINT; exits 0 when stopped that way."""
    # Unreadable secret files are a deployment mistake: say so at start, not at 02:00.
    read_secret(settings, "postgres.password_file", settings.postgres.password_file)
    read_secret(settings, "redis.password_file", settings.redis.password_file)
    service = Service(settings, default_jobs(settings))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log("serve", f"{signal.Signals(signum).name} received; stopping")
        service.stop.set()
        if service.job_running:
            raise Terminated

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log("serve", f"stack {settings.stack}: heartbeat {settings.heartbeat_file}, metrics in {settings.textfile_dir}")
    try:
        service.run()
    except Terminated:
        log("serve", "the running job was interrupted and cleaned up")
    log("serve", "stopped")
    return EXIT_OK


def health(settings: Settings, now: Callable[[], float] = time.time) -> int:
    """0 while the heartbeat file is younger than 120 s, else 1 (the container's healthcheck)."""
    path = Path(settings.heartbeat_file)
    try:
        age = now() - path.stat().st_mtime
    except OSError:
        print(f"unhealthy: no heartbeat file {path}")
        return EXIT_FAILED
    if age >= HEALTHY_S:
        print(f"unhealthy: heartbeat {path} is {age:.0f} s old (limit {HEALTHY_S:.0f} s)")
        return EXIT_FAILED
    print(f"healthy: heartbeat {age:.0f} s old")
    return EXIT_OK
