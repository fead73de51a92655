"""Docker container rules."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from stagecraft_policy.environment import Settings, advisory_then_mandatory_in_prod, labels_of, resource_policy

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
DATA_SERVICES = ("postgres", "redis", "chroma")
LOOPBACK = ("127.0.0.1", "::1")


def _long_running(props: Any) -> bool:
    """Not a one-shot job and not a created-only container."""
    return props.get("start", True) is not False and props.get("mustRun", True) is not False


def image_pinned(reference: str) -> bool:
    if reference.startswith("sha256:") or "@sha256:" in reference:
        return True
    name, _, tag = reference.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and bool(re.search(r"\d", tag))


def no_privileged(args: Any, _settings: Settings) -> Iterable[str]:
    if args.resource_type != CONTAINER:
        return
    if args.props.get("privileged"):
        yield "container is privileged; drop privileged and add only the capabilities it needs"
    if args.props.get("networkMode") == "host":
        yield "container uses the host network; attach it to the environment's networks instead"
    if args.props.get("pidMode") == "host" or args.props.get("ipcMode") == "host":
        yield "container shares the host's PID or IPC namespace; remove pid_mode/ipc_mode"


def prod_images_pinned(args: Any, _settings: Settings) -> Iterable[str]:
    if args.resource_type == REMOTE_IMAGE:
        reference = str(args.props.get("name", ""))
    elif args.resource_type == CONTAINER:
        reference = str(args.props.get("image", ""))
    else:
        return
    if reference and not image_pinned(reference):
        yield f"image {reference!r} is not pinned; use an exact version tag (not latest) or a sha256 digest"


def _service(args: Any) -> str:
    return labels_of(args.props).get("service") or args.name


def prod_data_not_published(args: Any, _settings: Settings) -> Iterable[str]:
    if args.resource_type != CONTAINER or _service(args) not in DATA_SERVICES:
        return
    for port in args.props.get("ports") or []:
        if port.get("ip", "0.0.0.0") not in LOOPBACK:
            yield f"{_service(args)} publishes port {port.get('internal')} on {port.get('ip', '0.0.0.0')}; remove it"


def healthcheck(args: Any, _settings: Settings) -> Iterable[str]:
    if args.resource_type == CONTAINER and _long_running(args.props) and not args.props.get("healthcheck"):
        yield "long-running container has no healthcheck; add one that fails until the service is usable"


def memory_limit(args: Any, _settings: Settings) -> Iterable[str]:
    if args.resource_type == CONTAINER and _long_running(args.props) and not args.props.get("memory"):
        yield "container has no memory limit; set memory (MB) from config"


def log_rotation(args: Any, _settings: Settings) -> Iterable[str]:
    if args.resource_type != CONTAINER or not _long_running(args.props):
        return
    options = args.props.get("logOpts") or {}
    if args.props.get("logDriver") not in ("json-file", "local") or "max-size" not in options:
        yield "container logs are not rotated; use log_driver json-file with max-size and max-file"


CONTAINER_POLICIES = [
    resource_policy(
        "no-privileged-containers",
        "No container is privileged or shares the host's network, PID or IPC namespace.",
        no_privileged,
    ),
    resource_policy(
        "prod-images-pinned",
        "In prod every image is pinned to a version or digest: no `latest`, no missing tag.",
        prod_images_pinned,
        only_prod=True,
    ),
    resource_policy(
        "prod-data-not-published",
        "Prod Postgres, Redis and ChromaDB are never published on a non-loopback address.",
        prod_data_not_published,
        only_prod=True,
    ),
    *advisory_then_mandatory_in_prod(
        "container-healthcheck", "Long-running containers have a healthcheck.", healthcheck
    ),
    *advisory_then_mandatory_in_prod("container-memory-limit", "Containers have a memory limit.", memory_limit),
    *advisory_then_mandatory_in_prod("container-log-rotation", "Container logs are rotated.", log_rotation),
]
