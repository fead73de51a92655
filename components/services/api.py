"""The application API, and the migration job that must finish before it is replaced."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import ApiService, AppSettings
from components.containers.container import Attachment, HardenedContainer, secret_path
from components.containers.endpoints import Endpoint, ScrapeTarget
from components.containers.environment import app_environment
from components.containers.healthchecks import http_check
from components.containers.service import ServiceComponent
from components.naming import Naming

# The secrets the API reads, each as a file of the same name; its workload's grants follow from
# this list.
SECRETS = ("app-db-password", "redis-password", "api-secret-key", "jwt-signing-key")
GCP_KEY_FILE = "gcp-key.json"


@dataclass(frozen=True)
class Dependencies:
    """Where the API finds what it uses (the services' published endpoints)."""

    postgres: Endpoint
    database: str
    database_user: str
    redis: Endpoint
    redis_user: str
    chroma: Endpoint
    temporal: Endpoint
    temporal_namespace: str


@dataclass(frozen=True)
class ApiArgs:
    naming: Naming
    settings: ApiService
    app: AppSettings
    dependencies: Dependencies
    secrets: Mapping[str, pulumi.Input[str]]
    data_network: docker.Network
    app_network: docker.Network
    chroma_network: docker.Network
    temporal_network: docker.Network
    monitoring_network: docker.Network
    gcp_project: str
    # The API's service account key (JSON), when its credentials are a key file.
    gcp_key: pulumi.Input[str] | None = None
    ports: Sequence[docker.ContainerPortArgs] = ()
    # Jobs the migration must see succeed; jobs the API must see succeed (besides its
    # migration); services the API needs running.
    migrate_after: Sequence[HardenedContainer] = ()
    after: Sequence[HardenedContainer] = ()
    depends_on: Sequence[pulumi.Resource] = ()


class Api(ServiceComponent):
    """Creates the API container and its one-shot migration job (``alembic upgrade head``
    unless config says otherwise). The migration runs with the new image and must succeed
    before the API container is replaced; secrets reach both as files only, and the API alone
    gets its service account's key."""

    def __init__(self, name: str, args: ApiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:api:Api", name, args.naming, opts)
        naming = args.naming
        deps = args.dependencies
        self.endpoint = Endpoint(naming.container("api"), args.settings.port)
        self.scrape_targets = [ScrapeTarget("api", self.endpoint.address, args.settings.metrics_path)]
        base_env = {
            **app_environment(naming.environment, args.app),
            "PORT": str(args.settings.port),
            "DATABASE_HOST": deps.postgres.host,
            "DATABASE_PORT": str(deps.postgres.port),
            "DATABASE_NAME": deps.database,
            "DATABASE_USER": deps.database_user,
            "DATABASE_PASSWORD_FILE": secret_path("app-db-password"),
            "REDIS_HOST": deps.redis.host,
            "REDIS_PORT": str(deps.redis.port),
            "REDIS_USERNAME": deps.redis_user,
            "REDIS_PASSWORD_FILE": secret_path("redis-password"),
            "CHROMA_URL": deps.chroma.url(),
            "TEMPORAL_ADDRESS": deps.temporal.address,
            "TEMPORAL_NAMESPACE": deps.temporal_namespace,
            "SECRET_KEY_FILE": secret_path("api-secret-key"),
            "JWT_SECRET_KEY_FILE": secret_path("jwt-signing-key"),
            "GOOGLE_CLOUD_PROJECT": args.gcp_project,
            "METRICS_PATH": args.settings.metrics_path,
        }
        secret_files = {secret: args.secrets[secret] for secret in SECRETS}
        user = args.settings.user
        self.migration = self.container(
            "migrate",
            "api-migrate",
            args.settings,
            # The database is all a migration touches.
            networks=[Attachment(args.data_network)],
            command=list(args.settings.migrate_command),
            env=base_env,
            secret_files=secret_files,
            user=user,
            tmp_mb=128,
            one_shot=True,
            after=args.migrate_after,
        )
        server_env = {**base_env, "GCS_UPLOADS_BUCKET": naming.bucket("uploads")}
        server_secrets = dict(secret_files)
        if args.gcp_key is not None:
            # Its own service account's key: the uploads bucket is reachable with it alone.
            server_secrets[GCP_KEY_FILE] = args.gcp_key
            server_env["GOOGLE_APPLICATION_CREDENTIALS"] = secret_path(GCP_KEY_FILE)
        self.server = self.container(
            "server",
            "api",
            args.settings,
            networks=[
                Attachment(args.app_network, aliases=("api",)),
                Attachment(args.data_network),
                Attachment(args.chroma_network),
                Attachment(args.temporal_network),
                Attachment(args.monitoring_network, aliases=("api",)),
            ],
            env=server_env,
            secret_files=server_secrets,
            user=user,
            tmp_mb=128,
            health_test=http_check(args.settings.port, args.settings.health_path, args.settings.health_command),
            ports=args.ports,
            rolling=True,
            after=[self.migration, *args.after],
            depends_on=args.depends_on,
        )
        self.register_outputs({"host": self.endpoint.host})
