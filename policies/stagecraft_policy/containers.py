"""Docker containers as an allow-list: what they may mount, which privileges and kernel features
they get, how they run, and that no secret sits in their environment or command line.

Three kinds of container: a service (runs and keeps running), a job (`mustRun: false` with
`attach: true`: runs once to completion) and a files carrier (`start: false`: never started; it
only holds uploads for a volume).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any

from stagecraft_policy.base import Subject, listed, mapped, number, resource_policy, show, strings_in
from stagecraft_policy.leaks import command_line_secrets, credential_urls
from stagecraft_policy.resource_types import CONTAINER
from stagecraft_policy.shared import FILES_PREFIX, PROXY_HTTP_PORT, PROXY_HTTPS_PORT, safe_value

SERVICE, JOB, CARRIER = "service", "job", "carrier"
PROXY_PORTS = (PROXY_HTTP_PORT, PROXY_HTTPS_PORT)
LOOPBACK = ("127.0.0.1", "::1")
ALLOWED_CAPABILITIES = ("CHOWN", "NET_BIND_SERVICE")
NON_ROOT_USER = re.compile(r"^[1-9][0-9]{0,9}(:[1-9][0-9]{0,9})?$")
NUMERIC_ID = re.compile(r"^[1-9][0-9]{0,9}$")
CHOWN_OWNER = re.compile(r"^[1-9][0-9]{0,9}:[1-9][0-9]{0,9}$")
PERMISSIONS = re.compile(r"^0?[0-7]{3}$")
NO_NEW_PRIVILEGES = ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true")
SELINUX_LABEL_KINDS = ("user", "role", "type", "level")
NAMESPACE_MODES = ("pidMode", "ipcMode", "usernsMode", "cgroupnsMode")
# Inputs that reach into the host (devices, cgroups, runtimes, kernel settings): never set.
HOST_INPUTS = (
    "devices",
    "deviceRequests",
    "gpus",
    "deviceCgroupRules",
    "deviceReadBps",
    "deviceReadIops",
    "deviceWriteBps",
    "deviceWriteIops",
    "cgroupParent",
    "runtime",
    "sysctls",
    "groupAdds",
    "storageOpts",
    "privileged",
)
# Every Container input of the Docker provider that has been reviewed; anything else is refused.
KNOWN_INPUTS = frozenset(
    {
        *HOST_INPUTS,
        *NAMESPACE_MODES,
        "attach", "capabilities", "command", "containerReadRefreshTimeoutMilliseconds", "cpuPeriod", "cpuQuota",
        "cpuSet", "cpuShares", "cpus", "destroyGraceSeconds", "dns", "dnsOpts", "dnsSearches", "domainname",
        "entrypoints", "envs", "healthcheck", "hostname", "hosts", "image", "init", "labels", "logDriver", "logOpts",
        "logs", "maxRetryCount", "memory", "memoryReservation", "memorySwap", "mounts", "mustRun", "name",
        "networkMode", "networksAdvanced", "platform", "ports", "publishAllPorts", "readOnly", "removeVolumes",
        "restart", "rm", "securityOpts", "shmSize", "start", "stdinOpen", "stopSignal", "stopTimeout", "tmpfs", "tty",
        "ulimits", "uploads", "user", "volumes", "wait", "waitTimeout", "workingDir",
    }
)  # fmt: skip


def kind_of(props: Mapping[str, Any]) -> str:
    """Whether a container is a service, a job or a files carrier (see the module docstring)."""
    if props.get("start") is False:
        return CARRIER
    if props.get("mustRun") is False and props.get("attach") is True:
        return JOB
    return SERVICE


def capability(name: Any) -> str:
    """A capability as Docker normalises it: `cap_chown` and `CHOWN` are both CHOWN."""
    return str(name).upper().removeprefix("CAP_")


def is_volume_owner(props: Mapping[str, Any]) -> bool:
    """The program's volume-owner job, by what it is: a job as user 0:0 with no network, CHOWN as
    its only added capability, whose entrypoint is exactly `chown -R <uid>:<gid> <paths>` over its
    own volume mounts and nothing else."""
    if kind_of(props) != JOB or props.get("user") != "0:0":
        return False
    if props.get("networkMode") != "none" or listed(props.get("networksAdvanced")) or listed(props.get("volumes")):
        return False
    adds = [capability(c) for c in listed(mapped(props.get("capabilities")).get("adds"))]
    entrypoint = [str(word) for word in listed(props.get("entrypoints"))]
    if adds != ["CHOWN"] or listed(props.get("command")) or len(entrypoint) < 4:
        return False
    if entrypoint[:2] != ["chown", "-R"] or not CHOWN_OWNER.match(entrypoint[2]):
        return False
    mounts = [mapped(m) for m in listed(props.get("mounts"))]
    if any(m.get("type") != "volume" for m in mounts):
        return False
    targets = {m.get("target") for m in mounts}
    return all(path in targets and posixpath.normpath(path) == path for path in entrypoint[3:])


def _host_isolation(subject: Subject) -> Iterable[str]:
    props = subject.props
    name = props.get("name")
    if not isinstance(name, str) or not subject.carries_environment(name):
        yield f"container name {name!r} must carry {subject.environment!r} as a word and no other environment's"
    for key in props:
        if key not in KNOWN_INPUTS:
            yield f"input {key!r} has not been reviewed; stagecraft allows only the container inputs it knows"
    for key in HOST_INPUTS:
        if props.get(key):
            yield f"{key} is set; containers get no privileges, devices, cgroup, runtime or kernel settings of the host"
    mode, networks = props.get("networkMode"), listed(props.get("networksAdvanced"))
    # The provider's default mode is bridge, and it leaves the default bridge as soon as the
    # container joins its networks_advanced; with none of those it stays there.
    if mode not in (None, "none", "bridge"):
        yield f"network mode {mode!r}; use the environment's networks (networks_advanced) or none"
    for key in NAMESPACE_MODES:
        value = props.get(key)
        if isinstance(value, str) and (value.lower() == "host" or value.lower().startswith("container:")):
            yield f"{key} {value!r} shares another namespace; leave it unset"
    if mode != "none" and not networks:
        yield "container would join Docker's default bridge; attach it to the environment's networks or use none"
    for network in networks:
        name = mapped(network).get("name")
        if not isinstance(name, str) or not subject.carries_environment(name):
            yield f"network {name!r} must carry {subject.environment!r} as a word and no other environment's"


def _mounts(subject: Subject) -> Iterable[str]:
    props = subject.props
    for index, mount in enumerate(listed(props.get("mounts"))):
        mount = mapped(mount)
        kind, source = mount.get("type"), mount.get("source")
        if kind == "volume":
            if not isinstance(source, str) or not subject.carries_environment(source):
                yield f"volume {source!r} must carry {subject.environment!r} as a word and no other environment's"
            options = mapped(mount.get("volumeOptions"))
            if options.get("driverName") or options.get("driverOptions") or mount.get("bindOptions"):
                yield f"mount {index} sets volume driver or bind options; mount plain named volumes only"
        elif kind != "tmpfs":
            yield f"mount {index} of type {kind!r} (source {source!r}); only named volumes and tmpfs are mounted"
    for index, volume in enumerate(listed(props.get("volumes"))):
        volume = mapped(volume)
        if volume.get("hostPath") or volume.get("fromContainer"):
            yield f"volumes[{index}] mounts a host path or another container's volumes; mount named volumes only"
        name = volume.get("volumeName")
        if name is not None and (not isinstance(name, str) or not subject.carries_environment(name)):
            yield f"volume {name!r} must carry {subject.environment!r} as a word and no other environment's"
    for path, text in strings_in(props):
        if "docker.sock" in text:
            yield f"{path} mentions docker.sock; no container reaches the Docker daemon"
    for entry in listed(props.get("envs")):
        if str(entry).partition("=")[0] == "DOCKER_HOST":
            yield "DOCKER_HOST is set; no container reaches the Docker daemon"


def _upload_problems(index: int, upload: Mapping[str, Any]) -> Iterable[str]:
    where = f"upload {index}"
    file = upload.get("file")
    if not isinstance(file, str) or not file.startswith(FILES_PREFIX) or posixpath.normpath(file) != file:
        yield f"{where} writes {file!r}; uploads go only under {FILES_PREFIX}"
    if upload.get("source") is not None or upload.get("sourceHash") is not None:
        yield f"{where} copies a file from the machine running Pulumi; upload content only"
    permissions = upload.get("permissions")
    if not isinstance(permissions, str) or not PERMISSIONS.match(permissions) or int(permissions, 8) & 0o7022:
        yield f"{where} permissions {permissions!r}; no setuid, setgid, sticky or group/other write bits"
    for key in ("owner", "group"):
        if not isinstance(upload.get(key), str) or not NUMERIC_ID.match(upload[key]):
            yield f"{where} {key} {upload.get(key)!r}; owned by the service's non-root numeric uid and gid"


def _files(subject: Subject) -> Iterable[str]:
    uploads = listed(subject.props.get("uploads"))
    if uploads and kind_of(subject.props) != CARRIER:
        yield "uploads into a container that runs; deliver files through a never-started carrier and a volume"
    for index, upload in enumerate(uploads):
        yield from _upload_problems(index, mapped(upload))


def _capabilities(subject: Subject) -> Iterable[str]:
    caps = mapped(subject.props.get("capabilities"))
    if "ALL" not in {capability(c) for c in listed(caps.get("drops"))}:
        yield "capabilities are not all dropped; set drops=['ALL'] and add back only what the image needs"
    extra = [capability(c) for c in listed(caps.get("adds")) if capability(c) not in ALLOWED_CAPABILITIES]
    if extra:
        yield f"capabilities {', '.join(extra)} added; only {', '.join(ALLOWED_CAPABILITIES)} may be"


def _security_options(subject: Subject) -> Iterable[str]:
    options = [str(o).strip() for o in listed(subject.props.get("securityOpts"))]
    if not any(o.lower() in NO_NEW_PRIVILEGES for o in options):
        yield "no-new-privileges:true is missing from security_opts"
    for option in options:
        if option.lower() in NO_NEW_PRIVILEGES:
            continue
        key, value = [*re.split(r"[:=]", option, maxsplit=1), ""][:2]
        key, value = key.lower(), value.strip()
        if key == "apparmor" and value and value.lower() != "unconfined":
            continue
        if key == "label" and value.split(":", 1)[0].lower() in SELINUX_LABEL_KINDS:
            continue
        yield (
            f"security option {option!r} is not allowed: seccomp and AppArmor stay confined, SELinux labels on, "
            "system paths masked (allowed: no-new-privileges, an AppArmor profile, an SELinux label)"
        )


def _user(subject: Subject) -> Iterable[str]:
    value = subject.props.get("user")
    if is_volume_owner(subject.props):
        return
    if not isinstance(value, str) or not NON_ROOT_USER.match(value):
        yield (
            f"user {value!r}: run as an explicit non-root numeric uid:gid; only volume-owner jobs (chown -R over their "
            "own volumes, CHOWN alone, no network) run as root"
        )


def _healthcheck_ok(healthcheck: Any) -> bool:
    tests = [str(t) for t in listed(mapped(healthcheck).get("tests"))]
    return len(tests) >= 2 and tests[0] in ("CMD", "CMD-SHELL")


def _cpus(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _limits(subject: Subject) -> Iterable[str]:
    props = subject.props
    kind = kind_of(props)
    if kind == CARRIER:
        if props.get("networkMode") != "none":
            yield "a never-started carrier gets network mode none"
        if props.get("restart") not in (None, "no"):
            yield f"a never-started carrier has restart {props.get('restart')!r}; leave it 'no'"
        if props.get("logDriver") not in (None, "json-file"):
            yield f"log driver {props.get('logDriver')!r}; use json-file"
        return
    if props.get("readOnly") is not True:
        yield "root filesystem is writable; set read_only=True and give it tmpfs for scratch space"
    memory, swap = number(props.get("memory")), number(props.get("memorySwap"))
    if memory is None or memory <= 0:
        yield "no memory limit; set memory (MB) from config"
    elif swap is not None and swap < memory:
        yield f"memory_swap {show(swap)} lifts the memory limit (-1 is unlimited swap); set it to the memory limit"
    if _cpus(props.get("cpus")) <= 0:
        yield "no CPU limit; set cpus from config"
    if props.get("logDriver") != "json-file" or not mapped(props.get("logOpts")).get("max-size"):
        yield "logs are not rotated; use log_driver json-file with max-size and max-file"
    if kind == SERVICE and not _healthcheck_ok(props.get("healthcheck")):
        yield "a long-running container has no healthcheck; add a CMD or CMD-SHELL test that fails until it serves"
    if kind == JOB and props.get("restart") not in (None, "no"):
        yield f"a job has restart {props.get('restart')!r}; a job runs once, leave restart 'no'"


def _commands(props: Mapping[str, Any]) -> Iterable[tuple[str, list[str]]]:
    yield "command", [str(w) for w in listed(props.get("command"))]
    yield "entrypoint", [str(w) for w in listed(props.get("entrypoints"))]
    yield "healthcheck", [str(w) for w in listed(mapped(props.get("healthcheck")).get("tests"))[1:]]


def _plaintext_secrets(subject: Subject) -> Iterable[str]:
    props = subject.props
    for entry in listed(props.get("envs")):
        key, _, value = str(entry).partition("=")
        if not safe_value(key, value):
            yield f"env {key} looks like a secret and holds a value; deliver it as a file and set {key}_FILE instead"
        for url in credential_urls(value):
            yield f"env {key} holds {url}; pass the password as a file"
    for where, argv in _commands(props):
        for url in {u for word in argv for u in credential_urls(word)}:
            yield f"{where} holds {url}; pass the password as a file"
        for finding in dict.fromkeys(command_line_secrets(argv)):
            yield f"{where} passes a secret on the command line ({finding}); read it from a file under {FILES_PREFIX}"


def _ports(subject: Subject) -> Iterable[str]:
    published = listed(subject.props.get("ports"))
    if subject.props.get("publishAllPorts"):
        yield "publish_all_ports publishes every exposed port on all addresses; publish only the ports needed"
    if published and kind_of(subject.props) != SERVICE:
        yield "a job or carrier publishes ports; only running services may"
    for port in published:
        port = mapped(port)
        internal, ip = number(port.get("internal")), port.get("ip") or "0.0.0.0"
        if subject.prod and internal not in PROXY_PORTS:
            yield f"port {show(internal)} is published in prod; only the proxy publishes, and only {PROXY_PORTS}"
        elif not subject.prod and ip not in LOOPBACK and internal not in PROXY_PORTS:
            yield f"port {show(internal)} is published on {ip}; outside the proxy publish only on 127.0.0.1 or ::1"


CONTAINER_POLICIES = [
    resource_policy(
        "container-host-isolation",
        "Containers get no privileges, devices, host namespaces, cgroup or runtime settings, and join only the "
        "environment's networks (never the default bridge).",
        _host_isolation,
        types=[CONTAINER],
    ),
    resource_policy(
        "container-mounts",
        "Containers mount only the environment's named volumes and tmpfs: no bind mounts, no host paths, nothing "
        "of the Docker daemon.",
        _mounts,
        types=[CONTAINER],
    ),
    resource_policy(
        "container-files",
        "Files reach containers only as uploads into never-started carriers, under /run/stagecraft, owned by a "
        "non-root uid, without setuid bits or host files.",
        _files,
        types=[CONTAINER],
    ),
    resource_policy(
        "container-capabilities",
        "Containers drop every capability and add back at most CHOWN and NET_BIND_SERVICE.",
        _capabilities,
        types=[CONTAINER],
    ),
    resource_policy(
        "container-security-options",
        "Containers set no-new-privileges and never run unconfined (seccomp, AppArmor, SELinux, system paths).",
        _security_options,
        types=[CONTAINER],
    ),
    resource_policy(
        "container-non-root",
        "Containers run as a non-root numeric user; only the program's volume-owner jobs run as root.",
        _user,
        types=[CONTAINER],
    ),
    resource_policy(
        "container-limits",
        "Running containers have a read-only root, memory and CPU limits, rotated json-file logs and (services) "
        "a healthcheck; jobs run once; carriers never start.",
        _limits,
        types=[CONTAINER],
    ),
    resource_policy(
        "no-plaintext-secret-env",
        "No secret sits in a container's environment, URLs or command lines (command, entrypoint, healthcheck).",
        _plaintext_secrets,
        types=[CONTAINER],
    ),
    resource_policy(
        "container-ports",
        "In prod only the proxy's HTTP and HTTPS ports are published; elsewhere other ports only on loopback.",
        _ports,
        types=[CONTAINER],
    ),
]
