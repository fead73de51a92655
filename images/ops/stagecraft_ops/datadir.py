"""Offline restores into a service's data directory: what was there is moved aside, not deleted."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from stagecraft_ops.errors import UsageError

ASIDE_PREFIX = ".stagecraft-replaced-"


def checked_dir(option: str, value: str | None) -> Path:
    """The data directory given as ``option``; it must exist (the service's volume, mounted)."""
    if not value:
        raise UsageError(f"{option}: required to restore this artifact (the stopped service's data directory)")
    path = Path(value)
    if not path.is_dir():
        raise UsageError(f"{option}: {value} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{option}: {value} is not writable by this user (uid {os.getuid()})")
    return path


def move_aside(directory: Path, stamp: str, names: Iterable[str] | None = None) -> Path | None:
    """Move ``names`` (default: every entry but earlier set-aside folders) into
    ``<directory>/.stagecraft-replaced-<stamp>/``; the same filesystem, so each move is a rename.
    Returns the folder, or None when there was nothing to move."""
    if names is None:
        entries = sorted(entry.name for entry in directory.iterdir() if not entry.name.startswith(ASIDE_PREFIX))
    else:
        entries = [name for name in names if (directory / name).exists() or (directory / name).is_symlink()]
    if not entries:
        return None
    aside = directory / f"{ASIDE_PREFIX}{stamp}"
    aside.mkdir(mode=0o700)
    for name in entries:
        os.rename(directory / name, aside / name)
    return aside


def place_file(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` through a temp name in the target's directory, then rename."""
    temp = target.with_name(f".{target.name}.restoring")
    shutil.copyfile(source, temp)
    with temp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, target)
