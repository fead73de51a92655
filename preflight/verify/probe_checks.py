"""Checks that run probes inside the stack's networks: databases, Redis, Chroma, Temporal, what
the API can reach, Prometheus and Grafana, and data written and read back.

Probes run in the stack's own containers, so nothing needs a published port: the ``probe``
service (``ops``: psql, redis-cli, python3; on the data and egress networks) for Postgres and
Redis; Chroma's and Temporal's own containers (bash, no python) for what the probe container
cannot reach; Prometheus's and Grafana's for their own APIs.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator, Mapping
from typing import Any

from preflight.verify import probes
from preflight.verify.context import CheckError, Context, Finding, container_name, failed, guard, passed
from preflight.verify.inventory import attached_networks
from preflight.verify.probes import Executor, ProbeResult


def _probe(ctx: Context) -> Executor:
    return ctx.executor(ctx.targets.probe.service)


def _run(executor: Executor, argv: list[str], ctx: Context) -> ProbeResult:
    return executor.run(argv, ctx.timeout)


def _psql(ctx: Context, statements: list[str]) -> tuple[Executor, ProbeResult]:
    t = ctx.targets
    executor = _probe(ctx)
    argv = probes.psql(
        t.services["postgres"],
        t.postgres_port,
        t.probe.postgres_user,
        t.databases.app,
        t.probe.postgres_password_file,
        statements,
        ctx.timeout,
    )
    return executor, _run(executor, argv, ctx)


def _redis(ctx: Context, command: list[str], authenticated: bool = True) -> tuple[Executor, ProbeResult]:
    t = ctx.targets
    executor = _probe(ctx)
    password_file = t.probe.redis_password_file if authenticated else None
    argv = probes.redis_cli(t.services["redis"], t.redis_port, t.probe.redis_user, password_file, command)
    return executor, _run(executor, argv, ctx)


# database ----------------------------------------------------------------------------------


@guard
def check_postgres_ready(ctx: Context) -> Iterator[Finding]:
    t = ctx.targets
    executor = _probe(ctx)
    host = t.services["postgres"]
    result = _run(
        executor, probes.pg_isready(host, t.postgres_port, t.databases.app, t.probe.postgres_user, ctx.timeout), ctx
    )
    where = f"{host}:{t.postgres_port} from {executor.where}"
    if result.ok:
        yield passed(f"{where}: accepting connections")
    else:
        yield failed(f"{where}: not accepting connections ({result.summary()})")


@guard
def check_app_database(ctx: Context) -> Iterator[Finding]:
    database = ctx.targets.databases.app
    executor, result = _psql(ctx, probes.current_database_sql())
    where = f"database {database} as {ctx.targets.probe.postgres_user} from {executor.where}"
    if result.ok and result.stdout.strip() == database:
        yield passed(f"{where}: connected")
    else:
        yield failed(f"{where}: {result.summary()}")


# Redis -------------------------------------------------------------------------------------


@guard
def check_redis_requires_auth(ctx: Context) -> Iterator[Finding]:
    executor, result = _redis(ctx, ["PING"], authenticated=False)
    where = f"{ctx.targets.services['redis']}:{ctx.targets.redis_port} from {executor.where}"
    answer = (result.stdout + result.stderr).strip()
    if "NOAUTH" in answer:
        yield passed(f"{where}: PING without a password refused (NOAUTH)")
    elif answer == "PONG":
        yield failed(f"{where}: PING without a password answered PONG")
    else:
        yield failed(f"{where}: {result.summary()}")


@guard
def check_redis_ping(ctx: Context) -> Iterator[Finding]:
    executor, result = _redis(ctx, ["PING"])
    where = f"{ctx.targets.services['redis']}:{ctx.targets.redis_port} from {executor.where}"
    if result.ok and result.stdout.strip() == "PONG":
        yield passed(f"{where}: PONG after AUTH")
    else:
        yield failed(f"{where}: {result.summary()}")


# Chroma ------------------------------------------------------------------------------------

HEARTBEAT_PATH = "/api/v2/heartbeat"  # Chroma 1.x answers 410 on the v1 paths


def heartbeat_of(answer: probes.HttpAnswer) -> int | None:
    """The heartbeat in a 200 answer's JSON body, else None."""
    if answer.status != 200:
        return None
    try:
        beat = json.loads(answer.body).get("nanosecond heartbeat")
    except (ValueError, AttributeError):
        return None
    return beat if isinstance(beat, int) and not isinstance(beat, bool) else None


