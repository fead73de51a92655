"""Run the stagecraft program under Pulumi's mock engine and capture what it would register.

No Pulumi CLI, no credentials: the stack file is validated, turned into the config the CLI would
hand the program, and ``__main__.py`` runs against a mock monitor that records each
RegisterResource request, options included (protect, retainOnDelete, dependencies).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import runpy
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components.config import ConfigError, ConfigSecret, StackConfig, engine_view
from components.config.loading import ciphertexts as stack_file_ciphertexts
from components.config.loading import offline_items, read_stack_config, validate_items
from preflight.aliases import AliasSpec, Registration, candidates, resolve
from preflight.mocks import PlanMocks

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROJECT_NAME = "stagecraft"
MASK = "[secret]"

SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # the wire signature of a secret, not a secret
RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"


class ProgramError(Exception):
    """The program itself failed under the mock engine."""


@dataclass
class PlannedResource:
    """One RegisterResource request, as the engine would see it (secrets masked)."""

    urn: str
    type: str
    name: str
    parent: str
    inputs: dict[str, Any]
    protect: bool
    retain_on_delete: bool
    dependencies: list[str]
    custom: bool
    # The same inputs with secret envelopes kept, for the policy pack; never printed.
    raw_inputs: dict[str, Any] = field(repr=False, default_factory=dict)
    # Old URNs this resource answers to (its aliases, as the engine collapses them).
    aliases: list[str] = field(default_factory=list)
    alias_specs: list[AliasSpec] = field(repr=False, default_factory=list)
    # Position in registration order (parents register before their children).
    order: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "inputs": self.inputs,
            "protect": self.protect,
            "retain_on_delete": self.retain_on_delete,
            "dependencies": self.dependencies,
            "aliases": self.aliases,
        }


@dataclass
class Plan:
    stack: str
    source: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    # Every fake secret value the mocks produced or the config held (for leak checks).
    secret_values: set[str] = field(repr=False, default_factory=set)
    # The validated stack config the plan came from (None for bare component runs).
    config: StackConfig | None = field(repr=False, default=None)
    # (key path, ciphertext) of every `secure:` value in the stack file.
    ciphertexts: list[tuple[str, str]] = field(repr=False, default_factory=list)
    # Every invoke (data source read at deploy time) the program made: (token, arguments).
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def by_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def moves_from(self, previous: set[str]) -> dict[str, str]:
        """{new URN: old URN} for each resource that takes over a URN of ``previous`` (a stack's
        earlier state) through an alias, as ``pulumi up`` would resolve them."""
        registrations = [
            Registration(r.urn, r.parent, r.alias_specs) for r in sorted(self.resources, key=lambda r: r.order)
        ]
        return resolve(registrations, previous, self.stack, PROJECT_NAME)


def mask_secrets(value: Any) -> Any:
    """Replace Pulumi secret envelopes by ``"[secret]"`` and resource references by their URN."""
    if isinstance(value, dict):
        sig = value.get(SIG_KEY)
        if sig == SECRET_SIG:
            return MASK
        if sig == RESOURCE_SIG:
            return value.get("urn", "")
        return {k: mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        # The wire format has only doubles; show whole numbers as the user wrote them.
        return int(value)
    return value


ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


def engine_urn(stack: str, project: str, parent_urn: str, type_: str, name: str) -> str:
    """A URN as the Pulumi engine builds it: the type is qualified by the parent's whole type
    chain (not only the parent's own type, as the SDK's mock monitor does), and the root stack
    resource is left out of the chain."""
    if parent_urn:
        parent_type = parent_urn.split("::")[2]
        if parent_type != ROOT_STACK_TYPE:
            type_ = f"{parent_type}${type_}"
    return f"urn:pulumi:{stack}::{project}::{type_}::{name}"


class CapturingMonitor(MockMonitor):
    """The mock monitor, also keeping each registration's inputs and options, and naming
    resources with the engine's URNs (what the policy pack and `pulumi stack` would see)."""

    def __init__(self, mocks: PlanMocks) -> None:
        super().__init__(mocks)
        self.captured: list[PlannedResource] = []

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        from pulumi.runtime.settings import get_project, get_stack

        return engine_urn(get_stack(), get_project(), parent, type_, name)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            raw = json_format.MessageToDict(request.object)
            specs = [AliasSpec.from_request(alias) for alias in request.aliases]
            specs += [AliasSpec(urn=urn) for urn in request.aliasURNs]
            self.captured.append(
                PlannedResource(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    inputs=mask_secrets(raw),
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    dependencies=sorted(set(request.dependencies)),
                    custom=bool(request.custom),
                    raw_inputs=raw,
                    alias_specs=specs,
                    order=len(self.captured),
                )
            )
        return response


