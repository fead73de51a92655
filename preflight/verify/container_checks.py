"""Checks of the stack's containers, networks and volumes through the Docker Engine API:
running and healthy, labelled, rotated logs, no secrets in the environment, kept apart from
every other stack on the host."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from preflight.verify.context import CheckError, CheckFn, Context, Finding, container_name, failed, guard, passed
from preflight.verify.inventory import (
    FILES_CARRIER_ROLE,
    attached_networks,
    is_running,
    labels_of,
)

MAX_RESTARTS = 3
LOG_DRIVERS = ("json-file",)
ANONYMOUS_VOLUME_LABEL = "com.docker.volume.anonymous"
BUILTIN_NETWORKS = ("none",)
# Words that make a variable name look like it holds a secret (see secret_looking).
_SECRET_PARTS = ("PASS", "PWD", "SECRET", "TOKEN", "CREDENTIAL")
# Names that match the words but are public by nature: the release-signing key fingerprint the
# official Python images set.
NOT_SECRET = frozenset({"GPG_KEY"})
# Variables that hold the path of a secret file by definition (Google's client libraries read the
# key file GOOGLE_APPLICATION_CREDENTIALS names): a path there is fine, anything else is not.
PATH_VARIABLES = frozenset({"GOOGLE_APPLICATION_CREDENTIALS"})
_ABSOLUTE_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")
# The one kind of container that runs as root by design: a job handing fresh volumes to a
# service's uid, with CHOWN as its only capability and no network.
VOLUME_OWNER_SUFFIX = "-volume-owner"
VOLUME_OWNER_CAPS = frozenset({"CHOWN"})
LOOPBACK = frozenset({"127.0.0.1", "::1"})
_FLAG_VALUES = frozenset({"", "true", "false", "yes", "no", "on", "off", "0", "1"})


def _state(container: Mapping[str, Any]) -> dict[str, Any]:
    return dict(container.get("State") or {})


def _is_carrier(container: Mapping[str, Any]) -> bool:
    return labels_of(container).get("role") == FILES_CARRIER_ROLE


def _summary(findings: list[Finding], ok: str) -> Iterator[Finding]:
    """The failures, or one pass naming what was judged."""
    if findings:
        yield from findings
    else:
        yield passed(ok)


# connectivity ------------------------------------------------------------------------------


@guard
def check_engine(ctx: Context) -> Iterator[Finding]:
    version = ctx.engine.version()
    yield passed(
        f"{ctx.docker_host}: Docker Engine {version.get('Version', '?')}, API {version.get('ApiVersion', '?')}"
    )


# health endpoints --------------------------------------------------------------------------


@guard
def check_proxy_health_private(ctx: Context) -> Iterator[Finding]:
    """The proxy publishes its HTTP and HTTPS ports and nothing else (not its health listener)."""
    proxy = ctx.inventory.running("proxy")
    name = container_name(proxy)
    ports = (proxy.get("NetworkSettings") or {}).get("Ports") or {}
    health = f"{ctx.targets.proxy.health_port}/tcp"
    allowed = {str(ctx.targets.proxy.http_port), str(ctx.targets.proxy.https_port)}
    problems = []
    if ports.get(health):
        problems.append(f"{name}: health listener {health} is published on {_bindings(ports[health])}")
    for port, bindings in sorted(ports.items()):
        for binding in bindings or []:
            if port != health and str(binding.get("HostPort")) not in allowed:
                problems.append(f"{name}: {port} published on {_bindings([binding])}, not an HTTP(S) port")
    yield from _summary([failed(p) for p in problems], f"{name}: health listener {health} not published")


def _bindings(bindings: list[dict[str, Any]]) -> str:
    return ", ".join(f"{b.get('HostIp') or '*'}:{b.get('HostPort')}" for b in bindings)


# container health --------------------------------------------------------------------------


@guard
def check_services_running(ctx: Context) -> Iterator[Finding]:
    inventory = ctx.inventory
    problems = []
    for service, container in sorted(inventory.services.items()):
        if container is None:
            problems.append(
                failed(
                    f"{service}: no container (looked for label service={service} and name "
                    f"{ctx.targets.services[service]})"
                )
            )
        elif not is_running(container):
            state = _state(container)
            problems.append(
                failed(
                    f"{container_name(container)}: {state.get('Status', 'unknown')} "
                    f"(exit code {state.get('ExitCode')}), expected running"
                )
            )
    yield from _summary(problems, f"{len(inventory.services)} service containers running")


@guard
def check_services_healthy(ctx: Context) -> Iterator[Finding]:
    problems, judged = [], 0
    for container in ctx.inventory.services.values():
        if container is None:
            continue
        health = _state(container).get("Health")
        if not health:
            continue
        judged += 1
        if health.get("Status") != "healthy":
            log = health.get("Log") or []
            last = str(log[-1].get("Output", "")).strip().splitlines()[-1:] if log else []
            problems.append(
                failed(
                    f"{container_name(container)}: {health.get('Status')}"
                    + (f" (last check: {last[0][:200]})" if last else "")
                )
            )
    yield from _summary(problems, f"{judged} containers with a healthcheck are healthy")


@guard
def check_restart_counts(ctx: Context) -> Iterator[Finding]:
    problems = []
    for container in ctx.inventory.services.values():
        if container is not None and int(container.get("RestartCount") or 0) > MAX_RESTARTS:
            problems.append(
                failed(
                    f"{container_name(container)}: restarted {container['RestartCount']} times (at most {MAX_RESTARTS})"
                )
            )
    yield from _summary(problems, f"no service container restarted more than {MAX_RESTARTS} times")


@guard
def check_jobs_completed(ctx: Context) -> Iterator[Finding]:
    problems = []
    for job, container in sorted(ctx.inventory.jobs.items()):
        if container is None:
            problems.append(failed(f"{job}: no container (name {ctx.targets.jobs[job]})"))
            continue
        state = _state(container)
        if state.get("Status") != "exited" or state.get("ExitCode") != 0:
            problems.append(
                failed(
                    f"{container_name(container)}: {state.get('Status')} with exit code "
                    f"{state.get('ExitCode')}, expected exited with 0"
                )
            )
    yield from _summary(problems, f"{len(ctx.inventory.jobs)} one-shot jobs exited with 0")


@guard
def check_labels(ctx: Context) -> Iterator[Finding]:
    want = ctx.targets.labels
    problems = []
    for container in ctx.inventory.everything:
        have = labels_of(container)
        wrong = [
            f"{key}={have.get(key)!r} (want {value!r})" for key, value in sorted(want.items()) if have.get(key) != value
        ]
        if "service" not in have:
            wrong.append("no service label")
        if wrong:
            problems.append(failed(f"{container_name(container)}: {', '.join(wrong)}"))
    yield from _summary(problems, f"{len(ctx.inventory.everything)} containers carry the stack's labels")


@guard
def check_not_privileged(ctx: Context) -> Iterator[Finding]:
    problems = []
    for container in ctx.inventory.everything:
        host = container.get("HostConfig") or {}
        found = ["privileged"] if host.get("Privileged") else []
        found += [f"{key} host" for key in ("NetworkMode", "PidMode", "IpcMode") if host.get(key) == "host"]
        if found:
            problems.append(failed(f"{container_name(container)}: {', '.join(found)}"))
    yield from _summary(problems, f"{len(ctx.inventory.everything)} containers: none privileged or on host namespaces")


def is_root(user: str) -> bool:
    """Does a container's ``Config.User`` run it as root? Empty is the image's default, which
    Docker has already filled in at create time, so empty means root too."""
    name = user.split(":", 1)[0].strip()
    return name in ("", "0", "root")


def _capabilities(values: Any) -> set[str]:
    return {str(cap).upper().removeprefix("CAP_") for cap in values or []}


def volume_owner_problems(container: Mapping[str, Any]) -> list[str]:
    """What a root volume-owner job does beyond its design: any network, any capability but
    CHOWN, not dropping the rest, privileged."""
    host = container.get("HostConfig") or {}
    problems = []
    if host.get("NetworkMode") != "none":
        problems.append(f"network mode {host.get('NetworkMode')!r} (want 'none')")
    extra = sorted(_capabilities(host.get("CapAdd")) - VOLUME_OWNER_CAPS)
    if extra:
        problems.append(f"capabilities {', '.join(extra)} beyond CHOWN")
    if "ALL" not in _capabilities(host.get("CapDrop")):
        problems.append("does not drop ALL capabilities")
    if host.get("Privileged"):
        problems.append("privileged")
    return problems


@guard
def check_non_root(ctx: Context) -> Iterator[Finding]:
    """Every container runs as a non-root uid, except the volume-owner jobs, which run as root
    by design with CHOWN alone and no network (and are held to exactly that)."""
    problems, users, owners = [], 0, []
    for container in ctx.inventory.everything:
        if _is_carrier(container):
            continue  # created, never started: runs nothing
        name = container_name(container)
        user = str((container.get("Config") or {}).get("User") or "")
        service = labels_of(container).get("service", "")
        if not is_root(user):
            users += 1
            continue
        if service.endswith(VOLUME_OWNER_SUFFIX) and service in ctx.targets.jobs:
            wrong = volume_owner_problems(container)
            if wrong:
                problems.append(failed(f"{name}: a root volume-owner job with {'; '.join(wrong)}"))
            else:
                owners.append(name)
            continue
        problems.append(failed(f"{name}: runs as root (user {user or 'unset'})"))
    summary = f"{users} containers run as non-root users"
    if owners:
        summary += f"; {', '.join(owners)} as root with CHOWN alone and no network"
    yield from _summary(problems, summary)


def published(container: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(container port, host IP, host port) of every published port: the live bindings of a
    running container and the configured ones of any container."""
    found = set()
    sources = (
        (container.get("NetworkSettings") or {}).get("Ports"),
        (container.get("HostConfig") or {}).get("PortBindings"),
    )
    for ports in sources:
        for port, bindings in (ports or {}).items():
            for binding in bindings or []:
                found.add((str(port), str(binding.get("HostIp") or ""), str(binding.get("HostPort") or "")))
    return sorted(found)


