"""The restore drill: prove the latest Postgres backup restores and holds what its manifest says.

For each of ``postgres.drill_databases`` the dump is downloaded and its sha256 checked, restored
into a scratch database ``<db>_drill_<yyyymmddThhmmssz>`` on the same server, compared table by
table and sequence by sequence with the manifest, and the scratch database is always dropped.
Scratch databases an interrupted drill left behind are dropped first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stagecraft_ops import metrics, postgres
from stagecraft_ops.errors import OperationError, UsageError, log
from stagecraft_ops.manifest import Artifact, backup_id
from stagecraft_ops.restore import fetch_verified, find_manifest, manifest_name
from stagecraft_ops.runtime import Clock, utc_now, workspace
from stagecraft_ops.settings import Settings
from stagecraft_ops.storage import Bucket


@dataclass
class DrillResult:
    backup: str = ""
    passed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _drill_one(pg: postgres.Postgres, artifact: Artifact, dump_path: Path, scratch: str) -> list[str]:
    info = artifact.database
    assert info is not None
    for leftover in postgres.scratch_databases(pg, info.name):
        postgres.drop_database(pg, leftover)
        log("drill", f"dropped {leftover}, left behind by an interrupted drill")
    problems: list[str] = []
    try:
        log("drill", f"postgres/{info.name}: restoring {artifact.object} into {scratch}")
        postgres.restore_into(pg, info, dump_path, scratch)
        problems = postgres.compare(pg, scratch, info)
    except OperationError as error:
        problems = [str(error)]
    finally:
        try:
            postgres.drop_database(pg, scratch)
            log("drill", f"dropped {scratch}")
        except OperationError as error:
            problems.append(f"could not drop the scratch database {scratch}: {error}")
    return problems


def _drill_artifact(
    pg: postgres.Postgres, bucket: Bucket, artifact: Artifact, work: Path, stamp: str, result: DrillResult
) -> None:
    info = artifact.database
    assert info is not None
    label = f"postgres/{info.name}"
    try:
        paths = fetch_verified(bucket, [artifact], work)
    except OperationError as error:
        result.failures.append(f"{label}: {error}")
        return
    problems = _drill_one(pg, artifact, paths[artifact.object], f"{info.name}_drill_{stamp.lower()}")
    paths[artifact.object].unlink(missing_ok=True)
    if problems:
        result.failures += [f"{label}: {problem}" for problem in problems]
    else:
        result.passed.append(label)


def run(settings: Settings, backup: str = "latest", clock: Clock = utc_now) -> DrillResult:
    """Drill ``backup`` (default the newest that holds every drill database); raises
    OperationError naming each failure. Writes the drill metrics file either way."""
    manifest_name(backup)
    started = clock()
    result = DrillResult()
    databases = settings.postgres.drill_databases
    try:
        with workspace(settings, f"drill-{backup_id(started)}") as work:
            pg = postgres.Postgres(settings, work)  # a settings problem shows before any download
            try:
                bucket = Bucket(settings)
                manifest = find_manifest(settings, bucket, backup, ("postgres",), databases)
                result.backup = manifest.object
                log(
                    "drill",
                    f"backup {manifest.id} ({manifest.reason}, finished {manifest.finished}): {', '.join(databases)}",
                )
                artifacts = [a for a in manifest.find("postgres") if a.database and a.database.name in databases]
                missing = set(databases) - {a.database.name for a in artifacts if a.database}
                if missing:
                    raise OperationError(f"{manifest.object}: has no dump of database {sorted(missing)[0]}")
                for artifact in artifacts:
                    _drill_artifact(pg, bucket, artifact, work, backup_id(clock()), result)
            finally:
                pg.close()
    except (OperationError, UsageError) as error:
        result.failures.append(str(error))
        raise
    finally:
        finished = clock()
        succeeded = not result.failures and bool(result.passed)
        metrics_error = metrics.record_logged(
            settings.textfile_dir, "drill", finished.timestamp(), (finished - started).total_seconds(), succeeded
        )
    if result.failures:
        raise OperationError("restore drill failed: " + "; ".join(result.failures))
    if metrics_error is not None:
        raise metrics_error
    return result
