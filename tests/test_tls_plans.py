"""The proxy's certificate as prod deploys it: from Secret Manager (the stack file's default) and
from Let's Encrypt (a certbot container beside the proxy), planned under the mock engine."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import service_containers, stack_document

from preflight import cli
from preflight.engine import SECRET_SIG, SIG_KEY, Plan, plan

GET_SECRET_VERSION = "gcp:secretmanager/getSecretVersion:getSecretVersion"
PROJECT = "acme-prod-4711"
DOMAINS = ["acme.example.com", "api.acme.example.com", "grafana.acme.example.com"]
CERTBOT = {"image": "certbot/certbot:v4.0.0", "memory_mb": 64, "cpus": 0.1}
ACME = {"mode": "acme", "email": "ops@acme.example.com", "certbot": CERTBOT}
CONFIG = "/run/stagecraft/config"
SECRETS = "/run/stagecraft/secrets"


def _uploads(container: Any, raw: bool = False) -> dict[str, dict[str, Any]]:
    inputs = container.raw_inputs if raw else container.inputs
    return {u["file"]: u for u in inputs["uploads"]}


def _revealed(upload: dict[str, Any]) -> str:
    """The plaintext of an upload the program marked secret (only the mock engine sees it)."""
    content = upload["content"]
    assert isinstance(content, dict) and content.get(SIG_KEY) == SECRET_SIG, "not delivered as a secret"
    return str(content["value"])


def _labels(container: Any) -> dict[str, str]:
    return {label["label"]: label["value"] for label in container.inputs.get("labels", [])}


def _mounts(container: Any) -> dict[str, dict[str, Any]]:
    return {m["target"]: m for m in container.inputs.get("mounts", [])}


def _tls_plan(write_stack: Callable[..., Path], tls: dict[str, Any], **proxy: Any) -> Plan:
    document = stack_document("prod")
    document["config"]["stagecraft:proxy"] = {**document["config"]["stagecraft:proxy"], **proxy, "tls": tls}
    return plan("prod", write_stack(document, "Pulumi.prod.yaml"))


@pytest.fixture(scope="module")
def acme_stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    document = stack_document("prod")
    document["config"]["stagecraft:proxy"]["tls"] = ACME
    path = tmp_path_factory.mktemp("acme") / "Pulumi.prod.yaml"
    path.write_text(json.dumps(document))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def acme_plan(acme_stack: Path) -> Plan:
    return plan("prod", acme_stack)


# --------------------------------------------------------------------------------------------
# secret-manager: prod's default


def test_prod_reads_its_certificate_from_its_own_projects_secrets(plans: dict[str, Plan]) -> None:
    """Both secrets are read when the program runs (a data source, not a resource the stack would
    own and could delete), from the stack's own project, at the version the stack file names."""
    result = plans["prod"]
    assert result.config is not None and result.config.stagecraft.proxy.tls.mode == "secret-manager"
    reads = {
        (args["secret"], args["project"], args["version"])
        for token, args in result.invokes
        if token == GET_SECRET_VERSION and "tls" in args["secret"]
    }
    assert reads == {("prod-tls-certificate", PROJECT, "latest"), ("prod-tls-private-key", PROJECT, "latest")}
    # Every secret the program reads at deploy time comes from prod's project.
    assert {args["project"] for token, args in result.invokes if token == GET_SECRET_VERSION} == {PROJECT}
    # No certificate of its own: no pulumi-tls CA or key in prod's state.
    assert not [r for r in result.resources if r.type.startswith("tls:")]
    assert result.outputs.get("tls_ca_certificate") is None


def test_a_pinned_version_is_the_one_read(write_stack: Callable[..., Path]) -> None:
    tls = {
        "mode": "secret-manager",
        "certificate_secret": "prod-tls-certificate",
        "private_key_secret": "prod-tls-private-key",
        "version": "3",
    }
    result = _tls_plan(write_stack, tls)
    versions = {args["secret"]: args["version"] for token, args in result.invokes if token == GET_SECRET_VERSION}
    assert versions["prod-tls-certificate"] == "3" and versions["prod-tls-private-key"] == "3"


