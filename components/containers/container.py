"""The one hardened-container building block every service uses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.config import Service
from components.containers.environment import checked_env
from components.containers.labels import container_labels, volume_labels
from components.naming import Naming
from components.resources import child

FILES_ROOT = "/run/stagecraft"
SECRETS_DIR = f"{FILES_ROOT}/secrets"
CONFIG_DIR = f"{FILES_ROOT}/config"
# json-file logs rotated at 50 MB, three files kept.
LOG_OPTIONS = {"max-size": "50m", "max-file": "3"}


def secret_path(name: str) -> str:
    return f"{SECRETS_DIR}/{name}"


def config_path(name: str) -> str:
    return f"{CONFIG_DIR}/{name}"


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
    # Size of the /tmp scratch tmpfs every container gets; other tmpfs mounts in ``tmpfs``.
    tmp_mb: int = 16
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
            f"{name}-image",
            name=args.settings.image,
            keep_locally=True,
            opts=child(self, was=args.service),
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
        carrier = self._files_carrier(name, args, labels)
        files_label = None
        if carrier is not None:
            files_volume, carrier_container = carrier
            mounts.append(
                docker.ContainerMountArgs(type="volume", source=files_volume.name, target=FILES_ROOT, read_only=True)
            )
            depends_on.append(carrier_container)
            # A new carrier (new files) replaces the service container so it reads them.
            files_label = carrier_container.id.apply(lambda cid: cid[:12])

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
        labels_args: list[pulumi.Input[docker.ContainerLabelArgs]] = list(container_labels(labels))
        if files_label is not None:
            labels_args.append(docker.ContainerLabelArgs(label="stagecraft.files", value=files_label))
        tmpfs = {"/tmp": tmpfs_options(args.tmp_mb), **args.tmpfs}
        self.container = docker.Container(
            name,
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
            tmpfs=dict(sorted(tmpfs.items())),
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
            labels=labels_args,
            destroy_grace_seconds=30,
            # Names are fixed, so the old container must go before its replacement starts.
            opts=child(self, was=args.service, depends_on=depends_on, delete_before_replace=True),
        )
        self.name = self.container.name
        self.register_outputs({"name": self.name})

    def _files_carrier(
        self, name: str, args: ContainerArgs, labels: dict[str, str]
    ) -> tuple[docker.Volume, docker.Container] | None:
        uploads = [
            docker.ContainerUploadArgs(
                file=secret_path(file_name),
                content=pulumi.Output.secret(value),
                permissions="0400",
                owner=args.file_owner,
                group=args.file_owner,
            )
            for file_name, value in sorted(args.secret_files.items())
        ]
        uploads += [
            docker.ContainerUploadArgs(
                file=config_path(file_name),
                content=content,
                permissions="0555" if file_name in args.executable_files else "0444",
                owner=args.file_owner,
                group=args.file_owner,
            )
            for file_name, content in sorted(args.config_files.items())
        ]
        if not uploads:
            return None
        volume = docker.Volume(
            f"{name}-files",
            name=args.naming.volume(args.service, "files"),
            labels=volume_labels(labels),
            opts=child(self, was=f"{args.service}-files"),
        )
        carrier = docker.Container(
            f"{name}-files",
            name=args.naming.container(f"{args.service}-files"),
            image=self.image.image_id,
            start=False,
            must_run=False,
            network_mode="none",
            uploads=uploads,
            mounts=[docker.ContainerMountArgs(type="volume", source=volume.name, target=FILES_ROOT)],
            security_opts=["no-new-privileges:true"],
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            labels=container_labels({**labels, "role": "files-carrier"}),
            opts=child(self, was=f"{args.service}-files", replace_on_changes=["uploads"], delete_before_replace=True),
        )
        return volume, carrier
