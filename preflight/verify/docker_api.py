"""The Docker Engine API of the stack's host, through the `docker` library.

``ssh://`` hosts go through the system ``ssh`` (``use_ssh_client``): it uses the same agent,
``known_hosts`` and ``~/.ssh/config`` as the deploy job's ``pulumi up``, and needs no extra
Python SSH library. The remote user must be allowed to run ``docker system dial-stdio``.

Every call runs under a deadline of ``timeout`` seconds, whatever the transport does: a host that
stops answering fails the check instead of hanging the run.
"""

from __future__ import annotations

import re
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import docker
import requests
from docker.errors import DockerException, NotFound

from preflight.verify.context import CheckError
from preflight.verify.probes import ProbeResult

T = TypeVar("T")
_HEADER = struct.Struct(">BxxxL")


def demultiplex(data: bytes) -> tuple[bytes, bytes]:
    """stdout and stderr of Docker's multiplexed stream (8-byte headers: stream, 0, 0, 0, and a
    big-endian length). A stream that is not framed that way (a TTY) is all stdout."""
    out, err = bytearray(), bytearray()
    offset = 0
    while offset + _HEADER.size <= len(data):
        stream, length = _HEADER.unpack_from(data, offset)
        if stream not in (0, 1, 2) or data[offset + 1 : offset + 4] != b"\0\0\0":
            return data, b""
        chunk = data[offset + _HEADER.size : offset + _HEADER.size + length]
        (err if stream == 2 else out).extend(chunk)
        offset += _HEADER.size + length
    if offset != len(data):
        return data, b""
    return bytes(out), bytes(err)


def _deadline(seconds: float, what: str, call: Callable[[], T]) -> T:
    """``call()`` on a daemon thread, given up after ``seconds`` (the thread is left behind)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as error:  # noqa: BLE001 - re-raised on the caller's thread
            box["error"] = error

    thread = threading.Thread(target=target, name=f"verify: {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise CheckError(f"{what}: no answer within {seconds:g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _reason(error: BaseException) -> str:
    """The root cause in a few words ("Connection refused"), not the transport's whole story."""
    text = str(error).strip()
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return errno.group(1).strip()
    lines = text.splitlines()
    return lines[-1][:300] if lines else type(error).__name__


class Engine:
    """The few Engine API calls the checks need, as plain dicts shaped like `docker inspect`."""

    def __init__(self, client: docker.DockerClient, url: str, timeout: float) -> None:
        self.client = client
        self.api = client.api
        self.url = url
        self.timeout = timeout

    @classmethod
    def connect(cls, url: str, timeout: float) -> Engine:
        def make() -> docker.DockerClient:
            return docker.DockerClient(
                base_url=url, timeout=timeout, use_ssh_client=url.startswith("ssh://"), version="auto"
            )

        try:
            client = _deadline(timeout, f"Docker Engine at {url}", make)
        except CheckError:
            raise
        except (DockerException, requests.RequestException, OSError) as error:
            raise CheckError(f"cannot reach the Docker Engine at {url}: {_reason(error)}") from None
        return cls(client, url, timeout)

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return _deadline(self.timeout, what, call)
        except CheckError:
            raise
        except (DockerException, requests.RequestException, OSError) as error:
            raise CheckError(f"{what}: {_reason(error)}") from None

    def close(self) -> None:
        try:
            self.client.close()
        except (DockerException, OSError):
            pass  # closing a connection that already failed

    def version(self) -> dict[str, Any]:
        return self._call("GET /version", self.api.version)

    def containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every container (any state) carrying all ``labels``, fully inspected."""
        filters = {"label": [f"{key}={value}" for key, value in sorted(labels.items())]}
        summaries = self._call("list containers", lambda: self.api.containers(all=True, filters=filters))
        return [self.inspect_container(summary["Id"]) or {} for summary in summaries]

    def inspect_container(self, ref: str) -> dict[str, Any] | None:
        def inspect() -> dict[str, Any] | None:
            try:
                return self.api.inspect_container(ref)
            except NotFound:
                return None

        return self._call(f"inspect container {ref}", inspect)

    def networks(self) -> list[dict[str, Any]]:
        return self._call("list networks", self.api.networks)

    def inspect_network(self, ref: str) -> dict[str, Any]:
        return self._call(f"inspect network {ref}", lambda: self.api.inspect_network(ref))

    def volumes(self) -> list[dict[str, Any]]:
        answer = self._call("list volumes", self.api.volumes)
        return list(answer.get("Volumes") or [])

    def logs(self, ref: str, tail: int) -> bytes:
        return self._call(
            f"logs of {ref}", lambda: self.api.logs(ref, stdout=True, stderr=True, tail=tail, timestamps=False)
        )

    def exec(self, container_id: str, argv: Sequence[str], timeout: float) -> ProbeResult:
        """Run ``argv`` in the container and wait for it.

        The start request does not ask to upgrade the connection: the Engine then answers
        ``200`` and streams the multiplexed output until the process ends, which reads as an
        ordinary response body under the request's timeout.
        """

        def run() -> ProbeResult:
            created = self.api.exec_create(container_id, list(argv), stdout=True, stderr=True)
            exec_id = created["Id"]
            url = f"{self.api.base_url}/v{self.api.api_version}/exec/{exec_id}/start"
            response = self.api.post(url, json={"Detach": False, "Tty": False}, stream=True, timeout=timeout)
            try:
                response.raise_for_status()
                body = response.raw.read(decode_content=False) or b""
            finally:
                response.close()
            stdout, stderr = demultiplex(body)
            state = self.api.exec_inspect(exec_id)
            code = None if state.get("Running") else state.get("ExitCode")
            return ProbeResult(code, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"))

        try:
            return _deadline(timeout, f"exec {argv[0]}", run)
        except CheckError as error:
            return ProbeResult(None, "", str(error))
        except (DockerException, requests.RequestException, OSError) as error:
            return ProbeResult(None, "", f"exec {argv[0]}: {_reason(error)}")


class DockerExecutor:
    """Runs probes inside one container through the Engine API's exec."""

    def __init__(self, engine: Engine, container_id: str, name: str) -> None:
        self.engine = engine
        self.container_id = container_id
        self.name = name

    @property
    def where(self) -> str:
        return f"container {self.name}"

    def run(self, argv: Sequence[str], timeout: float) -> ProbeResult:
        return self.engine.exec(self.container_id, argv, timeout)
