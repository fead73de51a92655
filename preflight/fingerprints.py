"""`scripts/secret-fingerprints`: fail when one secret value is used twice, in two stacks or under
two keys of one stack, without ever showing a value.

Input per stack is what `pulumi config --show-secrets --json --stack S` prints: an object
``{"<ns>:<key>": {"value": "...", "objectValue": ..., "secret": true|false}}``. ``value`` is the
decrypted text; ``objectValue`` is present when the key holds structured (``--path``) config and is
that text parsed. ``secret`` is true for a plain secret *and* for an object with any secret inside
it, and the secrets inside an object are printed as ordinary strings in ``objectValue``: the output
does not say which leaves they are. Where they are is written in the stack's own file,
``Pulumi.<stack>.yaml``, as single-key ``secure:`` mappings, so for such keys that file is read as
well (only its structure; it holds ciphertexts, never values) and every located leaf is checked
against the output. When the two disagree, or an object is secret but the file marks nothing inside
it (a secret imported from an environment, say), the check stops with exit 2 rather than guess.

Every secret value is reduced to an HMAC-SHA256 under a key drawn from ``os.urandom`` for this run
only; values and digests are never printed, logged, written or passed on a command line. Only the
stack and key names of the values that repeat are reported.

The standard library only, so it runs before (or without) the project's virtualenv.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import traceback
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

EXIT_DISTINCT = 0
EXIT_SHARED = 1
EXIT_USAGE = 2
EXIT_BUG = 3

PROJECT_DIR = Path(__file__).resolve().parent.parent
PULUMI_TIMEOUT_S = 300
# Pulumi's flags that keep its output plain and never wait for a prompt.
PULUMI_QUIET = ("--non-interactive", "--color", "never")

PathSegment = str | int


class InputError(Exception):
    """Input that cannot be checked, described in one line naming the stack or file."""


@dataclass(frozen=True, order=True)
class Location:
    """Where a secret value lives: a stack and a key in `pulumi config --path` form."""

    stack: str
    key: str

    def __str__(self) -> str:
        return f"{self.stack} {self.key}"


# --------------------------------------------------------------------------------------------
# Where the secrets are.


def config_path(key: str, segments: Sequence[PathSegment]) -> str:
    """A config key and a path inside it, spelled as `pulumi config get/set --path` accepts it."""
    text = key
    for segment in segments:
        if isinstance(segment, int):
            text += f"[{segment}]"
        elif segment and re.fullmatch(r"[^.\[\]\"\s]+", segment):
            text += f".{segment}"
        else:
            text += f"[{json.dumps(segment)}]"
    return text


_MISSING = object()


def _lookup(value: Any, segments: Sequence[PathSegment]) -> Any:
    for segment in segments:
        if isinstance(value, list) and isinstance(segment, int) and 0 <= segment < len(value):
            value = value[segment]
        elif isinstance(value, dict) and str(segment) in value:
            value = value[str(segment)]
        else:
            return _MISSING
    return value


def _normalized_key(key: str) -> str:
    """`ns:config:name` (an old spelling Pulumi still reads) -> `ns:name`."""
    parts = key.split(":")
    return f"{parts[0]}:{parts[2]}" if len(parts) == 3 and parts[1] == "config" else key


def secret_values(stack: str, document: Any, source: str, stack_file: Path) -> Iterator[tuple[Location, str]]:
    """Every secret value of one stack's `pulumi config --show-secrets --json` output.

    ``source`` names where the output came from in error messages; ``stack_file`` is read only
    when a secret sits inside an object value, to find which leaves are the secret ones.
    """
    if not isinstance(document, dict):
        raise InputError(f"{source}: expected a JSON object of config keys, got {_json_type(document)}")
    objects: dict[str, Any] = {}
    plain: set[str] = set()
    for key, entry in document.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("secret"), bool):
            raise InputError(f'{source}: {key}: expected an object with a boolean "secret" (and "value")')
        if not entry["secret"]:
            continue
        value = entry.get("value")
        if not isinstance(value, str):
            raise InputError(
                f"{source}: {key} is secret but has no value; save it with `pulumi config --show-secrets --json`"
            )
        if "objectValue" in entry and isinstance(entry["objectValue"], dict | list):
            objects[key] = entry["objectValue"]
        else:
            plain.add(key)
            yield Location(stack, key), value
    if objects:
        yield from _object_secrets(stack, objects, plain, source, stack_file)


def _object_secrets(
    stack: str, objects: dict[str, Any], plain: set[str], source: str, stack_file: Path
) -> Iterator[tuple[Location, str]]:
    """The secret leaves of object values, located by the stack file's `secure:` mappings."""
    try:
        text = stack_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "is missing" if isinstance(exc, FileNotFoundError) else "cannot be read"
        holds = "holds" if len(objects) == 1 else "hold"
        raise InputError(
            f"{source}: {', '.join(sorted(objects))} {holds} secrets inside an object, and {stack_file} "
            f"(which marks them `secure:`) {reason}; pass --project with the directory of the stack files"
        ) from None
    located: dict[str, list[tuple[PathSegment, ...]]] = defaultdict(list)
    for key, segments in secure_paths(text, stack_file.name):
        located[_normalized_key(key)].append(segments)
    for key, segments_list in sorted(located.items()):
        # Secrets at the top of a key were read from the output already; the file must agree.
        nested = [segments for segments in segments_list if segments]
        if key not in objects and (nested or key not in plain):
            shown = config_path(key, nested[0] if nested else ())
            raise InputError(
                f"{source}: {stack_file.name} marks {shown} `secure:` but the config output has no secret "
                "there; are both from the same commit?"
            )
    for key, value in objects.items():
        if not located.get(key):
            raise InputError(
                f"{source}: {key} is secret, but {stack_file.name} marks no `secure:` value inside it "
                "(from an environment?), so its secret leaves cannot be told apart; set them in the stack file"
            )
        for segments in located[key]:
            leaf = _lookup(value, segments)
            if not isinstance(leaf, str):
                raise InputError(
                    f"{source}: {stack_file.name} marks {config_path(key, segments)} `secure:` but the config "
                    "output has no string there; are both from the same commit?"
                )
            yield Location(stack, config_path(key, segments)), leaf


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


