"""Operations: the stack's backup service (daily backups, weekly restore drills, the live checks'
probes), the backup taken before every migration, and staging's seed job. All run the ops image
(images/ops), which the program builds on the stack's own Postgres image."""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pulumi
import pulumi_docker as docker

from components.config import Backup, OpsService, Seed, Service
from components.containers.container import Attachment, HardenedContainer, config_path, secret_path, tmpfs_options
from components.containers.endpoints import Endpoint
from components.containers.service import ServiceComponent
from components.naming import Naming
from components.resources import child

PROJECT_DIR = Path(__file__).resolve().parent.parent.parent
IMAGE_DIR = PROJECT_DIR / "images" / "ops"
IMAGE_CONTEXT = IMAGE_DIR.relative_to(PROJECT_DIR).as_posix()
IMAGE_REPOSITORY = "stagecraft/ops"
PYTHON = "/opt/ops/bin/python"
CHROMA_DIR = "/chroma"
METRICS_DIR = "/metrics"
WORK_DIR = "/work"
SETTINGS_FILE = "ops.json"
GCP_KEY_FILE = "gcp-key.json"
# The secrets the ops container reads; the backup workload's grants follow from this list.
SECRETS = ("postgres-superuser-password", "redis-backup-password", "redis-verify-password")


def image_tag(base_image: str, directory: Path = IMAGE_DIR) -> str:
    """A tag that changes with the image's sources and its base image, so a change rebuilds it
    and replaces the containers that run it."""
    digest = hashlib.sha256(base_image.encode())
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class DataStores:
    """What the backups cover: Postgres's databases, Redis (as its backup user), Chroma's files."""

    postgres: Endpoint
    databases: Sequence[str]
    drill_databases: Sequence[str]
    redis: Endpoint
    redis_user: str
    chroma_volume: docker.Volume


def render_settings(
    stack: str,
    environment: str,
    prod: bool,
    bucket: pulumi.Input[str],
    stores: DataStores,
    backup: Backup,
    key_file: bool,
) -> pulumi.Output[str]:
    """The ops tool's settings file (images/ops/stagecraft_ops/__init__.py has its schema): no
    secret, only the paths of the files holding them."""

    def document(bucket_name: str) -> str:
        settings = {
            "stack": stack,
            "environment": environment,
            "prod": prod,
            "bucket": bucket_name,
            "credentials_file": secret_path(GCP_KEY_FILE) if key_file else None,
            "postgres": {
                "host": stores.postgres.host,
                "port": stores.postgres.port,
                "user": "postgres",
                "password_file": secret_path("postgres-superuser-password"),
                "databases": list(stores.databases),
                "drill_databases": list(stores.drill_databases),
            },
            "redis": {
                "host": stores.redis.host,
                "port": stores.redis.port,
                "user": stores.redis_user,
                "password_file": secret_path("redis-backup-password"),
            },
            "chroma": {"data_dir": CHROMA_DIR},
            "schedule": {
                "backup_utc": backup.schedule_utc,
                "drill": backup.drill_schedule,
                "grace_minutes": backup.grace_minutes,
            },
            "textfile_dir": METRICS_DIR,
            "heartbeat_file": "/tmp/stagecraft-ops.heartbeat",
            "work_dir": WORK_DIR,
        }
        return json.dumps(settings, indent=2) + "\n"

    return pulumi.Output.from_input(bucket).apply(document)


def render_database_url(user: str, password: str, endpoint: Endpoint, database: str) -> str:
    """A libpq URL for the seed tool, read from a secret file."""
    return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{endpoint.address}/{database}\n"


@dataclass(frozen=True)
class OperationsArgs:
    naming: Naming
    settings: OpsService
    backup: Backup
    # The stack's Postgres image: the ops image is built on it, so pg_dump matches the server.
    postgres_image: str
    data_network: docker.Network
    egress_network: docker.Network
    stores: DataStores
    backups_bucket: pulumi.Input[str]
    # The secrets' values by name (see SECRETS), and the backup identity's key file if any.
    secrets: Mapping[str, pulumi.Input[str]]
    gcp_key: pulumi.Input[str] | None = None
    prod: bool = False
    protect: bool = False
    after: Sequence[HardenedContainer] = ()