@contextlib.contextmanager
def _engine_environment(config: dict[str, str], secret_keys: list[str]) -> Iterator[None]:
    """The environment variables through which the Pulumi CLI hands a program its config."""
    saved = {key: os.environ.get(key) for key in ("PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS")}
    os.environ["PULUMI_CONFIG"] = json.dumps(config)
    os.environ["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(secret_keys)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _without_source_positions() -> Iterator[None]:
    """For each resource the SDK walks the whole call stack to tell the engine where in the
    program it was declared; only the engine's diagnostics use that, and the mock monitor drops
    it. Skipping the walk saves about a tenth of a plan. (If the SDK moves this function, plans
    simply keep walking.)"""
    from pulumi.runtime import resource as sdk_resource
    from pulumi.runtime.proto import source_pb2

    original = getattr(sdk_resource, "_get_stack_trace", None)
    if original is None:
        yield
        return
    sdk_resource._get_stack_trace = source_pb2.StackTrace  # an empty trace
    try:
        yield
    finally:
        sdk_resource._get_stack_trace = original


def stack_file(stack: str, project_dir: Path = PROJECT_DIR) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"


def stacks_in(project_dir: Path = PROJECT_DIR) -> list[str]:
    """Every stack with a `Pulumi.<stack>.yaml` in the project."""
    return sorted(path.name[len("Pulumi.") : -len(".yaml")] for path in project_dir.glob("Pulumi.*.yaml"))


@dataclass(frozen=True)
class Simulation:
    """How the mock engine behaves: a preview (outputs the providers compute stay unknown), and
    jobs whose exit code is not 0 (by service name), to see how the program reacts."""

    preview: bool = False
    job_exit_codes: dict[str, int] = field(default_factory=dict)


def plan(
    stack: str,
    config_file: Path | str | None = None,
    project_dir: Path = PROJECT_DIR,
    simulation: Simulation | None = None,
) -> Plan:
    """Validate the stack's config, then run the program under mocks; raise ConfigError first."""
    path = Path(config_file) if config_file else stack_file(stack, project_dir)
    raw = read_stack_config(path)  # read once; every config problem surfaces before the program runs
    items = offline_items(raw, path.name)
    config_model = validate_items(items, path.name)
    config, secret_keys = engine_view(items)
    if str(project_dir) not in sys.path:
        sys.path.insert(0, str(project_dir))
    main = project_dir / "__main__.py"
    result = capture(stack, lambda: runpy.run_path(str(main), run_name="__main__"), config, secret_keys, simulation)
    result.source = path.name
    result.config = config_model
    result.ciphertexts = stack_file_ciphertexts(raw)
    result.secret_values |= _config_secrets(items)
    return result


def _config_secrets(value: Any) -> set[str]:
    """The plaintext of every `secure:` value in a stack file's config (offline stand-ins)."""
    if isinstance(value, ConfigSecret):
        return {value.reveal()}
    if isinstance(value, dict):
        return set().union(*(_config_secrets(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_config_secrets(v) for v in value))
    return set()


def _stack_outputs() -> dict[str, Any]:
    """The program's exports, serialised as the engine would receive them, secrets masked."""
    from pulumi.runtime import rpc
    from pulumi.runtime.settings import get_root_resource

    root = get_root_resource()
    exported = getattr(root, "outputs", {}) or {}
    struct = _sync_await(rpc.serialize_properties(exported, {}))
    return mask_secrets(json_format.MessageToDict(struct))


def capture(
    stack: str,
    program: Callable[[], Any],
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    simulation: Simulation | None = None,
) -> Plan:
    """Run ``program`` under the mock engine as stack ``stack`` and return what it registered.

    Each call gets a fresh context and event loop: Pulumi keeps its settings, config and root
    stack in context variables, so runs never see each other.
    """
    return contextvars.Context().run(
        _capture, stack, program, config or {}, secret_keys or [], simulation or Simulation()
    )


def _capture(
    stack: str, program: Callable[[], Any], config: dict[str, str], secret_keys: list[str], simulation: Simulation
) -> Plan:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = PlanMocks(
        stack,
        project_hint=config.get("gcp:project", "mock-project"),
        job_exit_codes=simulation.job_exit_codes,
        preview=simulation.preview,
    )
    monitor = CapturingMonitor(mocks)
    try:
        with _engine_environment(config, secret_keys), _without_source_positions():
            pulumi.runtime.set_all_config(config, secret_keys)
            pulumi.runtime.set_mocks(
                mocks, project=PROJECT_NAME, stack=stack, preview=simulation.preview, monitor=monitor
            )
            _sync_await(run_pulumi_func(program))
            outputs = _stack_outputs()
    except pulumi.RunError as error:
        raise ProgramError(str(error)) from None
    except ConfigError:
        raise
    except Exception as error:
        raise ProgramError(f"{type(error).__name__}: {error}") from error
    finally:
        # A failed program leaves tasks pending (outputs that will never resolve); cancel them with
        # their loop, or the next run would find them and wait on a closed loop.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
        asyncio.set_event_loop(None)
    registrations = [Registration(r.urn, r.parent, r.alias_specs) for r in monitor.captured]
    for resource, aliases in zip(monitor.captured, candidates(registrations, stack, PROJECT_NAME), strict=True):
        resource.aliases = aliases
    return Plan(
        stack=stack,
        source="",
        resources=sorted(monitor.captured, key=lambda r: r.urn),
        outputs=outputs,
        secret_values=set(mocks.secret_values),
        invokes=list(mocks.invokes),
    )