# --------------------------------------------------------------------------------------------
# The stack file's `secure:` paths. A reader for the block-style YAML Pulumi writes (and people
# edit): mappings, sequences, comments, quoted keys, block scalars and one-line flow values. It
# tracks structure only; anything it cannot follow near a `secure:` is an error, never a guess.


@dataclass
class _Block:
    column: int
    path: tuple[PathSegment, ...]
    kind: str  # "map" or "seq"
    keys: list[str] = field(default_factory=list)
    items: int = 0
    secure_scalar: bool = False


_BLOCK_SCALAR = re.compile(r"[|>][-+0-9]*")
_FLOW_SECURE = re.compile(r"""\{\s*(["']?)secure\1\s*:\s*("[^"]*"|'[^']*'|[^\s,{}\[\]"']+)\s*\}""")


def _quoted_end(text: str, start: int) -> int:
    """Index of the quote closing the YAML quoted scalar opened at ``start`` (len(text) if none)."""
    quote, index = text[start], start + 1
    while index < len(text):
        char = text[index]
        if quote == '"' and char == "\\":
            index += 2
            continue
        if char == quote:
            if quote == "'" and text[index + 1 : index + 2] == "'":
                index += 2
                continue
            return index
        index += 1
    return len(text)


def _strip_comment(line: str) -> str:
    index = 0
    while index < len(line):
        char = line[index]
        if char in "\"'" and (index == 0 or line[index - 1] in " \t[{,:-"):
            index = _quoted_end(line, index) + 1
            continue
        if char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index].rstrip()
        index += 1
    return line.rstrip()


