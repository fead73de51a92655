"""Commands `verify` runs inside the stack's own containers, as plain argv lists.

Each function returns the command only, so the very same argv runs through Docker's exec in a
deployed stack and as a local subprocess against a real Postgres or Redis in the tests. Every
command carries its own timeout where the tool has one; the executor bounds the rest.

Passwords never appear in an argv or in a container's environment: :func:`with_secret_env`
wraps a command in ``sh`` that reads the password file inside the container into one variable
of that one process (the way the Redis healthcheck does).

Not every image has the same tools: the probe container (``ops``) has psql, redis-cli and
python3; Chroma's and Temporal's images have bash but no python, curl or wget, so the probes that
must run there speak TCP and HTTP through bash's ``/dev/tcp``.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

MARKER_TABLE = "stagecraft_verify.marker"
MARKER_KEY_PREFIX = "stagecraft:verify:"
MARKER = re.compile(r"^[0-9a-f]{16,64}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")

_TCP_CONNECT = (
    "import socket, sys\n"
    "socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()\n"
    "print('connected')\n"
)
# bash builtins only (the images may lack cat, timeout, even coreutils): $1 host, $2 port.
BASH_TCP_CONNECT = 'exec 3<>"/dev/tcp/$1/$2" || exit 7; echo connected'
# An HTTP/1.0 GET of $3 from $1:$2, every read bounded by $4 seconds, printing the response as
# received: status line and headers (CRLF kept), a blank line, then Content-Length bytes of body
# (or everything up to the close). LC_ALL=C makes read -N count bytes, not characters.
BASH_HTTP_GET = r"""LC_ALL=C
exec 3<>"/dev/tcp/$1/$2" || exit 7
printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$3" "$1" "$2" >&3 || exit 7
length=
while IFS= read -r -t "$4" line <&3; do
  printf '%s\n' "$line"
  line=${line%$'\r'}
  [ -z "$line" ] && break
  case ${line,,} in content-length:*) length=${line#*:}; length=${length//[!0-9]/} ;; esac
done
if [ -n "$length" ]; then
  IFS= read -r -N "$length" -t "$4" body <&3
  printf '%s' "$body"
else
  while IFS= read -r -t "$4" line <&3; do printf '%s\n' "$line"; done
  printf '%s' "$line"
fi
"""
_STATUS_LINE = re.compile(r"^HTTP/[0-9](?:\.[0-9])? ([0-9]{3})(?: |$)")


@dataclass(frozen=True)
class ProbeResult:
    """What a probe printed and how it ended (``exit_code`` None: it did not finish)."""

    exit_code: int | None
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def summary(self) -> str:
        """The probe's last words, one line, for a finding's detail."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        last = text[-1].strip() if text else "no output"
        return f"exit {self.exit_code}: {last[:300]}"


class Executor(Protocol):
    """Runs a probe's argv somewhere: a container of the stack, or this machine in tests."""

    @property
    def where(self) -> str: ...

    def run(self, argv: Sequence[str], timeout: float) -> ProbeResult: ...


class LocalExecutor:
    """Runs probes as local subprocesses (the tests' stand-in for Docker exec)."""

    def __init__(self, path: Sequence[str] = (), env: Mapping[str, str] | None = None) -> None:
        self._env = dict(env if env is not None else os.environ)
        if path:
            self._env["PATH"] = os.pathsep.join([*path, self._env.get("PATH", "")])

    @property
    def where(self) -> str:
        return "this machine"

    def run(self, argv: Sequence[str], timeout: float) -> ProbeResult:
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=self._env)
        except subprocess.TimeoutExpired:
            return ProbeResult(None, "", f"no answer within {timeout:g}s")
        except OSError as error:
            return ProbeResult(None, "", f"cannot run {argv[0]}: {error.strerror}")
        return ProbeResult(done.returncode, done.stdout, done.stderr)


def tool_timeout(timeout: float) -> int:
    """Whole seconds for a tool's own timeout, a little under the executor's bound so the tool's
    clearer message wins."""
    return max(1, int(timeout * 0.8))


def with_secret_env(variable: str, secret_file: str, argv: Sequence[str]) -> list[str]:
    """``argv`` with ``variable`` set, for that process only, to the content of ``secret_file``
    (read inside the container; the value never reaches a command line or the container's env)."""
    if not ENV_NAME.fullmatch(variable):
        raise ValueError(f"not an environment variable name: {variable!r}")
    script = f'{variable}="$(cat -- "$1")" || exit 125; export {variable}; shift; exec "$@"'
    return ["sh", "-c", script, "sh", secret_file, *argv]


# Postgres ----------------------------------------------------------------------------------


def pg_isready(host: str, port: int, database: str, user: str, timeout: float) -> list[str]:
    """Does the server accept connections (no password needed)?"""
    return [
        "pg_isready",
        "-h",
        host,
        "-p",
        str(port),
        "-d",
        database,
        "-U",
        user,
        "-t",
        str(tool_timeout(timeout)),
    ]