class Operations(ServiceComponent):
    """Creates the ops image (built on the Docker host from images/ops), the long-running backup
    service (daily backups to the stack's backups bucket with the backup identity's own key,
    weekly restore drills, metrics for Prometheus through the node exporter's textfile
    directory), and, on request, the backup that must succeed before a migration runs."""

    def __init__(self, name: str, args: OperationsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:ops:Operations", name, args.naming, opts)
        self._args = args
        self.stores = args.stores
        self.backup = args.backup
        naming = args.naming
        tag = image_tag(args.postgres_image)
        self.image = docker.Image(
            f"{name}-image",
            image_name=f"{IMAGE_REPOSITORY}:{tag}",
            build=docker.DockerBuildArgs(
                # Relative to the project directory, where Pulumi runs the program and its
                # providers: an absolute path would differ between machines and show as a change.
                # The Dockerfile defaults to the context's own.
                context=IMAGE_CONTEXT,
                args={"BASE_IMAGE": args.postgres_image},
                platform=args.settings.platform,
            ),
            skip_push=True,
            opts=child(self),
        )
        # The container block takes a Service; the ops image is built here, not pulled.
        self.service_settings = Service.model_construct(
            image=f"{IMAGE_REPOSITORY}:{tag}",
            memory_mb=args.settings.memory_mb,
            cpus=args.settings.cpus,
            pids_limit=args.settings.pids_limit,
            healthcheck=args.settings.healthcheck,
        )
        # Shared with the node exporter, which reads the metrics files the ops tool writes.
        self.metrics_volume = self.volume("metrics", "ops", "metrics", args.protect)
        self.work_volume = self.volume("work", "ops", "work", args.protect)
        self._owner = self.volume_owner(
            "ops",
            self.service_settings,
            "999:999",
            {METRICS_DIR: self.metrics_volume, WORK_DIR: self.work_volume},
            image=self.image.repo_digest,
        )
        self.settings_file = render_settings(
            naming.stack,
            naming.environment,
            args.prod,
            args.backups_bucket,
            args.stores,
            args.backup,
            args.gcp_key is not None,
        )
        self.server = self._run(
            "server",
            "ops",
            command=["serve"],
            health_test=["CMD", PYTHON, "-m", "stagecraft_ops", "health"],
            after=[self._owner, *args.after],
        )
        self.register_outputs({"name": self.server.name})

    def _run(
        self, suffix: str, service: str, env: Mapping[str, str] | None = None, **options: object
    ) -> HardenedContainer:
        args = self._args
        secret_files: dict[str, pulumi.Input[str]] = {name: args.secrets[name] for name in SECRETS}
        if args.gcp_key is not None:
            secret_files[GCP_KEY_FILE] = args.gcp_key
        return self.container(
            suffix,
            service,
            self.service_settings,
            # The data network for Postgres and Redis; the egress network for Cloud Storage.
            networks=[Attachment(args.data_network), Attachment(args.egress_network)],
            image=self.image.repo_digest,
            env={"OPS_SETTINGS_FILE": config_path(SETTINGS_FILE), **(env or {})},
            secret_files=secret_files,
            config_files={SETTINGS_FILE: self.settings_file},
            volumes={
                CHROMA_DIR: args.stores.chroma_volume.name,
                METRICS_DIR: self.metrics_volume.name,
                WORK_DIR: self.work_volume.name,
            },
            read_only_volumes=frozenset({CHROMA_DIR}),
            # The base image declares a volume for Postgres's data; a tiny tmpfs keeps Docker from
            # creating an anonymous volume there.
            tmpfs={"/var/lib/postgresql/data": tmpfs_options(1)},
            tmp_mb=64,
            **options,  # type: ignore[arg-type]
        )

    def pre_migration_backup(self, release: str, after: Sequence[HardenedContainer] = ()) -> HardenedContainer:
        """A Postgres backup that must succeed before the migration of ``release`` (the API image)
        runs: the backup to restore if a rollback needs the schema back. A new release replaces
        the job, so it runs again."""
        return self._run(
            "pre-migration-backup",
            "ops-pre-migration-backup",
            command=["backup", "--reason", "pre-migration", "--only", "postgres"],
            # Changes with the release, so every release gets its own backup.
            env={"STAGECRAFT_RELEASE": release},
            one_shot=True,
            after=[self._owner, *after],
        )


@dataclass(frozen=True)
class SeedJobArgs:
    naming: Naming
    seed: Seed
    ops: Operations
    data_network: docker.Network
    egress_network: docker.Network
    postgres: Endpoint
    database: str
    database_user: str
    database_password: pulumi.Input[str]
    salt: pulumi.Input[str]
    uploads_bucket: pulumi.Input[str]
    # The key of an identity that may read the uploads bucket (the API's), for `load`.
    gcp_key: pulumi.Input[str] | None = None
    project_dir: Path = IMAGE_DIR.parent.parent
    after: Sequence[HardenedContainer] = ()


class SeedJob(ServiceComponent):
    """Staging only: loads production-like data into the app database once its schema exists:
    fixtures generated from a spec in the repository (deterministic per the stack's salt), or an
    already anonymized dump fetched from the stack's own uploads bucket under `seed/`. Loading the
    same version again does nothing."""

    def __init__(self, name: str, args: SeedJobArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:ops:SeedJob", name, args.naming, opts)
        if args.naming.environment == "prod":
            raise pulumi.RunError("a seed job is never created in prod: seed data never goes into production")
        seed = args.seed
        url = pulumi.Output.from_input(args.database_password).apply(
            lambda password: render_database_url(args.database_user, password, args.postgres, args.database)
        )
        secret_files: dict[str, pulumi.Input[str]] = {"database-url": url, "seed-salt": args.salt}
        config_files: dict[str, pulumi.Input[str]] = {}
        seed_command = [PYTHON, "-m", "stagecraft_ops", "seed"]
        common = ["--database-url-file", secret_path("database-url"), "--environment", args.naming.environment]
        version = ["--seed-version", seed.version] if seed.version else []
        if seed.mode == "generate":
            assert seed.spec is not None
            config_files["spec.json"] = (args.project_dir / seed.spec).read_text()
            script = [
                *seed_command,
                "generate",
                *common,
                "--spec",
                config_path("spec.json"),
                "--salt-file",
                secret_path("seed-salt"),
                *version,
            ]
            steps = [script]
            networks = [Attachment(args.data_network)]
        else:
            assert seed.object is not None
            if args.gcp_key is not None:
                secret_files[GCP_KEY_FILE] = args.gcp_key
            # The ops tool's settings, pointed at the uploads bucket, with the API's credentials.
            config_files[SETTINGS_FILE] = render_settings(
                args.naming.stack,
                args.naming.environment,
                False,
                args.uploads_bucket,
                args.ops.stores,
                args.ops.backup,
                args.gcp_key is not None,
            )
            dump = f"{WORK_DIR}/seed.dump"
            steps = [
                [PYTHON, "-m", "stagecraft_ops", "fetch", "--object", seed.object, "--to", dump],
                [*seed_command, "load", *common, "--dump", dump, *version],
            ]
            networks = [Attachment(args.data_network), Attachment(args.egress_network)]
        config_files["seed.sh"] = render_seed_script(steps)
        self.job = self.container(
            "job",
            "seed",
            args.ops.service_settings,
            networks=networks,
            image=args.ops.image.repo_digest,
            entrypoint=["/bin/sh", config_path("seed.sh")],
            env={"OPS_SETTINGS_FILE": config_path(SETTINGS_FILE)},
            secret_files=secret_files,
            config_files=config_files,
            executable_files=frozenset({"seed.sh"}),
            volumes={WORK_DIR: args.ops.work_volume.name},
            tmpfs={"/var/lib/postgresql/data": tmpfs_options(1)},
            tmp_mb=64,
            one_shot=True,
            after=args.after,
        )
        self.register_outputs({})


def render_seed_script(steps: Sequence[Sequence[str]]) -> str:
    """The seed job: each step in turn, stopping at the first that fails."""
    lines = ["#!/bin/sh", "# stagecraft: rendered, do not edit", "set -eu"]
    lines += [shlex.join(step) for step in steps]
    return "\n".join(lines) + "\n"
