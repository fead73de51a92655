"""Alertmanager: the rendered routing and templates checked by the real amtool, and the container
as the component plans it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from conftest import require_tool, service_containers

from components.config import Network, Service
from components.containers.network import Networks, NetworksArgs
from components.naming import Naming
from components.services.alertmanager import (
    AlertingError,
    Alertmanager,
    AlertmanagerArgs,
    EmailReceiver,
    EmailSettings,
    WebhookReceiver,
    check_image,
    render_alertmanager_config,
    render_templates,
)
from preflight.engine import Plan

VARIANTS = ("email-and-webhook", "email-only", "webhook-only")
SMTP_PASSWORD = "smtp-Pass-5150"
WEBHOOK_URL = "https://hooks.example.com/services/T000/B000/token-4711"
SUBNETS = Network(
    edge="10.9.0.0/24",
    app="10.9.1.0/24",
    data="10.9.2.0/24",
    chroma="10.9.4.0/24",
    temporal="10.9.5.0/24",
    monitoring="10.9.3.0/24",
    egress="10.9.6.0/24",
    alerting="10.9.7.0/24",
)


def _receivers(variant: str, directory: Path, environment: str) -> tuple[EmailReceiver | None, WebhookReceiver | None]:
    email = EmailReceiver(
        smarthost="smtp.example.com:587",
        sender=f"alerts-{environment}@example.com",
        to=("oncall@example.com", "team@example.com"),
        username="alerts",
        password_file=str(directory / "smtp-password"),
    )
    webhook = WebhookReceiver(url_file=str(directory / "webhook-url"), channel=f"#alerts-{environment}")
    return (email if variant != "webhook-only" else None, webhook if variant != "email-only" else None)


def _write(directory: Path, environment: str, variant: str) -> Path:
    (directory / "smtp-password").write_text(SMTP_PASSWORD)
    (directory / "webhook-url").write_text(WEBHOOK_URL)
    (directory / "notifications.tmpl").write_text(render_templates(environment))
    email, webhook = _receivers(variant, directory, environment)
    path = directory / "alertmanager.yml"
    path.write_text(render_alertmanager_config(email, webhook, str(directory / "notifications.tmpl")))
    return path


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("amtool"), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("environment", ["staging", "prod"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_amtool_accepts_the_config(environment: str, variant: str, tmp_path: Path) -> None:
    path = _write(tmp_path, environment, variant)
    result = _amtool("check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout
    text = path.read_text()
    # Secrets stay in their files; the config only names them.
    assert SMTP_PASSWORD not in text and WEBHOOK_URL not in text


def test_amtool_refuses_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: a smarthost without a port is refused by the real program."""
    path = _write(tmp_path, "staging", "email-only")
    path.write_text(path.read_text().replace("smtp.example.com:587", "smtp.example.com"))
    assert _amtool("check-config", str(path)).returncode != 0


