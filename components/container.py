"""The one hardened-container building block every service uses."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.config import AppSettings, Service
from components.naming import Naming
from components.network import docker_labels, volume_labels

FILES_ROOT = "/run/stagecraft"
SECRETS_DIR = f"{FILES_ROOT}/secrets"
CONFIG_DIR = f"{FILES_ROOT}/config"
LOG_OPTIONS = {"max-size": "50m", "max-file": "3"}  # seed 000
# Variable names that must never carry a value, only a *_FILE path.
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|_PWD|SECRET|TOKEN|_KEY|CREDENTIAL|PRIVATE)", re.IGNORECASE)


def secret_path(name: str) -> str:
    return f"{SECRETS_DIR}/{name}"


def config_path(name: str) -> str:
    return f"{CONFIG_DIR}/{name}"


class UnsafeEnvironmentError(ValueError):
    """An environment variable that would carry a secret in plaintext."""


def checked_env(env: Mapping[str, str]) -> list[str]:
    """`KEY=value` pairs; a secret-looking name must end in _FILE, and values must be plain text
    known now (a pulumi Output could be a secret, so it is refused)."""
    pairs = []
    for key, value in sorted(env.items()):
        if not isinstance(value, str):
            raise UnsafeEnvironmentError(f"{key}: environment values must be plain strings, never Outputs")
        if SECRET_NAME.search(key) and not key.endswith("_FILE"):
            raise UnsafeEnvironmentError(f"{key}: looks like a secret; deliver it as a file and set {key}_FILE")
        pairs.append(f"{key}={value}")
    return pairs


def tmpfs_options(size_mb: int | None = None, owner: str | None = None, mode: str | None = None) -> str:
    """Mount options for a tmpfs: writable scratch space that never runs a program or honours a
    setuid bit, optionally capped in size and owned by the service's uid."""
    options = ["rw", "noexec", "nosuid"]
    if size_mb is not None:
        options.append(f"size={size_mb}m")
    if owner is not None:
        options += [f"uid={owner}", f"gid={owner}"]
    if mode is not None:
        options.append(f"mode={mode}")
    return ",".join(options)


def wget_check(port: int, path: str) -> list[str]:
    """Healthcheck for images that ship wget but no curl: an HTTP 2xx from the service itself."""
    return ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{path}"]


def http_check(port: int, path: str, command: Sequence[str] | None) -> list[str]:
    if command:
        return ["CMD", *command]
    return ["CMD", "curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{port}{path}"]


def app_environment(environment: str, app: AppSettings) -> dict[str, str]:
    """Settings that differ per environment (seed 000's flags, seed 001's email shadow mode)."""
    env = {
        "APP_ENV": environment,
        "LOG_LEVEL": app.log_level.upper(),
        "EMAIL_MODE": app.email_mode,
        "EMAIL_SHADOW_MODE": "true" if app.email_mode == "shadow" else "false",
        "CORS_ORIGINS": json.dumps(app.cors_origins),
        # The config model refuses debug endpoints in prod; this is belt and braces.
        "ENABLE_DEBUG_ENDPOINTS": "true" if app.debug_endpoints and environment != "prod" else "false",
        "APP_DEBUG": "false",
    }
    env.update({name: "true" if value else "false" for name, value in sorted(app.feature_flags.items())})
    return env


def data_volume(naming: Naming, service: str, protect: bool, parent: pulumi.Resource) -> docker.Volume:
    """The named volume holding a stateful service's data; prod protects and retains it."""
    return docker.Volume(
        f"{service}-data",
        name=naming.volume(service),
        labels=volume_labels(naming.labels(service=service)),
        opts=pulumi.ResourceOptions(parent=parent, protect=protect, retain_on_delete=protect),
    )


def _duration(seconds: int) -> str:
    return f"{seconds}s"


@dataclass(frozen=True)
class Attachment:
    """A network the container joins, with its DNS aliases and optional fixed address."""

    network: docker.Network
    aliases: Sequence[str] = ()
    ipv4_address: str | None = None


@dataclass(frozen=True)
class ContainerArgs:
    naming: Naming
    service: str
    settings: Service
    networks: Sequence[Attachment]
    health_test: Sequence[str] | None = None
    command: Sequence[str] | None = None
    entrypoint: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    # Files delivered before start: secrets (mode 0400) and configs (0444, or 0555 if executable).
    secret_files: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    config_files: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    executable_files: frozenset[str] = frozenset()
    user: str | None = None
    # Owner of the delivered files: the uid the process runs as.
    file_owner: str = "0"
    # container path -> Docker volume name
    volumes: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    host_mounts: Mapping[str, str] = field(default_factory=dict)  # container path -> host path (read-only)
    tmpfs: Mapping[str, str] = field(default_factory=dict)
    read_only: bool = True
    cap_add: Sequence[str] = ()
    ports: Sequence[docker.ContainerPortArgs] = ()
    shm_size_mb: int | None = None
    # A job: runs once to completion (attached), no restart, no healthcheck.
    one_shot: bool = False
    depends_on: Sequence[pulumi.Resource] = ()


