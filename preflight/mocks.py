"""Realistic mock outputs: what the providers would return, with values unique per stack.

Fake values are derived from the stack and the resource, so two stacks never get the same
"random" password, and checks that compare values across resources or stacks mean something.
"""

from __future__ import annotations

import base64
import hashlib
import json
import string
from collections.abc import Mapping
from typing import Any

import pulumi


def digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def fake_password(seed: str, inputs: dict[str, Any]) -> str:
    """A password honouring the RandomPassword inputs (length, classes), unique per seed."""
    length = int(inputs.get("length", 32))
    special = inputs.get("overrideSpecial") or "!@#$%&*()-_=+[]{}<>:?"
    pools = [string.ascii_uppercase, string.ascii_lowercase, string.digits]
    if inputs.get("special", True):
        pools.append(special)
    stream = hashlib.shake_256(seed.encode()).digest(length * 2)
    # Start with one of each class, then fill from all of them.
    chars = [pool[stream[i] % len(pool)] for i, pool in enumerate(pools)]
    everything = "".join(pools)
    chars += [everything[b % len(everything)] for b in stream[len(pools) : length]]
    return "".join(chars[:length])


class PlanMocks(pulumi.runtime.Mocks):
    """Provider stand-ins for ``preflight``; records every fake secret value it hands out.

    A one-shot job container exits 0 unless ``job_exit_codes`` names its service with another
    code, to see how the program reacts to a failing job; in a ``preview`` nothing has run."""

    def __init__(
        self,
        stack: str,
        project_hint: str = "mock-project",
        job_exit_codes: Mapping[str, int] | None = None,
        preview: bool = False,
    ) -> None:
        self.stack = stack
        self.project_hint = project_hint
        self.job_exit_codes = dict(job_exit_codes or {})
        self.preview = preview
        self.secret_values: set[str] = set()
        # Every invoke (data source) the program made: (token, arguments), in call order.
        self.invokes: list[tuple[str, dict[str, Any]]] = []

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.invokes.append((args.token, dict(args.args)))
        if args.token == "gcp:secretmanager/getSecretVersion:getSecretVersion":
            # A secret the operator uploaded: a URL, a key, a certificate or a password, by its name.
            secret = str(args.args.get("secret", ""))
            seed = digest(self.stack, secret)
            if "url" in secret:
                value = f"https://hooks.example.com/services/{seed[:24]}"
            elif "password" in secret:
                value = fake_password(seed, {"length": 32})
            else:
                value = _pem("PRIVATE KEY" if "key" in secret else "CERTIFICATE", seed)
            self.secret_values.add(value)
            return {"secretData": value, "name": f"{args.args.get('secret')}/versions/1"}, []
        return {}, []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        seed = digest(self.stack, args.typ, args.name)
        project = inputs.get("project") or self.project_hint
        handler = _HANDLERS.get(args.typ)
        if handler is None:
            return f"{args.name}-{seed[:10]}", inputs
        resource_id, outputs = handler(self, seed, project, inputs)
        return resource_id, {**inputs, **outputs}


