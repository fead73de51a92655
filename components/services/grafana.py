"""Grafana: dashboards over Prometheus, admin password from a file, nobody else signs up."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from components import yaml_io
from components.config import Service
from components.containers.container import (
    Attachment,
    config_path,
    secret_path,
)
from components.containers.endpoints import Endpoint, ScrapeTarget
from components.containers.healthchecks import wget_check
from components.containers.service import ServiceComponent
from components.naming import Naming

PORT = 3000
DATA_DIR = "/var/lib/grafana"
DASHBOARDS_DIR = Path(__file__).resolve().parent.parent / "dashboards"
# The secrets Grafana reads; the monitoring workload's grants follow from this list.
SECRETS = ("grafana-admin-password",)


def render_entrypoint(password_file: str, data_dir: str = DATA_DIR, image_entrypoint: str = "/run.sh") -> str:
    """Grafana takes the admin password from its file only when it creates its database; on
    every later start this sets it from the current file first (read on stdin, never on a
    command line), so a rotated password takes effect. Then the image's own entrypoint
    (``image_entrypoint``), which starts the server in this process."""
    return "\n".join(
        [
            "#!/bin/sh",
            "# stagecraft: rendered, do not edit",
            "set -eu",
            f"if [ -s {data_dir}/grafana.db ]; then",
            "    grafana cli --homepath /usr/share/grafana --config /etc/grafana/grafana.ini \\",
            f"        admin reset-admin-password --password-from-stdin < {password_file} >/dev/null",
            "fi",
            f'exec {image_entrypoint} "$@"',
            "",
        ]
    )


def endpoint(naming: Naming) -> Endpoint:
    return Endpoint(naming.container("grafana"), PORT)


def scrape_target(naming: Naming) -> ScrapeTarget:
    """Grafana's own metrics, for Prometheus."""
    return ScrapeTarget("grafana", endpoint(naming).address)


def render_datasource(prometheus_url: str) -> str:
    document = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": "prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": prometheus_url,
                "isDefault": True,
                "editable": False,
            }
        ],
    }
    return yaml_io.dump(document)


def render_dashboard_provider(path: str) -> str:
    document = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "stagecraft",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "options": {"path": path},
            }
        ],
    }
    return yaml_io.dump(document)


def dashboard_names() -> list[str]:
    return sorted(path.stem for path in DASHBOARDS_DIR.glob("*.json"))


def render_dashboard(name: str, environment: str) -> str:
    """A dashboard from components/dashboards/<name>.json, named and tagged for the environment."""
    body = json.loads((DASHBOARDS_DIR / f"{name}.json").read_text())
    suffix = "" if name == "overview" else f"-{name}"
    dashboard = {
        "uid": f"stagecraft-{environment}{suffix}",
        "title": f"stagecraft {environment} {name.replace('-', ' ')}",
        "tags": ["stagecraft", environment],
        **body,
    }
    return json.dumps(dashboard, indent=2)


@dataclass(frozen=True)
class GrafanaArgs:
    naming: Naming
    settings: Service
    monitoring_network: docker.Network
    app_network: docker.Network
    prometheus: Endpoint
    admin_password: pulumi.Input[str]
    domain: str
    ports: Sequence[docker.ContainerPortArgs] = ()
    protect: bool = False
    depends_on: Sequence[pulumi.Resource] = ()
    # The component these resources lived under before monitoring was split by concern.
    was_parent: pulumi.Input[str] | None = None


class Grafana(ServiceComponent):
    """Creates Grafana: admin password from a file, sign-up and anonymous access off, secure
    cookies, the Prometheus datasource and the dashboards in components/dashboards provisioned
    read-only, data on a named volume."""

    def __init__(self, name: str, args: GrafanaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:grafana:Grafana", name, args.naming, opts, was_parent=args.was_parent)
        naming = args.naming
        self.endpoint = endpoint(naming)
        self.scrape_targets = [scrape_target(naming)]
        self.volume = self.data_volume("grafana", args.protect)
        provisioning = "provisioning"
        dashboards = {
            f"dashboards/{dashboard}.json": render_dashboard(dashboard, naming.environment)
            for dashboard in dashboard_names()
        }
        self.server = self.container(
            "server",
            "grafana",
            args.settings,
            networks=[
                Attachment(args.monitoring_network),
                Attachment(args.app_network, aliases=("grafana",)),
            ],
            env={
                "GF_SECURITY_ADMIN_USER": "admin",
                "GF_SECURITY_ADMIN_PASSWORD__FILE": secret_path("grafana-admin-password"),
                "GF_USERS_ALLOW_SIGN_UP": "false",
                "GF_AUTH_ANONYMOUS_ENABLED": "false",
                "GF_SECURITY_COOKIE_SECURE": "true",
                "GF_SECURITY_DISABLE_GRAVATAR": "true",
                "GF_ANALYTICS_REPORTING_ENABLED": "false",
                "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
                "GF_SERVER_ROOT_URL": f"https://{args.domain}/",
                "GF_PATHS_PROVISIONING": config_path(provisioning),
            },
            entrypoint=["/bin/sh", config_path("entrypoint.sh")],
            secret_files={"grafana-admin-password": args.admin_password},
            config_files={
                f"{provisioning}/datasources/prometheus.yaml": render_datasource(args.prometheus.url()),
                f"{provisioning}/dashboards/stagecraft.yaml": render_dashboard_provider(config_path("dashboards")),
                "entrypoint.sh": render_entrypoint(secret_path("grafana-admin-password")),
                **dashboards,
            },
            executable_files=frozenset({"entrypoint.sh"}),
            volumes={DATA_DIR: self.volume.name},
            health_test=wget_check(PORT, "/api/health"),
            ports=args.ports,
            depends_on=args.depends_on,
        )
        self.register_outputs({"name": self.server.name})
