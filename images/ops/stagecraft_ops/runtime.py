"""What every command shares: the injectable clock and a private scratch folder per run."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from stagecraft_ops.errors import UsageError
from stagecraft_ops.settings import Settings

Clock = Callable[[], datetime]
COMPONENTS = ("postgres", "redis", "chroma")


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def workspace(settings: Settings, name: str) -> Iterator[Path]:
    """``<work_dir>/<name>``, readable by this user only, removed with everything in it at the end."""
    root = Path(settings.work_dir)
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = root / name
        path.mkdir(mode=0o700)
    except OSError as error:
        raise UsageError(f"{settings.source}: work_dir: cannot create {root / name} ({error.strerror})") from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def parse_components(option: str, value: str | None) -> tuple[str, ...] | None:
    """``--only postgres,redis``: a subset of the components, in their usual order."""
    if value is None:
        return None
    wanted = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [part for part in wanted if part not in COMPONENTS]
    if unknown or not wanted:
        raise UsageError(f"{option}: {value!r} is not a list of {', '.join(COMPONENTS)} (comma-separated)")
    return tuple(component for component in COMPONENTS if component in wanted)
