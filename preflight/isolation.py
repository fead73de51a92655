"""Compare two planned stacks: nothing physical may be shared, and no grant may cross over."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from components.config import normalized_docker_host
from preflight.engine import Plan

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
BUCKET = "gcp:storage/bucket:Bucket"
SECRET = "gcp:secretmanager/secret:Secret"
ACCOUNT = "gcp:serviceaccount/account:Account"

# What must be unique across stacks: (kind, resource type, input holding the value, fix).
NAMED = (
    ("docker-name", CONTAINER, "name", "give the stack its own app_name/environment so Naming differs"),
    ("docker-name", NETWORK, "name", "give the stack its own app_name/environment so Naming differs"),
    ("docker-name", VOLUME, "name", "give the stack its own app_name/environment so Naming differs"),
    ("bucket-name", BUCKET, "name", "use another gcp:project or environment; bucket names are global"),
    ("secret-id", SECRET, "secretId", "set stagecraft:environment to this stack's own environment"),
    ("service-account-id", ACCOUNT, "accountId", "use another app_name or environment for this stack"),
)


@dataclass(frozen=True)
class Finding:
    kind: str
    value: str
    left: str  # URN (or config key) in the first stack
    right: str  # URN (or config key) in the second stack
    fix: str

    def to_violation(self) -> dict[str, str]:
        return {
            "policy": f"isolation-{self.kind}",
            "enforcement": "mandatory",
            "urn": self.left,
            "other_urn": self.right,
            "message": f"{self.kind} {self.value!r} is used by both {self.left} and {self.right}; {self.fix}",
        }


def _index(plan: Plan, type_: str, key: str) -> dict[str, str]:
    """Each resource's unique name -> its URN. Secret and service account IDs are unique only
    within their project, so they are qualified with it."""
    default_project = plan.config.gcp.project if plan.config else ""
    index = {}
    for r in plan.by_type(type_):
        value = r.inputs.get(key)
        if not value:
            continue
        project = r.inputs.get("project") or default_project
        if type_ == SECRET:
            value = f"projects/{project}/secrets/{value}"
        elif type_ == ACCOUNT:
            value = f"{value}@{project}"
        index[str(value)] = r.urn
    return index


def _ports(plan: Plan) -> dict[tuple[str, int], str]:
    host = plan.config.docker.host if plan.config else ""
    ports: dict[tuple[str, int], str] = {}
    for container in plan.by_type(CONTAINER):
        for port in container.inputs.get("ports", []):
            ports[(host, int(port["external"]))] = container.urn
    return ports


def _subnets(plan: Plan) -> list[tuple[ipaddress.IPv4Network, str]]:
    return [
        (ipaddress.IPv4Network(config["subnet"]), network.urn)
        for network in plan.by_type(NETWORK)
        for config in network.inputs.get("ipamConfigs", [])
    ]


def _output_values(plan: Plan, key: str) -> dict[str, str]:
    values: Any = plan.outputs.get(key) or {}
    return {str(v): f"{plan.stack}:{key}.{k}" for k, v in values.items()}


def compare(left: Plan, right: Plan) -> list[Finding]:
    """Every overlap between two stacks, each naming the resources on both sides."""
    findings: list[Finding] = []
    for kind, type_, key, fix in NAMED:
        theirs = _index(right, type_, key)
        for value, urn in sorted(_index(left, type_, key).items()):
            if value in theirs:
                findings.append(Finding(kind, value, urn, theirs[value], fix))
    findings += list(_shared_settings(left, right))
    same_host = (
        left.config is not None
        and right.config is not None
        and normalized_docker_host(left.config.docker.host) == normalized_docker_host(right.config.docker.host)
    )
    if same_host:
        theirs_ports = _ports(right)
        for (host, port), urn in sorted(_ports(left).items()):
            if (host, port) in theirs_ports:
                findings.append(
                    Finding(
                        "host-port",
                        f"{host}:{port}",
                        urn,
                        theirs_ports[(host, port)],
                        "choose host ports no other stack on this Docker host uses",
                    )
                )
        for mine, urn in _subnets(left):
            for theirs, other in _subnets(right):
                if mine.overlaps(theirs):
                    findings.append(
                        Finding(
                            "subnet",
                            f"{mine} ~ {theirs}",
                            urn,
                            other,
                            "give stagecraft:network subnets that do not overlap",
                        )
                    )
    for key, kind, fix in (
        ("domains", "domain", "give each stack its own stagecraft:domains"),
        ("databases", "database-name", "use another app_name or environment"),
        ("database_users", "database-user", "use another app_name or environment"),
    ):
        theirs = _output_values(right, key)
        for value, where in sorted(_output_values(left, key).items()):
            if value in theirs:
                findings.append(Finding(kind, value, where, theirs[value], fix))
    findings += list(_cross_grants(left, right)) + list(_cross_grants(right, left))
    return findings


def _shared_settings(left: Plan, right: Plan) -> Iterator[Finding]:
    """Settings two stacks must never share: their GCP project (project-level grants would cross
    the line), their keys, and any secret value (the same ciphertext is the same secret copied)."""
    if left.config is None or right.config is None:
        return
    mine, theirs = left.config, right.config
    if mine.gcp.project == theirs.gcp.project:
        yield Finding(
            "gcp-project",
            mine.gcp.project,
            f"{left.stack}:gcp:project",
            f"{right.stack}:gcp:project",
            "give each environment its own GCP project",
        )
    for key in ("storage", "secrets"):
        own_key = getattr(mine.stagecraft, key).kms_key
        if own_key and own_key == getattr(theirs.stagecraft, key).kms_key:
            yield Finding(
                "kms-key",
                own_key,
                f"{left.stack}:stagecraft:{key}.kms_key",
                f"{right.stack}:stagecraft:{key}.kms_key",
                "use a key in each environment's own project",
            )
    their_ciphertexts = dict((ciphertext, key) for key, ciphertext in right.ciphertexts)
    for key, ciphertext in left.ciphertexts:
        if ciphertext in their_ciphertexts:
            yield Finding(
                "copied-secret",
                "[secret]",
                f"{left.stack}:{key}",
                f"{right.stack}:{their_ciphertexts[ciphertext]}",
                "set the secret separately in each stack (`pulumi config set --secret`); a copied ciphertext is the "
                "same secret in both environments",
            )


def _cross_grants(granting: Plan, owner: Plan) -> Iterator[Finding]:
    """IAM bindings in `granting` that name an identity, secret or bucket of `owner`."""
    identities: dict[str, str] = defaultdict(str)
    project = owner.config.gcp.project if owner.config else ""
    for account in owner.by_type(ACCOUNT):
        email = f"{account.inputs['accountId']}@{account.inputs.get('project', project)}.iam.gserviceaccount.com"
        identities[f"serviceAccount:{email}"] = account.urn
    secrets = {
        f"projects/{s.inputs.get('project', project)}/secrets/{s.inputs['secretId']}": s.urn
        for s in owner.by_type(SECRET)
    }
    buckets = _index(owner, BUCKET, "name")
    for binding in granting.resources:
        kind = binding.type.rsplit(":", 1)[-1].lower()
        if "iam" not in kind or not ("member" in kind or "binding" in kind):
            continue
        inputs = binding.inputs
        members = [inputs.get("member"), *(inputs.get("members") or [])]
        for member in filter(None, members):
            if member in identities:
                yield Finding(
                    "cross-stack-identity",
                    member,
                    binding.urn,
                    identities[member],
                    f"grant only {granting.stack}'s own service accounts",
                )
        target = inputs.get("secretId") or ""
        if target in secrets:
            yield Finding(
                "cross-stack-secret", target, binding.urn, secrets[target], f"bind only {granting.stack}'s own secrets"
            )
        bucket = inputs.get("bucket") or ""
        if bucket in buckets:
            yield Finding(
                "cross-stack-bucket",
                bucket,
                binding.urn,
                buckets[bucket],
                f"grant only on {granting.stack}'s own buckets",
            )