@guard
def check_chroma_heartbeat(ctx: Context) -> Iterator[Finding]:
    """Chroma shares its network with the API alone, and its image has bash but no python, curl
    or wget: the heartbeat is asked inside the chroma container, through bash's /dev/tcp, at the
    service's own name (so the server answers on its network address, not only on loopback)."""
    t = ctx.targets
    host, port = t.services["chroma"], t.chroma_port
    executor = ctx.executor("chroma")
    result = _run(executor, probes.bash_http_get(host, port, HEARTBEAT_PATH, ctx.timeout), ctx)
    where = f"http://{host}:{port}{HEARTBEAT_PATH} from {executor.where}"
    answer = probes.parse_http_response(result.stdout) if result.ok else probes.HttpAnswer(None, "")
    beat = heartbeat_of(answer)
    if beat is not None:
        yield passed(f"{where}: heartbeat {beat}")
    elif answer.status is None:
        yield failed(f"{where}: no HTTP answer ({result.summary()})")
    elif answer.status != 200:
        yield failed(f"{where}: HTTP {answer.status}, expected 200 ({answer.body.strip()[:200] or 'no body'})")
    else:
        yield failed(f"{where}: HTTP 200 without a heartbeat ({answer.body.strip()[:200] or 'no body'})")


# integration -------------------------------------------------------------------------------


@guard
def check_temporal_frontend(ctx: Context) -> Iterator[Finding]:
    """Temporal's own CLI, in the temporal container, asks the frontend for its health at the
    address its clients dial: the server binds that one address, not loopback."""
    executor = ctx.executor("temporal")
    address = ctx.targets.temporal_address
    result = _run(executor, probes.temporal_cluster_health(address), ctx)
    if result.ok and "SERVING" in result.stdout:
        yield passed(f"frontend {address} from {executor.where}: SERVING")
    else:
        yield failed(f"frontend {address} from {executor.where}: {result.summary()}")


def dependencies(ctx: Context) -> dict[str, tuple[str, int]]:
    """What the API needs, as host and port on the stack's networks."""
    t = ctx.targets
    return {
        "postgres": (t.services["postgres"], t.postgres_port),
        "redis": (t.services["redis"], t.redis_port),
        "chroma": (t.services["chroma"], t.chroma_port),
        "temporal": t.temporal_host_port,
    }


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def networks_answering(container: Mapping[str, Any], host: str) -> set[str]:
    """The networks on which ``host`` reaches ``container``: for an IP address, the one network
    it is the container's address on; for a name, every network where the container answers to
    it (its container name, or an alias or DNS name of that attachment)."""
    endpoints = (container.get("NetworkSettings") or {}).get("Networks") or {}
    name = container_name(container)
    found = set()
    for network, endpoint in endpoints.items():
        endpoint = endpoint or {}
        if _is_ip(host):
            static = (endpoint.get("IPAMConfig") or {}).get("IPv4Address")
            if host in (endpoint.get("IPAddress"), static):
                found.add(network)
        elif host == name or host in (endpoint.get("Aliases") or []) or host in (endpoint.get("DNSNames") or []):
            found.add(network)
    return found


def _connect_probe(ctx: Context, service: str, host: str, port: int, shared: list[str]) -> tuple[Executor, list[str]]:
    """Where and how to open a connection to ``host:port`` over one of the ``shared`` networks:
    from the probe container (python3) if it is on one of them, else from the dependency's own
    container, which is on all of them, with bash (Chroma's and Temporal's images have no
    python). The probe container never gains a network for this."""
    probe_service = ctx.targets.probe.service
    probe = ctx.inventory.services.get(probe_service)
    if probe is not None and set(attached_networks(probe)) & set(shared):
        return ctx.executor(probe_service), probes.python_tcp_connect(host, port, ctx.timeout)
    return ctx.executor(service), probes.bash_tcp_connect(host, port)


@guard
def check_api_dependencies(ctx: Context) -> Iterator[Finding]:
    """The API shares a network with each dependency, on which the dependency answers to the
    address the API is given (an IP address lives on one network only), and a TCP connection
    over that network reaches it."""
    inventory = ctx.inventory
    api = inventory.running("api")
    api_networks = set(attached_networks(api))
    for service, (host, port) in dependencies(ctx).items():
        container = inventory.services.get(service)
        if container is None:
            yield failed(f"{service}: no container")
            continue
        answering = networks_answering(container, host)
        if not answering:
            yield failed(
                f"{host}:{port}: {container_name(container)} does not answer to {host} on any of its networks "
                f"({', '.join(attached_networks(container)) or 'none'})"
            )
            continue
        shared = sorted(api_networks & answering)
        if not shared:
            if api_networks & set(attached_networks(container)):
                yield failed(
                    f"{container_name(api)} is not on {', '.join(sorted(answering))}, "
                    f"where {container_name(container)} answers to {host}"
                )
            else:
                yield failed(f"{container_name(api)} shares no network with {container_name(container)}")
            continue
        try:
            executor, argv = _connect_probe(ctx, service, host, port, shared)
        except CheckError as error:
            yield failed(f"{host}:{port}: cannot probe: {error}")
            continue
        result = _run(executor, argv, ctx)
        over = f"over {', '.join(shared)}"
        if result.ok:
            yield passed(f"{container_name(api)} -> {host}:{port} {over}: connected from {executor.where} ({argv[0]})")
        else:
            yield failed(f"{host}:{port} {over} from {executor.where} ({argv[0]}): {result.summary()}")


