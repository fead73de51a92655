"""The settings file: one JSON document (schema in the package docstring), validated strictly.

Every problem is reported as ``<file>: <key>: <what is wrong and what is allowed>``, and secrets
are read from their files only when a command needs them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagecraft_ops.errors import UsageError

ENV_VAR = "OPS_SETTINGS_FILE"
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# Database names are identifiers; a drill's scratch name adds 23 characters within Postgres' 63.
DATABASE = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")
HOURS_MINUTES = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class PostgresSettings:
    host: str
    port: int
    user: str
    password_file: str
    databases: tuple[str, ...]
    drill_databases: tuple[str, ...]
    bin_dir: str | None = None


@dataclass(frozen=True)
class RedisSettings:
    host: str
    port: int
    user: str
    password_file: str


@dataclass(frozen=True)
class ChromaSettings:
    data_dir: str


@dataclass(frozen=True)
class Slot:
    """A time of day in UTC, on one weekday (0 = Monday) or every day (``weekday`` None)."""

    hour: int
    minute: int
    weekday: int | None = None


@dataclass(frozen=True)
class ScheduleSettings:
    backup: Slot
    drill: Slot
    grace_minutes: int


@dataclass(frozen=True)
class Settings:
    source: str
    stack: str
    environment: str
    prod: bool
    bucket: str
    credentials_file: str | None
    postgres: PostgresSettings
    redis: RedisSettings
    chroma: ChromaSettings
    schedule: ScheduleSettings
    textfile_dir: str
    heartbeat_file: str
    work_dir: str


class _Reader:
    """Typed access to one JSON object, with errors that name the file and the dotted key."""

    def __init__(self, source: str, data: Any, prefix: str = "") -> None:
        self.source = source
        self.prefix = prefix
        if not isinstance(data, dict):
            raise self.error("", f"must be a JSON object (got {type(data).__name__})")
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def error(self, key: str, message: str) -> UsageError:
        where = f"{self.prefix}{key}" if key else (self.prefix.rstrip(".") or "(top level)")
        return UsageError(f"{self.source}: {where}: {message}")

    def _get(self, key: str, optional: bool = False) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if optional:
                return None
            raise self.error(key, "is required")
        return self.data[key]

    def string(self, key: str, pattern: re.Pattern[str] | None = None, allowed: str = "") -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty string (got {value!r})")
        if pattern is not None and not pattern.match(value):
            raise self.error(key, f"must be {allowed} (got {value!r})")
        return value

    def path(self, key: str, optional: bool = False) -> str | None:
        value = self._get(key, optional=True)
        if value is None:
            if optional:
                return None
            raise self.error(key, "is required (an absolute path)")
        if not isinstance(value, str) or not value.startswith("/"):
            raise self.error(key, f"must be an absolute path (got {value!r})")
        return value

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false (got {value!r})")
        return value

    def integer(self, key: str, low: int, high: int) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(key, f"must be an integer from {low} to {high} (got {value!r})")
        return value

    def names(self, key: str, pattern: re.Pattern[str], allowed: str) -> tuple[str, ...]:
        value = self._get(key)
        if not isinstance(value, list) or not value:
            raise self.error(key, f"must be a non-empty list of {allowed} (got {value!r})")
        for item in value:
            if not isinstance(item, str) or not pattern.match(item):
                raise self.error(key, f"every entry must be {allowed} (got {item!r})")
        if len(set(value)) != len(value):
            raise self.error(key, "lists a name twice")
        return tuple(value)

    def child(self, key: str) -> _Reader:
        return _Reader(self.source, self._get(key), f"{self.prefix}{key}.")

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.error(unknown[0], "is not a known key")


def parse_slot(text: Any, weekly: bool) -> Slot:
    """``HH:MM`` for a daily slot; ``<weekday> HH:MM`` or ``daily HH:MM`` when ``weekly``."""
    if not isinstance(text, str):
        raise ValueError(f"got {text!r}")
    day: str | None = None
    clock = text
    if weekly:
        parts = text.split()
        if len(parts) != 2:
            raise ValueError(f"got {text!r}")
        day, clock = parts
        if day != "daily" and day not in WEEKDAYS:
            raise ValueError(f"got {text!r}")
    match = HOURS_MINUTES.match(clock)
    if match is None:
        raise ValueError(f"got {text!r}")
    weekday = WEEKDAYS.index(day) if day in WEEKDAYS else None
    return Slot(hour=int(match.group(1)), minute=int(match.group(2)), weekday=weekday)


def _schedule(reader: _Reader) -> ScheduleSettings:
    try:
        backup = parse_slot(reader._get("backup_utc"), weekly=False)
    except ValueError as error:
        raise reader.error("backup_utc", f"must be HH:MM in UTC ({error})") from None
    try:
        drill = parse_slot(reader._get("drill"), weekly=True)
    except ValueError as error:
        raise reader.error("drill", f"must be '<mon|tue|...|sun> HH:MM' or 'daily HH:MM' ({error})") from None
    grace = reader.integer("grace_minutes", 1, 720)
    reader.finish()
    return ScheduleSettings(backup=backup, drill=drill, grace_minutes=grace)


def _postgres(reader: _Reader) -> PostgresSettings:
    databases = reader.names("databases", DATABASE, "a database name ([a-z_][a-z0-9_]*, at most 40 characters)")
    drill = reader.names("drill_databases", DATABASE, "a database name listed in databases")
    for name in drill:
        if name not in databases:
            raise reader.error("drill_databases", f"{name!r} is not in databases")
    settings = PostgresSettings(
        host=reader.string("host"),
        port=reader.integer("port", 1, 65535),
        user=reader.string("user"),
        password_file=str(reader.path("password_file")),
        databases=databases,
        drill_databases=drill,
        bin_dir=reader.path("bin_dir", optional=True),
    )
    reader.finish()
    return settings


def _redis(reader: _Reader) -> RedisSettings:
    settings = RedisSettings(
        host=reader.string("host"),
        port=reader.integer("port", 1, 65535),
        user=reader.string("user"),
        password_file=str(reader.path("password_file")),
    )
    reader.finish()
    return settings


def _chroma(reader: _Reader) -> ChromaSettings:
    settings = ChromaSettings(data_dir=str(reader.path("data_dir")))
    reader.finish()
    return settings


def parse(source: str, document: Any) -> Settings:
    """Validate a parsed document; ``source`` names the file in error messages."""
    top = _Reader(source, document)
    slug = "lowercase letters, digits and dashes"
    settings = Settings(
        source=source,
        stack=top.string("stack", SLUG, slug),
        environment=top.string("environment", SLUG, slug),
        prod=top.boolean("prod"),
        bucket=top.string("bucket", re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$"), "a GCS bucket name"),
        credentials_file=top.path("credentials_file", optional=True),
        postgres=_postgres(top.child("postgres")),
        redis=_redis(top.child("redis")),
        chroma=_chroma(top.child("chroma")),
        schedule=_schedule(top.child("schedule")),
        textfile_dir=str(top.path("textfile_dir")),
        heartbeat_file=str(top.path("heartbeat_file")),
        work_dir=str(top.path("work_dir")),
    )
    top.finish()
    return settings


def load(path: str | None) -> Settings:
    """Read and validate the settings file at ``path`` (or ``$OPS_SETTINGS_FILE``)."""
    chosen = path or os.environ.get(ENV_VAR)
    if not chosen:
        raise UsageError(f"--settings: no settings file given (pass --settings FILE or set {ENV_VAR})")
    try:
        text = Path(chosen).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{chosen}: cannot read the settings file ({error.strerror})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{chosen}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    return parse(chosen, document)


def read_secret(settings: Settings, key: str, path: str) -> str:
    """The secret in ``path`` without its trailing newline; ``key`` names it in errors."""
    try:
        value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as error:
        raise UsageError(f"{settings.source}: {key}: cannot read {path} ({error.strerror})") from None
    if not value:
        raise UsageError(f"{settings.source}: {key}: {path} is empty")
    return value