def _split_entry(content: str) -> tuple[str, str] | None:
    """`key: value` -> (key, value); None when the text is a scalar, not a mapping entry."""
    if content.startswith(('"', "'")):
        end = _quoted_end(content, 0)
        rest = content[end + 1 :]
        if not (rest.startswith(":") and rest[1:2] in ("", " ")):
            return None
        inner = content[1:end]
        if content[0] == "'":
            key = inner.replace("''", "'")
        else:
            try:
                key = json.loads(f'"{inner}"')
            except ValueError:
                key = inner
        return key, rest[1:].strip()
    match = re.search(r":(?: |$)", content)
    if match is None or content.startswith(("[", "{")):
        return None
    return content[: match.start()].rstrip(), content[match.end() :].strip()


def secure_paths(text: str, source: str) -> list[tuple[str, tuple[PathSegment, ...]]]:
    """(config key, path inside it) of every `secure:` value under a stack file's ``config:``."""
    found: list[tuple[PathSegment, ...]] = []
    blocks = [_Block(0, (), "map")]
    pending: tuple[tuple[PathSegment, ...], int] | None = None
    skip_deeper_than: int | None = None

    def fail(number: int, why: str) -> InputError:
        return InputError(f"{source} line {number}: {why}; cannot tell where its `secure:` values are")

    def close(block: _Block) -> None:
        if block.secure_scalar and block.keys == ["secure"]:
            found.append(block.path)

    def scalar(number: int, path: tuple[PathSegment, ...], value: str) -> None:
        if "secure" not in value or not value.startswith(("{", "[")):
            return
        if _FLOW_SECURE.fullmatch(value):
            found.append(path)
        else:
            raise fail(number, "a flow collection holds `secure`")

    for number, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if not line.strip():
            continue
        column = len(line) - len(line.lstrip(" "))
        content = line[column:]
        if skip_deeper_than is not None:
            if column > skip_deeper_than:
                continue
            skip_deeper_than = None
        if column == 0 and content in ("---", "..."):
            continue
        if content.startswith("\t"):
            raise fail(number, "indented with a tab")
        is_item = content == "-" or content.startswith("- ")
        if pending is not None:
            path, key_column = pending
            pending = None
            if column > key_column or (is_item and column == key_column):
                blocks.append(_Block(column, path, "seq" if is_item else "map"))
        while len(blocks) > 1 and (
            blocks[-1].column > column or (blocks[-1].kind == "seq" and blocks[-1].column == column and not is_item)
        ):
            close(blocks.pop())
        block = blocks[-1]
        if column > block.column:
            # The continuation of a multi-line scalar: no structure in it.
            if "secure" in content:
                raise fail(number, "a multi-line value mentions `secure`")
            continue
        if column < block.column or (block.kind == "seq") != is_item:
            raise fail(number, "unexpected indentation")
        while True:
            if block.kind == "seq":
                path = (*block.path, block.items)
                block.items += 1
                rest = content[1:]
                if not rest.strip():
                    pending = (path, column)
                    break
                dash_column = column
                column += 1 + len(rest) - len(rest.lstrip(" "))
                content = rest.lstrip(" ")
                if content == "-" or content.startswith("- "):
                    block = _Block(column, path, "seq")
                elif _split_entry(content) is not None:
                    block = _Block(column, path, "map")
                elif _BLOCK_SCALAR.fullmatch(content):
                    skip_deeper_than = dash_column
                    break
                else:
                    scalar(number, path, content)
                    break
                blocks.append(block)
                continue
            entry = _split_entry(content)
            if entry is None:
                raise fail(number, "expected `key: value`")
            key, value = entry
            block.keys.append(key)
            path = (*block.path, key)
            if not value:
                pending = (path, column)
            elif _BLOCK_SCALAR.fullmatch(value):
                skip_deeper_than = column
            else:
                if key == "secure" and not value.startswith(("{", "[", "&", "*")):
                    block.secure_scalar = True
                scalar(number, path, value)
            break
    while blocks:
        close(blocks.pop())
    return [(str(path[1]), path[2:]) for path in found if len(path) >= 2 and path[0] == "config"]


