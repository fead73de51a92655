"""The pack's settings: this repository's values live in settings.json, and a policy config sent by
the Pulumi CLI can only add to them.

The CLI always configures a Python pack with each policy's schema defaults, so the schema's
defaults are generated from settings.json (one source). Whatever arrives is untrusted: lists and
per-environment maps are unioned with settings.json, floors can only rise, and a value of the wrong
shape is ignored with a message naming the key (reported by every policy whose config holds it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi_policy import PolicyConfigSchema

from stagecraft_policy.shared import names_environment

SETTINGS_FILE = Path(__file__).with_name("settings.json")
PRODUCTION = "prod"

STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ENVIRONMENT = re.compile(r"^[a-z][a-z0-9]{0,19}$")
PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
NAME_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}-$")
MEMBER = re.compile(r"^(?:(?:user|group):[A-Za-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}|domain:[a-z0-9.-]+\.[a-z]{2,})$")


class SettingsError(Exception):
    """settings.json is missing, malformed or inconsistent: the pack refuses to start."""


@dataclass(frozen=True)
class Key:
    """One setting: its shape, what its items must look like, and what it means."""

    name: str
    kind: str  # "list", "map" (environment -> list) or "floor" (a whole number of days)
    description: str
    item: re.Pattern[str] | None = None
    minimum: int = 0
    maximum: int = 0

    def schema(self, default: Any) -> dict[str, Any]:
        """This key's JSON schema, with ``default`` (the value from settings.json)."""
        schema: dict[str, Any]
        if self.kind == "floor":
            schema = {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}
        else:
            assert self.item is not None
            strings = {"type": "array", "items": {"type": "string", "pattern": self.item.pattern}}
            schema = strings if self.kind == "list" else {"type": "object", "additionalProperties": strings}
        return {**schema, "description": self.description, "default": default}


KEYS: tuple[Key, ...] = (
    Key(
        "productionStacks",
        "list",
        "Stack names that deploy production; any other stack's environment is the first dash-separated word of "
        "its name (staging-feature-x is staging). A config can add stacks, never remove them.",
        STACK_NAME,
    ),
    Key(
        "productionPrefixes",
        "list",
        "Name prefixes only production uses (secret IDs, resource names); no other stack may mention them. "
        "A config can add prefixes, never remove them.",
        NAME_PREFIX,
    ),
    Key(
        "environmentProjects",
        "map",
        "Each environment's own GCP projects: a stack may create and grant only in its environment's projects "
        "and never mention another environment's. A stack whose environment has none cannot prove it owns "
        "anything in GCP. A project belongs to one environment; a config can add projects, never remove them.",
        PROJECT_ID,
    ),
    Key(
        "allowedMembers",
        "map",
        "Per environment, the user:, group: and domain: IAM members that may be granted (service accounts "
        "must be the environment's own; the public never). A config can add members, never remove them.",
        MEMBER,
    ),
    Key(
        "prodMinDeleteAgeDays",
        "floor",
        "Prod buckets: the least age (days) at which a lifecycle rule may delete an object. A config can raise "
        "it, never lower it.",
        minimum=1,
        maximum=3650,
    ),
    Key(
        "prodMinSoftDeleteDays",
        "floor",
        "Prod buckets: the least soft-delete retention (days). A config can raise it, never lower it.",
        minimum=1,
        maximum=90,
    ),
    Key(
        "prodMinNoncurrentDays",
        "floor",
        "Prod buckets: the least days a noncurrent object version is kept before a lifecycle rule deletes it. "
        "A config can raise it, never lower it.",
        minimum=1,
        maximum=3650,
    ),
)
BY_NAME = {key.name: key for key in KEYS}


@dataclass(frozen=True)
class Settings:
    """The settings one policy runs with, and what was wrong with its config (already ignored)."""

    production_stacks: tuple[str, ...]
    production_prefixes: tuple[str, ...]
    environment_projects: Mapping[str, tuple[str, ...]]
    allowed_members: Mapping[str, tuple[str, ...]]
    prod_min_delete_age_days: int
    prod_min_soft_delete_days: int
    prod_min_noncurrent_days: int
    problems: tuple[str, ...] = field(default=())

    @classmethod
    def from_values(cls, values: Mapping[str, Any], problems: Sequence[str] = ()) -> Settings:
        """Settings from merged values shaped like settings.json."""
        return cls(
            production_stacks=tuple(values["productionStacks"]),
            production_prefixes=tuple(values["productionPrefixes"]),
            environment_projects={env: tuple(p) for env, p in values["environmentProjects"].items()},
            allowed_members={env: tuple(m) for env, m in values["allowedMembers"].items()},
            prod_min_delete_age_days=int(values["prodMinDeleteAgeDays"]),
            prod_min_soft_delete_days=int(values["prodMinSoftDeleteDays"]),
            prod_min_noncurrent_days=int(values["prodMinNoncurrentDays"]),
            problems=tuple(problems),
        )

    def environment_of(self, stack: str) -> str:
        """Production stacks deploy prod; any other stack the first dash-separated word of its name."""
        if stack in self.production_stacks:
            return PRODUCTION
        return stack.split("-", 1)[0]

    def environments(self) -> frozenset[str]:
        """Every environment the settings know of."""
        return frozenset(self.environment_projects) | {PRODUCTION}

    def other_environments(self, environment: str) -> frozenset[str]:
        """Every environment but ``environment``: their words may not appear in its names."""
        return self.environments() - {environment}

    def own_projects(self, environment: str) -> frozenset[str]:
        """The GCP projects ``environment`` owns (none if settings.json lists none)."""
        return frozenset(self.environment_projects.get(environment, ()))

    def foreign_projects(self, environment: str) -> frozenset[str]:
        """Every other environment's projects."""
        return frozenset(p for env, ps in self.environment_projects.items() if env != environment for p in ps)

    def members(self, environment: str) -> frozenset[str]:
        """The user:, group: and domain: members ``environment`` may grant to."""
        return frozenset(self.allowed_members.get(environment, ()))

    def carries_environment(self, text: str, environment: str) -> bool:
        """``text`` names ``environment`` as a dash-separated word and no other environment."""
        return names_environment(text, environment) and not any(
            names_environment(text, other) for other in self.other_environments(environment)
        )


