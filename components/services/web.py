"""The web front end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import AppService, AppSettings
from components.containers.container import Attachment
from components.containers.endpoints import Endpoint
from components.containers.environment import app_environment
from components.containers.healthchecks import http_check
from components.containers.service import ServiceComponent
from components.naming import Naming


@dataclass(frozen=True)
class WebArgs:
    naming: Naming
    settings: AppService
    app: AppSettings
    api_url: str
    app_network: docker.Network
    ports: Sequence[docker.ContainerPortArgs] = ()
    depends_on: Sequence[pulumi.Resource] = ()


class Web(ServiceComponent):
    """Creates the web front-end container; it holds no secrets and talks to the API through
    its public URL, so it joins only the app network. A new release is healthy before the old
    one stops."""

    def __init__(self, name: str, args: WebArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:web:Web", name, args.naming, opts)
        self.endpoint = Endpoint(args.naming.container("web"), args.settings.port)
        self.server = self.container(
            "server",
            "web",
            args.settings,
            networks=[Attachment(args.app_network, aliases=("web",))],
            env={
                **app_environment(args.naming.environment, args.app),
                "PORT": str(args.settings.port),
                "API_URL": args.api_url,
            },
            user=args.settings.user,
            tmp_mb=64,
            health_test=http_check(args.settings.port, args.settings.health_path, args.settings.health_command),
            ports=args.ports,
            rolling=True,
            depends_on=args.depends_on,
        )
        self.register_outputs({"host": self.endpoint.host})
