"""The backup manifest and the object naming scheme of the backups bucket.

Objects of one backup share its id, the UTC start time ``YYYYMMDDTHHMMSSZ``::

    postgres/2026/11/26/20261126T020000Z-acme_staging.dump    pg_dump --format=custom
    redis/2026/11/26/20261126T020000Z-redis.rdb               an RDB snapshot
    chroma/2026/11/26/20261126T020000Z-chroma.tar.gz          the data directory
    manifests/2026/11/26/20261126T020000Z.json                written last

The manifest is uploaded after every artifact it lists has been uploaded, so a manifest means
those artifacts are complete. It records each artifact's sha256 and size and, for Postgres, the
per-table row counts and checksums and the sequence values that the dump holds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stagecraft_ops.errors import OperationError

FORMAT = 1
MANIFEST_PREFIX = "manifests/"
KINDS = ("postgres", "redis", "chroma")
REASONS = ("scheduled", "pre-migration", "manual")


def backup_id(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _dated(prefix: str, identifier: str) -> str:
    moment = datetime.strptime(identifier, "%Y%m%dT%H%M%SZ")
    return f"{prefix}/{moment:%Y/%m/%d}/{identifier}"


def artifact_object(kind: str, identifier: str, suffix: str) -> str:
    """``<kind>/YYYY/MM/DD/<id>-<suffix>``."""
    return f"{_dated(kind, identifier)}-{suffix}"


def manifest_object(identifier: str) -> str:
    return f"{_dated(MANIFEST_PREFIX.rstrip('/'), identifier)}.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class TableStat:
    """One table's content in the backup's snapshot."""

    schema: str
    table: str
    rows: int
    checksum: str

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True)
class SequenceValue:
    """One sequence's value as the dump restores it."""

    schema: str
    sequence: str
    last_value: int
    is_called: bool

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.sequence}"


@dataclass(frozen=True)
class DatabaseInfo:
    name: str
    owner: str
    encoding: str
    collate: str
    ctype: str
    server_version: str
    tables: tuple[TableStat, ...]
    sequences: tuple[SequenceValue, ...]


@dataclass(frozen=True)
class Artifact:
    kind: str  # postgres, redis or chroma
    name: str  # postgres/<database>, redis or chroma: the metrics label
    object: str
    sha256: str
    bytes: int
    database: DatabaseInfo | None = None
    files: int | None = None  # chroma: regular files in the archive


@dataclass
class Manifest:
    id: str
    stack: str
    environment: str
    bucket: str
    reason: str
    tool_version: str
    started: str
    finished: str = ""
    complete: bool = True
    artifacts: list[Artifact] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # what could not be backed up, and why

    @property
    def object(self) -> str:
        return manifest_object(self.id)

    def find(self, kind: str) -> list[Artifact]:
        return [artifact for artifact in self.artifacts if artifact.kind == kind]

    def to_json(self) -> str:
        document = {"format": FORMAT, **asdict(self)}
        return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _require(source: str, data: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise OperationError(f"{source}: manifest key {key!r} is missing or not a {kind}")
    return value


def _database(source: str, data: dict[str, Any]) -> DatabaseInfo:
    tables = tuple(
        TableStat(
            schema=_require(source, item, "schema", str),
            table=_require(source, item, "table", str),
            rows=_require(source, item, "rows", int),
            checksum=_require(source, item, "checksum", str),
        )
        for item in _require(source, data, "tables", list)
    )
    sequences = tuple(
        SequenceValue(
            schema=_require(source, item, "schema", str),
            sequence=_require(source, item, "sequence", str),
            last_value=_require(source, item, "last_value", int),
            is_called=_require(source, item, "is_called", bool),
        )
        for item in _require(source, data, "sequences", list)
    )
    return DatabaseInfo(
        name=_require(source, data, "name", str),
        owner=_require(source, data, "owner", str),
        encoding=_require(source, data, "encoding", str),
        collate=_require(source, data, "collate", str),
        ctype=_require(source, data, "ctype", str),
        server_version=_require(source, data, "server_version", str),
        tables=tables,
        sequences=sequences,
    )


def parse(source: str, text: bytes | str) -> Manifest:
    """A manifest read back from the bucket; ``source`` (its object name) names it in errors."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OperationError(f"{source}: the manifest is not valid JSON ({error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise OperationError(f"{source}: not a manifest of format {FORMAT}")
    artifacts = []
    for item in _require(source, data, "artifacts", list):
        kind = _require(source, item, "kind", str)
        if kind not in KINDS:
            raise OperationError(f"{source}: unknown artifact kind {kind!r}")
        database = item.get("database")
        artifacts.append(
            Artifact(
                kind=kind,
                name=_require(source, item, "name", str),
                object=_require(source, item, "object", str),
                sha256=_require(source, item, "sha256", str),
                bytes=_require(source, item, "bytes", int),
                database=_database(source, database) if kind == "postgres" else None,
                files=item.get("files"),
            )
        )
    return Manifest(
        id=_require(source, data, "id", str),
        stack=_require(source, data, "stack", str),
        environment=_require(source, data, "environment", str),
        bucket=_require(source, data, "bucket", str),
        reason=_require(source, data, "reason", str),
        tool_version=_require(source, data, "tool_version", str),
        started=_require(source, data, "started", str),
        finished=_require(source, data, "finished", str),
        complete=_require(source, data, "complete", bool),
        artifacts=artifacts,
        failures=list(_require(source, data, "failures", list)),
    )
