"""How long preflight takes, next to the floor the Pulumi SDK itself sets.

- ``plan``: ``python -m preflight plan --stack S --json`` in a fresh interpreter, per stack.
- ``floor``: a fresh interpreter that imports pulumi and the provider SDKs and registers the very
  same resources (types, names, parents, inputs, dependencies) through the SDK under mocks that
  return the inputs, and does nothing else: no config, no components, no rendering.
- ``check``: ``python -m preflight check`` over 2, 8 and 16 generated stacks (copies of the
  project's stack files with their own names, projects, hosts and domains), to show how it grows.

Plan and floor runs are interleaved, so drift on the machine hits both alike. Target: plan within
1.5x of its floor.

Usage: venv/bin/python scripts/benchmark.py [--runs N] [--stacks 2,8,16] [--skip-check]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.5


# --- the floor: the SDK registering the same resources, nothing else ---------------------------


def _registration_order(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parents and dependencies before the resources that name them."""
    by_urn = {r["urn"]: r for r in resources}
    done: set[str] = set()
    order: list[dict[str, Any]] = []

    def visit(urn: str) -> None:
        if urn in done or urn not in by_urn:
            return
        done.add(urn)
        resource = by_urn[urn]
        visit(resource["parent"])
        for dependency in resource["dependencies"]:
            visit(dependency)
        order.append(resource)

    for urn in by_urn:
        visit(urn)
    return order


def provider_module(type_: str) -> str | None:
    """The SDK module that defines a resource type: `gcp:storage/bucket:Bucket` -> `pulumi_gcp.storage`."""
    package, module, _ = type_.split(":", 2)
    if package == "stagecraft":
        return None
    module = module.split("/", 1)[0]
    return f"pulumi_{package}" if module == "index" else f"pulumi_{package}.{module}"


