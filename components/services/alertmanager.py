"""Alertmanager: routes Prometheus's alerts by severity to email and a Slack-compatible webhook,
every notification marked with its environment.

Secrets reach it only as files: the SMTP password through ``auth_password_file`` (Alertmanager
0.25.0 and later) and the webhook URL, which carries its token, through ``slack_configs``'
``api_url_file`` (0.22.0 and later). ``webhook_configs``' ``url_file`` needs 0.26.0, so the
webhook is spoken in Slack's format, which Slack, Mattermost and Rocket.Chat all accept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components import yaml_io
from components.config import Service
from components.containers.container import Attachment, config_path, secret_path
from components.containers.endpoints import Endpoint, ScrapeTarget
from components.containers.healthchecks import wget_check
from components.containers.service import ServiceComponent
from components.naming import Naming

PORT = 9093
DATA_DIR = "/alertmanager"
CONFIG_FILE = "alertmanager.yml"
TEMPLATE_FILE = "notifications.tmpl"
# The secrets Alertmanager reads, the SMTP password and the webhook URL (each only when its
# channel is configured); the monitoring workload's grants follow from these names.
SECRETS = ("alertmanager-smtp-password", "alertmanager-webhook-url")
SMTP_LOGIN_FILE, WEBHOOK_URL_FILE = SECRETS
# The oldest Alertmanager that reads every setting rendered here (auth_password_file).
MINIMUM_VERSION = (0, 25, 0)
VERSION_TAG = re.compile(r":v?(\d+)\.(\d+)\.(\d+)(?:[-@]|$)")

# Severity -> how often a still-firing alert is sent again.
REPEAT_INTERVALS = {"critical": "1h", "warning": "4h"}
GROUP_BY = ("alertname", "environment", "service")


class AlertingError(ValueError):
    """Alerting settings that cannot make a working Alertmanager config."""


@dataclass(frozen=True)
class EmailReceiver:
    """Mail through an SMTP relay that requires a login; the password is read from a file."""

    smarthost: str  # host:port
    sender: str
    to: Sequence[str]
    username: str
    password_file: str
    # STARTTLS before the login. Only a relay on the loopback interface may go without.
    require_tls: bool = True


@dataclass(frozen=True)
class WebhookReceiver:
    """A Slack-compatible incoming webhook; its URL (which carries the token) is read from a file."""

    url_file: str
    channel: str | None = None


def render_templates(environment: str) -> str:
    """Notification templates: the environment in brackets at the front of every title and
    subject (``[staging] [FIRING:1] BackupMissing``), then each alert's summary, labels and
    runbook. The environment is written in, not read from the alert, so a label missing from
    one alert cannot make a staging notification look like prod's."""
    prefix = f"[{environment}]"
    return "\n".join(
        [
            "{{/* stagecraft: rendered, do not edit */}}",
            '{{ define "stagecraft.title" -}}',
            prefix + ' [{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}]'
            " {{ .CommonLabels.alertname }}"
            "{{ if .CommonLabels.service }} ({{ .CommonLabels.service }}){{ end }}",
            "{{- end }}",
            "",
            '{{ define "stagecraft.text" -}}',
            "{{ range .Alerts -}}",
            "{{ .Labels.alertname }} [{{ .Status }}] severity={{ .Labels.severity }}"
            " environment={{ .Labels.environment }}{{ if .Labels.service }} service={{ .Labels.service }}{{ end }}",
            "{{ .Annotations.summary }}",
            "{{ if .Annotations.runbook }}Runbook: {{ .Annotations.runbook }}",
            "{{ end }}",
            "{{ end -}}",
            "{{- end }}",
            "",
        ]
    )


def _email_config(email: EmailReceiver) -> dict:
    return {
        "to": ", ".join(email.to),
        "from": email.sender,
        "smarthost": email.smarthost,
        "auth_username": email.username,
        "auth_password_file": email.password_file,
        "require_tls": email.require_tls,
        "send_resolved": True,
        "headers": {"Subject": '{{ template "stagecraft.title" . }}'},
        "text": '{{ template "stagecraft.text" . }}',
    }


def _webhook_config(webhook: WebhookReceiver) -> dict:
    config: dict = {
        "api_url_file": webhook.url_file,
        "send_resolved": True,
        "title": '{{ template "stagecraft.title" . }}',
        "text": '{{ template "stagecraft.text" . }}',
        "fallback": '{{ template "stagecraft.title" . }}',
    }
    if webhook.channel:
        config["channel"] = webhook.channel
    return config


def render_alertmanager_config(
    email: EmailReceiver | None,
    webhook: WebhookReceiver | None,
    template_file: str,
    group_wait_s: int = 30,
) -> str:
    """Alertmanager's config: alerts grouped by alert name, environment and service; critical
    ones to every channel (email and webhook) again every hour, warnings by email (or the webhook
    when there is no email) every four hours, info nowhere. An alert without a known severity is
    treated as a warning rather than dropped. A critical alert of a service mutes its warnings.
    ``group_wait_s``: how long the first notification of a new group waits for more alerts."""
    if email is None and webhook is None:
        raise AlertingError("alerting: configure an email receiver, a webhook receiver or both")
    if email is not None and not email.to:
        raise AlertingError("alerting.email.to: at least one address is required")

    def receiver(name: str, with_email: bool, with_webhook: bool) -> dict:
        # A fresh copy each time, so the YAML has no anchors a reader must follow.
        found: dict = {"name": name}
        if with_email and email is not None:
            found["email_configs"] = [_email_config(email)]
        if with_webhook and webhook is not None:
            found["slack_configs"] = [_webhook_config(webhook)]
        return found

    config = {
        "global": {"resolve_timeout": "5m"},
        "templates": [template_file],
        "route": {
            "receiver": "warning",
            "group_by": list(GROUP_BY),
            "group_wait": f"{group_wait_s}s",
            "group_interval": "5m",
            "repeat_interval": REPEAT_INTERVALS["warning"],
            "routes": [
                {
                    "receiver": "critical",
                    "matchers": ['severity="critical"'],
                    "repeat_interval": REPEAT_INTERVALS["critical"],
                },
                {
                    "receiver": "warning",
                    "matchers": ['severity="warning"'],
                    "repeat_interval": REPEAT_INTERVALS["warning"],
                },
                {"receiver": "null", "matchers": ['severity="info"']},
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["environment", "service"],
            }
        ],
        "receivers": [
            receiver("critical", with_email=True, with_webhook=True),
            # Warnings go by email; the webhook carries them only when there is no email.
            receiver("warning", with_email=True, with_webhook=email is None),
            {"name": "null"},
        ],
    }
    return "# stagecraft: rendered, do not edit\n" + yaml_io.dump(config)


