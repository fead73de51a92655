"""`python -m preflight`: what each stack would create, checked by the
policy pack and against the other stacks, without a cloud account, Docker or the Pulumi CLI; and,
after a deploy, `verify` of the live stack."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from components.config import ConfigError, load_from_file
from preflight import rollback, verify
from preflight.critical_path import critical_path, render_critical_path
from preflight.engine import PROJECT_DIR, Plan, PlannedResource, ProgramError, Simulation, plan, stacks_in
from preflight.isolation import compare
from preflight.policy import PackProcess, PolicyPackError, connect, policy_pack

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2

EXIT_CODES = """exit codes:
  0  {ok}
  1  {failed}
  2  bad config or usage: one line per problem naming the file and key"""


def _write_json(document: Any, out: TextIO) -> None:
    """One write of the whole document (the stream may be a pipe)."""
    out.write(json.dumps(document, indent=2) + "\n")


def _epilog(ok: str, failed: str) -> str:
    return EXIT_CODES.format(ok=ok, failed=failed)


class UsageError(Exception):
    """A command line that names something that does not exist, said in one line."""


def _overrides(values: Sequence[str] | None) -> dict[str, str]:
    """`--config-file STACK=FILE` options as {stack: file}."""
    found: dict[str, str] = {}
    for value in values or ():
        stack, sep, path = value.partition("=")
        if not sep or not stack or not path:
            raise UsageError(f"--config-file {value!r}: expected STACK=FILE, e.g. staging=Pulumi.staging.yaml")
        found[stack] = path
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preflight",
        description=(
            "Run the stagecraft program offline under Pulumi's mock engine: what each stack would create, "
            "the policy pack's verdict, and proof that stacks share nothing. `verify` checks a deployed stack."
        ),
        epilog="Every command has its own --help with its exit codes.",
    )
    parser.add_argument(
        "--project",
        type=Path,
        default=PROJECT_DIR,
        help="the project directory (Pulumi.yaml, stack files, policies/); default: this checkout",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter

    plan_cmd = commands.add_parser(
        "plan",
        help="show what a stack would create, and its deploy's critical path",
        description=(
            "Validate Pulumi.<stack>.yaml and run the program under the mock engine exactly as `pulumi up` would "
            "run it: every resource with its inputs (provider property names), options and aliases, secrets shown "
            "as [secret]; then the chain of health waits and jobs that bounds a first `pulumi up`."
        ),
        epilog=_epilog("the program ran", "the program failed under the mock engine (e.g. a simulated job failed)"),
        formatter_class=formatter,
    )
    plan_cmd.add_argument("--stack", required=True, help="stack name, e.g. staging or prod")
    plan_cmd.add_argument("--config-file", help="stack file to read instead of Pulumi.<stack>.yaml")
    plan_cmd.add_argument("--json", action="store_true", help="print one JSON object")
    plan_cmd.add_argument(
        "--job-exit-code",
        action="append",
        metavar="JOB=CODE",
        help="simulate a job (e.g. api-migrate) exiting with CODE, to see the update stop; repeatable",
    )
    plan_cmd.add_argument(
        "--preview", action="store_true", help="simulate `pulumi preview`: what providers compute stays unknown"
    )

    policy_cmd = commands.add_parser(
        "policy",
        help="run the policy pack over a stack's plan",
        description=(
            "Plan the stack, start the policy pack (policies/__main__.py) as the Pulumi CLI does, configure it as "
            "the CLI would and send it every resource (Analyze) and the whole stack (AnalyzeStack)."
        ),
        epilog=_epilog("no mandatory violation", "a mandatory violation, or the program or the pack failed"),
        formatter_class=formatter,
    )
    policy_cmd.add_argument("--stack", required=True, help="stack name")
    policy_cmd.add_argument("--config-file", help="stack file to read instead of Pulumi.<stack>.yaml")
    policy_cmd.add_argument("--json", action="store_true", help="print one JSON object with every violation")

    for name, help_text, description in (
        (
            "isolation",
            "prove two stacks share nothing",
            "Plan two stacks and compare them: Docker names, host ports and subnets on a shared Docker host, "
            "domains, GCP projects, keys, bucket names, secret IDs, service accounts, databases and users, copied "
            "secrets, and IAM grants that reach into the other stack.",
        ),
        (
            "check",
            "plan + policy for every stack, isolation for every pair",
            "Every Pulumi.<stack>.yaml of the project: validate them all (every config problem of every file is "
            "reported, exit 2), plan each, judge each with the policy pack, and compare every pair.",
        ),
    ):
        command = commands.add_parser(
            name,
            help=help_text,
            description=description,
            epilog=_epilog("nothing shared, nothing mandatory violated", "a violation or an overlap"),
            formatter_class=formatter,
        )
        if name == "isolation":
            command.add_argument("stacks", nargs=2, metavar="STACK")
        command.add_argument(
            "--config-file",
            action="append",
            metavar="STACK=FILE",
            help="read FILE as the stack file of STACK; repeatable",
        )
        command.add_argument("--json", action="store_true", help="print one JSON object with every finding")

    verify_cmd = commands.add_parser(
        "verify",
        help="prove a deployed stack works (run after pulumi up)",
        description="Check a live stack from its outputs: the proxy, TLS, the containers, the data stores.",
        epilog=_epilog("every check ran and passed", "a check failed or could not run; 2 also when no check ran"),
        formatter_class=formatter,
    )
    verify.add_arguments(verify_cmd)
    rollback.add_parser(commands)
    return parser


# ---------------------------------------------------------------------------------------------
# Output


def plan_json(result: Plan, violations: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    return {
        "stack": result.stack,
        "resources": [resource.to_json() for resource in result.resources],
        "violations": list(violations),
        "critical_path": critical_path(result).to_json(),
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
    out.write("\n")
    render_critical_path(critical_path(result), out)


def _mandatory(violations: Sequence[dict[str, Any]]) -> bool:
    return any(v["enforcement"] == "mandatory" for v in violations)


def render_violations(title: str, violations: Sequence[dict[str, Any]], out: TextIO) -> None:
    """One line per violation, grouped by policy with counts (every detail is in --json)."""
    mandatory = sum(v["enforcement"] == "mandatory" for v in violations)
    out.write(f"{title}: {mandatory} mandatory, {len(violations) - mandatory} advisory\n")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for violation in violations:
        groups[(violation["enforcement"], violation["policy"])].append(violation)
    for (enforcement, policy), items in sorted(groups.items(), key=lambda kv: (kv[0][0] != "mandatory", kv[0][1])):
        out.write(f"  [{enforcement}] {policy}: {len(items)}\n")
        for item in sorted(items, key=lambda v: v["urn"]):
            name = item["urn"].rsplit("::", 1)[-1]
            message = item["message"].splitlines()[-1]
            out.write(f"    {name}: {message}\n")


# ---------------------------------------------------------------------------------------------
# Commands


def _stack_file(project: Path, stack: str, override: str | None) -> Path:
    path = Path(override) if override else project / f"Pulumi.{stack}.yaml"
    if override is None and not path.exists():
        known = ", ".join(stacks_in(project)) or "none"
        raise ConfigError(path.name, [("file", f"not found in {project}; stacks here: {known}")])
    return path


def _simulation(args: argparse.Namespace) -> Simulation:
    codes: dict[str, int] = {}
    for value in args.job_exit_code or ():
        job, sep, code = value.partition("=")
        if not sep or not job or not code.lstrip("-").isdigit():
            raise UsageError(f"--job-exit-code {value!r}: expected JOB=CODE, e.g. api-migrate=1")
        codes[job] = int(code)
    return Simulation(preview=args.preview, job_exit_codes=codes)


def _cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    path = _stack_file(args.project, args.stack, args.config_file)
    result = plan(args.stack, path, args.project, _simulation(args))
    if args.json:
        _write_json(plan_json(result), out)
    else:
        render_tree(result, out)
    return EXIT_OK


def _cmd_policy(args: argparse.Namespace, out: TextIO) -> int:
    result = plan(args.stack, _stack_file(args.project, args.stack, args.config_file), args.project)
    with policy_pack(args.project / "policies") as analyzer:
        violations = analyzer.violations(result)
    if args.json:
        _write_json(plan_json(result, violations), out)
    else:
        render_violations(f"policy {result.stack}", violations, out)
    return EXIT_VIOLATION if _mandatory(violations) else EXIT_OK


def _isolation_json(left: str, right: str, violations: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"stacks": [left, right], "violations": list(violations)}


def _validated(project: Path, stacks: Sequence[str], overrides: Mapping[str, str]) -> dict[str, Path]:
    """Every stack's file, validated before anything runs; all problems of all files at once."""
    unknown = sorted(set(overrides) - set(stacks))
    if unknown:
        raise UsageError(f"--config-file names stacks that are not being checked: {', '.join(unknown)}")
    paths: dict[str, Path] = {}
    problems: list[ConfigError] = []
    for stack in stacks:
        try:
            paths[stack] = _stack_file(project, stack, overrides.get(stack))
            load_from_file(paths[stack])
        except ConfigError as error:
            problems.append(error)
    if problems:
        raise StackFilesError(problems)
    return paths


