"""Rules over the whole stack (AnalyzeStack sees every resource's outputs): containers use only the
stack's own images, volumes and networks, and are known by their image, not their name; grants
and keys target only the stack's own secrets, buckets and accounts; prod keeps its data volumes;
no generated secret appears outside the files delivered to containers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from stagecraft_policy.base import (
    ONLY_PROD,
    ROOT_STACK,
    Stack,
    Subject,
    known,
    listed,
    mapped,
    number,
    show,
    stack_policy,
    strings_in,
)
from stagecraft_policy.containers import LOOPBACK, PROXY_PORTS
from stagecraft_policy.iam import MEMBER_TYPES
from stagecraft_policy.resource_types import (
    ACCOUNT,
    BUCKET,
    BUCKET_IAM_MEMBER,
    CONTAINER,
    DOCKER_IMAGE,
    KEY,
    NETWORK,
    RANDOM_PASSWORD,
    REMOTE_IMAGE,
    SECRET,
    SECRET_IAM_MEMBER,
    SECRET_VERSION,
    TLS_PRIVATE_KEY,
    VOLUME,
)
from stagecraft_policy.shared import FILES_PREFIX

PROXY = "nginx"
DATA_SERVICES = ("postgres", "redis", "chromadb/chroma")
FILES_ROOT = FILES_PREFIX.rstrip("/")
REGISTRY_PREFIXES = ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/")
# Where each kind of generated secret is kept in a resource's outputs.
SECRET_OUTPUTS = {
    RANDOM_PASSWORD: ("result",),
    SECRET_VERSION: ("secretData", "secretDataWo"),
    TLS_PRIVATE_KEY: ("privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"),
    KEY: ("privateKey",),
}
# Resources that legitimately hold or consume those secrets.
SECRET_HOLDERS = frozenset(
    {
        *SECRET_OUTPUTS,
        ROOT_STACK,
        "tls:index/certRequest:CertRequest",
        "tls:index/locallySignedCert:LocallySignedCert",
        "tls:index/selfSignedCert:SelfSignedCert",
    }
)
MIN_SECRET_LENGTH = 8


def repository(reference: str) -> str:
    """`docker.io/library/nginx:1.27@sha256:...` -> `nginx`."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last) + last.index(":")]
    for prefix in REGISTRY_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _images(stack: Stack) -> dict[str, str]:
    """Every value a container's `image` may hold for an image of this stack -> its reference."""
    found: dict[str, str] = {}
    for image in stack.of_type(REMOTE_IMAGE, DOCKER_IMAGE):
        reference = known(image.props, "name") or known(image.props, "imageName")
        if not isinstance(reference, str):
            continue
        for key in ("imageId", "repoDigest", "name", "imageName"):
            value = known(image.props, key)
            if isinstance(value, str) and value:
                found[value] = reference
    return found


def _names(stack: Stack, type_: str) -> set[str]:
    return {name for r in stack.of_type(type_) if isinstance(name := known(r.props, "name"), str)}


def _volume_mounts(container: Subject) -> Iterator[tuple[Mapping[str, Any], bool]]:
    """(mount, legacy) for each volume the container mounts."""
    for mount in listed(container.props.get("mounts")):
        if mapped(mount).get("type") == "volume":
            yield mapped(mount), False
    for volume in listed(container.props.get("volumes")):
        if mapped(volume).get("volumeName"):
            yield {"source": mapped(volume)["volumeName"], "target": mapped(volume).get("containerPath")}, True


def _own_objects(stack: Stack) -> Iterable[tuple[str, str]]:
    images, volumes, networks = _images(stack), _names(stack, VOLUME), _names(stack, NETWORK)
    for container in stack.of_type(CONTAINER):
        image = container.props.get("image")
        if image not in images:
            yield container.urn, f"image {image!r} is not an image of this stack; pull it with a RemoteImage here"
        for mount, _ in _volume_mounts(container):
            if mount.get("source") not in volumes:
                yield container.urn, f"volume {mount.get('source')!r} is not a volume of this stack"
        for network in listed(container.props.get("networksAdvanced")):
            if mapped(network).get("name") not in networks:
                yield container.urn, f"network {mapped(network).get('name')!r} is not a network of this stack"


def _published_ports(stack: Stack) -> Iterable[tuple[str, str]]:
    """Who may publish, by what the container runs: the proxy (nginx) its HTTP and HTTPS ports;
    the data services nothing; others nothing in prod and only on loopback elsewhere."""
    images = _images(stack)
    for container in stack.of_type(CONTAINER):
        ports = [mapped(p) for p in listed(container.props.get("ports"))]
        if not ports:
            continue
        reference = images.get(container.props.get("image"))
        if reference is None:
            yield container.urn, "publishes ports, but its image is not one of this stack's, so what it runs is unknown"
            continue
        what = repository(reference)
        for port in ports:
            internal, ip = number(port.get("internal")), port.get("ip") or "0.0.0.0"
            if what in DATA_SERVICES:
                yield container.urn, f"{what} publishes port {show(internal)}; data services are reached on networks"
            elif what == PROXY and internal not in PROXY_PORTS:
                yield container.urn, f"the proxy publishes port {show(internal)}; only {PROXY_PORTS} are published"
            elif what != PROXY and stack.prod:
                yield container.urn, f"{what} publishes port {show(internal)} in prod; only the proxy (nginx) does"
            elif what != PROXY and ip not in LOOPBACK:
                yield container.urn, f"{what} publishes port {show(internal)} on {ip}; outside the proxy use loopback"


