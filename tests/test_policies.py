"""Every rule with a violating and a compliant case: called directly, and through the pack's real
Analyzer gRPC server the way the Pulumi CLI uses it (provider property names, secret envelopes)."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "policies"))

from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)
from stagecraft_policy import POLICIES

from preflight.engine import SECRET_SIG, SIG_KEY, PlannedResource
from preflight.policy import Analyzer, policy_pack

BY_NAME = {policy.name: policy for policy in POLICIES}
LABELS = {"app": "acme", "environment": "staging", "stack": "staging", "managed-by": "pulumi"}
PROD_LABELS = {**LABELS, "environment": "prod", "stack": "prod"}


def secret(value: str) -> dict[str, str]:
    """Pulumi's wire envelope for a secret value."""
    return {SIG_KEY: SECRET_SIG, "value": value}


def docker_labels(labels: dict[str, str]) -> list[dict[str, str]]:
    return [{"label": k, "value": v} for k, v in labels.items()]


def urn(stack: str, type_: str, name: str) -> str:
    return f"urn:pulumi:{stack}::stagecraft::{type_}::{name}"


@dataclass
class Case:
    policy: str
    type: str
    props: dict[str, Any]
    stack: str = "staging"
    name: str = "thing"
    protect: bool = False
    # For stack policies: more resources analysed together.
    others: list[Case] = field(default_factory=list)

    def resource(self) -> PlannedResource:
        return PlannedResource(
            urn=urn(self.stack, self.type, self.name),
            type=self.type,
            name=self.name,
            parent="",
            inputs={},
            protect=self.protect,
            retain_on_delete=False,
            dependencies=[],
            custom=True,
            raw_inputs=self.props,
        )


SECRET_T = "gcp:secretmanager/secret:Secret"
VERSION_T = "gcp:secretmanager/secretVersion:SecretVersion"
ACCESSOR_T = "gcp:secretmanager/secretIamMember:SecretIamMember"
BUCKET_T = "gcp:storage/bucket:Bucket"
BUCKET_IAM_T = "gcp:storage/bucketIAMMember:BucketIAMMember"
PROJECT_IAM_T = "gcp:projects/iAMMember:IAMMember"
CONTAINER_T = "docker:index/container:Container"
IMAGE_T = "docker:index/remoteImage:RemoteImage"
VOLUME_T = "docker:index/volume:Volume"
SA = "serviceAccount:acme-{env}-api@acme-{env}-4711.iam.gserviceaccount.com"

GOOD_BUCKET = {
    "name": "acme-staging-4711-staging-uploads",
    "uniformBucketLevelAccess": True,
    "publicAccessPrevention": "enforced",
    "versioning": {"enabled": True},
    "forceDestroy": False,
    "labels": LABELS,
}
GOOD_CONTAINER = {
    "name": "acme-staging-api",
    "image": "sha256:" + "a" * 64,
    "envs": ["LOG_LEVEL=INFO", "DATABASE_PASSWORD_FILE=/run/stagecraft/secrets/app-db-password"],
    "memory": 512,
    "healthcheck": {"tests": ["CMD", "true"]},
    "logDriver": "json-file",
    "logOpts": {"max-size": "50m", "max-file": "3"},
    "labels": docker_labels(LABELS),
    "privileged": False,
    "mustRun": True,
}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    props = copy.deepcopy(base)
    props.update(changes)
    return props


def _prod(props: dict[str, Any]) -> dict[str, Any]:
    text = repr(props).replace("staging", "prod")
    return eval(text)  # noqa: S307 - test data built from literals above


