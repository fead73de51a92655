"""The two ways a stack's config is loaded: from the Pulumi engine in a real run, and from
``Pulumi.<stack>.yaml`` in preflight. Both build the same raw tree
``{"stagecraft": {...}, "gcp": {...}, "docker": {...}}`` and validate it with ``StackConfig``, so a
mistake is reported the same way, before any resource exists."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel

from components import yaml_io
from components.config.base import ConfigSecret
from components.config.errors import ConfigError, validate
from components.config.stack import StackConfig

PROJECT_NAMESPACE = "stagecraft"
NAMESPACES = (PROJECT_NAMESPACE, "gcp", "docker")
# Keys Pulumi itself may put in a stack file's config; they are not ours to judge.
IGNORED_NAMESPACES = ("pulumi",)


def offline_secret(source: str, key: str, ciphertext: str) -> ConfigSecret:
    """Stand-in for a `secure:` value when no decryption key is at hand (preflight).

    Unique per stack file and key, so checks that compare secrets across stacks still mean
    something.
    """
    digest = hashlib.sha256(f"{source}\0{key}\0{ciphertext}".encode()).hexdigest()
    return ConfigSecret(f"offline-{digest[:32]}")


def _decode_secure(value: Any, source: str, key: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {"secure"} and isinstance(value["secure"], str):
            return offline_secret(source, key, value["secure"])
        return {k: _decode_secure(v, source, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_secure(v, source, f"{key}.{i}") for i, v in enumerate(value)]
    return value


def ciphertexts(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key path, ciphertext) of every `secure:` value in a stack file's ``config:`` mapping."""
    found: list[tuple[str, str]] = []

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            if set(value) == {"secure"} and isinstance(value["secure"], str):
                found.append((key, value["secure"]))
                return
            for sub, item in value.items():
                walk(item, f"{key}.{sub}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{key}.{index}")

    for full_key, value in config.items():
        namespace, name = split_key(str(full_key))
        walk(value, f"{namespace}:{name}")
    return found