def _is_carrier(container: Subject) -> bool:
    props = container.props
    return props.get("start") is False and props.get("networkMode") == "none" and bool(listed(props.get("uploads")))


def _prod_volumes_protected(stack: Stack) -> Iterable[tuple[str, str]]:
    """A volume may go unprotected only if it is a files volume: written only by never-started
    carriers at /run/stagecraft and mounted read-only there by everything else."""
    uses: dict[str, list[tuple[Subject, Mapping[str, Any], bool]]] = {}
    for container in stack.of_type(CONTAINER):
        for mount, legacy in _volume_mounts(container):
            uses.setdefault(str(mount.get("source")), []).append((container, mount, legacy))
    for volume in stack.of_type(VOLUME):
        if volume.protect:
            continue
        mounts = uses.get(str(volume.props.get("name")), [])
        carried = any(_is_carrier(c) and m.get("target") == FILES_ROOT for c, m, _ in mounts)
        files_only = all(
            not legacy and m.get("target") == FILES_ROOT and (_is_carrier(c) or m.get("readOnly") is True)
            for c, m, legacy in mounts
        )
        if not (carried and files_only):
            yield (
                volume.urn,
                (
                    f"prod volume {volume.props.get('name')!r} holds data and is not protected; set protect=True and "
                    "retain_on_delete=True (only files volumes filled by carriers may go unprotected)"
                ),
            )


def _accounts(stack: Stack) -> set[str]:
    found: set[str] = set()
    for account in stack.of_type(ACCOUNT):
        project, account_id = known(account.props, "project"), known(account.props, "accountId")
        email = known(account.props, "email") or f"{account_id}@{project}.iam.gserviceaccount.com"
        found |= {email, f"projects/{project}/serviceAccounts/{email}", str(known(account.props, "name"))}
    return found


def _own_targets(stack: Stack) -> Iterable[tuple[str, str]]:
    secrets: set[str] = set()
    for secret in stack.of_type(SECRET):
        project, secret_id = known(secret.props, "project"), known(secret.props, "secretId")
        secrets |= {f"projects/{project}/secrets/{secret_id}", str(known(secret.props, "name"))}
    # The provider records a bucket grant's bucket as `b/<name>` once it exists.
    buckets, accounts = _names(stack, BUCKET), _accounts(stack)
    buckets |= {f"b/{name}" for name in buckets}
    checks = (
        (SECRET_IAM_MEMBER, "secretId", secrets, "secret"),
        (SECRET_VERSION, "secret", secrets, "secret"),
        (BUCKET_IAM_MEMBER, "bucket", buckets, "bucket"),
        (KEY, "serviceAccountId", accounts, "service account"),
    )
    for type_, key, own, what in checks:
        for resource in stack.of_type(type_):
            if resource.props.get(key) not in own:
                yield resource.urn, f"targets {what} {resource.props.get(key)!r}, which is not one of this stack's own"
    for grant in stack.of_type(*MEMBER_TYPES):
        member = grant.props.get("member")
        if isinstance(member, str) and member.startswith("serviceAccount:") and member[15:] not in accounts:
            yield grant.urn, f"grants to {member!r}, which is not a service account of this stack"


def _secret_values(stack: Stack) -> Iterable[tuple[str, str]]:
    """No generated secret value appears anywhere but in the uploads that deliver it as a file."""
    sources: dict[str, str] = {}
    for type_, keys in SECRET_OUTPUTS.items():
        for resource in stack.of_type(type_):
            for key in keys:
                value = known(resource.props, key)
                if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
                    sources[value] = resource.urn
    if not sources:
        return
    for resource in stack.resources:
        if resource.type in SECRET_HOLDERS:
            continue
        for path, text in strings_in(resource.props):
            if path.startswith("uploads[") and path.endswith((".content", ".contentBase64")):
                continue
            for value, source in sources.items():
                if value in text:
                    yield resource.urn, f"{path} holds the secret value of {source}; deliver it as a file upload"


STACK_POLICIES = [
    stack_policy(
        "containers-use-own-objects",
        "Containers run images, mount volumes and join networks of their own stack only.",
        _own_objects,
    ),
    stack_policy(
        "published-ports",
        "By what a container runs: the proxy publishes only its HTTP and HTTPS ports, data services nothing, "
        "others nothing in prod and only on loopback elsewhere.",
        _published_ports,
    ),
    stack_policy(
        "prod-volumes-protected",
        "In prod every Docker volume is protected, except files volumes filled by never-started carriers.",
        _prod_volumes_protected,
        when=ONLY_PROD,
    ),
    stack_policy(
        "iam-targets-own-resources",
        "Grants, secret versions and keys target only this stack's own secrets, buckets and service accounts.",
        _own_targets,
    ),
    stack_policy(
        "no-secret-values-outside-files",
        "No generated secret value appears in any resource except the file uploads that deliver it.",
        _secret_values,
    ),
]
