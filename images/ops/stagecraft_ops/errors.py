"""The two kinds of failure the CLI turns into exit codes, and the one-line step log."""

from __future__ import annotations

import sys
import time

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad settings or arguments (exit 2). The message names the file, key or argument."""


class OperationError(Exception):
    """The operation ran and failed (exit 1). The message says which step and why."""


def log(step: str, message: str) -> None:
    """One line per step on stdout: UTC time, the step, what happened. Never pass a secret here."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} {step}: {message}", file=sys.stdout, flush=True)
