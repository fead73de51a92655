"""`python -m preflight`: what each stack would create, without a cloud account, Docker or the
Pulumi CLI.

Exit codes: 0 nothing mandatory is violated; 1 a mandatory violation or a program failure;
2 bad config or usage (one clean message naming the file and key).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TextIO

from components.config import ConfigError
from preflight import verify
from preflight.engine import Plan, PlannedResource, ProgramError, plan, stacks_in
from preflight.isolation import compare
from preflight.policy import PackProcess, PolicyPackError, connect, policy_pack

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
    policy_cmd = commands.add_parser("policy", help="run the policy pack over a stack's plan")
    policy_cmd.add_argument("--stack", required=True)
    policy_cmd.add_argument("--config-file", help="stack file to read instead of Pulumi.<stack>.yaml")
    policy_cmd.add_argument("--json", action="store_true")
    isolation_cmd = commands.add_parser("isolation", help="prove two stacks share nothing")
    isolation_cmd.add_argument("stacks", nargs=2, metavar="STACK")
    isolation_cmd.add_argument("--json", action="store_true")
    check_cmd = commands.add_parser("check", help="plan + policy for every stack, isolation for every pair")
    check_cmd.add_argument("--json", action="store_true")
    verify_cmd = commands.add_parser("verify", help="prove a deployed stack works (run after pulumi up)")
    verify.add_arguments(verify_cmd)
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


def _mandatory(violations: Sequence[dict[str, Any]]) -> bool:
    return any(v["enforcement"] == "mandatory" for v in violations)


def render_violations(title: str, violations: Sequence[dict[str, Any]], out: TextIO) -> None:
    mandatory = sum(v["enforcement"] == "mandatory" for v in violations)
    out.write(f"{title}: {mandatory} mandatory, {len(violations) - mandatory} advisory\n")
    for v in sorted(violations, key=lambda v: (v["enforcement"] != "mandatory", v["policy"], v["urn"])):
        message = v["message"].splitlines()[-1]
        out.write(f"  [{v['enforcement']}] {v['policy']}\n    {v['urn']}\n    {message}\n")
        if v.get("other_urn"):
            out.write(f"    other side: {v['other_urn']}\n")


def _cmd_policy(args: argparse.Namespace, out: TextIO) -> int:
    result = plan(args.stack, args.config_file)
    with policy_pack() as analyzer:
        violations = analyzer.violations(result)
    if args.json:
        json.dump(plan_json(result, violations), out, indent=2)
        out.write("\n")
    else:
        render_violations(f"policy {result.stack}", violations, out)
    return EXIT_VIOLATION if _mandatory(violations) else EXIT_OK


def _isolation_json(left: str, right: str, violations: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"stacks": [left, right], "violations": list(violations)}


def _cmd_isolation(args: argparse.Namespace, out: TextIO) -> int:
    left, right = (plan(stack) for stack in args.stacks)
    violations = [finding.to_violation() for finding in compare(left, right)]
    if args.json:
        json.dump(_isolation_json(left.stack, right.stack, violations), out, indent=2)
        out.write("\n")
    else:
        render_violations(f"isolation {left.stack} <-> {right.stack}", violations, out)
    return EXIT_VIOLATION if violations else EXIT_OK


def _plan_and_judge(stack: str, port: int) -> tuple[Plan, list[dict[str, Any]]]:
    result = plan(stack)
    with connect(port) as analyzer:
        return result, analyzer.violations(result)


def _cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    stacks = stacks_in()
    # The pack boots while the stacks are planned, each stack in its own forked process (the
    # SDKs are already imported), each judged by the one pack over gRPC.
    pack = PackProcess()
    try:
        import components.composition.platform  # noqa: F401 - load the provider modules once, before forking

        port = pack.port
        workers = max(1, min(len(stacks), os.cpu_count() or 1))
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            per_stack = list(pool.map(_plan_and_judge, stacks, [port] * len(stacks)))
    finally:
        pack.stop()
    plans = {result.stack: result for result, _ in per_stack}
    failed = any(_mandatory(violations) for _, violations in per_stack)
    pairs = []
    for i, left in enumerate(stacks):
        for right in stacks[i + 1 :]:
            violations = [finding.to_violation() for finding in compare(plans[left], plans[right])]
            failed |= bool(violations)
            pairs.append((left, right, violations))
    if args.json:
        document = {
            "stacks": [plan_json(result, violations) for result, violations in per_stack],
            "isolation": [_isolation_json(left, right, violations) for left, right, violations in pairs],
        }
        json.dump(document, out, indent=2)
        out.write("\n")
    else:
        for result, violations in per_stack:
            out.write(f"plan {result.stack}: {len(result.resources)} resources\n")
            render_violations(f"policy {result.stack}", violations, out)
        for left, right, violations in pairs:
            render_violations(f"isolation {left} <-> {right}", violations, out)
        out.write("check: " + ("FAILED" if failed else "ok") + "\n")
    return EXIT_VIOLATION if failed else EXIT_OK


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
    if args.command == "verify":
        return verify.run(args, out, err)
    commands = {"plan": _cmd_plan, "policy": _cmd_policy, "isolation": _cmd_isolation, "check": _cmd_check}
    try:
        return commands[args.command](args, out)
    except ConfigError as error:
        err.write(f"{error}\n")
        return EXIT_USAGE
    except ProgramError as error:
        err.write(f"error: the program failed under the mock engine: {error}\n")
        return EXIT_VIOLATION
    except PolicyPackError as error:
        err.write(f"error: {error}\n")
        return EXIT_VIOLATION
