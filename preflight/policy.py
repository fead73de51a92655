"""Run the policy pack over a plan the way the Pulumi CLI does: start policies/__main__.py, read
the port it prints, and call its Analyzer gRPC service (Analyze per resource, AnalyzeStack)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from preflight.engine import PROJECT_DIR, Plan, PlannedResource

POLICY_DIR = PROJECT_DIR / "policies"
LEVELS = {
    analyzer_pb2.ADVISORY: "advisory",
    analyzer_pb2.MANDATORY: "mandatory",
    analyzer_pb2.DISABLED: "disabled",
    analyzer_pb2.REMEDIATE: "remediate",
}


class PolicyPackError(Exception):
    """The policy pack did not start or answer."""


def _struct(properties: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(properties, struct)
    return struct


def _options(resource: PlannedResource) -> analyzer_pb2.AnalyzerResourceOptions:
    return analyzer_pb2.AnalyzerResourceOptions(protect=resource.protect, parent=resource.parent)


class Analyzer:
    """A client of a running policy pack."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = analyzer_pb2_grpc.AnalyzerStub(channel)

    def info(self) -> analyzer_pb2.AnalyzerInfo:
        return self.stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)

    def analyze(self, resource: PlannedResource) -> analyzer_pb2.AnalyzeResponse:
        request = analyzer_pb2.AnalyzeRequest(
            type=resource.type,
            properties=_struct(resource.raw_inputs),
            urn=resource.urn,
            name=resource.name,
            options=_options(resource),
        )
        return self.stub.Analyze(request, timeout=30)

    def analyze_stack(self, resources: Sequence[PlannedResource]) -> analyzer_pb2.AnalyzeResponse:
        request = analyzer_pb2.AnalyzeStackRequest(
            resources=[
                analyzer_pb2.AnalyzerResource(
                    type=r.type,
                    properties=_struct(r.raw_inputs),
                    urn=r.urn,
                    name=r.name,
                    options=_options(r),
                    parent=r.parent,
                    dependencies=r.dependencies,
                )
                for r in resources
            ]
        )
        return self.stub.AnalyzeStack(request, timeout=60)

    def violations(self, plan: Plan) -> list[dict[str, str]]:
        """Every diagnostic for the plan's resources, as DESIGN.md's JSON shape."""
        found: list[dict[str, str]] = []
        responses = [self.analyze(r) for r in plan.resources if r.custom]
        responses.append(self.analyze_stack([r for r in plan.resources if r.custom]))
        for response in responses:
            for diagnostic in response.diagnostics:
                found.append(
                    {
                        "policy": diagnostic.policyName,
                        "enforcement": LEVELS.get(diagnostic.enforcementLevel, "advisory"),
                        "urn": diagnostic.urn,
                        "message": diagnostic.message,
                    }
                )
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
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@contextmanager
def connect(port: int) -> Iterator[Analyzer]:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        yield Analyzer(channel)
    finally:
        channel.close()


@contextmanager
def policy_pack(policy_dir: Path = POLICY_DIR) -> Iterator[Analyzer]:
    """Start the pack as the CLI does and yield a client; stop it afterwards."""
    pack = PackProcess(policy_dir)
    try:
        with connect(pack.port) as analyzer:
            yield analyzer
    finally:
        pack.stop()
