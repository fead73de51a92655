"""Run the policy pack over a plan the way the Pulumi CLI does: start policies/__main__.py, read
the port it prints, and drive its Analyzer gRPC service in the CLI's order:

1. ConfigureStack (stack, project, organization, dry run);
2. GetAnalyzerInfo, then Configure with every policy, its enforcement level (its own or the
   pack's) and the top-level `default` of each of its config schema's properties, overlaid by a
   `--policy-pack-config`-style document if one is given (the CLI's merge rules: per-policy
   properties replace defaults key by key; a level, or `all`, changes enforcement only);
3. Analyze for every resource in registration order, on its inputs as the provider's Check
   returns them (for Docker containers and networks, with the Terraform schema defaults the
   provider fills in, e.g. `networkMode: bridge`): the root stack, each default provider before
   the first resource it serves, components and custom resources, each custom resource with its
   provider;
4. AnalyzeStack once, on every resource's outputs (the same mock provider results the plan ran
   on), with parents and dependencies.

Preflight sends no stack config in ConfigureStack and no property dependencies (the plan keeps
neither); resources are assumed to use their package's default provider.
"""

from __future__ import annotations

import copy
import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.mocks import MockResourceArgs
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from preflight.engine import PROJECT_DIR, PROJECT_NAME, SECRET_SIG, SIG_KEY, Plan, PlannedResource
from preflight.mocks import PlanMocks

POLICY_DIR = PROJECT_DIR / "policies"
LEVELS = {
    analyzer_pb2.ADVISORY: "advisory",
    analyzer_pb2.MANDATORY: "mandatory",
    analyzer_pb2.DISABLED: "disabled",
    analyzer_pb2.REMEDIATE: "remediate",
}
LEVEL_BY_NAME = {name: level for level, name in LEVELS.items()}
ROOT_STACK = "pulumi:pulumi:Stack"
# Outputs each provider marks secret (the mocks return them in plaintext).
SECRET_OUTPUTS = {
    "random:index/randomPassword:RandomPassword": ("result", "bcryptHash"),
    "tls:index/privateKey:PrivateKey": ("privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"),
    "gcp:serviceaccount/key:Key": ("privateKey",),
}


# Defaults the Docker provider's Check fills into a resource's inputs (the Terraform schema
# defaults of terraform-provider-docker 4.x that the bridge applies), top level and per item of a
# nested block; the pack sees them exactly like values the program set.
CHECK_DEFAULTS: dict[str, dict[str, Any]] = {
    "docker:index/container:Container": {
        "attach": False,
        "containerReadRefreshTimeoutMilliseconds": 15000,
        "logs": False,
        "memoryReservation": 0,
        "mustRun": True,
        "networkMode": "bridge",
        "readOnly": False,
        "removeVolumes": True,
        "restart": "no",
        "rm": False,
        "start": True,
        "stdinOpen": False,
        "tty": False,
        "wait": False,
        "waitTimeout": 60,
    },
    "docker:index/network:Network": {"ipamDriver": "default"},
}
NESTED_CHECK_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "docker:index/container:Container": {
        "ports": {"ip": "0.0.0.0", "protocol": "tcp"},
        "uploads": {"executable": False},
        "healthcheck": {"interval": "0s", "timeout": "0s", "startPeriod": "0s", "startInterval": "0s", "retries": 0},
    },
}


class PolicyPackError(Exception):
    """The policy pack did not start or answer, or refused its configuration."""


