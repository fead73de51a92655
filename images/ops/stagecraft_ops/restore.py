"""The restore command: choose a backup, download and verify every artifact, then replace.

Nothing is touched until every chosen artifact has been downloaded and its sha256 and size match
the manifest. Postgres is restored online (the database is replaced and then checked against the
manifest's row counts, checksums and sequences); Redis and Chroma offline, into the data
directories of their stopped services, with what was there moved aside.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stagecraft_ops import chroma, postgres, redis
from stagecraft_ops.datadir import checked_dir
from stagecraft_ops.errors import OperationError, UsageError, log
from stagecraft_ops.manifest import (
    KINDS,
    MANIFEST_PREFIX,
    Artifact,
    Manifest,
    backup_id,
    manifest_object,
    parse,
    sha256_file,
)
from stagecraft_ops.runtime import Clock, utc_now, workspace
from stagecraft_ops.settings import Settings
from stagecraft_ops.storage import Bucket

MANIFEST_NAME = re.compile(r"^manifests/\d{4}/\d{2}/\d{2}/(\d{8}T\d{6}Z)\.json$")
BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z$")


def _qualifies(manifest: Manifest, kinds: Sequence[str], databases: Sequence[str]) -> bool:
    present = {artifact.kind for artifact in manifest.artifacts}
    names = {artifact.database.name for artifact in manifest.find("postgres") if artifact.database}
    return all(kind in present for kind in kinds) and all(name in names for name in databases)


def manifest_name(backup: str) -> str | None:
    """The manifest object ``--backup`` names, or None for ``latest``."""
    if backup == "latest":
        return None
    if BACKUP_ID.match(backup):
        return manifest_object(backup)
    if MANIFEST_NAME.match(backup):
        return backup
    raise UsageError(
        f"--backup: {backup!r} is not 'latest', a backup id (20261126T020000Z) "
        "or a manifest name (manifests/2026/11/26/20261126T020000Z.json)"
    )


def find_manifest(
    settings: Settings, bucket: Bucket, backup: str, kinds: Sequence[str], databases: Sequence[str] = ()
) -> Manifest:
    """The manifest named by ``backup`` (an object name or a backup id), or for ``latest`` the
    newest one of this stack that holds every kind in ``kinds`` and every database in ``databases``."""
    name = manifest_name(backup)
    if name is not None:
        manifest = parse(name, bucket.read(name))
        if manifest.stack != settings.stack:
            raise OperationError(f"{name}: a backup of stack {manifest.stack!r}, not {settings.stack!r}")
        return manifest
    names = [name for name in bucket.names(MANIFEST_PREFIX) if MANIFEST_NAME.match(name)]
    for name in sorted(names, reverse=True):
        try:
            manifest = parse(name, bucket.read(name))
        except OperationError as error:
            log("restore", f"skipping unreadable manifest: {error}")
            continue
        if manifest.stack == settings.stack and _qualifies(manifest, kinds, databases):
            return manifest
    wanted = ", ".join([*kinds, *databases])
    raise OperationError(
        f"gs://{settings.bucket}/{MANIFEST_PREFIX}: no backup of stack {settings.stack} holds {wanted}"
    )


def fetch_verified(bucket: Bucket, artifacts: Sequence[Artifact], work: Path) -> dict[str, Path]:
    """Download each artifact and check its size and sha256 against the manifest."""
    paths: dict[str, Path] = {}
    for artifact in artifacts:
        path = work / Path(artifact.object).name
        bucket.download(artifact.object, path)
        size, digest = path.stat().st_size, sha256_file(path)
        if digest != artifact.sha256 or size != artifact.bytes:
            raise OperationError(
                f"{bucket.url(artifact.object)}: sha256 {digest} ({size} bytes) does not match the manifest's "
                f"{artifact.sha256} ({artifact.bytes} bytes); nothing was restored"
            )
        log("verify", f"{artifact.name}: sha256 matches ({artifact.object})")
        paths[artifact.object] = path
    return paths


@dataclass
class Request:
    """What the operator asked for on the command line."""

    backup: str = "latest"
    only: tuple[str, ...] | None = None
    databases: tuple[str, ...] = ()
    confirm_prod: str | None = None
    redis_data_dir: str | None = None
    chroma_data_dir: str | None = None


@dataclass
class Outcome:
    manifest: Manifest
    lines: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)


def _check_prod(settings: Settings, request: Request) -> None:
    if request.confirm_prod is not None and request.confirm_prod != settings.stack:
        raise UsageError(f"--confirm-prod: {request.confirm_prod!r} is not this stack ({settings.stack!r})")
    if settings.prod and request.confirm_prod != settings.stack:
        raise UsageError(
            f"{settings.source}: prod: stack {settings.stack!r} is production; a restore replaces its live data. "
            f"Pass --confirm-prod {settings.stack} to go ahead"
        )


def _select(manifest: Manifest, kinds: Sequence[str], databases: Sequence[str]) -> list[Artifact]:
    chosen = []
    for kind in kinds:
        found = manifest.find(kind)
        if not found:
            raise OperationError(f"{manifest.object}: has no {kind} artifact (restore fewer with --only)")
        if kind == "postgres" and databases:
            found = [artifact for artifact in found if artifact.database and artifact.database.name in databases]
            missing = set(databases) - {artifact.database.name for artifact in found if artifact.database}
            if missing:
                raise OperationError(f"{manifest.object}: has no dump of database {sorted(missing)[0]}")
        chosen += found
    return chosen


def run(settings: Settings, request: Request, clock: Clock = utc_now) -> Outcome:
    """Restore as ``request`` says; raises OperationError when a check fails."""
    _check_prod(settings, request)
    manifest_name(request.backup)
    for name in request.databases:
        if name not in settings.postgres.databases:
            raise UsageError(f"--database: {name!r} is not one of {', '.join(settings.postgres.databases)}")
    bucket = Bucket(settings)
    wanted = request.only or KINDS
    manifest = find_manifest(settings, bucket, request.backup, wanted, request.databases)
    kinds = request.only or tuple(kind for kind in KINDS if manifest.find(kind))
    log("restore", f"backup {manifest.id} ({manifest.reason}, finished {manifest.finished}): {', '.join(kinds)}")
    redis_dir = checked_dir("--redis-data-dir", request.redis_data_dir) if "redis" in kinds else None
    if redis_dir is not None:
        redis.refuse_if_running(settings)
    chroma_dir = checked_dir("--chroma-data-dir", request.chroma_data_dir) if "chroma" in kinds else None
    artifacts = _select(manifest, kinds, request.databases)
    outcome = Outcome(manifest=manifest)
    stamp = backup_id(clock())
    with workspace(settings, f"restore-{stamp}") as work:
        # The password file is read now: a settings problem must show before the long downloads.
        pg = postgres.Postgres(settings, work) if "postgres" in kinds else None
        try:
            paths = fetch_verified(bucket, artifacts, work)
            postgres_artifacts = [artifact for artifact in artifacts if artifact.kind == "postgres"]
            if pg is not None:
                _restore_postgres(pg, postgres_artifacts, paths, outcome)
        finally:
            if pg is not None:
                pg.close()
        for artifact in artifacts:
            if artifact.kind == "redis" and redis_dir is not None:
                aside = redis.restore_rdb(settings, paths[artifact.object], redis_dir, stamp)
                outcome.lines.append(
                    f"redis: {redis_dir}/{redis.RDB_FILE} and a fresh {redis.AOF_DIR}/ from {artifact.object}"
                    + (f"; the previous files are in {aside}" if aside else "")
                )
            elif artifact.kind == "chroma" and chroma_dir is not None:
                files, aside = chroma.extract(paths[artifact.object], chroma_dir, stamp)
                outcome.lines.append(
                    f"chroma: {files} files into {chroma_dir} from {artifact.object}"
                    + (f"; the previous contents are in {aside}" if aside else "")
                )
    return outcome


def _restore_postgres(
    pg: postgres.Postgres, artifacts: Sequence[Artifact], paths: dict[str, Path], outcome: Outcome
) -> None:
    for artifact in artifacts:
        info = artifact.database
        assert info is not None
        log("restore", f"postgres/{info.name}: replacing the database from {artifact.object}")
        postgres.restore_in_place(pg, info, paths[artifact.object])
        differences = postgres.compare(pg, info.name, info)
        rows = sum(table.rows for table in info.tables)
        if differences:
            outcome.differences += [f"postgres/{info.name}: {difference}" for difference in differences]
            outcome.lines.append(f"postgres/{info.name}: restored, but {len(differences)} check(s) FAILED")
        else:
            outcome.lines.append(
                f"postgres/{info.name}: restored; {len(info.tables)} tables, {rows} rows and "
                f"{len(info.sequences)} sequences match the backup"
            )
