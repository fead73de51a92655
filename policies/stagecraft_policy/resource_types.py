"""Only the resource types the program uses may be deployed."""

from __future__ import annotations

import re
from collections.abc import Iterable

from stagecraft_policy.base import ROOT_STACK, Subject, resource_policy

CONTAINER = "docker:index/container:Container"
DOCKER_IMAGE = "docker:index/image:Image"
NETWORK = "docker:index/network:Network"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
VOLUME = "docker:index/volume:Volume"
COMMAND = "command:local:Command"
ACCOUNT = "gcp:serviceaccount/account:Account"
KEY = "gcp:serviceaccount/key:Key"
BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_IAM_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
PROJECT_IAM_MEMBER = "gcp:projects/iAMMember:IAMMember"
SECRET = "gcp:secretmanager/secret:Secret"
SECRET_IAM_MEMBER = "gcp:secretmanager/secretIamMember:SecretIamMember"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
TLS_PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
GCP_PROVIDER = "pulumi:providers:gcp"

# Every type backed by a provider that the program uses, and those providers themselves.
ALLOWED_TYPES = frozenset(
    {
        ROOT_STACK,
        "pulumi:providers:command",
        "pulumi:providers:docker",
        GCP_PROVIDER,
        "pulumi:providers:random",
        "pulumi:providers:tls",
        COMMAND,
        CONTAINER,
        DOCKER_IMAGE,
        NETWORK,
        REMOTE_IMAGE,
        VOLUME,
        ACCOUNT,
        KEY,
        BUCKET,
        BUCKET_IAM_MEMBER,
        PROJECT_IAM_MEMBER,
        SECRET,
        SECRET_IAM_MEMBER,
        SECRET_VERSION,
        RANDOM_PASSWORD,
        "tls:index/certRequest:CertRequest",
        "tls:index/locallySignedCert:LocallySignedCert",
        TLS_PRIVATE_KEY,
        "tls:index/selfSignedCert:SelfSignedCert",
    }
)
# The program's own component resources. A component creates nothing itself (its children are
# judged one by one); a component served by a plugin would come with a provider, so it must not.
COMPONENT = re.compile(r"^stagecraft:[a-z][A-Za-z0-9]*:[A-Z][A-Za-z0-9]*$")


def _allowed_type(subject: Subject) -> Iterable[str]:
    if subject.type in ALLOWED_TYPES:
        return
    if COMPONENT.match(subject.type) and subject.provider is None:
        return
    yield (
        f"resource type {subject.type} is not one stagecraft deploys; only the program's own types are allowed "
        "(add a new type to ALLOWED_TYPES in policies/stagecraft_policy/resource_types.py only after review)"
    )


TYPE_POLICIES = [
    resource_policy(
        "allowed-resource-types",
        "Only the resource types stagecraft uses (and their providers) are deployed.",
        _allowed_type,
    ),
]