def _snake(name: str) -> str:
    """`networksAdvanced` -> `networks_advanced`: an engine input name as the SDK's argument."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def replay(plan_file: str) -> None:
    """Register every resource of a saved plan through the SDK under trivial mocks."""
    import importlib

    import pulumi
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    document = json.loads(Path(plan_file).read_text())
    # The provider classes these resources are (the SDKs load a module's classes on first use).
    for type_ in sorted({r["type"] for r in document["resources"]}):
        module = provider_module(type_)
        if module is not None:
            getattr(importlib.import_module(module), type_.rsplit(":", 1)[1])

    class EchoMocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            return f"{args.name}-id", args.inputs

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
            return {}, []

    resources = _registration_order(document["resources"])

    def program() -> None:
        created: dict[str, pulumi.Resource] = {}
        for r in resources:
            opts = pulumi.ResourceOptions(
                parent=created.get(r["parent"]),
                depends_on=[created[d] for d in r["dependencies"] if d in created] or None,
                protect=r["protect"],
                retain_on_delete=r["retain_on_delete"],
            )
            if r["type"].startswith("stagecraft:"):
                created[r["urn"]] = pulumi.ComponentResource(r["type"], r["name"], None, opts)
            else:
                # The provider's own class, as a program would call it.
                module = importlib.import_module(provider_module(r["type"]) or "")
                cls = getattr(module, r["type"].rsplit(":", 1)[1])
                kwargs = {_snake(key): value for key, value in r["inputs"].items()}
                created[r["urn"]] = cls(r["name"], opts=opts, **kwargs)

    pulumi.runtime.set_mocks(EchoMocks(), project="stagecraft", stack=document["stack"], preview=False)
    _sync_await(run_pulumi_func(program))


# --- measuring ---------------------------------------------------------------------------------


# As a user runs it: Python caches compiled modules (the warm-up run writes the cache).
ENVIRONMENT = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def _timed(command: list[str], cwd: Path = ROOT) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=ENVIRONMENT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _summary(times: Sequence[float]) -> str:
    return f"median {statistics.median(times):.2f}s  min {min(times):.2f}s"


def plan_against_floor(stack: str, runs: int, scratch: Path) -> float:
    """Interleaved runs of the plan and its floor; prints both and returns the ratio of medians."""
    saved = scratch / f"plan-{stack}.json"
    with saved.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "preflight", "plan", "--stack", stack, "--json"],
            cwd=ROOT,
            env=ENVIRONMENT,
            check=True,
            stdout=out,
        )
    count = len(json.loads(saved.read_text())["resources"])
    plan_command = [sys.executable, "-m", "preflight", "plan", "--stack", stack, "--json"]
    floor_command = [sys.executable, str(Path(__file__).resolve()), "--replay", str(saved)]
    _timed(floor_command), _timed(plan_command)  # warm the file cache
    plan_times, floor_times = [], []
    for _ in range(runs):
        floor_times.append(_timed(floor_command))
        plan_times.append(_timed(plan_command))
    ratio = statistics.median(plan_times) / statistics.median(floor_times)
    verdict = "ok" if ratio <= TARGET_RATIO else "over target"
    print(f"{stack}: {count} resources")
    print(f"  floor (SDK registers the same resources): {_summary(floor_times)}")
    print(f"  preflight plan:                           {_summary(plan_times)}")
    print(f"  ratio {ratio:.2f}x (target <= {TARGET_RATIO}x): {verdict}")
    return ratio


def _generated_stack(template: dict[str, Any], index: int) -> dict[str, Any]:
    """A copy of a stack document that is its own application: names, project, host, domains."""
    config = json.loads(json.dumps(template["config"]))
    environment = config["stagecraft:environment"]
    app = f"app{index:02d}"
    domain = f"{app}.example.com"
    config["stagecraft:app_name"] = app
    config["gcp:project"] = f"{app}-{environment}-4711"
    config["docker:host"] = f"ssh://deploy@{app}-{environment}.example.com"
    prefix = "" if environment == "prod" else f"{environment}."
    config["stagecraft:domains"] = {
        "web": f"{prefix}{domain}",
        "api": f"api{'' if environment == 'prod' else '-' + environment}.{domain}",
        "grafana": f"grafana{'' if environment == 'prod' else '-' + environment}.{domain}",
    }
    config["stagecraft:app"]["cors_origins"] = [f"https://{config['stagecraft:domains']['web']}"]
    for key in ("sender", "username"):
        if key in config.get("stagecraft:alerting", {}).get("email", {}):
            config["stagecraft:alerting"]["email"][key] = f"alerts-{environment}@{domain}"
    return {"config": config}


def generate_project(directory: Path, count: int) -> list[str]:
    """A project directory with ``count`` stack files (alternating staging and prod copies)."""
    for item in ("Pulumi.yaml", "__main__.py", "components", "policies", "images"):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, directory / item, ignore=shutil.ignore_patterns("venv", "__pycache__"))
        else:
            shutil.copy2(source, directory / item)
    templates = [yaml.safe_load((ROOT / f"Pulumi.{s}.yaml").read_text()) for s in ("staging", "prod")]
    settings_file = directory / "policies" / "stagecraft_policy" / "settings.json"
    settings = json.loads(settings_file.read_text())
    names = []
    for index in range(count):
        template = templates[index % 2]
        environment = template["config"]["stagecraft:environment"]
        name = f"{environment}-{index:02d}"
        document = _generated_stack(template, index)
        (directory / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        names.append(name)
        # The pack knows each environment's own projects, as an operator would register them.
        settings["environmentProjects"].setdefault(environment, []).append(document["config"]["gcp:project"])
        if environment == "prod":
            settings["productionPrefixes"].append(f"{document['config']['stagecraft:app_name']}-prod-")
    settings_file.write_text(json.dumps(settings, indent=2))
    return names


def check_growth(counts: Sequence[int], scratch: Path) -> None:
    print("preflight check (plan + policy for every stack, isolation for every pair):")
    for count in counts:
        project = scratch / f"project-{count}"
        project.mkdir()
        generate_project(project, count)
        command = [sys.executable, "-m", "preflight", "--project", str(project), "check"]
        seconds = _timed(command)
        pairs = count * (count - 1) // 2
        print(f"  {count:>2} stacks: {seconds:.1f}s  ({seconds / count:.2f}s per stack, {pairs} pairs)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--stacks", default="2,8,16", help="stack counts for the check growth (default 2,8,16)")
    parser.add_argument("--skip-check", action="store_true", help="measure plan against its floor only")
    parser.add_argument("--replay", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay:
        replay(args.replay)
        return 0
    with tempfile.TemporaryDirectory(prefix="stagecraft-benchmark-") as temp:
        scratch = Path(temp)
        ratios = [plan_against_floor(stack, args.runs, scratch) for stack in ("staging", "prod")]
        if not args.skip_check:
            check_growth([int(n) for n in args.stacks.split(",")], scratch)
    return 0 if max(ratios) <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
