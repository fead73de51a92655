"""The application API, and the migration job that must finish before it is replaced."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import ApiService, AppSettings
from components.container import (
    Attachment,
    ContainerArgs,
    HardenedContainer,
    app_environment,
    http_check,
    secret_path,
    tmpfs_options,
)
from components.naming import Naming

# Secret name (in the secrets component) -> file the API reads it from.
API_SECRETS = ("app-db-password", "redis-password", "api-secret-key", "jwt-signing-key")


@dataclass(frozen=True)
class Endpoints:
    """Where the API finds its dependencies (from the services' outputs)."""

    postgres_host: str
    database: str
    database_user: str
    redis_host: str
    chroma_url: str
    temporal_address: str
    temporal_namespace: str


@dataclass(frozen=True)
class ApiArgs:
    naming: Naming
    settings: ApiService
    app: AppSettings
    endpoints: Endpoints
    secrets: Mapping[str, pulumi.Input[str]]
    data_network: docker.Network
    app_network: docker.Network
    monitoring_network: docker.Network
    gcp_project: str
    ports: Sequence[docker.ContainerPortArgs] = ()
    depends_on: Sequence[pulumi.Resource] = ()


class Api(pulumi.ComponentResource):
    """Creates the API container and its one-shot migration job (``alembic upgrade head``
    unless config says otherwise). The migration runs with the new image and must finish
    before the API container is replaced; secrets reach both as files only."""

    def __init__(self, name: str, args: ApiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:api:Api", name, None, opts)
        naming = args.naming
        ep = args.endpoints
        self.host = naming.container("api")
        self.port = args.settings.port
        base_env = {
            **app_environment(naming.environment, args.app),
            "PORT": str(args.settings.port),
            "DATABASE_HOST": ep.postgres_host,
            "DATABASE_PORT": "5432",
            "DATABASE_NAME": ep.database,
            "DATABASE_USER": ep.database_user,
            "DATABASE_PASSWORD_FILE": secret_path("app-db-password"),
            "REDIS_HOST": ep.redis_host,
            "REDIS_PORT": "6379",
            "REDIS_PASSWORD_FILE": secret_path("redis-password"),
            "CHROMA_URL": ep.chroma_url,
            "TEMPORAL_ADDRESS": ep.temporal_address,
            "TEMPORAL_NAMESPACE": ep.temporal_namespace,
            "SECRET_KEY_FILE": secret_path("api-secret-key"),
            "JWT_SECRET_KEY_FILE": secret_path("jwt-signing-key"),
            "GOOGLE_CLOUD_PROJECT": args.gcp_project,
            "METRICS_PATH": args.settings.metrics_path,
        }
        secret_files = {name: args.secrets[name] for name in API_SECRETS}
        tmpfs = {"/tmp": tmpfs_options(128)}
        self.migration = HardenedContainer(
            "api-migrate",
            ContainerArgs(
                naming=naming,
                service="api-migrate",
                settings=args.settings,
                networks=[Attachment(args.data_network)],
                command=list(args.settings.migrate_command),
                env=base_env,
                secret_files=secret_files,
                tmpfs=tmpfs,
                one_shot=True,
                depends_on=args.depends_on,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.server = HardenedContainer(
            "api",
            ContainerArgs(
                naming=naming,
                service="api",
                settings=args.settings,
                networks=[
                    Attachment(args.app_network, aliases=("api",)),
                    Attachment(args.data_network),
                    Attachment(args.monitoring_network, aliases=("api",)),
                ],
                env={**base_env, "GCS_UPLOADS_BUCKET": naming.bucket("uploads")},
                secret_files=secret_files,
                tmpfs=tmpfs,
                health_test=http_check(args.settings.port, args.settings.health_path, args.settings.health_command),
                ports=args.ports,
                depends_on=[self.migration.container],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"host": self.host})