class StackFilesError(Exception):
    """Config problems in several stack files."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(error) for error in errors))


def _cmd_isolation(args: argparse.Namespace, out: TextIO) -> int:
    paths = _validated(args.project, args.stacks, _overrides(args.config_file))
    left, right = (plan(stack, paths[stack], args.project) for stack in args.stacks)
    violations = [finding.to_violation() for finding in compare(left, right)]
    if args.json:
        _write_json(_isolation_json(left.stack, right.stack, violations), out)
    else:
        render_violations(f"isolation {left.stack} <-> {right.stack}", violations, out)
    return EXIT_VIOLATION if violations else EXIT_OK


def _plan_and_judge(stack: str, path: Path, project: Path, port: int) -> tuple[Plan, list[dict[str, Any]]]:
    result = plan(stack, path, project)
    with connect(port) as analyzer:
        return result, analyzer.violations(result)


def _cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    # Only `check` forks; the other commands do not pay for importing this.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    project = args.project
    stacks = stacks_in(project)
    if not stacks:
        raise UsageError(f"no Pulumi.<stack>.yaml in {project}")
    paths = _validated(project, stacks, _overrides(args.config_file))
    # The pack boots while the stacks are planned, each stack in its own forked process (the
    # SDKs are already imported), each judged by the one pack over gRPC.
    pack = PackProcess(project / "policies")
    try:
        import components.composition.platform  # noqa: F401 - load the provider modules once, before forking

        port = pack.port
        workers = max(1, min(len(stacks), os.cpu_count() or 1))
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            per_stack = list(
                pool.map(
                    _plan_and_judge,
                    stacks,
                    [paths[stack] for stack in stacks],
                    [project] * len(stacks),
                    [port] * len(stacks),
                )
            )
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
        _write_json(document, out)
    else:
        for result, violations in per_stack:
            path = critical_path(result)
            out.write(f"plan {result.stack}: {len(result.resources)} resources, first up waits ~{path.seconds:.0f} s\n")
            render_violations(f"policy {result.stack}", violations, out)
        for left, right, violations in pairs:
            render_violations(f"isolation {left} <-> {right}", violations, out)
        out.write("check: " + ("FAILED" if failed else "ok") + "\n")
    return EXIT_VIOLATION if failed else EXIT_OK


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    args.project = args.project.resolve()
    if args.command == "verify":
        return verify.run(args, out, err)
    if args.command == "rollback":
        return rollback.run(args, out, err)
    commands = {"plan": _cmd_plan, "policy": _cmd_policy, "isolation": _cmd_isolation, "check": _cmd_check}
    try:
        if not (args.project / "Pulumi.yaml").is_file():
            raise UsageError(f"--project {args.project}: no Pulumi.yaml there; give the stagecraft checkout")
        return commands[args.command](args, out)
    except (ConfigError, StackFilesError) as error:
        err.write(f"{error}\n")
        return EXIT_USAGE
    except UsageError as error:
        err.write(f"preflight {args.command}: {error}\n")
        return EXIT_USAGE
    except ProgramError as error:
        err.write(f"error: the program failed under the mock engine: {error}\n")
        return EXIT_VIOLATION
    except PolicyPackError as error:
        err.write(f"error: {error}\n")
        return EXIT_VIOLATION