def psql(
    host: str, port: int, user: str, database: str, password_file: str, statements: Sequence[str], timeout: float
) -> list[str]:
    """Run ``statements`` (each its own ``-c``, autocommitted) and print bare rows."""
    seconds = tool_timeout(timeout)
    conninfo = (
        f"host={host} port={port} dbname={database} user={user} connect_timeout={seconds} "
        f"options='-c statement_timeout={seconds * 1000}'"
    )
    command = ["psql", "-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-d", conninfo]
    for statement in statements:
        command += ["-c", statement]
    return with_secret_env("PGPASSWORD", password_file, command)


def current_database_sql() -> list[str]:
    return ["SELECT current_database()"]


def _marker(token: str) -> str:
    if not MARKER.fullmatch(token):
        raise ValueError("a marker is 16-64 lowercase hex digits")
    return token


def _fill(statements: Sequence[str], token: str) -> list[str]:
    """The statements with ``:token`` replaced; the token is checked to be hex digits only, so
    it cannot leave its quotes (psql does not substitute variables in ``-c`` commands)."""
    return [statement.replace(":token", _marker(token)) for statement in statements]


_WRITE = (
    "CREATE SCHEMA IF NOT EXISTS stagecraft_verify",
    "CREATE TABLE IF NOT EXISTS stagecraft_verify.marker "
    "(token text PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT now())",
    # Rows of runs that stopped half-way expire after a day.
    "DELETE FROM stagecraft_verify.marker WHERE written_at < now() - interval '1 day'",
    "INSERT INTO stagecraft_verify.marker (token) VALUES (':token')",
)
_READ = ("SELECT token FROM stagecraft_verify.marker WHERE token = ':token'",)
_DELETE = ("DELETE FROM stagecraft_verify.marker WHERE token = ':token'",)


def marker_write_sql(token: str) -> list[str]:
    """A row in a tiny table of verify's own schema in the app database."""
    return _fill(_WRITE, token)


def marker_read_sql(token: str) -> list[str]:
    return _fill(_READ, token)


def marker_delete_sql(token: str) -> list[str]:
    return _fill(_DELETE, token)


# Redis -------------------------------------------------------------------------------------


def redis_cli(host: str, port: int, user: str | None, password_file: str | None, command: Sequence[str]) -> list[str]:
    """``redis-cli`` as ACL ``user`` with the password from ``password_file`` (REDISCLI_AUTH), or
    deliberately unauthenticated."""
    base = ["redis-cli", "-h", host, "-p", str(port)]
    if password_file is None:
        return ["env", "-u", "REDISCLI_AUTH", *base, *command]
    login = ["--user", user] if user else []
    return with_secret_env("REDISCLI_AUTH", password_file, [*base, *login, *command])


def redis_marker_key(token: str) -> str:
    return MARKER_KEY_PREFIX + _marker(token)


# HTTP and TCP from inside the networks -----------------------------------------------------


def python_tcp_connect(host: str, port: int, timeout: float) -> list[str]:
    """Open (and close) a TCP connection: does the name resolve and does something listen?"""
    return ["python3", "-c", _TCP_CONNECT, host, str(port), str(tool_timeout(timeout))]


def bash_tcp_connect(host: str, port: int) -> list[str]:
    """Open (and close) a TCP connection with bash alone, for images without python3. bash's
    connect has no timeout of its own: the executor bounds it."""
    return ["bash", "-c", BASH_TCP_CONNECT, "bash", host, str(port)]


def bash_http_get(host: str, port: int, path: str, timeout: float) -> list[str]:
    """GET ``path`` from ``host:port`` with bash alone (HTTP/1.0); prints the raw response, for
    :func:`parse_http_response`."""
    if not path.startswith("/") or any(c.isspace() for c in path):
        raise ValueError(f"not an HTTP path: {path!r}")
    return ["bash", "-c", BASH_HTTP_GET, "bash", host, str(port), path, str(tool_timeout(timeout))]


@dataclass(frozen=True)
class HttpAnswer:
    """A raw HTTP response as a probe printed it: the status (None if there was no status line)
    and the body."""

    status: int | None
    body: str


def parse_http_response(raw: str) -> HttpAnswer:
    """Status and body of a raw HTTP/1.x response (CRLF or LF line ends)."""
    text = raw.replace("\r\n", "\n")
    head, separator, body = text.partition("\n\n")
    match = _STATUS_LINE.match(head)
    if match is None or not separator:
        return HttpAnswer(int(match.group(1)) if match else None, "")
    return HttpAnswer(int(match.group(1)), body)


def wget_get(url: str, timeout: float) -> list[str]:
    """GET ``url`` with (busybox) wget, printing the body (Prometheus's and Grafana's images)."""
    return ["wget", "-q", "-O", "-", "-T", str(tool_timeout(timeout)), url]


def temporal_cluster_health(address: str) -> list[str]:
    """Temporal's frontend reports SERVING (the server image's own CLI, as its healthcheck)."""
    return ["temporal", "operator", "cluster", "health", "--address", address]
