"""The whole environment: the security layer and the application layer of one stack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.cloud.storage import OBJECT_PREFIXES
from components.composition.application import ApplicationLayer, ApplicationLayerArgs
from components.composition.grants import stack_grants
from components.composition.outputs import verify_output
from components.composition.security import SecurityLayer, SecurityLayerArgs
from components.composition.urls import https_url
from components.config import StackConfig
from components.naming import Naming
from components.resources import child


def naming_for(config: StackConfig, stack: str) -> Naming:
    sc = config.stagecraft
    return Naming(
        app=sc.app_name,
        environment=sc.environment,
        stack=stack,
        project=config.gcp.project,
        branch=sc.git_branch,
    )


@dataclass(frozen=True)
class PlatformArgs:
    config: StackConfig
    stack: str


class Platform(pulumi.ComponentResource):
    """Creates one environment of the application from its validated stack config: the security
    layer (identities, secrets, buckets, every grant from one table) and the application layer
    (networks and services on the Docker host), which gets the secrets' values as files."""

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:platform:Platform", name, None, opts)
        config = args.config
        sc = config.stagecraft
        self.naming = naming = naming_for(config, args.stack)

        self.grants = stack_grants(
            sc.identity, sc.secrets.provided, optional=("seed-salt",) if sc.seed is not None else ()
        )
        self.security = SecurityLayer(
            f"{name}-security",
            SecurityLayerArgs(config=config, naming=naming, grants=self.grants),
            opts=child(self),
        )
        self.application = ApplicationLayer(
            f"{name}-application",
            ApplicationLayerArgs(
                config=config,
                naming=naming,
                secrets=self.security.secrets.values,
                key_files=self.security.identities.key_files,
                buckets=self.security.storage.names,
            ),
            opts=child(self),
        )
        app = self.application
        layout = app.postgres.layout
        self.outputs: dict[str, Any] = {
            "environment": sc.environment,
            "domains": sc.domains.model_dump(),
            "service_accounts": self.security.identities.emails,
            "buckets": self.security.storage.names,
            "object_prefixes": {purpose: list(prefixes) for purpose, prefixes in OBJECT_PREFIXES.items()},
            "secret_ids": self.security.secrets.secret_ids,
            "networks": app.networks.names,
            "databases": {
                "app": layout.app_database,
                "temporal": layout.temporal_databases[0],
                "temporal_visibility": layout.temporal_databases[1],
            },
            "database_users": {
                "app": layout.app_user,
                "temporal": layout.temporal_user,
                "monitor": layout.monitor_user,
            },
            "urls": {name: https_url(domain, sc.proxy.https_port) for name, domain in sc.domains.model_dump().items()},
        }
        self.outputs["verify"] = verify_output(
            config,
            naming,
            app.service_components,
            networks=[naming.network(purpose) for purpose in app.networks.networks],
            temporal_address=app.temporal.endpoint.address,
        )
        if app.proxy.ca_certificate is not None:
            # Public: lets live checks and browsers trust staging's self-signed certificate.
            self.outputs["tls_ca_certificate"] = app.proxy.ca_certificate
        self.register_outputs(self.outputs)
