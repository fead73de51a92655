"""`python -m preflight verify`: the checks a platform engineer runs right after `pulumi up` to
prove a live stack works, from the stack's own outputs.

Modules: ``targets`` (what to check, from the ``verify`` output), ``checks`` (the registry and
its fourteen categories), ``http_client`` and ``http_checks`` (through the proxy), ``docker_api``
and ``inventory`` (the Engine API and the stack's objects in it), ``container_checks``
(containers, networks, volumes), ``probes`` and ``probe_checks`` (commands run inside the
stack's containers), ``context`` (what every check gets), ``report`` (table and JSON),
``arguments`` and ``command`` (the CLI).
"""

from __future__ import annotations

import argparse
from typing import TextIO

from preflight.verify.arguments import add_arguments

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the checks (loaded only now: other commands do not need them)."""
    from preflight.verify.command import run as run_checks

    return run_checks(args, out, err)