def _shown(value: Any) -> str:
    """A config value in a message: numbers as written, anything else quoted and cut short."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}"
    return repr(str(value)[:80])


def _strings(key: Key, value: Any, where: str) -> tuple[list[str], list[str]]:
    """The valid strings of a list value, and one problem per invalid item."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        return [], [f"{where}: must be a list of strings (got {type(value).__name__}); ignored"]
    assert key.item is not None
    good, problems = [], []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not key.item.match(item):
            problems.append(f"{where}[{index}]: {_shown(item)} must match {key.item.pattern}; ignored")
        else:
            good.append(item)
    return good, problems


def _check(key: Key, value: Any) -> tuple[Any, list[str]]:
    """A value of ``key`` reduced to its valid part, and what was wrong with the rest."""
    where = key.name
    if key.kind == "list":
        return _strings(key, value, where)
    if key.kind == "map":
        if not isinstance(value, Mapping):
            return {}, [f"{where}: must be an object of environment -> list (got {type(value).__name__}); ignored"]
        result: dict[str, list[str]] = {}
        problems: list[str] = []
        for env, items in value.items():
            if not isinstance(env, str) or not ENVIRONMENT.match(env):
                problems.append(f"{where}: environment {_shown(env)} must match {ENVIRONMENT.pattern}; ignored")
                continue
            result[env], found = _strings(key, items, f"{where}.{env}")
            problems += found
        return result, problems
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value % 1:
        return None, [f"{where}: must be a whole number of days (got {_shown(value)}); ignored"]
    if not key.minimum <= value <= key.maximum:
        return None, [f"{where}: must be between {key.minimum} and {key.maximum} (got {value:g}); ignored"]
    return int(value), []


def _union(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*base, *extra]))


def merge(base: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``base`` (settings.json) with ``config`` added: lists unioned, maps unioned per environment,
    floors raised. Nothing in ``config`` can remove or lower what ``base`` holds."""
    merged = {name: json.loads(json.dumps(value)) for name, value in base.items()}
    problems: list[str] = []
    for name, value in config.items():
        key = BY_NAME.get(name)
        if key is None:
            problems.append(f"unknown setting {_shown(name)} (known: {', '.join(BY_NAME)}); ignored")
            continue
        clean, found = _check(key, value)
        problems += found
        if key.kind == "list":
            merged[name] = _union(merged[name], clean)
        elif key.kind == "map":
            for env, items in clean.items():
                if name == "environmentProjects":
                    items = [p for p in items if not _claimed(merged[name], env, p, problems)]
                merged[name][env] = _union(merged[name].get(env, []), items)
        elif clean is not None:
            if clean < merged[name]:
                problems.append(f"{name}: {clean} is below this repository's {merged[name]}; ignored")
            merged[name] = max(merged[name], clean)
    return merged, problems


def _claimed(projects: Mapping[str, Sequence[str]], env: str, project: str, problems: list[str]) -> bool:
    """Whether another environment already owns ``project`` (then it is not added to ``env``)."""
    for other, owned in projects.items():
        if other != env and project in owned:
            problems.append(f"environmentProjects.{env}: {project} belongs to {other}; a project has one owner")
            return True
    return False


def load_settings(path: Path = SETTINGS_FILE) -> dict[str, Any]:
    """settings.json, every key present and valid, or SettingsError naming the file and key."""
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SettingsError(f"{path}: cannot be read as JSON ({error})") from None
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: must be a JSON object of settings")
    missing = [name for name in BY_NAME if name not in values]
    if missing:
        raise SettingsError(f"{path}: missing {', '.join(missing)}")
    empty: dict[str, Any] = {
        key.name: [] if key.kind == "list" else {} if key.kind == "map" else key.minimum for key in KEYS
    }
    merged, problems = merge(empty, values)
    if problems:
        raise SettingsError(f"{path}: {problems[0].replace('; ignored', '')}")
    return merged


BASE: dict[str, Any] = load_settings()
DEFAULT = Settings.from_values(BASE)
CONFIG_SCHEMA = PolicyConfigSchema(properties={key.name: key.schema(BASE[key.name]) for key in KEYS})

_CACHE: dict[str, Settings] = {}


def settings_for(config: Mapping[str, Any] | None) -> Settings:
    """The settings a policy runs with under ``config`` (what ``args.get_config()`` returned).
    Parsed once per distinct config: rules run for every resource."""
    if not config:
        return DEFAULT
    cache_key = json.dumps(config, sort_keys=True, default=repr)
    found = _CACHE.get(cache_key)
    if found is None:
        merged, problems = merge(BASE, config)
        found = Settings.from_values(merged, problems)
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[cache_key] = found
    return found