# policy -> (violating case, compliant case)
CASES: dict[str, tuple[Case, Case]] = {
    "secret-environment-agrees": (
        Case("secret-environment-agrees", SECRET_T, {"secretId": "prod-app-db-password", "labels": LABELS}),
        Case("secret-environment-agrees", SECRET_T, {"secretId": "staging-app-db-password", "labels": LABELS}),
    ),
    "no-foreign-environment-labels": (
        Case("no-foreign-environment-labels", VOLUME_T, {"name": "v", "labels": docker_labels(PROD_LABELS)}),
        Case("no-foreign-environment-labels", VOLUME_T, {"name": "v", "labels": docker_labels(LABELS)}),
    ),
    "secret-version-own-environment": (
        Case(
            "secret-version-own-environment",
            VERSION_T,
            {"secret": "projects/acme-prod-4711/secrets/prod-app-db-password", "secretDataWo": secret("x1")},
        ),
        Case(
            "secret-version-own-environment",
            VERSION_T,
            {"secret": "projects/acme-staging-4711/secrets/staging-app-db-password", "secretDataWo": secret("x1")},
        ),
    ),
    "secret-accessor-same-environment": (
        Case(
            "secret-accessor-same-environment",
            ACCESSOR_T,
            {
                "secretId": "projects/acme-staging-4711/secrets/staging-app-db-password",
                "member": SA.format(env="prod"),
                "role": "roles/secretmanager.secretAccessor",
            },
        ),
        Case(
            "secret-accessor-same-environment",
            ACCESSOR_T,
            {
                "secretId": "projects/acme-staging-4711/secrets/staging-app-db-password",
                "member": SA.format(env="staging"),
                "role": "roles/secretmanager.secretAccessor",
            },
        ),
    ),
    "no-production-references": (
        Case("no-production-references", CONTAINER_T, _with(GOOD_CONTAINER, envs=["DATABASE_HOST=acme-prod-postgres"])),
        Case("no-production-references", CONTAINER_T, GOOD_CONTAINER),
    ),
    "no-plaintext-secret-env": (
        Case("no-plaintext-secret-env", CONTAINER_T, _with(GOOD_CONTAINER, envs=["POSTGRES_PASSWORD=hunter2"])),
        Case("no-plaintext-secret-env", CONTAINER_T, GOOD_CONTAINER),
    ),
    "unique-secret-values": (
        Case(
            "unique-secret-values",
            VERSION_T,
            {"secret": "projects/p/secrets/staging-a", "secretDataWo": secret("same-value")},
            name="a",
            others=[
                Case(
                    "unique-secret-values",
                    VERSION_T,
                    {"secret": "projects/p/secrets/staging-b", "secretDataWo": secret("same-value")},
                    name="b",
                )
            ],
        ),
        Case(
            "unique-secret-values",
            VERSION_T,
            {"secret": "projects/p/secrets/staging-a", "secretDataWo": secret("value-one")},
            name="a",
            others=[
                Case(
                    "unique-secret-values",
                    VERSION_T,
                    {"secret": "projects/p/secrets/staging-b", "secretDataWo": secret("value-two")},
                    name="b",
                )
            ],
        ),
    ),
    "no-primitive-roles": (
        Case(
            "no-primitive-roles",
            PROJECT_IAM_T,
            {"project": "p", "role": "roles/editor", "member": SA.format(env="staging")},
        ),
        Case(
            "no-primitive-roles",
            PROJECT_IAM_T,
            {"project": "p", "role": "roles/logging.logWriter", "member": SA.format(env="staging")},
        ),
    ),
    "no-public-members": (
        Case(
            "no-public-members",
            BUCKET_IAM_T,
            {"bucket": "b", "role": "roles/storage.objectViewer", "member": "allUsers"},
        ),
        Case(
            "no-public-members",
            BUCKET_IAM_T,
            {"bucket": "b", "role": "roles/storage.objectViewer", "member": SA.format(env="staging")},
        ),
    ),
    "bucket-private": (
        Case("bucket-private", BUCKET_T, _with(GOOD_BUCKET, publicAccessPrevention="inherited")),
        Case("bucket-private", BUCKET_T, GOOD_BUCKET),
    ),
    "prod-bucket-durable": (
        Case("prod-bucket-durable", BUCKET_T, _prod(_with(GOOD_BUCKET, forceDestroy=True)), stack="prod", protect=True),
        Case("prod-bucket-durable", BUCKET_T, _prod(GOOD_BUCKET), stack="prod", protect=True),
    ),
    "no-privileged-containers": (
        Case("no-privileged-containers", CONTAINER_T, _with(GOOD_CONTAINER, privileged=True, networkMode="host")),
        Case("no-privileged-containers", CONTAINER_T, GOOD_CONTAINER),
    ),
    "prod-images-pinned": (
        Case("prod-images-pinned", IMAGE_T, {"name": "ghcr.io/acme/api:latest"}, stack="prod"),
        Case("prod-images-pinned", IMAGE_T, {"name": "ghcr.io/acme/api:2.13.4"}, stack="prod"),
    ),
    "prod-data-not-published": (
        Case(
            "prod-data-not-published",
            CONTAINER_T,
            _prod(_with(GOOD_CONTAINER, ports=[{"internal": 5432, "external": 5432, "ip": "0.0.0.0"}])),
            stack="prod",
            name="postgres",
        ),
        Case(
            "prod-data-not-published",
            CONTAINER_T,
            _prod(_with(GOOD_CONTAINER, ports=[{"internal": 5432, "external": 15432, "ip": "127.0.0.1"}])),
            stack="prod",
            name="postgres",
        ),
    ),
    "prod-container-healthcheck": (
        Case("prod-container-healthcheck", CONTAINER_T, _prod(_with(GOOD_CONTAINER, healthcheck=None)), stack="prod"),
        Case("prod-container-healthcheck", CONTAINER_T, _prod(GOOD_CONTAINER), stack="prod"),
    ),
    "prod-container-memory-limit": (
        Case("prod-container-memory-limit", CONTAINER_T, _prod(_with(GOOD_CONTAINER, memory=0)), stack="prod"),
        Case("prod-container-memory-limit", CONTAINER_T, _prod(GOOD_CONTAINER), stack="prod"),
    ),
    "prod-container-log-rotation": (
        Case("prod-container-log-rotation", CONTAINER_T, _prod(_with(GOOD_CONTAINER, logOpts={})), stack="prod"),
        Case("prod-container-log-rotation", CONTAINER_T, _prod(GOOD_CONTAINER), stack="prod"),
    ),
    "prod-required-labels": (
        Case(
            "prod-required-labels",
            BUCKET_T,
            _prod(_with(GOOD_BUCKET, labels={"app": "acme"})),
            stack="prod",
            protect=True,
        ),
        Case("prod-required-labels", BUCKET_T, _prod(GOOD_BUCKET), stack="prod", protect=True),
    ),
    "prod-stateful-protected": (
        Case("prod-stateful-protected", BUCKET_T, _prod(GOOD_BUCKET), stack="prod", protect=False),
        Case("prod-stateful-protected", BUCKET_T, _prod(GOOD_BUCKET), stack="prod", protect=True),
    ),
}
MANDATORY = sorted(p.name for p in POLICIES if p.enforcement_level == EnforcementLevel.MANDATORY)
ADVISORY = {"container-healthcheck", "container-memory-limit", "container-log-rotation", "required-labels"}


