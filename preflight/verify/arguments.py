"""The arguments of `preflight verify`, apart from the checks, so building the CLI's parser does
not load them."""

from __future__ import annotations

import argparse

DEFAULT_TIMEOUT = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", help="the deployed stack, e.g. staging or prod (required unless --list)")
    parser.add_argument(
        "--outputs", metavar="FILE", help="`pulumi stack output --json` saved to a file, instead of running pulumi"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--list", action="store_true", help="list every check with its category and exit")
    parser.add_argument(
        "--docker-host", metavar="URL", help="Docker Engine to inspect (default: the stack's docker:host)"
    )
    parser.add_argument("--address", metavar="IP", help="reach the proxy at this IP (SNI and Host stay the domain's)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"bound on every connection, request and probe (default {DEFAULT_TIMEOUT:g})",
    )
