"""Config errors that name the stack file and the exact key path, e.g.
``Pulumi.prod.yaml: stagecraft:services.postgres.memory_mb: must be >= 256 (got 64)``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from components.config.base import SECTION_RULES, ConfigSecret
from components.config.host import TLS_MODES
from components.config.stack import StackConfig

TYPE_NAMES = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


class ConfigError(Exception):
    """One or more config problems, each naming the file and the key path."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {key}: {msg}" for key, msg in problems))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, list[tuple[str, str]]]]:
        # Crosses process boundaries (preflight plans stacks in worker processes) intact.
        return (ConfigError, (self.source, self.problems))


def key_path(loc: tuple[Any, ...]) -> str:
    """A pydantic location as the stack file spells the key: `stagecraft:services.api.port`."""
    if not loc:
        return "config"
    # "[key]" marks a dict key error; a tag marks which member of a tagged union failed.
    parts = [str(part) for part in loc if part != "[key]"]
    parts = [p for i, p in enumerate(parts) if not (i and parts[i - 1] == "tls" and p in TLS_MODES)]
    namespace, *rest = parts
    return f"{namespace}:{'.'.join(rest)}" if rest else f"{namespace}:"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class whose fields live at ``loc`` (to list the allowed keys)."""
    model: Any = StackConfig
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = _unwrap(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Optional[X] / dict[str, X] -> X, enough to walk our own model tree."""
    args = getattr(annotation, "__args__", ())
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[-1] if models else annotation


def _describe(value: Any) -> str:
    if isinstance(value, ConfigSecret):
        return "[secret]"
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = f" (got {_describe(error.get('input'))})"
    if kind == "extra_forbidden":
        parent = _model_at(tuple(error["loc"][:-1]))
        allowed = ", ".join(parent.model_fields) if parent else "none"
        return f"unknown key; allowed keys here: {allowed}"
    if kind == "missing":
        return "is required"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(ctx[key] for key in ("ge", "gt", "le", "lt") if key in ctx)
        return f"must be {bounds[kind]} {limit}{got}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}{got}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']}{got}"
    if kind in ("too_short", "too_long"):
        return error["msg"].replace("Value should", "must").replace("List should", "must") + got
    if kind in ("string_too_short", "string_too_long"):
        return error["msg"].replace("String should", "must") + got
    if kind.endswith("_type"):
        return f"must be {TYPE_NAMES.get(kind, kind.removesuffix('_type'))}{got}"
    return error["msg"][0].lower() + error["msg"][1:] + ("" if kind == "plaintext_secret" else got)


def _problems(error: Mapping[str, Any]) -> list[tuple[str, str]]:
    loc = tuple(error["loc"])
    if error["type"] == SECTION_RULES:
        found = []
        for relative, message in error["ctx"]["problems"]:
            found.append((key_path(loc + tuple(part for part in relative.split(".") if part)), message))
        return found
    return [(key_path(loc), _message(error))]


def validate(raw: Mapping[str, Any], source: str) -> StackConfig:
    """Validate a raw config tree, reporting every problem at once; a section's own rules run
    once its fields have the right types, the rules between environments once everything does."""
    try:
        return StackConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [problem for error in exc.errors() for problem in _problems(error)]
        raise ConfigError(source, problems) from None
