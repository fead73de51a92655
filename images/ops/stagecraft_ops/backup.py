"""The backup command: every artifact dumped, hashed and uploaded, then the manifest, then metrics.

Artifacts are produced one at a time and deleted locally once uploaded, so the work directory
needs room for the largest single artifact. A component that fails does not stop the others (a
broken Redis must not cost the day's Postgres backup): the manifest then lists what was backed
up, ``complete`` is false and ``failures`` says what was not, and the run counts as failed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from stagecraft_ops import __version__, chroma, metrics, postgres, redis
from stagecraft_ops.errors import OperationError, UsageError, log
from stagecraft_ops.manifest import Artifact, DatabaseInfo, Manifest, artifact_object, backup_id, sha256_file
from stagecraft_ops.runtime import COMPONENTS, Clock, iso, utc_now, workspace
from stagecraft_ops.settings import Settings
from stagecraft_ops.storage import Bucket

Task = tuple[str, Callable[[], Artifact]]


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


class _Run:
    """One backup run: where files go and how they are uploaded."""

    def __init__(self, settings: Settings, bucket: Bucket, work: Path, identifier: str) -> None:
        self.settings = settings
        self.bucket = bucket
        self.work = work
        self.identifier = identifier
        self._pg: postgres.Postgres | None = None

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()

    def upload(
        self,
        path: Path,
        kind: str,
        suffix: str,
        label: str,
        database: DatabaseInfo | None = None,
        files: int | None = None,
    ) -> Artifact:
        digest = sha256_file(path)
        size = path.stat().st_size
        name = artifact_object(kind, self.identifier, suffix)
        self.bucket.upload(path, name)
        path.unlink()
        log("backup", f"{label}: uploaded {self.bucket.url(name)} ({_size(size)}, sha256 {digest})")
        return Artifact(kind=kind, name=label, object=name, sha256=digest, bytes=size, database=database, files=files)

    def postgres(self, database: str) -> Artifact:
        if self._pg is None:  # reads the password file on first use only
            self._pg = postgres.Postgres(self.settings, self.work)
        path = self.work / f"{database}.dump"
        info = postgres.dump_database(self._pg, database, path)
        rows = sum(table.rows for table in info.tables)
        log(
            "backup",
            f"postgres/{database}: dumped {len(info.tables)} tables, {rows} rows, {len(info.sequences)} sequences "
            f"in one snapshot",
        )
        return self.upload(path, "postgres", f"{database}.dump", f"postgres/{database}", database=info)

    def redis(self) -> Artifact:
        path = self.work / "redis.rdb"
        redis.fetch_rdb(self.settings, path)
        log("backup", f"redis: RDB snapshot from {self.settings.redis.host}:{self.settings.redis.port}")
        return self.upload(path, "redis", "redis.rdb", "redis")

    def chroma(self) -> Artifact:
        path = self.work / "chroma.tar.gz"
        files = chroma.archive(Path(self.settings.chroma.data_dir), path)
        log("backup", f"chroma: archived {files} files of {self.settings.chroma.data_dir} (crash-consistent)")
        return self.upload(path, "chroma", "chroma.tar.gz", "chroma", files=files)


def run(settings: Settings, reason: str, only: tuple[str, ...] | None = None, clock: Clock = utc_now) -> Manifest:
    """Back up ``only`` these components (default all); returns the uploaded manifest.

    Raises OperationError (or UsageError for a settings problem such as an unreadable secret
    file) when anything failed; the metrics file records the run either way."""
    components = only or COMPONENTS
    started = clock()
    identifier = backup_id(started)
    manifest = Manifest(
        id=identifier,
        stack=settings.stack,
        environment=settings.environment,
        bucket=settings.bucket,
        reason=reason,
        tool_version=__version__,
        started=iso(started),
    )
    log(
        "backup",
        f"{identifier}: {', '.join(components)} of stack {settings.stack} to gs://{settings.bucket} ({reason})",
    )
    succeeded = False
    usage_problem: UsageError | None = None
    try:
        with workspace(settings, f"backup-{identifier}") as work:
            bucket = Bucket(settings)
            current = _Run(settings, bucket, work, identifier)
            try:
                for label, task in _tasks(settings, current, components):
                    try:
                        manifest.artifacts.append(task())
                    except (OperationError, UsageError) as error:
                        if isinstance(error, UsageError):
                            usage_problem = error
                        manifest.failures.append(f"{label}: {error}")
                        log("backup", f"{label}: FAILED: {error}")
            finally:
                current.close()
            manifest.complete = not manifest.failures
            if manifest.artifacts:
                manifest.finished = iso(clock())
                manifest_path = work / "manifest.json"
                manifest_path.write_text(manifest.to_json(), encoding="utf-8")
                bucket.upload(manifest_path, manifest.object, content_type="application/json")
                log("backup", f"manifest: uploaded {bucket.url(manifest.object)} ({len(manifest.artifacts)} artifacts)")
        succeeded = manifest.complete
    finally:
        finished = clock()
        sizes = {artifact.name: artifact.bytes for artifact in manifest.artifacts}
        metrics_error = metrics.record_logged(
            settings.textfile_dir,
            "backup",
            finished.timestamp(),
            (finished - started).total_seconds(),
            succeeded,
            sizes,
        )
    if not succeeded:
        summary = f"{len(manifest.failures)} of {len(manifest.failures) + len(manifest.artifacts)} artifacts failed"
        if usage_problem is not None:
            raise UsageError(f"{usage_problem} ({summary})")
        raise OperationError(f"backup {identifier} is incomplete: {summary}")
    if metrics_error is not None:
        raise metrics_error
    return manifest


def _tasks(settings: Settings, current: _Run, components: tuple[str, ...]) -> list[Task]:
    tasks: list[Task] = []
    if "postgres" in components:
        for database in settings.postgres.databases:
            tasks.append((f"postgres/{database}", lambda name=database: current.postgres(name)))
    if "redis" in components:
        tasks.append(("redis", current.redis))
    if "chroma" in components:
        tasks.append(("chroma", current.chroma))
    return tasks