# --------------------------------------------------------------------------------------------
# Reading each stack's config: from the Pulumi CLI, or from saved output.


def _pulumi() -> str:
    found = shutil.which("pulumi")
    if found is None:
        raise InputError(
            "the pulumi CLI is not on PATH; install it, or pass saved "
            "`pulumi config --show-secrets --json` output as STACK=FILE"
        )
    return found


def _last_line(text: bytes) -> str:
    lines = [line.strip() for line in text.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"


def _why_pulumi_failed(pulumi: str, stack: str, project: Path) -> str:
    """Why `pulumi config --show-secrets` failed, from a run that decrypts nothing.

    The failed run's own stderr is never shown: an error while decrypting or parsing a decrypted
    object can quote part of a value. The same listing without --show-secrets uses a blinding
    decrypter, so its messages cannot hold a secret; if it succeeds, decryption is what failed.
    """
    try:
        probe = subprocess.run(
            [pulumi, "config", "--json", "--stack", stack, *PULUMI_QUIET],
            cwd=project,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PULUMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "its error message is withheld (it may quote a value)"
    if probe.returncode != 0:
        return _last_line(probe.stderr)
    return (
        "listing the config without secrets works, so decrypting failed: check the stack's secrets "
        "provider credentials (PULUMI_ACCESS_TOKEN, PULUMI_CONFIG_PASSPHRASE(_FILE) or KMS access)"
    )


def pulumi_config(stack: str, project: Path) -> Any:
    """`pulumi config --show-secrets --json --stack <stack>` in the project, parsed; stdout stays in memory."""
    pulumi = _pulumi()
    command = ("config", "--show-secrets", "--json", "--stack", stack)
    shown = f"`pulumi {' '.join(command)}`"
    try:
        result = subprocess.run(
            [pulumi, *command, *PULUMI_QUIET],
            cwd=project,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PULUMI_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InputError(f"stack {stack}: {shown} did not finish within {PULUMI_TIMEOUT_S} s") from None
    except OSError as exc:
        raise InputError(f"stack {stack}: {shown} could not start: {exc.strerror}") from None
    if result.returncode != 0:
        reason = _why_pulumi_failed(pulumi, stack, project)
        raise InputError(f"stack {stack}: {shown} failed (exit {result.returncode}): {reason}")
    return _parse(result.stdout, f"stack {stack}: the output of {shown}")


def saved_config(path: Path, stack: str) -> Any:
    """Saved `pulumi config --show-secrets --json` output (a file, or a pipe such as <(...))."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"stack {stack}: {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"stack {stack}: {path} is a directory; give the file with the saved JSON") from None
    except OSError as exc:
        raise InputError(f"stack {stack}: {path} cannot be read: {exc.strerror}") from None
    return _parse(data, f"stack {stack}: {path}")


def _parse(data: bytes, source: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{source} is not UTF-8 (invalid byte at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        # The message names a position only, never the text around it.
        raise InputError(f"{source} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


# --------------------------------------------------------------------------------------------
# Fingerprints.


def shared_values(values: Iterable[tuple[Location, str]], key: bytes) -> tuple[int, list[list[Location]]]:
    """(how many values, the groups of locations that hold one value) under an HMAC key.

    Only the digests are kept, and only until this returns.
    """
    where: dict[bytes, list[Location]] = defaultdict(list)
    count = 0
    for location, value in values:
        digest = hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        where[digest].append(location)
        count += 1
    groups = sorted(sorted(locations) for locations in where.values() if len(locations) > 1)
    return count, groups


def describe(group: Sequence[Location]) -> str:
    """ "staging a and prod b: same value" (every location named, nothing of the value)."""
    names = [str(location) for location in group]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"{listed}: same value"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --------------------------------------------------------------------------------------------
# Command line.

EPILOG = """exit codes:
  0  every secret value is distinct (one summary line)
  1  a value is used more than once: one line per value naming every stack and key that holds it
  2  bad input or usage: one line naming the stack or file (missing pulumi CLI, a failed
     `pulumi config`, unreadable or invalid JSON, a stack file that does not match)
  3  a bug in this tool (its message is withheld: it might quote a value)

Values never reach the output, a file or a command line; each is reduced to an HMAC-SHA256 under
a random key made for this run and then forgotten."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="secret-fingerprints",
        description=(
            "Check that no secret config value is used twice, across stacks or within one,\n"
            "showing only where repeats are. Each STACK is read with\n"
            "`pulumi config --show-secrets --json --stack STACK` run in the project directory;\n"
            "STACK=FILE reads that command's saved output instead (a pipe such as\n"
            "prod=<(pulumi config --show-secrets --json --stack prod) keeps it off the disk).\n"
            "Secrets inside object values are located by the `secure:` entries of Pulumi.<STACK>.yaml."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "stacks",
        nargs="*",
        metavar="STACK|STACK=FILE",
        help="stacks to compare; default: every Pulumi.<stack>.yaml in the project directory",
    )
    parser.add_argument(
        "--project",
        type=Path,
        default=PROJECT_DIR,
        help="directory with Pulumi.yaml and the stack files (default: this checkout)",
    )
    return parser


def stack_names(project: Path) -> list[str]:
    """The stacks that have a Pulumi.<stack>.yaml in the project directory."""
    names = sorted(path.name[len("Pulumi.") : -len(".yaml")] for path in project.glob("Pulumi.*.yaml"))
    if not names:
        raise InputError(f"{project}: no Pulumi.<stack>.yaml here; name the stacks, or pass --project")
    return names


def _requests(arguments: Sequence[str], project: Path) -> list[tuple[str, Path | None]]:
    requests: list[tuple[str, Path | None]] = []
    for argument in arguments or stack_names(project):
        stack, sep, file = argument.partition("=")
        if not stack or (sep and not file):
            raise InputError(f"{argument!r}: expected STACK or STACK=FILE, e.g. prod or prod=prod-config.json")
        if any(stack == seen for seen, _ in requests):
            raise InputError(f"stack {stack} is named twice")
        requests.append((stack, Path(file) if sep else None))
    return requests


def _values(requests: Sequence[tuple[str, Path | None]], project: Path) -> Iterator[tuple[Location, str]]:
    for stack, file in requests:
        document = saved_config(file, stack) if file else pulumi_config(stack, project)
        source = f"stack {stack} ({file})" if file else f"stack {stack}"
        stack_file = project / f"Pulumi.{stack.rsplit('/', 1)[-1]}.yaml"
        yield from secret_values(stack, document, source, stack_file)


def run(argv: Sequence[str] | None, out: TextIO, err: TextIO) -> int:
    """The command: parse arguments, read every stack, report. Returns the exit code."""
    args = _parser().parse_args(argv)
    project: Path = args.project
    try:
        if not project.is_dir():
            raise InputError(f"--project {project}: not a directory")
        requests = _requests(args.stacks, project)
        count, groups = shared_values(_values(requests, project), os.urandom(32))
    except InputError as exc:
        print(f"secret-fingerprints: {exc}", file=err)
        return EXIT_USAGE
    stacks = _plural(len(requests), "stack")
    if not groups:
        print(f"{_plural(count, 'secret')} across {stacks}, all distinct", file=out)
        return EXIT_DISTINCT
    for group in groups:
        print(describe(group), file=out)
    repeated = sum(len(group) for group in groups)
    print(
        f"{repeated} of {_plural(count, 'secret')} across {stacks} share {_plural(len(groups), 'value')}; "
        "give each its own (`pulumi config set --secret --path KEY --stack STACK`)",
        file=out,
    )
    return EXIT_SHARED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for scripts/secret-fingerprints; a bug is reported without its message."""
    try:
        return run(argv, sys.stdout, sys.stderr)
    except Exception as exc:  # noqa: BLE001 - any bug: report where, never the message
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        print(
            f"secret-fingerprints: internal error {type(exc).__name__}{where} "
            "(message withheld: it might quote a value)",
            file=sys.stderr,
        )
        return EXIT_BUG