def _random_password(mocks: PlanMocks, seed: str, _project: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    value = fake_password(seed, inputs)
    mocks.secret_values.add(value)
    return "none", {"result": value, "bcryptHash": "$2a$10$" + digest(seed, "bcrypt")[:53]}


def _service_account(_mocks: PlanMocks, seed: str, project: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    email = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
    name = f"projects/{project}/serviceAccounts/{email}"
    unique_id = str(int(seed[:16], 16))[:21]
    return name, {"email": email, "member": f"serviceAccount:{email}", "name": name, "uniqueId": unique_id}


def _secret(_mocks: PlanMocks, _seed: str, project: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = f"projects/{project}/secrets/{inputs['secretId']}"
    return name, {"name": name, "createTime": "2026-01-01T00:00:00Z"}


def _secret_version(_mocks: PlanMocks, _seed: str, _project: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = f"{inputs['secret']}/versions/1"
    return name, {"name": name, "version": "1", "enabled": True}


def _bucket(_mocks: PlanMocks, _seed: str, _project: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = inputs["name"]
    return name, {"url": f"gs://{name}", "selfLink": f"https://www.googleapis.com/storage/v1/b/{name}"}


def _iam_member(_mocks: PlanMocks, seed: str, _project: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    target = inputs.get("secretId") or inputs.get("bucket") or inputs.get("project")
    return f"{target}/{inputs['role']}/{inputs['member']}", {"etag": "BwY" + seed[:9]}


def _pem(kind: str, seed: str) -> str:
    body = hashlib.shake_256(f"{kind}{seed}".encode()).hexdigest(96)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"


def _private_key(mocks: PlanMocks, seed: str, _project: str, _inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key = _pem("PRIVATE KEY", seed)
    mocks.secret_values.add(key)
    return digest(seed, "id")[:40], {
        "privateKeyPem": key,
        "privateKeyOpenssh": key,
        "privateKeyPemPkcs8": key,
        "publicKeyPem": _pem("PUBLIC KEY", seed),
    }


def _certificate(_mocks: PlanMocks, seed: str, _project: str, _inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return str(int(seed[:24], 16)), {"certPem": _pem("CERTIFICATE", seed)}


def _cert_request(_mocks: PlanMocks, seed: str, _project: str, _inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return digest(seed, "csr")[:40], {"certRequestPem": _pem("CERTIFICATE REQUEST", seed)}


def _remote_image(_mocks: PlanMocks, seed: str, _project: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    # Like Docker: the same image reference gives the same image ID, whoever pulls it.
    image_id = f"sha256:{digest('image', inputs['name'])}"
    repository = inputs["name"].split("@")[0].rsplit(":", 1)[0]
    return f"{image_id}{inputs['name']}", {"imageId": image_id, "repoDigest": f"{repository}@{image_id}"}


def _built_image(_mocks: PlanMocks, seed: str, _project: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    # A local build never pushed: its repo digest is the image ID; the same name (whose tag
    # carries the sources' hash) gives the same ID.
    image_id = f"sha256:{digest('build', inputs['imageName'])}"
    return image_id, {"repoDigest": image_id}


def _docker_object(_mocks: PlanMocks, seed: str, _project: str, _inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return digest(seed, "docker")[:64], {}


def _container(mocks: PlanMocks, seed: str, _project: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A container; a job (attached, not kept running) has run to completion by now."""
    outputs: dict[str, Any] = {}
    # In a preview nothing has run: a job's exit code and logs are not known yet.
    if inputs.get("attach") and inputs.get("mustRun") is False and not mocks.preview:
        labels = {
            str(label.get("label")): label.get("value")
            for label in inputs.get("labels") or []
            if isinstance(label, dict)
        }
        service = labels.get("service", "")
        code = mocks.job_exit_codes.get(service, 0)
        outputs["exitCode"] = code
        outputs["containerLogs"] = f"{service}: starting\n{service}: " + ("done" if code == 0 else "failed") + "\n"
    return digest(seed, "docker")[:64], outputs


def _service_account_key(
    mocks: PlanMocks, seed: str, _project: str, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """A key for the account: its JSON key file, base64-encoded, as the provider returns it."""
    account = str(inputs.get("serviceAccountId", ""))
    key_file = json.dumps(
        {
            "type": "service_account",
            "client_email": account.rsplit("/", 1)[-1],
            "private_key_id": digest(seed, "key-id")[:40],
            "private_key": _pem("PRIVATE KEY", seed),
        }
    )
    mocks.secret_values.add(key_file)
    name = f"{account}/keys/{digest(seed, 'key-id')[:40]}"
    return name, {"name": name, "privateKey": base64.b64encode(key_file.encode()).decode()}


_HANDLERS = {
    "random:index/randomPassword:RandomPassword": _random_password,
    "gcp:serviceaccount/account:Account": _service_account,
    "gcp:secretmanager/secret:Secret": _secret,
    "gcp:secretmanager/secretVersion:SecretVersion": _secret_version,
    "gcp:storage/bucket:Bucket": _bucket,
    "gcp:secretmanager/secretIamMember:SecretIamMember": _iam_member,
    "gcp:storage/bucketIAMMember:BucketIAMMember": _iam_member,
    "gcp:projects/iAMMember:IAMMember": _iam_member,
    "tls:index/privateKey:PrivateKey": _private_key,
    "tls:index/selfSignedCert:SelfSignedCert": _certificate,
    "tls:index/locallySignedCert:LocallySignedCert": _certificate,
    "tls:index/certRequest:CertRequest": _cert_request,
    "docker:index/remoteImage:RemoteImage": _remote_image,
    "docker:index/image:Image": _built_image,
    "docker:index/container:Container": _container,
    "gcp:serviceaccount/key:Key": _service_account_key,
    "docker:index/network:Network": _docker_object,
    "docker:index/volume:Volume": _docker_object,
}