def check_image(image: str) -> None:
    """Refuse an Alertmanager image whose version tag is older than MINIMUM_VERSION (it would
    not start with this config). A reference pinned by digest alone cannot be checked here."""
    found = VERSION_TAG.search(image)
    if found is None:
        return
    version = tuple(int(part) for part in found.groups())
    if version < MINIMUM_VERSION:
        minimum = ".".join(str(part) for part in MINIMUM_VERSION)
        raise AlertingError(
            f"services.alertmanager.image: must be v{minimum} or later, which reads the SMTP password "
            f"from a file (got {image!r})"
        )


def endpoint(naming: Naming) -> Endpoint:
    """Where Prometheus sends alerts."""
    return Endpoint(naming.container("alertmanager"), PORT)


def scrape_target(naming: Naming) -> ScrapeTarget:
    """Alertmanager's own metrics (failed notifications among them), for Prometheus."""
    return ScrapeTarget("alertmanager", endpoint(naming).address)


@dataclass(frozen=True)
class EmailSettings:
    """The email channel without its password: relay, sender, recipients, login."""

    smarthost: str
    sender: str
    to: Sequence[str]
    username: str


@dataclass(frozen=True)
class AlertmanagerArgs:
    naming: Naming
    settings: Service
    monitoring_network: docker.Network
    # A network with a route out, to reach the SMTP relay and the webhook.
    egress_network: docker.Network
    email: EmailSettings | None = None
    smtp_password: pulumi.Input[str] | None = None
    webhook_url: pulumi.Input[str] | None = None
    webhook_channel: str | None = None
    # The URL people reach Alertmanager at, for links in notifications; derived when unset.
    external_url: str | None = None
    protect: bool = False
    depends_on: Sequence[pulumi.Resource] = ()


class Alertmanager(ServiceComponent):
    """Creates Alertmanager: a single instance (no cluster gossip port) running as its image's
    user on a read-only root, its silences and notification log on a data volume, the rendered
    routing and templates as files, the SMTP password and the webhook URL as secret files. It
    receives alerts on the monitoring network and reaches the outside through the egress network.
    Publishes its endpoint (for Prometheus's ``alerting`` section) and its scrape target."""

    def __init__(self, name: str, args: AlertmanagerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:alertmanager:Alertmanager", name, args.naming, opts)
        naming = args.naming
        check_image(args.settings.image)
        if args.email is not None and args.smtp_password is None:
            raise AlertingError("alerting.email: the SMTP password secret is required with an email receiver")
        email = (
            EmailReceiver(
                smarthost=args.email.smarthost,
                sender=args.email.sender,
                to=tuple(args.email.to),
                username=args.email.username,
                password_file=secret_path(SMTP_LOGIN_FILE),
            )
            if args.email is not None
            else None
        )
        webhook = (
            WebhookReceiver(url_file=secret_path(WEBHOOK_URL_FILE), channel=args.webhook_channel)
            if args.webhook_url is not None
            else None
        )
        self.endpoint = endpoint(naming)
        self.scrape_targets = [scrape_target(naming)]
        self.config = render_alertmanager_config(email, webhook, config_path(TEMPLATE_FILE))
        secret_files: dict[str, pulumi.Input[str]] = {}
        if email is not None and args.smtp_password is not None:
            secret_files[SMTP_LOGIN_FILE] = args.smtp_password
        if args.webhook_url is not None:
            secret_files[WEBHOOK_URL_FILE] = args.webhook_url
        command = [
            f"--config.file={config_path(CONFIG_FILE)}",
            f"--storage.path={DATA_DIR}",
            f"--web.listen-address=0.0.0.0:{PORT}",
            # One instance: no gossip listener, nothing to peer with.
            "--cluster.listen-address=",
        ]
        if args.external_url:
            command.append(f"--web.external-url={args.external_url}")
        self.volume = self.data_volume("alertmanager", args.protect)
        self.server = self.container(
            "server",
            "alertmanager",
            args.settings,
            networks=[
                Attachment(args.monitoring_network, aliases=("alertmanager",)),
                Attachment(args.egress_network),
            ],
            command=command,
            config_files={CONFIG_FILE: self.config, TEMPLATE_FILE: render_templates(naming.environment)},
            secret_files=secret_files,
            # The image's /alertmanager belongs to nobody, and a fresh volume takes that owner.
            volumes={DATA_DIR: self.volume.name},
            health_test=wget_check(PORT, "/-/healthy"),
            depends_on=args.depends_on,
        )
        self.register_outputs({"name": self.server.name})