@guard
def check_published_ports(ctx: Context) -> Iterator[Finding]:
    """Only the proxy publishes ports (judged by proxy-health-private). Outside prod a service may
    publish a debug port on the host's loopback; prod publishes nothing else at all."""
    prod = ctx.targets.environment == "prod"
    problems, debug = [], []
    for container in ctx.inventory.everything:
        if labels_of(container).get("service") == "proxy" and not _is_carrier(container):
            continue
        name = container_name(container)
        if (container.get("HostConfig") or {}).get("PublishAllPorts"):
            problems.append(failed(f"{name}: publishes every exposed port (PublishAllPorts)"))
        for port, host_ip, host_port in published(container):
            where = f"{host_ip or '*'}:{host_port}"
            if prod:
                problems.append(failed(f"{name}: {port} published on {where}; in prod only the proxy publishes"))
            elif host_ip not in LOOPBACK:
                problems.append(failed(f"{name}: {port} published on {where}, not on 127.0.0.1 (a debug port)"))
            elif ctx.targets.debug_ports.get(labels_of(container).get("service", "")) != _port_number(host_port):
                problems.append(failed(f"{name}: {port} published on {where}, which is not a configured debug port"))
            else:
                debug.append(f"{name} {port} on {where}")
    ok = "only the proxy publishes ports" + (f"; debug ports on loopback: {', '.join(debug)}" if debug else "")
    yield from _summary(problems, ok)