class HardenedContainer(pulumi.ComponentResource):
    """A container with a pinned image, a healthcheck it must pass before dependents start
    (``wait``), memory and CPU limits, rotated json-file logs, a restart policy,
    ``no-new-privileges``, all capabilities dropped but the listed ones, a read-only root
    filesystem with tmpfs for scratch space, and labels.

    Secrets and config files are delivered as files, never as environment variables: they are
    uploaded into a small ``<service>-files`` volume through a carrier container that is created
    but never started (Docker refuses uploads into a read-only root filesystem), and mounted
    read-only at ``/run/stagecraft``.
    """

    container: docker.Container

    def __init__(self, name: str, args: ContainerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:container:HardenedContainer", name, None, opts)
        naming = args.naming
        labels = naming.labels(service=args.service)
        envs = checked_env(args.env)
        self.image = docker.RemoteImage(
            args.service,
            name=args.settings.image,
            keep_locally=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        mounts = [
            docker.ContainerMountArgs(type="volume", source=volume, target=path)
            for path, volume in sorted(args.volumes.items())
        ]
        mounts += [
            docker.ContainerMountArgs(
                type="bind",
                source=host,
                target=path,
                read_only=True,
                bind_options=docker.ContainerMountBindOptionsArgs(propagation="rslave"),
            )
            for path, host in sorted(args.host_mounts.items())
        ]
        depends_on = list(args.depends_on)
        carrier = self._files_carrier(args, labels)
        if carrier is not None:
            files_volume, carrier_container = carrier
            mounts.append(
                docker.ContainerMountArgs(type="volume", source=files_volume.name, target=FILES_ROOT, read_only=True)
            )
            depends_on.append(carrier_container)
            # A new carrier (new files) replaces the service container so it reads them.
            files_label = carrier_container.id.apply(lambda cid: cid[:12])
        else:
            files_label = None

        check = args.settings.healthcheck
        healthcheck = None
        if args.health_test and not args.one_shot:
            healthcheck = docker.ContainerHealthcheckArgs(
                tests=list(args.health_test),
                interval=_duration(check.interval_s),
                timeout=_duration(check.timeout_s),
                retries=check.retries,
                start_period=_duration(check.start_period_s),
            )
        container_labels: list[pulumi.Input[docker.ContainerLabelArgs]] = list(docker_labels(labels))
        if files_label is not None:
            container_labels.append(docker.ContainerLabelArgs(label="stagecraft.files", value=files_label))
        self.container = docker.Container(
            args.service,
            name=naming.container(args.service),
            image=self.image.image_id,
            command=list(args.command) if args.command else None,
            entrypoints=list(args.entrypoint) if args.entrypoint else None,
            envs=envs,
            user=args.user,
            memory=args.settings.memory_mb,
            memory_swap=args.settings.memory_mb,  # no swap beyond the limit
            cpus=f"{args.settings.cpus:g}",
            shm_size=args.shm_size_mb,
            healthcheck=healthcheck,
            log_driver="json-file",
            log_opts=dict(LOG_OPTIONS),
            restart="no" if args.one_shot else "unless-stopped",
            must_run=not args.one_shot,
            attach=args.one_shot,
            logs=args.one_shot,
            wait=healthcheck is not None,
            wait_timeout=(check.start_period_s + check.retries * check.interval_s + 60) if healthcheck else None,
            security_opts=["no-new-privileges:true"],
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=list(args.cap_add) or None),
            privileged=False,
            read_only=args.read_only,
            tmpfs=dict(args.tmpfs) or None,
            mounts=mounts or None,
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(
                    name=attachment.network.name,
                    aliases=list(attachment.aliases) or None,
                    ipv4_address=attachment.ipv4_address,
                )
                for attachment in args.networks
            ],
            ports=list(args.ports) or None,
            labels=container_labels,
            destroy_grace_seconds=30,
            # Names are fixed, so the old container must go before its replacement starts.
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on, delete_before_replace=True),
        )
        self.name = self.container.name
        self.register_outputs({"name": self.name})

    def _files_carrier(
        self, args: ContainerArgs, labels: dict[str, str]
    ) -> tuple[docker.Volume, docker.Container] | None:
        uploads = [
            docker.ContainerUploadArgs(
                file=secret_path(name),
                content=pulumi.Output.secret(value),
                permissions="0400",
                owner=args.file_owner,
                group=args.file_owner,
            )
            for name, value in sorted(args.secret_files.items())
        ]
        uploads += [
            docker.ContainerUploadArgs(
                file=config_path(name),
                content=content,
                permissions="0555" if name in args.executable_files else "0444",
                owner=args.file_owner,
                group=args.file_owner,
            )
            for name, content in sorted(args.config_files.items())
        ]
        if not uploads:
            return None
        volume = docker.Volume(
            f"{args.service}-files",
            name=args.naming.volume(args.service, "files"),
            labels=volume_labels(labels),
            opts=pulumi.ResourceOptions(parent=self),
        )
        carrier = docker.Container(
            f"{args.service}-files",
            name=args.naming.container(f"{args.service}-files"),
            image=self.image.image_id,
            start=False,
            must_run=False,
            network_mode="none",
            uploads=uploads,
            mounts=[docker.ContainerMountArgs(type="volume", source=volume.name, target=FILES_ROOT)],
            security_opts=["no-new-privileges:true"],
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            labels=docker_labels({**labels, "role": "files-carrier"}),
            opts=pulumi.ResourceOptions(parent=self, replace_on_changes=["uploads"], delete_before_replace=True),
        )
        return volume, carrier
