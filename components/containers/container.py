"""The one hardened-container building block every service uses."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from components.config import Service
from components.containers.environment import checked_env
from components.containers.images import image_user
from components.containers.labels import container_labels, volume_labels
from components.naming import Naming
from components.resources import child

FILES_ROOT = "/run/stagecraft"
SECRETS_DIR = f"{FILES_ROOT}/secrets"
CONFIG_DIR = f"{FILES_ROOT}/config"
# json-file logs rotated at 50 MB, three files kept.
LOG_OPTIONS = {"max-size": "50m", "max-file": "3"}
# Open files per process; the kernel default (1024) is low for databases and proxies.
NOFILE_LIMIT = 65536
# A job's last log lines shown when it fails.
JOB_LOG_LINES = 20


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


def _versioned_name(
    stable_name: str,
    args: ContainerArgs,
    image: pulumi.Input[str],
    labels: Sequence[docker.ContainerLabelArgs],
) -> pulumi.Output[str]:
    """``<stable name>-<8 hex>``, where the hex changes with everything that would replace the
    container (its image, settings, files and gates), so every version has a name of its own."""
    plain = json.dumps(
        {
            "settings": args.settings.model_dump(),
            "env": dict(args.env),
            "command": list(args.command or ()),
            "entrypoint": list(args.entrypoint or ()),
            "user": args.user,
            "files": sorted([*args.secret_files, *args.config_files]),
            "volumes": sorted(args.volumes),
            "tmpfs": dict(args.tmpfs),
            "tmp_mb": args.tmp_mb,
            "ports": [str(port) for port in args.ports],
        },
        sort_keys=True,
        default=str,
    )
    label_values = [pulumi.Output.from_input(label.value) for label in labels]
    return pulumi.Output.all(image, *label_values).apply(
        lambda values: f"{stable_name}-{hashlib.sha256((plain + json.dumps(values)).encode()).hexdigest()[:8]}"
    )


class JobFailedError(pulumi.RunError):
    """A one-shot job exited with a non-zero code: the update stops before what depends on it."""


def job_outcome(job: str, container: str, exit_code: int | None, logs: str | None, secrets: Sequence[str]) -> str:
    """ "succeeded", or a JobFailedError naming the job, its exit code and its last log lines
    (with the job's own secret values blanked out)."""
    if exit_code == 0:
        return "succeeded"
    tail = "\n".join((logs or "").strip().splitlines()[-JOB_LOG_LINES:])
    for secret in secrets:
        if secret:
            tail = tail.replace(secret, "[secret]")
    what = (
        "finished without an exit code (it did not run to completion)"
        if exit_code is None
        else (f"exited with code {exit_code}")
    )
    lines = tail or "(no output)"
    raise JobFailedError(f"job {job} (container {container}) {what}; its last log lines:\n{lines}")


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
    # Files delivered before start, owned by the uid the container runs as: secrets (mode 0400)
    # and configs (0444, or 0555 if executable).
    secret_files: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    config_files: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    executable_files: frozenset[str] = frozenset()
    # uid:gid; by default the image's own non-root user (components/containers/images.py).
    user: str | None = None
    # container path -> Docker volume name; read-only ones in ``read_only_volumes``.
    volumes: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    read_only_volumes: frozenset[str] = frozenset()
    # Size of the /tmp scratch tmpfs every container gets; other tmpfs mounts in ``tmpfs``.
    tmp_mb: int = 16
    tmpfs: Mapping[str, str] = field(default_factory=dict)
    read_only: bool = True
    cap_add: Sequence[str] = ()
    ports: Sequence[docker.ContainerPortArgs] = ()
    shm_size_mb: int | None = None
    stop_signal: str | None = None
    # An image built by the program (its ID); otherwise ``settings.image`` is pulled.
    image: pulumi.Input[str] | None = None
    # A job: runs once to completion (attached), no restart, no healthcheck; a non-zero exit
    # stops the update.
    one_shot: bool = False
    # Jobs that must have succeeded before this container is created.
    after: Sequence[HardenedContainer] = ()
    depends_on: Sequence[pulumi.Resource] = ()
    # A stateless service replaced without a gap: each version gets its own name, the new one is
    # created and healthy before the old one is deleted, and clients find whichever runs through
    # the stable name, a network alias on every network it joins.
    rolling: bool = False


class HardenedContainer(pulumi.ComponentResource):
    """A container with a pinned image, run as a non-root user; a healthcheck it must pass before
    dependents start (``wait``); memory, CPU and process-count limits; rotated json-file logs; a
    restart policy; ``no-new-privileges``, every capability dropped but the listed ones, a
    read-only root filesystem with tmpfs for scratch space, and labels.

    Secrets and config files are delivered as files, never as environment variables: they are
    uploaded into a small ``<service>-files`` volume through a carrier container that is created
    but never started (Docker refuses uploads into a read-only root filesystem), and mounted
    read-only at ``/run/stagecraft``; each file is owned by the uid the container runs as.

    A job (``one_shot``) is gated on its exit code: ``succeeded`` resolves only when it exited 0,
    and containers created ``after`` it wait for that, so a failed migration stops the update
    before anything that depends on it changes.
    """

    container: docker.Container
    succeeded: pulumi.Output[str] | None = None

    def __init__(self, name: str, args: ContainerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:container:HardenedContainer", name, None, opts)
        naming = args.naming
        self.service = args.service
        self.one_shot = args.one_shot
        # The name other containers reach it by (a rolling container's network alias).
        self.stable_name = naming.container(args.service)
        # Every volume this container created (its files volume), by name.
        self.volume_names: list[str] = []
        labels = naming.labels(service=args.service)
        envs = checked_env(args.env)
        self.user = args.user or image_user(args.settings.image).user
        self.uid = self.user.split(":", 1)[0]
        if args.image is None:
            remote = docker.RemoteImage(
                f"{name}-image",
                name=args.settings.image,
                keep_locally=True,
                opts=child(self, was=args.service),
            )
            self.image_id: pulumi.Input[str] = remote.image_id
        else:
            self.image_id = args.image
        mounts = [
            docker.ContainerMountArgs(
                type="volume", source=volume, target=path, read_only=True if path in args.read_only_volumes else None
            )
            for path, volume in sorted(args.volumes.items())
        ]
        depends_on = list(args.depends_on)
        labels_args: list[docker.ContainerLabelArgs] = list(container_labels(labels))
        carrier = self._files_carrier(name, args, labels)
        if carrier is not None:
            files_volume, carrier_container = carrier
            mounts.append(
                docker.ContainerMountArgs(type="volume", source=files_volume.name, target=FILES_ROOT, read_only=True)
            )
            depends_on.append(carrier_container)
            # A new carrier (new files) replaces the service container so it reads them.
            labels_args.append(
                docker.ContainerLabelArgs(label="stagecraft.files", value=carrier_container.id.apply(lambda i: i[:12]))
            )
        for job in args.after:
            # The label resolves only once the job succeeded, so this container is never created
            # after a failed job (depends_on alone would only wait for the job to finish).
            assert job.succeeded is not None, f"{job.service} is not a job"
            depends_on.append(job.container)
            labels_args.append(docker.ContainerLabelArgs(label=f"stagecraft.after.{job.service}", value=job.succeeded))

        check = args.settings.healthcheck
        healthcheck = None
        if args.health_test and not args.one_shot:
            healthcheck = docker.ContainerHealthcheckArgs(
                tests=list(args.health_test),
                interval=_duration(check.interval_s),
                timeout=_duration(check.timeout_s),
                retries=check.retries,
                start_period=_duration(check.start_period_s),
                # Checks every few seconds while starting: healthy as soon as it really is.
                start_interval=_duration(check.start_interval_s) if check.start_interval_s else None,
            )
        tmpfs = {"/tmp": tmpfs_options(args.tmp_mb), **args.tmpfs}
        stable_name = self.stable_name
        networks = [
            docker.ContainerNetworksAdvancedArgs(
                name=attachment.network.name,
                aliases=[*attachment.aliases, *([stable_name] if args.rolling else [])] or None,
                ipv4_address=attachment.ipv4_address,
            )
            for attachment in args.networks
        ]
        container_name: pulumi.Input[str] = stable_name
        if args.rolling:
            container_name = _versioned_name(stable_name, args, self.image_id, labels_args)
        self.container = docker.Container(
            name,
            name=container_name,
            image=self.image_id,
            command=list(args.command) if args.command else None,
            entrypoints=list(args.entrypoint) if args.entrypoint else None,
            envs=envs,
            user=self.user,
            memory=args.settings.memory_mb,
            memory_swap=args.settings.memory_mb,  # no swap beyond the limit
            cpus=f"{args.settings.cpus:g}",
            shm_size=args.shm_size_mb,
            ulimits=[docker.ContainerUlimitArgs(name="nofile", soft=NOFILE_LIMIT, hard=NOFILE_LIMIT)],
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
            networks_advanced=networks,
            # A container that needs no network gets none (not Docker's default bridge).
            network_mode=None if args.networks else "none",
            ports=list(args.ports) or None,
            stop_signal=args.stop_signal,
            labels=labels_args,
            destroy_grace_seconds=30,
            # A fixed name means the old container must go before its replacement starts; a
            # rolling one is replaced only once the new one is healthy.
            opts=child(self, was=args.service, depends_on=depends_on, delete_before_replace=not args.rolling),
        )
        self.name = self.container.name
        if args.one_shot:
            job, container_name = args.service, naming.container(args.service)
            secrets = [pulumi.Output.from_input(value) for value in args.secret_files.values()]
            outcome = pulumi.Output.all(self.container.exit_code, self.container.container_logs, *secrets).apply(
                lambda values: job_outcome(job, container_name, values[0], values[1], values[2:])
            )
            # The outcome is only "succeeded" (a failure raises, with secrets blanked out).
            self.succeeded = pulumi.Output.unsecret(outcome)
        else:
            self._limit_processes(name, args.settings.pids_limit)
        self.register_outputs({"name": self.name})

    def _limit_processes(self, name: str, limit: int) -> None:
        """The provider cannot set a PIDs cgroup limit, so it is applied with `docker update` on
        the machine running Pulumi, against the same Docker host, whenever the container is new."""
        host = pulumi.Config("docker").get("host")
        command.local.Command(
            f"{name}-pids-limit",
            create=pulumi.Output.concat("docker update --pids-limit ", str(limit), " ", self.container.id),
            environment={"DOCKER_HOST": host} if host else None,
            triggers=[self.container.id],
            opts=child(self, depends_on=[self.container]),
        )

    def _files_carrier(
        self, name: str, args: ContainerArgs, labels: dict[str, str]
    ) -> tuple[docker.Volume, docker.Container] | None:
        owner = self.user.split(":", 1)
        uploads = [
            docker.ContainerUploadArgs(
                file=secret_path(file_name),
                content=pulumi.Output.secret(value),
                permissions="0400",
                owner=owner[0],
                group=owner[1],
            )
            for file_name, value in sorted(args.secret_files.items())
        ]
        uploads += [
            docker.ContainerUploadArgs(
                file=config_path(file_name),
                content=content,
                permissions="0555" if file_name in args.executable_files else "0444",
                owner=owner[0],
                group=owner[1],
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
            image=self.image_id,
            start=False,
            must_run=False,
            network_mode="none",
            user=self.user,
            uploads=uploads,
            mounts=[docker.ContainerMountArgs(type="volume", source=volume.name, target=FILES_ROOT)],
            security_opts=["no-new-privileges:true"],
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            labels=container_labels({**labels, "role": "files-carrier"}),
            opts=child(self, was=f"{args.service}-files", replace_on_changes=["uploads"], delete_before_replace=True),
        )
        self.volume_names.append(args.naming.volume(args.service, "files"))
        return volume, carrier