def _port_number(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _exist_check(kind: str) -> CheckFn:
    @guard
    def check(ctx: Context) -> Iterator[Finding]:
        inventory = ctx.inventory
        present = inventory.networks if kind == "network" else inventory.volumes
        expected = ctx.targets.networks if kind == "network" else ctx.targets.volumes
        missing = [failed(f"{kind} {name} does not exist") for name in expected if name not in present]
        yield from _summary(missing, f"{len(expected)} {kind}s exist")

    return check


check_networks_exist = _exist_check("network")
check_volumes_exist = _exist_check("volume")


def _ours(ctx: Context, name: str, labels: Mapping[str, str]) -> bool:
    """Named as this stack's, and labelled as this stack's."""
    targets = ctx.targets
    named = name in targets.networks or name in targets.volumes or name.startswith(targets.name_prefix)
    return named and all(labels.get(key) == value for key, value in targets.identity_labels.items())


@guard
def check_isolation_networks(ctx: Context) -> Iterator[Finding]:
    """No container of this stack joins a network that is not this stack's."""
    inventory = ctx.inventory
    problems = []
    for container in inventory.everything:
        for network in attached_networks(container):
            if network in BUILTIN_NETWORKS:
                continue
            labels = labels_of(inventory.networks.get(network) or {})
            if not _ours(ctx, network, labels):
                problems.append(
                    failed(
                        f"{container_name(container)}: attached to {network}, "
                        "which is not this stack's (by name and labels)"
                    )
                )
    yield from _summary(problems, "every container joins only this stack's networks")


@guard
def check_isolation_volumes(ctx: Context) -> Iterator[Finding]:
    """No container of this stack mounts a named volume that is not this stack's."""
    inventory = ctx.inventory
    problems = []
    for container in inventory.everything:
        for mount in container.get("Mounts") or []:
            if mount.get("Type") != "volume":
                continue
            name = str(mount.get("Name"))
            labels = labels_of(inventory.volumes.get(name) or {})
            if ANONYMOUS_VOLUME_LABEL in labels:
                continue
            if not _ours(ctx, name, labels):
                problems.append(
                    failed(
                        f"{container_name(container)}: mounts volume {name} at "
                        f"{mount.get('Destination')}, which is not this stack's"
                    )
                )
    yield from _summary(problems, "every container mounts only this stack's volumes")


@guard
def check_foreign_containers(ctx: Context) -> Iterator[Finding]:
    """No container of another stack is attached to this stack's networks."""
    inventory = ctx.inventory
    ours = {c["Id"] for c in inventory.everything}
    problems, judged = [], 0
    for name in ctx.targets.networks:
        if name not in inventory.networks:
            continue
        judged += 1
        network = ctx.engine.inspect_network(str(inventory.networks[name].get("Id") or name))
        for container_id, endpoint in sorted((network.get("Containers") or {}).items()):
            if container_id not in ours:
                problems.append(
                    failed(
                        f"{name}: {endpoint.get('Name', container_id[:12])} is attached "
                        "and is not a container of this stack"
                    )
                )
    yield from _summary(problems, f"{judged} networks: only this stack's containers attached")


# environment variables ---------------------------------------------------------------------


def secret_looking(name: str) -> bool:
    """Does a variable's name suggest a secret? Words are split on ``_``. PASS, PWD, SECRET,
    TOKEN, CREDENTIAL anywhere in a word; a word ending in KEY; AUTH as the last word
    (REDISCLI_AUTH, not GF_AUTH_ANONYMOUS_ENABLED). A variable naming a path (``*_FILE``,
    ``PGPASSFILE``, ``*_PATH``, ``*_DIR``) never is."""
    words = [w for w in re.split(r"[_.\-]+", name.upper()) if w]
    if not words or words[-1].endswith("FILE") or words[-1] in ("PATH", "DIR") or name.upper() in NOT_SECRET:
        return False
    if any(part in word for word in words for part in _SECRET_PARTS):
        return True
    return any(word.endswith("KEY") or word.endswith("KEYS") for word in words) or words[-1] == "AUTH"


def secret_variables(env: list[str]) -> list[str]:
    """Names of variables that look like secrets and carry a value (a flag is not a secret)."""
    found = []
    for pair in env:
        name, _, value = pair.partition("=")
        if name in PATH_VARIABLES and _ABSOLUTE_PATH.fullmatch(value):
            continue
        if secret_looking(name) and value.strip().lower() not in _FLAG_VALUES:
            found.append(name)
    return found


@guard
def check_env_secrets(ctx: Context) -> Iterator[Finding]:
    problems = []
    containers = ctx.inventory.everything
    for container in containers:
        names = secret_variables(list((container.get("Config") or {}).get("Env") or []))
        if names:
            problems.append(
                failed(f"{container_name(container)}: {', '.join(names)} set to a value (deliver it as a file, *_FILE)")
            )
    yield from _summary(problems, f"{len(containers)} containers: no secret-looking variable with a value")


@guard
def check_app_env(ctx: Context) -> Iterator[Finding]:
    want = ctx.targets.environment
    problems, judged = [], []
    for service in ("api", "web"):
        container = ctx.inventory.services.get(service)
        if container is None:
            problems.append(failed(f"{service}: no container"))
            continue
        env = dict(pair.partition("=")[::2] for pair in (container.get("Config") or {}).get("Env") or [])
        judged.append(container_name(container))
        if env.get("APP_ENV") != want:
            problems.append(failed(f"{container_name(container)}: APP_ENV={env.get('APP_ENV')!r}, expected {want!r}"))
    yield from _summary(problems, f"{', '.join(judged)}: APP_ENV={want}")


# log collection ----------------------------------------------------------------------------


@guard
def check_logs_readable(ctx: Context) -> Iterator[Finding]:
    problems, judged = [], 0
    for container in ctx.inventory.everything:
        if not is_running(container):
            continue
        judged += 1
        try:
            ctx.engine.logs(container["Id"], tail=5)
        except CheckError as error:
            problems.append(failed(f"{container_name(container)}: logs unreadable: {error}"))
    yield from _summary(problems, f"{judged} running containers: logs readable")


@guard
def check_log_rotation(ctx: Context) -> Iterator[Finding]:
    want = ctx.targets.log_options
    problems, judged = [], 0
    for container in ctx.inventory.everything:
        if _is_carrier(container):
            continue  # never started, never logs
        judged += 1
        config = (container.get("HostConfig") or {}).get("LogConfig") or {}
        options = config.get("Config") or {}
        wrong = []
        if config.get("Type") not in LOG_DRIVERS:
            wrong.append(f"driver {config.get('Type')!r} (want json-file)")
        if options.get("max-size") != want.max_size:
            wrong.append(f"max-size {options.get('max-size')!r} (want {want.max_size!r})")
        if options.get("max-file") != want.max_file:
            wrong.append(f"max-file {options.get('max-file')!r} (want {want.max_file!r})")
        if wrong:
            problems.append(failed(f"{container_name(container)}: logs not rotated as configured: {', '.join(wrong)}"))
    yield from _summary(problems, f"{judged} containers: json-file, max-size {want.max_size}, max-file {want.max_file}")
