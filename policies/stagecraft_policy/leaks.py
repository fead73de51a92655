"""Finding secrets where anyone with `docker inspect` or `ps` reads them: URLs with credentials and
passwords on command lines. Findings name what was found, never the value."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator, Sequence

from stagecraft_policy.shared import FILES_PREFIX, SECRET_NAME, safe_value

# scheme://user:password@host (the user may be empty, as in redis://:password@host).
_URL_CREDENTIALS = re.compile(r"([a-z][a-z0-9+.-]*)://[^\s/@?#]*:[^\s/@?#]+@([^\s/?#]*)", re.IGNORECASE)
_URL_QUERY = re.compile(r"[a-z][a-z0-9+.-]*://[^\s?#]*\?(\S+)", re.IGNORECASE)
# Long options that take a secret as their value (--password, --requirepass, --auth-token...);
# --password-file, --password-from-stdin and the like do not match.
_SECRET_OPTION = re.compile(
    r"^--(?:[a-z0-9-]*-)?(?:password|passwd|pass|requirepass|masterauth|token|secret|api-?key|client-secret)$"
)
_OPTION = re.compile(r"^(--?[A-Za-z][A-Za-z0-9-]*)(?:=(.*))?$", re.DOTALL)
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
_AUTHORIZATION = re.compile(r"authorization:\s*(?:[A-Za-z]+\s+)?(\S+)", re.IGNORECASE)
# A value read at run time from a delivered file or a variable is not a secret on the command line.
_READ_AT_RUN_TIME = re.compile(
    r"^\"?(?:\$\((?:cat\s+|<\s*)" + re.escape(FILES_PREFIX) + r"[A-Za-z0-9._/-]+\)|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)\"?$"
)
_PASSWORD_KEYS = ("password", "passwd", "pwd", "pass")


def _read_at_run_time(value: str) -> bool:
    return bool(_READ_AT_RUN_TIME.match(value)) or value.startswith(FILES_PREFIX)


def credential_urls(text: str) -> Iterator[str]:
    """Each URL in ``text`` that carries credentials, shown without them (scheme://host)."""
    for found in _URL_CREDENTIALS.finditer(text):
        yield f"{found[1]}://[credentials]@{found[2]}"
    for found in _URL_QUERY.finditer(text):
        for pair in found[1].split("&"):
            name, _, value = pair.partition("=")
            if value and SECRET_NAME.search(name) and not safe_value(name, value):
                yield f"a URL whose query parameter {name!r} carries a secret"


def tokens(argv: Sequence[str]) -> list[str]:
    """The words of a command: list elements, and shell strings split as a shell would."""
    words: list[str] = []
    for element in argv:
        if any(ch.isspace() for ch in element):
            try:
                words += shlex.split(element)
            except ValueError:
                words += element.split()
        else:
            words.append(element)
    return words


def _program(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def command_line_secrets(argv: Sequence[str]) -> Iterable[str]:
    """What in a command line passes a secret as an argument (each finding names the option)."""
    words = tokens(argv)
    programs: set[str] = set()
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else ""
        programs.add(_program(word))
        option = _OPTION.match(word)
        if option and _SECRET_OPTION.match(option[1].lower()):
            value = option[2] if option[2] is not None else ("" if following.startswith("-") else following)
            if value and not _read_at_run_time(value):
                yield f"{option[1]} with a value"
        if word.lower() in ("requirepass", "masterauth") and following:
            yield f"{word.lower()} with a value"
        if "redis-cli" in programs and ((word == "-a" and following) or (word.startswith("-a") and len(word) > 2)):
            yield "redis-cli -a with a password"
        if "curl" in programs and word in ("-u", "--user") and ":" in following:
            yield "curl credentials in -u/--user"
        assignment = _ASSIGNMENT.match(word)
        if assignment:
            name, value = assignment[1], assignment[2]
            secret_name = (name.isupper() and SECRET_NAME.search(name)) or name.lower() in _PASSWORD_KEYS
            if secret_name and value and not safe_value(name, value) and not _read_at_run_time(value):
                yield f"{name}= with a value"
    for header in _AUTHORIZATION.finditer(" ".join(argv)):
        if not _read_at_run_time(header[1].strip("'\"")):
            yield "an Authorization header with a literal value"