def test_the_certificate_and_key_arrive_as_files_only_the_proxy_can_read(plans: dict[str, Plan]) -> None:
    result = plans["prod"]
    containers = service_containers(result)
    files = _uploads(containers["proxy-files"])
    raw = _uploads(containers["proxy-files"], raw=True)
    for name in ("tls.crt", "tls.key"):
        upload = files[f"{SECRETS}/{name}"]
        assert (upload["permissions"], upload["owner"], upload["group"]) == ("0400", "101", "101"), name
        assert upload["content"] == "[secret]"
    # The right secret in the right file: a swapped pair would stop nginx from starting.
    read = {args["secret"]: args for token, args in result.invokes if token == GET_SECRET_VERSION}
    assert set(read) >= {"prod-tls-certificate", "prod-tls-private-key"}
    certificate, key = _revealed(raw[f"{SECRETS}/tls.crt"]), _revealed(raw[f"{SECRETS}/tls.key"])
    assert certificate.startswith("-----BEGIN CERTIFICATE-----") and certificate in result.secret_values
    assert key.startswith("-----BEGIN PRIVATE KEY-----") and key in result.secret_values
    conf = files[f"{CONFIG}/nginx.conf"]["content"]
    assert f"ssl_certificate {SECRETS}/tls.crt;" in conf
    assert f"ssl_certificate_key {SECRETS}/tls.key;" in conf
    # The proxy runs as the files' owner: nginx's uid in the image, not root.
    assert containers["proxy"].inputs["user"] == "101:101"


def test_no_key_material_outside_the_secret_files(plans: dict[str, Plan]) -> None:
    """Not in an environment variable, a label, a config file, any other input or an output."""
    result = plans["prod"]
    containers = service_containers(result)
    raw = _uploads(containers["proxy-files"], raw=True)
    key, certificate = _revealed(raw[f"{SECRETS}/tls.key"]), _revealed(raw[f"{SECRETS}/tls.crt"])
    body = key.splitlines()[1]  # a line of the key itself, however it were re-wrapped
    for resource in result.resources:
        shown = json.dumps(resource.inputs)
        assert body not in shown and "PRIVATE KEY" not in shown, resource.urn
    outputs = json.dumps(result.outputs)
    assert body not in outputs and key not in outputs and certificate not in outputs
    for container in containers.values():
        for pair in container.inputs.get("envs") or []:
            assert "BEGIN" not in pair and body not in pair, pair


# --------------------------------------------------------------------------------------------
# acme: Let's Encrypt through certbot


def test_certbot_runs_with_only_what_it_needs(acme_plan: Plan) -> None:
    containers = service_containers(acme_plan)
    certbot = containers["certbot"]
    inputs = certbot.inputs
    # Its own user (the proxy's, so nginx can read the key it writes), no privileges.
    assert inputs["user"] == "101:101"
    assert inputs["privileged"] is False and inputs["readOnly"] is True
    assert inputs["capabilities"] == {"drops": ["ALL"]}
    assert "no-new-privileges:true" in inputs["securityOpts"]
    # The edge network only (it reaches Let's Encrypt, never the application), nothing published.
    assert [n["name"] for n in inputs["networksAdvanced"]] == ["acme-prod-edge"]
    assert not inputs.get("ports")
    (edge,) = [n for n in acme_plan.by_type("docker:index/network:Network") if n.inputs["name"] == "acme-prod-edge"]
    assert edge.inputs["internal"] is False
    # Its two volumes and its own files; no Docker socket, no host path.
    mounts = _mounts(certbot)
    assert all(m["type"] == "volume" for m in mounts.values())
    assert {t: m["source"] for t, m in mounts.items()} == {
        "/etc/letsencrypt": "acme-prod-proxy-acme",
        "/var/www/acme": "acme-prod-proxy-acme-webroot",
        "/run/stagecraft": "acme-prod-certbot-files",
    }
    assert not mounts["/etc/letsencrypt"].get("readOnly") and not mounts["/var/www/acme"].get("readOnly")
    assert "docker.sock" not in json.dumps(inputs)
    assert inputs["envs"] == []
    assert inputs["entrypoints"] == ["/bin/sh", f"{CONFIG}/certbot.sh"]
    script = _uploads(containers["certbot-files"])[f"{CONFIG}/certbot.sh"]
    assert script["permissions"] == "0555" and script["owner"] == "101"
    assert "--email ops@acme.example.com" in script["content"]
    assert all(f"-d {domain}" in script["content"] for domain in DOMAINS)
    assert "--staging" not in script["content"]
    # HTTP-01 needs the proxy answering on port 80 first.
    assert containers["proxy"].urn in certbot.dependencies