def test_pack_has_enough_described_policies() -> None:
    assert len(POLICIES) >= 15
    assert all(p.description and len(p.description) > 20 for p in POLICIES)
    assert {p.name for p in POLICIES} == set(CASES) | ADVISORY
    assert all(BY_NAME[name].enforcement_level == EnforcementLevel.ADVISORY for name in ADVISORY)


def test_every_mandatory_rule_has_cases() -> None:
    assert set(MANDATORY) <= set(CASES)


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return value["value"]
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _options(case: Case) -> PolicyResourceOptions:
    return PolicyResourceOptions(case.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _direct(case: Case) -> list[str]:
    policy = BY_NAME[case.policy]
    messages: list[str] = []

    def report(message: str, _urn: str | None = None) -> None:
        messages.append(message)

    if isinstance(policy, ResourceValidationPolicy):
        args = ResourceValidationArgs(
            case.type, _unwrap(case.props), case.resource().urn, case.name, _options(case), None, {}
        )
        policy.validate(args, report)
    else:
        resources = [
            PolicyResource(c.type, _unwrap(c.props), c.resource().urn, c.name, _options(c), None, None, [], {})
            for c in (case, *case.others)
        ]
        policy.validate(StackValidationArgs(resources, {}), report)
    return messages


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_called_directly(name: str) -> None:
    violating, compliant = CASES[name]
    assert _direct(violating), f"{name} missed its violating case"
    assert _direct(compliant) == [], f"{name} flagged its compliant case"


@pytest.fixture(scope="module")
def analyzer() -> Iterator[Analyzer]:
    with policy_pack() as client:
        yield client


def _through_grpc(analyzer: Analyzer, case: Case) -> set[str]:
    """Names of the policies the real server reports for this case."""
    resources = [case.resource(), *(c.resource() for c in case.others)]
    responses = [analyzer.analyze(r) for r in resources] + [analyzer.analyze_stack(resources)]
    return {d.policyName for response in responses for d in response.diagnostics}


def test_server_describes_the_pack(analyzer: Analyzer) -> None:
    info = analyzer.info()
    assert info.name == "stagecraft"
    assert {p.name for p in info.policies} == {p.name for p in POLICIES}
    assert all(p.description for p in info.policies)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_through_the_analyzer_server(name: str, analyzer: Analyzer) -> None:
    violating, compliant = CASES[name]
    assert name in _through_grpc(analyzer, violating)
    assert name not in _through_grpc(analyzer, compliant)


def test_advisory_rules_stay_advisory_outside_prod(analyzer: Analyzer) -> None:
    case = Case("container-healthcheck", CONTAINER_T, _with(GOOD_CONTAINER, healthcheck=None))
    response = analyzer.analyze(case.resource())
    levels = {d.policyName: d.enforcementLevel for d in response.diagnostics}
    from pulumi.runtime.proto import analyzer_pb2

    assert levels == {"container-healthcheck": analyzer_pb2.ADVISORY}