def _struct(properties: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(dict(properties), struct)
    return struct


def checked_inputs(resource_type: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` as the provider's Check returns them: unset values given their defaults."""
    checked = copy.deepcopy(dict(inputs))
    for key, value in CHECK_DEFAULTS.get(resource_type, {}).items():
        if checked.get(key) is None:
            checked[key] = value
    for key, defaults in NESTED_CHECK_DEFAULTS.get(resource_type, {}).items():
        block = checked.get(key)
        for item in block if isinstance(block, list) else [block]:
            if isinstance(item, dict) and SIG_KEY not in item:
                for name, value in defaults.items():
                    if item.get(name) is None:
                        item[name] = value
    return checked


def _options(resource: PlannedResource) -> analyzer_pb2.AnalyzerResourceOptions:
    return analyzer_pb2.AnalyzerResourceOptions(protect=resource.protect, parent=resource.parent)


@dataclass
class Provider:
    """A default provider as the engine registers it: inputs from the stack's `<package>:` config."""

    urn: str
    type: str
    name: str
    inputs: dict[str, Any] = field(default_factory=dict)

    def message(self) -> analyzer_pb2.AnalyzerProviderResource:
        """The provider as Analyze and AnalyzeStack carry it beside each resource it serves."""
        return analyzer_pb2.AnalyzerProviderResource(
            type=self.type, properties=_struct(self.inputs), urn=self.urn, name=self.name
        )

    def resource(self) -> PlannedResource:
        """The provider as a resource of the stack (the engine analyzes providers too)."""
        return PlannedResource(
            urn=self.urn,
            type=self.type,
            name=self.name,
            parent="",
            inputs=self.inputs,
            protect=False,
            retain_on_delete=False,
            dependencies=[],
            custom=True,
            raw_inputs=self.inputs,
        )


def package_of(resource_type: str) -> str:
    """`gcp:storage/bucket:Bucket` -> `gcp`: the package whose provider serves the type."""
    return resource_type.split(":", 1)[0]


def _provider_config(plan: Plan, package: str) -> dict[str, str]:
    """The provider keys of the stack file, as the CLI hands them to a default provider."""
    config = plan.config
    if config is None:
        return {}
    if package == "gcp":
        return {k: v for k, v in config.gcp.model_dump().items() if v is not None}
    if package == "docker":
        return {"host": config.docker.host}
    return {}


def default_providers(plan: Plan) -> dict[str, Provider]:
    """The default provider of each package the plan's custom resources use."""
    providers: dict[str, Provider] = {}
    for resource in plan.resources:
        package = package_of(resource.type)
        if not resource.custom or package in providers or resource.type.startswith("pulumi:providers:"):
            continue
        try:
            version = importlib.metadata.version(f"pulumi_{package}")
        except importlib.metadata.PackageNotFoundError:
            continue
        name = f"default_{version.replace('.', '_')}"
        providers[package] = Provider(
            urn=f"urn:pulumi:{plan.stack}::{PROJECT_NAME}::pulumi:providers:{package}::{name}",
            type=f"pulumi:providers:{package}",
            name=name,
            inputs={**_provider_config(plan, package), "version": version},
        )
    return providers


def root_stack(plan: Plan) -> PlannedResource:
    """The stack's root resource (the plan leaves it out): no inputs; its outputs are the exports."""
    name = f"{PROJECT_NAME}-{plan.stack}"
    return PlannedResource(
        urn=f"urn:pulumi:{plan.stack}::{PROJECT_NAME}::{ROOT_STACK}::{name}",
        type=ROOT_STACK,
        name=name,
        parent="",
        inputs={},
        protect=False,
        retain_on_delete=False,
        dependencies=[],
        custom=False,
        raw_inputs={},
    )


def _secret(value: Any) -> Any:
    if isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG:
        return value
    return {SIG_KEY: SECRET_SIG, "value": value}


def resource_outputs(plan: Plan) -> dict[str, dict[str, Any]]:
    """Each resource's outputs as the engine recorded them: the mock provider's result for its
    inputs (the same deterministic mocks the plan ran on), provider secrets marked secret."""
    project = plan.config.gcp.project if plan.config is not None else "mock-project"
    mocks = PlanMocks(plan.stack, project_hint=project)
    outputs: dict[str, dict[str, Any]] = {}
    for resource in plan.resources:
        if not resource.custom:
            outputs[resource.urn] = {}
            continue
        inputs = checked_inputs(resource.type, resource.raw_inputs)
        args = MockResourceArgs(resource.type, resource.name, inputs, custom=True)
        _, state = mocks.new_resource(args)
        for key in SECRET_OUTPUTS.get(resource.type, ()):
            if key in state:
                state[key] = _secret(state[key])
        outputs[resource.urn] = state
    return outputs


def cli_policy_config(
    info: analyzer_pb2.AnalyzerInfo, overrides: Mapping[str, Any] | None = None
) -> dict[str, tuple[int, dict[str, Any]]]:
    """What the CLI sends to Configure: {policy: (enforcement level, properties)}. Every policy
    gets its level and its schema's top-level defaults; ``overrides`` (a --policy-pack-config
    document) then applies: a string is a level; an object may hold `enforcementLevel` and
    properties, which replace defaults key by key; `all` with a level sets every policy's level."""
    config: dict[str, tuple[int, dict[str, Any]]] = {}
    for policy in info.policies:
        schema = json_format.MessageToDict(policy.configSchema.properties) if policy.HasField("configSchema") else {}
        defaults = {k: v["default"] for k, v in schema.items() if isinstance(v, dict) and "default" in v}
        config[policy.name] = (policy.enforcementLevel, defaults)
    given: dict[str, tuple[int | None, dict[str, Any]]] = {}
    for name, value in (overrides or {}).items():
        if isinstance(value, str):
            given[name] = (LEVEL_BY_NAME.get(value), {})
        elif isinstance(value, Mapping):
            properties = {k: v for k, v in value.items() if k != "enforcementLevel"}
            given[name] = (LEVEL_BY_NAME.get(value.get("enforcementLevel", "")), properties)
    everything = given.get("all", (None, {}))[0]
    if everything is not None:
        config = {name: (everything, properties) for name, (_, properties) in config.items()}
    for name, (level, properties) in given.items():
        current_level, current = config.get(name, (None, {}))
        chosen = level if level is not None else current_level
        if chosen is None:
            raise PolicyPackError(f'configuring policy pack: invalid enforcement level "" for {name!r}')
        config[name] = (chosen, {**current, **properties})
    return config


def _provider_message(
    resource: PlannedResource, providers: Mapping[str, Provider]
) -> analyzer_pb2.AnalyzerProviderResource | None:
    provider = providers.get(package_of(resource.type)) if resource.custom else None
    return provider.message() if provider else None


class Analyzer:
    """A client of a running policy pack. ``configure``: call Configure as the CLI does (turn it
    off to see what the pack does unconfigured); ``overrides``: a --policy-pack-config document."""

    def __init__(
        self, channel: grpc.Channel, configure: bool = True, overrides: Mapping[str, Any] | None = None
    ) -> None:
        self.stub = analyzer_pb2_grpc.AnalyzerStub(channel)
        self.configure_as_cli = configure
        self.overrides = overrides

    def info(self) -> analyzer_pb2.AnalyzerInfo:
        """The pack's name, policies, their levels and config schemas."""
        return self.stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)

    def configure_stack(self, stack: str) -> None:
        """What the CLI tells a pack about the stack before anything else."""
        request = analyzer_pb2.AnalyzerStackConfigureRequest(
            stack=stack, project=PROJECT_NAME, organization="organization", dry_run=False
        )
        self.stub.ConfigureStack(request, timeout=30)

    def configure(self, info: analyzer_pb2.AnalyzerInfo) -> dict[str, tuple[int, dict[str, Any]]]:
        """Configure every policy as the CLI does; returns what was sent."""
        config = cli_policy_config(info, self.overrides)
        request = analyzer_pb2.ConfigureAnalyzerRequest(
            policyConfig={
                name: analyzer_pb2.PolicyConfig(enforcementLevel=level, properties=_struct(properties))
                for name, (level, properties) in config.items()
            }
        )
        self.stub.Configure(request, timeout=30)
        return config

    def start(self, stack: str) -> None:
        """The CLI's handshake before any Analyze call."""
        self.configure_stack(stack)
        info = self.info()
        if self.configure_as_cli:
            self.configure(info)

    def analyze(self, resource: PlannedResource, provider: Provider | None = None) -> analyzer_pb2.AnalyzeResponse:
        """Analyze one resource on its inputs, with the provider that serves it."""
        request = analyzer_pb2.AnalyzeRequest(
            type=resource.type,
            properties=_struct(checked_inputs(resource.type, resource.raw_inputs)),
            urn=resource.urn,
            name=resource.name,
            options=_options(resource),
            provider=provider.message() if provider else None,
        )
        return self.stub.Analyze(request, timeout=30)

    def analyze_stack(
        self,
        resources: Sequence[PlannedResource],
        outputs: Mapping[str, Mapping[str, Any]] | None = None,
        providers: Mapping[str, Provider] | None = None,
    ) -> analyzer_pb2.AnalyzeResponse:
        """AnalyzeStack on ``outputs`` (by URN; a resource's checked inputs where none are given)."""
        outputs, providers = outputs or {}, providers or {}
        request = analyzer_pb2.AnalyzeStackRequest(
            resources=[
                analyzer_pb2.AnalyzerResource(
                    type=r.type,
                    properties=_struct(outputs[r.urn] if r.urn in outputs else checked_inputs(r.type, r.raw_inputs)),
                    urn=r.urn,
                    name=r.name,
                    options=_options(r),
                    provider=_provider_message(r, providers),
                    parent=r.parent,
                    dependencies=r.dependencies,
                )
                for r in resources
            ]
        )
        return self.stub.AnalyzeStack(request, timeout=60)

    def violations(self, plan: Plan) -> list[dict[str, str]]:
        """Every diagnostic for the plan, in the shape `preflight` prints: the whole exchange the
        CLI has with a policy pack during an update of this stack."""
        self.start(plan.stack)
        providers = default_providers(plan)
        root = root_stack(plan)
        analyzed: list[PlannedResource] = [root]
        found: list[dict[str, str]] = []

        def record(response: analyzer_pb2.AnalyzeResponse, urn: str) -> None:
            for diagnostic in response.diagnostics:
                found.append(
                    {
                        "policy": diagnostic.policyName,
                        "enforcement": LEVELS.get(diagnostic.enforcementLevel, "advisory"),
                        "urn": diagnostic.urn or urn,
                        "message": diagnostic.message,
                    }
                )

        record(self.analyze(root), root.urn)
        sent: set[str] = set()
        for resource in sorted(plan.resources, key=lambda r: r.order):
            package = package_of(resource.type)
            provider = providers.get(package) if resource.custom else None
            if provider is not None and package not in sent:
                sent.add(package)
                record(self.analyze(provider.resource()), provider.urn)
                analyzed.append(provider.resource())
            record(self.analyze(resource, provider), resource.urn)
            analyzed.append(resource)
        outputs = resource_outputs(plan)
        outputs[root.urn] = plan.outputs
        record(self.analyze_stack(analyzed, outputs, providers), root.urn)
        return found


class PackProcess:
    """The policy pack running as the CLI runs it: `python policies/__main__.py`, which prints the
    port of its Analyzer server on stdout."""

    def __init__(self, policy_dir: Path = POLICY_DIR) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(policy_dir / "__main__.py")],
            cwd=policy_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port the pack printed; PolicyPackError (with its stderr) if it printed none."""
        if self._port is None:
            assert self.process.stdout is not None
            line = self.process.stdout.readline().decode().strip()
            if not line.isdigit():
                self.process.wait(timeout=10)
                error = self.process.stderr.read().decode().strip() if self.process.stderr else ""
                raise PolicyPackError(f"the policy pack did not print its port: {line!r} {error}")
            self._port = int(line)
        return self._port

    def stop(self) -> None:
        """Terminate the pack (kill it if it does not stop) and close its pipes."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def connect(port: int, configure: bool = True, overrides: Mapping[str, Any] | None = None) -> Iterator[Analyzer]:
    """A client of the pack listening on 127.0.0.1:``port``; the channel closes afterwards."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        yield Analyzer(channel, configure, overrides)
    finally:
        channel.close()


@contextmanager
def policy_pack(
    policy_dir: Path = POLICY_DIR, configure: bool = True, overrides: Mapping[str, Any] | None = None
) -> Iterator[Analyzer]:
    """Start the pack as the CLI does and yield a client; stop it afterwards."""
    pack = PackProcess(policy_dir)
    try:
        with connect(pack.port, configure, overrides) as analyzer:
            yield analyzer
    finally:
        pack.stop()
