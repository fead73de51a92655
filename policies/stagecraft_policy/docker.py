"""The Docker objects around containers, and the one shell command the program runs: networks
and volumes of the environment (plain bridge and local driver), pinned images pulled from
registries or built from the repository's images/ directory, and PIDs-limit commands."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from stagecraft_policy.base import Subject, mapped, resource_policy
from stagecraft_policy.resource_types import COMMAND, CONTAINER, DOCKER_IMAGE, NETWORK, REMOTE_IMAGE, VOLUME
from stagecraft_policy.shared import MIN_PIDS_LIMIT, image_is_pinned, safe_value

IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPOSITORY_ROOT / "images"
BUILD_INPUTS = (
    "context",
    "dockerfile",
    "args",
    "builderVersion",
    "cacheFrom",
    "network",
    "platform",
    "target",
    "addHosts",
)
PIDS_LIMIT = re.compile(r"^docker update --pids-limit ([1-9][0-9]{1,5}) ([0-9a-f]{64})$")
# The PIDs-limit command's inputs, and two harmless ones a provider may fill in.
COMMAND_INPUTS = ("create", "environment", "triggers", "logging", "addPreviousOutputInEnv")
DOCKER_HOST = re.compile(r"^(unix|ssh|tcp)://[A-Za-z0-9@._:/-]+$")


def _names_environment(subject: Subject, what: str) -> Iterable[str]:
    name = subject.props.get("name")
    if not isinstance(name, str) or not subject.carries_environment(name):
        yield f"{what} name {name!r} must carry {subject.environment!r} as a word and no other environment's"


def _network_shape(subject: Subject) -> Iterable[str]:
    yield from _names_environment(subject, "network")
    props = subject.props
    if props.get("driver") not in (None, "bridge"):
        yield f"network driver {props.get('driver')!r}; environment networks are plain bridges"
    for key in ("options", "ipamOptions", "ingress"):
        if props.get(key):
            yield f"network {key} is set; environment networks take only a subnet and internal"
    if props.get("ipamDriver") not in (None, "default"):
        yield f"network IPAM driver {props.get('ipamDriver')!r}; use Docker's default"


def _volume_shape(subject: Subject) -> Iterable[str]:
    yield from _names_environment(subject, "volume")
    props = subject.props
    if props.get("driver") not in (None, "local") or props.get("driverOpts") or props.get("cluster"):
        yield "volume sets a driver, driver options or cluster settings; use a plain local volume (no host path)"


def _images_pinned(subject: Subject) -> Iterable[str]:
    if subject.type == REMOTE_IMAGE:
        name = subject.props.get("name")
        if not isinstance(name, str) or not image_is_pinned(name):
            yield f"image {name!r} is not pinned; use a full version tag (major.minor at least) or a sha256 digest"
    else:
        image = subject.props.get("image")
        if not isinstance(image, str) or not (IMAGE_ID.match(image) or image_is_pinned(image)):
            yield f"container image {image!r} is neither an image ID nor a pinned reference; use a RemoteImage's ID"


def _inside_images(path: object) -> bool:
    """Whether ``path`` (relative to the repository root, or absolute) lies in its images/ directory."""
    if not isinstance(path, str) or not path:
        return False
    resolved = Path(os.path.realpath(path if os.path.isabs(path) else REPOSITORY_ROOT / path))
    images = Path(os.path.realpath(IMAGES_DIR))
    return resolved == images or images in resolved.parents


def _dockerfile_inside(context: object, dockerfile: object) -> bool:
    """A Dockerfile path read from the repository root or, if relative, from the context."""
    if not isinstance(dockerfile, str) or not dockerfile:
        return False
    if _inside_images(dockerfile):
        return True
    relative = not os.path.isabs(dockerfile) and isinstance(context, str) and _inside_images(context)
    return relative and _inside_images(os.path.join(str(context), dockerfile))


def _image_sources(subject: Subject) -> Iterable[str]:
    props = subject.props
    if subject.type == REMOTE_IMAGE:
        if props.get("build"):
            yield "a RemoteImage builds nothing; pull a pinned image, or build from images/ with docker.Image"
        return
    build = mapped(props.get("build"))
    if not _inside_images(build.get("context")):
        yield f"build context {build.get('context')!r} is outside the repository's images/ directory"
    dockerfile = build.get("dockerfile")
    if dockerfile is not None and not _dockerfile_inside(build.get("context"), dockerfile):
        yield f"Dockerfile {dockerfile!r} is outside the repository's images/ directory"
    for key in build:
        if key not in BUILD_INPUTS and build.get(key):
            yield f"build input {key!r} is not allowed (no secrets, SSH or other build extras)"
    if build.get("network") == "host":
        yield "build runs on the host network; leave network unset"
    for name, value in mapped(build.get("args")).items():
        if not safe_value(str(name), str(value)):
            yield f"build arg {name} looks like a secret; build args stay in the image's history"
    if props.get("skipPush") is not True or props.get("registry"):
        yield "a local build is never pushed; set skip_push=True and no registry"


def _pids_limit_commands(subject: Subject) -> Iterable[str]:
    props = subject.props
    for key in props:
        if key not in COMMAND_INPUTS and props.get(key):
            yield f"command input {key!r} is not allowed; commands only create a PIDs limit"
    create = props.get("create")
    found = PIDS_LIMIT.match(create) if isinstance(create, str) else None
    if found is None:
        yield "the only command stagecraft runs is `docker update --pids-limit <n> <container id>`"
    elif int(found[1]) < MIN_PIDS_LIMIT:
        yield f"PIDs limit {found[1]} is below {MIN_PIDS_LIMIT}; a limit that low starves the container"
    environment = mapped(props.get("environment"))
    for key in environment:
        if key != "DOCKER_HOST":
            yield f"command environment {key!r} is not allowed; only DOCKER_HOST"
        elif not isinstance(environment[key], str) or not DOCKER_HOST.match(environment[key]):
            yield "DOCKER_HOST must be a unix://, ssh:// or tcp:// address"


DOCKER_POLICIES = [
    resource_policy(
        "network-shape",
        "Docker networks are plain bridges named for the environment.",
        _network_shape,
        types=[NETWORK],
    ),
    resource_policy(
        "volume-shape",
        "Docker volumes are plain local volumes named for the environment.",
        _volume_shape,
        types=[VOLUME],
    ),
    resource_policy(
        "images-pinned",
        "Every image is pinned to a full version or a digest; containers run image IDs or pinned references.",
        _images_pinned,
        types=[REMOTE_IMAGE, CONTAINER],
    ),
    resource_policy(
        "image-sources",
        "Images are pulled by RemoteImage, or built locally from the repository's images/ directory without "
        "pushing and without build secrets.",
        _image_sources,
        types=[REMOTE_IMAGE, DOCKER_IMAGE],
    ),
    resource_policy(
        "pids-limit-commands",
        "The only local command is the PIDs limit of one container: `docker update --pids-limit <n> <id>`.",
        _pids_limit_commands,
        types=[COMMAND],
    ),
]
