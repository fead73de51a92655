"""Commands `verify` runs inside the stack's own containers, as plain argv lists.

Each function returns the command only, so the very same argv runs through Docker's exec in a
deployed stack and as a local subprocess against a real Postgres or Redis in the tests. Every
command carries its own timeout where the tool has one; the executor bounds the rest.

Passwords never appear in an argv or in a container's environment: :func:`with_secret_env`
wraps a command in ``sh`` that reads the password file inside the container into one variable
of that one process (the way the Redis healthcheck does).
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

_HTTP_GET = (
    "import sys, urllib.request\n"
    "with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as response:\n"
    "    sys.stdout.write(response.read(65536).decode('utf-8', 'replace'))\n"
)
_TCP_CONNECT = (
    "import socket, sys\n"
    "socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()\n"
    "print('connected')\n"
)


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


def python_http_get(url: str, timeout: float) -> list[str]:
    """GET ``url`` with python3's standard library (images without curl or wget)."""
    return ["python3", "-c", _HTTP_GET, url, str(tool_timeout(timeout))]


def python_tcp_connect(host: str, port: int, timeout: float) -> list[str]:
    """Open (and close) a TCP connection: does the name resolve and does something listen?"""
    return ["python3", "-c", _TCP_CONNECT, host, str(port), str(tool_timeout(timeout))]


def wget_get(url: str, timeout: float) -> list[str]:
    """GET ``url`` with (busybox) wget, printing the body (Prometheus's and Grafana's images)."""
    return ["wget", "-q", "-O", "-", "-T", str(tool_timeout(timeout)), url]


def temporal_cluster_health(address: str) -> list[str]:
    """Temporal's frontend reports SERVING (the server image's own CLI, as its healthcheck)."""
    return ["temporal", "operator", "cluster", "health", "--address", address]
