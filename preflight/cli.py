"""`python -m preflight`: what each stack would create, without a cloud account, Docker or the
Pulumi CLI.

Exit codes: 0 nothing mandatory is violated; 1 a mandatory violation or a program failure;
2 bad config or usage (one clean message naming the file and key).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any, TextIO

from components.config import ConfigError
from preflight.engine import Plan, PlannedResource, ProgramError, plan

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m preflight",
        description="Run the stagecraft program offline under Pulumi's mock engine.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    plan_cmd = commands.add_parser("plan", help="show what a stack would create")
    plan_cmd.add_argument("--stack", required=True, help="stack name, e.g. staging or prod")
    plan_cmd.add_argument("--config-file", help="stack file to read instead of Pulumi.<stack>.yaml")
    plan_cmd.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def plan_json(result: Plan, violations: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    return {
        "stack": result.stack,
        "resources": [resource.to_json() for resource in result.resources],
        "violations": list(violations),
    }


def render_tree(result: Plan, out: TextIO) -> None:
    """A readable tree of components and resources, with protected ones marked."""
    children: dict[str, list[PlannedResource]] = defaultdict(list)
    urns = {resource.urn for resource in result.resources}
    for resource in result.resources:
        children[resource.parent if resource.parent in urns else ""].append(resource)

    def walk(parent: str, indent: str) -> None:
        items = sorted(children.get(parent, []), key=lambda r: (r.custom, r.type, r.name))
        for index, resource in enumerate(items):
            last = index == len(items) - 1
            flags = [flag for flag, on in (("protect", resource.protect), ("retain", resource.retain_on_delete)) if on]
            marker = f"  [{', '.join(flags)}]" if flags else ""
            out.write(f"{indent}{'└─ ' if last else '├─ '}{resource.type}  {resource.name}{marker}\n")
            walk(resource.urn, indent + ("   " if last else "│  "))

    out.write(f"stack {result.stack} ({result.source}): {len(result.resources)} resources\n")
    walk("", "")
    counts = Counter(r.type for r in result.resources if r.custom)
    out.write("\nby type:\n")
    for type_, count in sorted(counts.items()):
        out.write(f"  {count:4d}  {type_}\n")


def _cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    result = plan(args.stack, args.config_file)
    if args.json:
        json.dump(plan_json(result), out, indent=2, sort_keys=False)
        out.write("\n")
    else:
        render_tree(result, out)
    return EXIT_OK


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    try:
        return _cmd_plan(args, out)
    except ConfigError as error:
        err.write(f"{error}\n")
        return EXIT_USAGE
    except ProgramError as error:
        err.write(f"error: the program failed under the mock engine: {error}\n")
        return EXIT_VIOLATION
