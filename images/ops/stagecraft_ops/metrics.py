"""Prometheus textfile-collector files, written atomically (temp file in the same directory,
then rename) so the node exporter never reads half a file.

``stagecraft_backup.prom``::

    stagecraft_backup_last_success_timestamp_seconds   end of the last fully successful backup
    stagecraft_backup_last_run_timestamp_seconds       end of the last backup, successful or not
    stagecraft_backup_last_run_success                 1 or 0
    stagecraft_backup_duration_seconds                 of the last run
    stagecraft_backup_artifact_bytes{artifact="postgres/<db>"|"redis"|"chroma"}

``stagecraft_restore_drill.prom``::

    stagecraft_restore_drill_last_success_timestamp_seconds
    stagecraft_restore_drill_last_run_timestamp_seconds
    stagecraft_restore_drill_last_run_success
    stagecraft_restore_drill_duration_seconds

A failed run keeps the previous last-success timestamp (and artifact sizes), so an alert on its
age fires when backups or drills keep failing.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stagecraft_ops.errors import OperationError, log

BACKUP_FILE = "stagecraft_backup.prom"
DRILL_FILE = "stagecraft_restore_drill.prom"
BACKUP_PREFIX = "stagecraft_backup"
DRILL_PREFIX = "stagecraft_restore_drill"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{artifact="([^"]*)"\})?\s+(\S+)$')


@dataclass
class RunMetrics:
    """What one file says: the last run, the last success, and (backups) artifact sizes."""

    last_success: float | None = None
    last_run: float | None = None
    success: bool | None = None
    duration: float | None = None
    artifact_bytes: dict[str, int] = field(default_factory=dict)


def read(path: Path, prefix: str) -> RunMetrics:
    """Parse a file this module wrote; a missing or foreign file yields empty metrics."""
    result = RunMetrics()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return result
    for line in lines:
        match = SAMPLE.match(line.strip())
        if match is None:
            continue
        name, label, raw = match.groups()
        try:
            value = float(raw)
        except ValueError:
            continue
        suffix = name.removeprefix(prefix + "_")
        if suffix == "last_success_timestamp_seconds":
            result.last_success = value
        elif suffix == "last_run_timestamp_seconds":
            result.last_run = value
        elif suffix == "last_run_success":
            result.success = value == 1
        elif suffix == "duration_seconds":
            result.duration = value
        elif suffix == "artifact_bytes" and label is not None:
            result.artifact_bytes[label] = int(value)
    return result


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def render(prefix: str, what: str, metrics: RunMetrics) -> str:
    gauges: list[tuple[str, str, float | None]] = [
        ("last_success_timestamp_seconds", f"Unix time the last successful {what} finished.", metrics.last_success),
        ("last_run_timestamp_seconds", f"Unix time the last {what} finished, successful or not.", metrics.last_run),
        (
            "last_run_success",
            f"1 if the last {what} succeeded, else 0.",
            None if metrics.success is None else float(metrics.success),
        ),
        ("duration_seconds", f"How long the last {what} took.", metrics.duration),
    ]
    lines = []
    for suffix, help_text, value in gauges:
        if value is None:
            continue
        lines += [
            f"# HELP {prefix}_{suffix} {help_text}",
            f"# TYPE {prefix}_{suffix} gauge",
            f"{prefix}_{suffix} {_number(value)}",
        ]
    if metrics.artifact_bytes:
        name = f"{prefix}_artifact_bytes"
        lines += [f"# HELP {name} Size of each artifact of the last backup that produced it.", f"# TYPE {name} gauge"]
        lines += [f'{name}{{artifact="{label}"}} {size}' for label, size in sorted(metrics.artifact_bytes.items())]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one rename; the temp name does not end in .prom, so it is never collected."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def record_run(
    directory: str,
    kind: str,
    finished: float,
    duration: float,
    success: bool,
    artifact_bytes: Mapping[str, int] | None = None,
) -> Path:
    """Record one backup (``kind`` "backup") or drill ("drill") run, keeping the last success
    from the previous file when this run failed."""
    file_name, prefix, what = (
        (BACKUP_FILE, BACKUP_PREFIX, "backup") if kind == "backup" else (DRILL_FILE, DRILL_PREFIX, "restore drill")
    )
    path = Path(directory) / file_name
    previous = read(path, prefix)
    current = RunMetrics(
        last_success=finished if success else previous.last_success,
        last_run=finished,
        success=success,
        duration=duration,
        artifact_bytes={**previous.artifact_bytes, **(artifact_bytes or {})},
    )
    try:
        write_atomic(path, render(prefix, what, current))
    except OSError as error:
        raise OperationError(f"textfile_dir: cannot write {path} ({error.strerror})") from None
    return path


def record_logged(
    directory: str,
    kind: str,
    finished: float,
    duration: float,
    success: bool,
    artifact_bytes: Mapping[str, int] | None = None,
) -> OperationError | None:
    """``record_run`` from a ``finally``: logs the outcome and returns the error instead of
    raising it, so it never hides the run's own failure."""
    try:
        path = record_run(directory, kind, finished, duration, success, artifact_bytes)
    except OperationError as error:
        log(kind, f"metrics NOT written: {error}")
        return error
    log(kind, f"metrics: {path} (success {int(success)})")
    return None