# monitoring stack --------------------------------------------------------------------------


def _prometheus(ctx: Context, path: str) -> tuple[Executor, dict[str, Any]]:
    executor = ctx.executor("prometheus")
    url = f"http://127.0.0.1:{ctx.targets.monitoring.prometheus_port}{path}"
    result = _run(executor, probes.wget_get(url, ctx.timeout), ctx)
    if not result.ok:
        raise CheckError(f"{url} in {executor.where}: {result.summary()}")
    try:
        answer = json.loads(result.stdout)
    except ValueError:
        raise CheckError(f"{url} in {executor.where}: not JSON") from None
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise CheckError(
            f"{url} in {executor.where}: status {answer.get('status') if isinstance(answer, dict) else '?'}"
        )
    return executor, answer.get("data") or {}


@guard
def check_prometheus_targets(ctx: Context) -> Iterator[Finding]:
    executor, data = _prometheus(ctx, "/api/v1/targets?state=active")
    targets = data.get("activeTargets") or []
    if not targets:
        yield failed(f"Prometheus in {executor.where}: no active targets")
        return
    down = [t for t in targets if t.get("health") != "up"]
    for target in down:
        labels = target.get("labels") or {}
        error = target.get("lastError") or ("not scraped yet" if target.get("health") == "unknown" else "")
        yield failed(
            f"target {labels.get('job', '?')} ({labels.get('instance', target.get('scrapeUrl', '?'))}): "
            f"{target.get('health')}" + (f": {error}" if error else "")
        )
    if not down:
        jobs = sorted({(t.get("labels") or {}).get("job", "?") for t in targets})
        yield passed(f"{len(targets)} targets up ({', '.join(jobs)})")


@guard
def check_prometheus_rules(ctx: Context) -> Iterator[Finding]:
    executor, data = _prometheus(ctx, "/api/v1/rules")
    groups = data.get("groups") or []
    rules = [rule for group in groups for rule in group.get("rules") or []]
    broken = [rule for rule in rules if rule.get("health") == "err"]
    if not rules:
        yield failed(f"Prometheus in {executor.where}: no rules loaded")
        return
    for rule in broken:
        yield failed(f"rule {rule.get('name')}: {rule.get('lastError') or 'err'}")
    if not broken:
        yield passed(f"{len(groups)} rule groups, {len(rules)} rules loaded")


@guard
def check_grafana_health(ctx: Context) -> Iterator[Finding]:
    executor = ctx.executor("grafana")
    url = f"http://127.0.0.1:{ctx.targets.monitoring.grafana_port}/api/health"
    result = _run(executor, probes.wget_get(url, ctx.timeout), ctx)
    try:
        database = json.loads(result.stdout).get("database") if result.ok else None
    except (ValueError, AttributeError):
        database = None
    if database == "ok":
        yield passed(f"{url} in {executor.where}: database ok")
    else:
        yield failed(f"{url} in {executor.where}: database {database!r} ({result.summary()})")


# data persistence --------------------------------------------------------------------------


@guard
def check_redis_marker(ctx: Context) -> Iterator[Finding]:
    key = probes.redis_marker_key(ctx.token)
    steps = [
        (["SET", key, ctx.token, "EX", "60"], "OK"),
        (["GET", key], ctx.token),
        (["DEL", key], "1"),
    ]
    for command, expected in steps:
        executor, result = _redis(ctx, command)
        if not result.ok or result.stdout.strip() != expected:
            yield failed(f"{' '.join(command[:2])} from {executor.where}: expected {expected!r}, {result.summary()}")
            return
    yield passed(f"{key}: SET with a 60 s TTL, read back, deleted")


@guard
def check_postgres_marker(ctx: Context) -> Iterator[Finding]:
    table = f"{ctx.targets.databases.app}.{probes.MARKER_TABLE}"
    executor, result = _psql(ctx, probes.marker_write_sql(ctx.token))
    if not result.ok:
        yield failed(f"write to {table} from {executor.where}: {result.summary()}")
        return
    executor, result = _psql(ctx, probes.marker_read_sql(ctx.token))
    read_back = result.ok and result.stdout.strip() == ctx.token
    _, cleanup = _psql(ctx, probes.marker_delete_sql(ctx.token))
    if not read_back:
        yield failed(f"read from {table} from {executor.where}: marker not found ({result.summary()})")
    elif not cleanup.ok:
        yield failed(f"cleaning up {table} from {executor.where}: {cleanup.summary()}")
    else:
        yield passed(f"{table}: marker written, read back, deleted")
