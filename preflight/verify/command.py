"""`python -m preflight verify`: prove a deployed stack works, right after `pulumi up`.

Exit codes: 0 every check ran and passed; 1 a check failed or could not run (a target that
cannot be reached is a failed check; a skipped check says why it could not run); 2 usage or
outputs problems (one line naming the argument, file or key), or no check ran.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any, TextIO

from preflight.verify.checks import REGISTRY, run_checks
from preflight.verify.context import Context
from preflight.verify.report import all_passed, render_list, render_results
from preflight.verify.targets import DOCKER_HOST_SCHEMES, TargetsError, load_targets

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class OutputsError(Exception):
    """The stack's outputs could not be read; one line."""


def read_outputs(stack: str, outputs_file: str | None, timeout: float) -> tuple[Any, str]:
    """The stack's outputs as JSON and where they came from. Raises :class:`OutputsError`."""
    if outputs_file is not None:
        source = f"--outputs {outputs_file}"
        path = Path(outputs_file)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise OutputsError(f"{source}: no such file") from None
        except (OSError, UnicodeDecodeError) as error:
            raise OutputsError(f"{source}: cannot read it ({error})") from None
    else:
        command = ["pulumi", "stack", "output", "--json", "--stack", stack]
        source = f"`{' '.join(command)}`"
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=max(60.0, timeout), cwd=PROJECT_ROOT, check=False
            )
        except FileNotFoundError:
            raise OutputsError(f"{source}: the pulumi CLI is not on PATH (install it or pass --outputs FILE)") from None
        except subprocess.TimeoutExpired:
            raise OutputsError(f"{source}: no answer within {max(60.0, timeout):g}s") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise OutputsError(f"{source} failed (exit {done.returncode}): {last}")
        text = done.stdout
    if not text.strip():
        raise OutputsError(f"{source}: empty, expected the stack's outputs as JSON")
    try:
        return json.loads(text), source
    except json.JSONDecodeError as error:
        raise OutputsError(f"{source}: not JSON (line {error.lineno} column {error.colno}: {error.msg})") from None


def _usage(args: argparse.Namespace) -> str | None:
    if not args.stack:
        return "--stack is required (e.g. --stack staging)"
    if not 0 < args.timeout <= 600:
        return f"--timeout must be between 0 and 600 seconds (got {args.timeout:g})"
    if args.address is not None:
        try:
            ipaddress.ip_address(args.address)
        except ValueError:
            return f"--address must be an IP address (got {args.address!r})"
    if args.docker_host is not None and not args.docker_host.startswith(DOCKER_HOST_SCHEMES):
        return f"--docker-host must start with one of {', '.join(DOCKER_HOST_SCHEMES)} (got {args.docker_host!r})"
    return None


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run every check against the deployed stack ``args.stack`` and report; see the module
    docstring for exit codes."""
    if args.list:
        render_list(REGISTRY, out, args.json)
        return EXIT_OK
    problem = _usage(args)
    if problem:
        err.write(f"verify: {problem}\n")
        return EXIT_USAGE
    try:
        outputs, source = read_outputs(args.stack, args.outputs, args.timeout)
        targets, ca_pem = load_targets(outputs, source)
    except OutputsError as error:
        err.write(f"verify: {error}\n")
        return EXIT_USAGE
    except TargetsError as error:
        err.write(f"{error}\n")
        return EXIT_USAGE
    if targets.stack != args.stack:
        err.write(f"verify: {source}: the outputs are stack {targets.stack!r}'s, not {args.stack!r}'s\n")
        return EXIT_USAGE
    ctx = Context(
        targets=targets,
        ca_pem=ca_pem,
        timeout=args.timeout,
        docker_host=args.docker_host or targets.docker_host,
        address=args.address,
    )
    try:
        results = run_checks(ctx, REGISTRY)
    finally:
        ctx.close()
    if not results:
        err.write("verify: no check ran\n")
        return EXIT_USAGE
    render_results(targets.stack, results, out, args.json)
    return EXIT_OK if all_passed(results) else EXIT_FAILED
