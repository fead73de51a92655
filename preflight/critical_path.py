"""The critical path of a deploy: the chain of health waits and jobs that bounds how long a
`pulumi up` waits, read off a plan.

Every container Pulumi waits on (``wait``) is healthy at its first passing check: with a start
interval (Docker Engine 25+) that check comes that many seconds after the start, without one only
after the steady-state interval. A job runs to completion before what depends on it starts; its
run time is the job's own work, so it is listed but counted as no health wait. Builds (the ops
image) are listed the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from preflight.engine import Plan, PlannedResource

CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/image:Image"


@dataclass(frozen=True)
class Step:
    """One step on the path: a health wait, a job or a build."""

    kind: str  # "wait", "job" or "build"
    name: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "seconds": self.seconds}


@dataclass(frozen=True)
class CriticalPath:
    steps: tuple[Step, ...]

    @property
    def seconds(self) -> float:
        """Seconds of health waits on the path."""
        return sum(step.seconds for step in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {"health_wait_seconds": self.seconds, "steps": [step.to_json() for step in self.steps]}


def _duration(text: str | None) -> float:
    match = re.fullmatch(r"([0-9.]+)s", text or "")
    return float(match.group(1)) if match else 0.0


def _service(resource: PlannedResource) -> str:
    for label in resource.inputs.get("labels", []) or []:
        if label.get("label") == "service":
            return str(label.get("value"))
    return resource.name


def step_of(resource: PlannedResource) -> Step | None:
    """What waiting on this resource costs, if anything."""
    inputs = resource.inputs
    if resource.type == IMAGE:
        return Step("build", inputs.get("imageName", resource.name), 0.0)
    if resource.type != CONTAINER or inputs.get("start") is False:
        return None
    if inputs.get("attach") and inputs.get("mustRun") is False:
        return Step("job", _service(resource), 0.0)
    check = inputs.get("healthcheck")
    if not inputs.get("wait") or not check:
        return None
    first_check = _duration(check.get("startInterval")) or _duration(check.get("interval"))
    return Step("wait", _service(resource), first_check)


def critical_path(plan: Plan, changed: Iterable[str] | None = None) -> CriticalPath:
    """The longest chain of health waits through the plan's dependencies (ties: more steps). With
    ``changed`` (URNs), only those resources are created or replaced (a rollback or a release):
    everything else is already running and costs nothing."""
    by_urn = {resource.urn: resource for resource in plan.resources}
    changed_set = set(by_urn) if changed is None else set(changed)
    memo: dict[str, tuple[float, int, tuple[Step, ...]]] = {}

    def longest(urn: str, seen: frozenset[str]) -> tuple[float, int, tuple[Step, ...]]:
        if urn in memo:
            return memo[urn]
        resource = by_urn[urn]
        best: tuple[float, int, tuple[Step, ...]] = (0.0, 0, ())
        for dependency in resource.dependencies:
            if dependency in by_urn and dependency not in seen:
                candidate = longest(dependency, seen | {urn})
                if candidate[:2] > best[:2]:
                    best = candidate
        step = step_of(resource) if urn in changed_set else None
        if step is not None:
            best = (best[0] + step.seconds, best[1] + 1, (*best[2], step))
        memo[urn] = best
        return best

    paths = [longest(urn, frozenset()) for urn in by_urn]
    _, _, steps = max(paths, key=lambda path: path[:2], default=(0.0, 0, ()))
    return CriticalPath(steps)


def render_critical_path(path: CriticalPath, out: TextIO) -> None:
    out.write(f"critical path of a first `pulumi up`: {path.seconds:.0f} s of health waits\n")
    for step in path.steps:
        detail = f"first healthy check after {step.seconds:.0f} s" if step.kind == "wait" else "runs to completion"
        if step.kind == "build":
            detail = "built on the Docker host"
        out.write(f"  {step.kind:5}  {step.name}: {detail}\n")
