"""What every check gets: the targets, the connections (opened once, lazily) and findings."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from preflight.verify.probes import Executor
from preflight.verify.targets import Targets

if TYPE_CHECKING:
    from preflight.verify.docker_api import Engine
    from preflight.verify.http_client import ProxyClient
    from preflight.verify.inventory import Inventory

Status = Literal["pass", "fail", "skip"]


class CheckError(Exception):
    """A check could not reach or read its target; the message becomes the failed finding."""


@dataclass(frozen=True)
class Finding:
    """One result of a check: ``detail`` names what was looked at (domain, container)."""

    status: Status
    detail: str


CheckFn = Callable[["Context"], Iterator[Finding]]


def passed(detail: str) -> Finding:
    return Finding("pass", detail)


def failed(detail: str) -> Finding:
    return Finding("fail", detail)


def skipped(detail: str) -> Finding:
    return Finding("skip", detail)


@dataclass
class Context:
    """Shared by all checks of one run. Connections are made on first use; a target that
    cannot be reached is remembered, so every later check fails fast with the same message."""

    targets: Targets
    ca_pem: str | None
    timeout: float
    docker_host: str
    address: str | None = None
    # Tests run the probes locally; a deployed stack runs them with Docker exec.
    executor_override: Callable[[str], Executor] | None = None
    engine_factory: Callable[[str, float], Engine] | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    _engine: Engine | None = None
    _engine_error: str | None = None
    _inventory: Inventory | None = None
    _http: ProxyClient | None = None
    _memo: dict[Any, Any] = field(default_factory=dict)

    @property
    def engine(self) -> Engine:
        if self._engine_error is not None:
            raise CheckError(self._engine_error)
        if self._engine is None:
            from preflight.verify.docker_api import Engine

            factory = self.engine_factory or Engine.connect
            try:
                self._engine = factory(self.docker_host, self.timeout)
            except CheckError as error:
                self._engine_error = str(error)
                raise
        return self._engine

    @property
    def inventory(self) -> Inventory:
        if self._inventory is None:
            from preflight.verify.inventory import Inventory

            self._inventory = Inventory.collect(self.engine, self.targets)
        return self._inventory

    @property
    def http(self) -> ProxyClient:
        if self._http is None:
            from preflight.verify.http_client import ProxyClient

            self._http = ProxyClient(self.targets, self.address, self.timeout, self.ca_pem)
        return self._http

    def executor(self, service: str) -> Executor:
        """Runs probes inside ``service``'s running container (or locally, in tests)."""
        if self.executor_override is not None:
            return self.executor_override(service)
        from preflight.verify.docker_api import DockerExecutor

        container = self.inventory.running(service)
        return DockerExecutor(self.engine, container["Id"], container_name(container))

    def close(self) -> None:
        """Close the Engine connection (and, for ssh://, its ssh processes)."""
        if self._engine is not None:
            self._engine.close()

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """One answer per key per run (e.g. a response several checks look at)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


def guard(check: CheckFn) -> CheckFn:
    """A check whose connections may fail: the failure becomes its (only) finding."""

    def guarded(ctx: Context) -> Iterator[Finding]:
        try:
            findings = list(check(ctx))
        except CheckError as error:
            findings = [failed(str(error))]
        yield from findings

    guarded.__doc__ = check.__doc__
    return guarded


def container_name(container: dict[str, Any]) -> str:
    return str(container.get("Name", "")).lstrip("/") or str(container.get("Id", "?"))[:12]