def _route(path: Path, *labels: str) -> str:
    result = _amtool("config", "routes", "test", f"--config.file={path}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


# severity -> (receiver, channels it reaches) per variant.
EXPECTED_ROUTES = {
    "email-and-webhook": {"critical": {"email", "webhook"}, "warning": {"email"}, "info": set()},
    "email-only": {"critical": {"email"}, "warning": {"email"}, "info": set()},
    "webhook-only": {"critical": {"webhook"}, "warning": {"webhook"}, "info": set()},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_alerts_are_routed_by_severity(variant: str, tmp_path: Path) -> None:
    path = _write(tmp_path, "prod", variant)
    config = yaml.safe_load(path.read_text())
    channels = {
        receiver["name"]: {
            channel for key, channel in (("email_configs", "email"), ("slack_configs", "webhook")) if key in receiver
        }
        for receiver in config["receivers"]
    }
    for severity, expected in EXPECTED_ROUTES[variant].items():
        receiver = _route(path, "alertname=BackupMissing", "environment=prod", f"severity={severity}")
        assert channels[receiver] == expected, severity
    # No severity, or an unknown one: a warning, not dropped.
    assert channels[_route(path, "alertname=Odd", "environment=prod")] == EXPECTED_ROUTES[variant]["warning"]
    assert channels[_route(path, "alertname=Odd", "severity=page")] == EXPECTED_ROUTES[variant]["warning"]
    repeats = {tuple(route["matchers"]): route.get("repeat_interval") for route in config["route"]["routes"]}
    assert repeats[('severity="critical"',)] == "1h" and repeats[('severity="warning"',)] == "4h"
    assert config["route"]["group_by"] == ["alertname", "environment", "service"]


def test_no_channel_is_an_error() -> None:
    with pytest.raises(AlertingError, match="email receiver, a webhook receiver or both"):
        render_alertmanager_config(None, None, "/run/stagecraft/config/notifications.tmpl")


def _render(template: str, tmp_path: Path, environment: str, labels: dict[str, str]) -> str:
    """One firing alert through the rendered templates, by the real amtool."""
    (tmp_path / "notifications.tmpl").write_text(render_templates(environment))
    data = {
        "receiver": "critical",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "The last backup failed", "runbook": "docs/runbook.md#alert-backupfailed"},
                "startsAt": "2025-03-01T02:30:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
            }
        ],
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
    }
    (tmp_path / "data.json").write_text(json.dumps(data))
    result = _amtool(
        "template",
        "render",
        f"--template.glob={tmp_path / 'notifications.tmpl'}",
        f"--template.data={tmp_path / 'data.json'}",
        f"--template.text={{{{ template {json.dumps(template)} . }}}}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_notifications_say_which_environment(environment: str, tmp_path: Path) -> None:
    labels = {"alertname": "BackupFailed", "severity": "warning", "environment": environment, "service": "backup"}
    title = _render("stagecraft.title", tmp_path, environment, labels)
    assert title.strip() == f"[{environment}] [FIRING:1] BackupFailed (backup)"
    text = _render("stagecraft.text", tmp_path, environment, labels)
    assert f"environment={environment}" in text
    assert "The last backup failed" in text and "Runbook: docs/runbook.md#alert-backupfailed" in text


def test_the_prefix_does_not_depend_on_the_alert(tmp_path: Path) -> None:
    """An alert that lost its environment label is still titled as staging's."""
    title = _render("stagecraft.title", tmp_path, "staging", {"alertname": "Odd", "severity": "warning"})
    assert title.startswith("[staging] ")


def test_old_images_are_refused() -> None:
    with pytest.raises(AlertingError, match=r"services\.alertmanager\.image: must be v0\.25\.0 or later"):
        check_image("prom/alertmanager:v0.24.0")
    for image in ("prom/alertmanager:v0.25.0", "prom/alertmanager:v0.28.1", "prom/alertmanager@sha256:" + "a" * 64):
        check_image(image)


NAMING = {env: Naming(app="acme", environment=env, stack=env, project="p-1234") for env in ("staging", "prod")}
SETTINGS = Service.model_validate({"image": "prom/alertmanager:v0.28.1", "memory_mb": 64, "cpus": 0.25})


def _build(environment: str, **overrides: Any) -> Callable[[], None]:
    def build() -> None:
        networks = Networks("networks", NetworksArgs(naming=NAMING[environment], settings=SUBNETS)).networks
        args: dict[str, Any] = {
            "naming": NAMING[environment],
            "settings": SETTINGS,
            "monitoring_network": networks["monitoring"],
            "egress_network": networks["egress"],
            "email": EmailSettings("smtp.example.com:587", "alerts@example.com", ("oncall@example.com",), "alerts"),
            "smtp_password": pulumi.Output.secret(SMTP_PASSWORD),
            "webhook_url": pulumi.Output.secret(WEBHOOK_URL),
            "protect": environment == "prod",
            **overrides,
        }
        component = Alertmanager("alertmanager", AlertmanagerArgs(**args))
        assert component.endpoint.address == f"acme-{environment}-alertmanager:9093"
        assert [(t.job, t.address) for t in component.scrape_targets] == [
            ("alertmanager", f"acme-{environment}-alertmanager:9093")
        ]

    return build


@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_container_is_hardened_single_instance(
    environment: str, run_mocked: Callable[..., Plan], tmp_path: Path
) -> None:
    plan = run_mocked(environment, _build(environment))
    containers = service_containers(plan)
    inputs = containers["alertmanager"].inputs
    assert inputs["user"] == "65534:65534" and inputs["readOnly"] is True
    assert inputs["image"].startswith("sha256:")
    command = inputs["command"]
    assert "--cluster.listen-address=" in command  # no gossip port
    assert "--config.file=/run/stagecraft/config/alertmanager.yml" in command
    assert "--storage.path=/alertmanager" in command
    assert inputs["healthcheck"]["tests"] == ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9093/-/healthy"]
    networks = {n["name"] for n in inputs["networksAdvanced"]}
    assert networks == {f"acme-{environment}-monitoring", f"acme-{environment}-egress"}
    assert "ports" not in inputs
    (volume,) = [v for v in plan.by_type("docker:index/volume:Volume") if v.inputs["name"].endswith("-data")]
    assert volume.inputs["name"] == f"acme-{environment}-alertmanager-data"
    assert volume.protect is (environment == "prod")
    assert {"target": "/alertmanager", "type": "volume", "source": volume.inputs["name"]} in inputs["mounts"]
    # Secrets travel as 0400 files only: never in the command, the environment or any input.
    uploads = {u["file"]: u for u in containers["alertmanager-files"].inputs["uploads"]}
    for name in ("alertmanager-smtp-password", "alertmanager-webhook-url"):
        assert uploads[f"/run/stagecraft/secrets/{name}"]["permissions"] == "0400"
    assert SMTP_PASSWORD not in str(plan.resources) and WEBHOOK_URL not in str(plan.resources)
    # The config it gets is the one amtool accepts.
    config = uploads["/run/stagecraft/config/alertmanager.yml"]["content"]
    assert "auth_password_file: /run/stagecraft/secrets/alertmanager-smtp-password" in config
    assert "api_url_file: /run/stagecraft/secrets/alertmanager-webhook-url" in config
    path = tmp_path / "alertmanager.yml"
    path.write_text(config)
    result = _amtool("check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    templates = uploads["/run/stagecraft/config/notifications.tmpl"]["content"]
    assert f"[{environment}]" in templates


def test_webhook_only_needs_no_smtp_password(run_mocked: Callable[..., Plan]) -> None:
    plan = run_mocked("staging", _build("staging", email=None, smtp_password=None))
    uploads = {u["file"] for u in service_containers(plan)["alertmanager-files"].inputs["uploads"]}
    assert "/run/stagecraft/secrets/alertmanager-smtp-password" not in uploads
    assert "/run/stagecraft/secrets/alertmanager-webhook-url" in uploads


def test_email_without_its_password_is_refused(run_mocked: Callable[..., Plan]) -> None:
    with pytest.raises(Exception, match="SMTP password secret is required"):
        run_mocked("staging", _build("staging", smtp_password=None))