def test_the_proxy_reads_certbots_volumes_and_reloads_on_its_own(acme_plan: Plan) -> None:
    containers = service_containers(acme_plan)
    proxy = containers["proxy"]
    mounts = _mounts(proxy)
    assert mounts["/etc/letsencrypt"]["source"] == "acme-prod-proxy-acme" and mounts["/etc/letsencrypt"]["readOnly"]
    assert mounts["/var/www/acme"]["source"] == "acme-prod-proxy-acme-webroot" and mounts["/var/www/acme"]["readOnly"]
    assert proxy.inputs["entrypoints"] == ["/bin/sh", f"{CONFIG}/supervisor.sh"]
    files = _uploads(containers["proxy-files"])
    supervisor = files[f"{CONFIG}/supervisor.sh"]
    assert supervisor["permissions"] == "0555"
    assert "live=/etc/letsencrypt/live/stagecraft" in supervisor["content"]
    conf = files[f"{CONFIG}/nginx.conf"]["content"]
    assert "ssl_certificate /tmp/tls/fullchain.pem;" in conf and "ssl_certificate_key /tmp/tls/privkey.pem;" in conf
    # Until certbot has a certificate the proxy serves the bootstrap one, delivered as secrets.
    assert {files[f"{SECRETS}/{n}"]["permissions"] for n in ("tls.crt", "tls.key")} == {"0400"}
    # Plain HTTP publishes on 80, where Let's Encrypt checks the challenge.
    assert {(p["internal"], p["external"]) for p in proxy.inputs["ports"]} == {(8080, 80), (8443, 443)}


def test_the_challenge_is_served_for_the_configured_names_only(acme_plan: Plan) -> None:
    conf = _uploads(service_containers(acme_plan)["proxy-files"])[f"{CONFIG}/nginx.conf"]["content"]
    servers = conf.split("    server {")[1:]
    challenge = [s for s in servers if "/.well-known/acme-challenge/" in s]
    assert len(challenge) == 3
    for server in challenge:
        assert "listen 8080;" in server and "root /var/www/acme;" in server
    assert sorted(s.split("server_name ", 1)[1].split(";", 1)[0] for s in challenge) == sorted(DOMAINS)


def test_certbots_volumes_are_protected_in_prod(acme_plan: Plan) -> None:
    volumes = {v.inputs["name"]: v for v in acme_plan.by_type("docker:index/volume:Volume")}
    for name in ("acme-prod-proxy-acme", "acme-prod-proxy-acme-webroot"):
        assert volumes[name].protect and volumes[name].retain_on_delete, name


def test_the_volume_owner_job_covers_the_certificate_volumes(acme_plan: Plan) -> None:
    """Fresh volumes belong to root; certbot runs as 101 and could write nothing without it."""
    containers = service_containers(acme_plan)
    owner = containers["certbot-volume-owner"]
    entrypoint = owner.inputs["entrypoints"]
    assert entrypoint[:3] == ["chown", "-R", "101:101"]
    assert set(entrypoint[3:]) == {"/etc/letsencrypt", "/var/www/acme"}
    assert {t: m["source"] for t, m in _mounts(owner).items()} == {
        "/etc/letsencrypt": "acme-prod-proxy-acme",
        "/var/www/acme": "acme-prod-proxy-acme-webroot",
    }
    assert owner.inputs["user"] == "0:0" and owner.inputs["capabilities"]["adds"] == ["CHOWN"]
    assert owner.inputs["networkMode"] == "none"
    certbot = containers["certbot"]
    assert _labels(certbot)["stagecraft.after.certbot-volume-owner"] == "succeeded"
    assert owner.urn in certbot.dependencies
    assert acme_plan.outputs["verify"]["jobs"]["certbot-volume-owner"] == "acme-prod-certbot-volume-owner"


def test_the_staging_ca_flag_reaches_certbot(write_stack: Callable[..., Path]) -> None:
    result = _tls_plan(write_stack, {**ACME, "staging_ca": True})
    script = _uploads(service_containers(result)["certbot-files"])[f"{CONFIG}/certbot.sh"]["content"]
    assert "--staging" in script


def test_preflight_check_passes_with_acme(acme_stack: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["check", "--config-file", f"prod={acme_stack}"], out=out, err=err)
    assert code == 0, out.getvalue() + err.getvalue()
    assert "policy prod: 0 mandatory" in out.getvalue()