def copied_secrets(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems for `secure:` values that appear twice: the same ciphertext is the same secret
    copied, and every secret must have its own value."""
    first: dict[str, str] = {}
    problems = []
    for key, ciphertext in ciphertexts(config):
        if ciphertext in first:
            problems.append(
                (key, f"holds the same encrypted value as {first[ciphertext]}; set each secret to its own value")
            )
        else:
            first[ciphertext] = key
    return problems


def split_key(full_key: str) -> tuple[str, str]:
    """`ns:name` -> (ns, name); a key without a namespace belongs to the project."""
    namespace, sep, name = full_key.partition(":")
    return (namespace, name) if sep else (PROJECT_NAMESPACE, full_key)


def _raw_tree(items: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]]]:
    tree: dict[str, dict[str, Any]] = {ns: {} for ns in NAMESPACES}
    problems: list[tuple[str, str]] = []
    for full_key, value in items.items():
        namespace, name = split_key(str(full_key))
        if namespace in IGNORED_NAMESPACES:
            continue
        if namespace not in tree:
            problems.append((f"{namespace}:{name}", f"unknown namespace; allowed: {', '.join(NAMESPACES)}"))
            continue
        tree[namespace][name] = value
    return tree, problems


def read_stack_config(path: Path) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file as written (`secure:` values as their ciphertext);
    a file that cannot be read or parsed, or holds one ciphertext twice, is a ConfigError."""
    source = path.name
    try:
        document = yaml_io.load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(source, [("file", f"not found at {path}")]) from None
    except IsADirectoryError:
        raise ConfigError(source, [("file", f"{path} is a directory; give the path of a stack file")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [("file", f"is not UTF-8 text (invalid byte at offset {exc.start})")]) from None
    except OSError as exc:
        raise ConfigError(source, [("file", f"cannot be read: {exc.strerror}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "file"
        raise ConfigError(source, [(where, f"is not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise ConfigError(source, [("config", "must be a mapping of `namespace:key: value`")])
    config = document.get("config") or {}
    problems = copied_secrets(config)
    if problems:
        raise ConfigError(source, problems)
    return config


def offline_items(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A stack file's config mapping with `secure:` values as offline ConfigSecrets."""
    return {str(k): _decode_secure(v, source, str(k)) for k, v in config.items()}


def read_stack_file(path: Path) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file, with `secure:` values as offline ConfigSecrets."""
    return offline_items(read_stack_config(path), path.name)


def validate_items(items: Mapping[str, Any], source: str) -> StackConfig:
    """The validated model of a stack file's (offline) config items."""
    tree, problems = _raw_tree(items)
    if problems:
        raise ConfigError(source, problems)
    return validate(tree, source)


def load_from_file(path: Path | str, source: str | None = None) -> StackConfig:
    """Load and validate a stack file as ``preflight`` does (no decryption, no engine)."""
    path = Path(path)
    return validate_items(read_stack_file(path), source or path.name)


def _parse_engine_value(value: str) -> Any:
    # The engine passes every value as a string: objects and lists as JSON, scalars as written.
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


def _wrap_secrets(value: Any, annotation: Any) -> Any:
    """Mark as ConfigSecret the strings that sit where the model expects a secret.

    The CLI marks a whole top-level key secret when any value under it was set with
    ``--secret``, so only the positions the model types as ConfigSecret are taken as secrets.
    """
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is ConfigSecret:
        return ConfigSecret(value) if isinstance(value, str) else value
    if origin is Annotated:
        return _wrap_secrets(value, args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        fields = annotation.model_fields
        return {k: _wrap_secrets(v, fields[k].annotation) if k in fields else v for k, v in value.items()}
    if origin is dict and isinstance(value, dict):
        return {k: _wrap_secrets(v, args[1]) for k, v in value.items()}
    if origin is list and isinstance(value, list):
        return [_wrap_secrets(v, args[0]) for v in value]
    if args and origin not in (dict, list, Literal):  # a union such as `Model | None`
        for arg in args:
            wrapped = _wrap_secrets(value, arg)
            if _contains_secret(wrapped):
                return wrapped
    return value


def _field_annotation(full_key: str) -> Any:
    namespace, name = split_key(full_key)
    model = StackConfig.model_fields.get(namespace)
    field = model.annotation.model_fields.get(name) if model is not None else None
    return field.annotation if field is not None else None


def load_from_engine(config: Mapping[str, str], secret_keys: list[str] | set[str], source: str) -> StackConfig:
    """Load and validate the config the Pulumi engine passes to a running program.

    Under a key in ``secret_keys`` (set with ``--secret``) the strings the model types as secrets
    become ConfigSecrets; a plaintext value where a secret is expected is refused.
    """
    items: dict[str, Any] = {}
    for key, value in config.items():
        parsed = _parse_engine_value(value)
        items[key] = _wrap_secrets(parsed, _field_annotation(key)) if key in secret_keys else parsed
    tree, problems = _raw_tree(items)
    if problems:
        raise ConfigError(source, problems)
    return validate(tree, source)


def load_for_current_stack() -> StackConfig:
    """The running program's config, as the Pulumi engine supplies it."""
    import pulumi
    from pulumi.runtime import get_config_env, get_config_secret_keys_env

    return load_from_engine(get_config_env(), set(get_config_secret_keys_env()), f"Pulumi.{pulumi.get_stack()}.yaml")


def engine_view(items: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """What the Pulumi CLI would hand the program for a stack file's config: strings, plus the
    keys that hold secrets (whole top-level keys, as the CLI marks them)."""
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in items.items():
        namespace, name = split_key(key)
        full_key = f"{namespace}:{name}"
        if _contains_secret(value):
            secret_keys.append(full_key)
        plain = _reveal(value)
        config[full_key] = plain if isinstance(plain, str) else json.dumps(plain)
    return config, secret_keys


def _contains_secret(value: Any) -> bool:
    if isinstance(value, ConfigSecret):
        return True
    if isinstance(value, dict):
        return any(_contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_secret(v) for v in value)
    return False


def _reveal(value: Any) -> Any:
    if isinstance(value, ConfigSecret):
        return value.reveal()
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value
