"""Chroma: a tar.gz of the data directory, and an offline restore of it.

Chroma has no online backup API, so the archive is crash-consistent: it holds what a sudden
power cut would have left on disk (its SQLite database with any write-ahead log, and the segment
files), which Chroma recovers from at start. Restores need Chroma stopped.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

from stagecraft_ops.datadir import ASIDE_PREFIX, move_aside
from stagecraft_ops.errors import OperationError, log


def archive(data_dir: Path, target: Path) -> int:
    """Write ``data_dir``'s tree to ``target`` (tar.gz, sorted, paths relative to the directory);
    returns the number of regular files. Files Chroma deletes meanwhile are skipped."""
    if not data_dir.is_dir():
        raise OperationError(f"chroma: {data_dir} is not a directory")
    files = 0
    with tarfile.open(target, "w:gz", compresslevel=6) as tar:
        for root, dirs, names in os.walk(data_dir):
            dirs[:] = sorted(name for name in dirs if not (Path(root) == data_dir and name.startswith(ASIDE_PREFIX)))
            base = Path(root)
            for name in [*dirs, *sorted(names)]:
                path = base / name
                relative = path.relative_to(data_dir).as_posix()
                try:
                    mode = path.lstat().st_mode
                    if stat.S_ISREG(mode):
                        with path.open("rb") as handle:
                            info = tar.gettarinfo(arcname=relative, fileobj=handle)
                            tar.addfile(info, handle)
                        files += 1
                    elif stat.S_ISDIR(mode):
                        tar.add(path, arcname=relative, recursive=False)
                    else:
                        log("chroma", f"{relative} is not a regular file or folder; skipped")
                except FileNotFoundError:
                    log("chroma", f"{relative} vanished while archiving; skipped")
                except PermissionError:
                    raise OperationError(f"chroma: cannot read {path} as uid {os.getuid()}") from None
    return files


def _checked_members(tar: tarfile.TarFile, source: str) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for member in members:
        parts = Path(member.name).parts
        if member.name.startswith("/") or ".." in parts:
            raise OperationError(f"{source}: refusing archive entry {member.name!r} outside the data directory")
        if not (member.isfile() or member.isdir()):
            raise OperationError(
                f"{source}: refusing archive entry {member.name!r}: only files and folders are restored"
            )
    return members


def extract(archive_path: Path, data_dir: Path, stamp: str) -> tuple[int, Path | None]:
    """Unpack into the stopped Chroma's ``data_dir``; returns (files, where the old entries went)."""
    with tarfile.open(archive_path, "r:gz") as tar:
        members = _checked_members(tar, archive_path.name)
        aside = move_aside(data_dir, stamp)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(data_dir, members=members, filter="data")
        else:  # Python before the extraction filters: the members were checked above
            tar.extractall(data_dir, members=members)  # noqa: S202
    return sum(1 for member in members if member.isfile()), aside
