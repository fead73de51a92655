"""Every check `verify` runs, in the order it runs them, each in one of fourteen categories.

The order matters in one place: the proxy's rate limit is shared by all requests from this
machine, so the requests that count against it are few (about 30, under the stack's burst)
and the rate-limit probe, which fills the bucket on purpose, runs last.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from preflight.verify import container_checks as cc
from preflight.verify import http_checks as hc
from preflight.verify import probe_checks as pc
from preflight.verify.context import CheckFn, Context, Status, failed

CATEGORIES = (
    "connectivity",
    "health endpoints",
    "integration",
    "API functionality",
    "performance",
    "database",
    "Redis",
    "Chroma",
    "container health",
    "monitoring stack",
    "security headers",
    "environment variables",
    "log collection",
    "data persistence",
)


@dataclass(frozen=True)
class Check:
    category: str
    name: str
    description: str
    run: CheckFn


@dataclass(frozen=True)
class Result:
    """One line of the report."""

    category: str
    name: str
    status: Status
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"category": self.category, "name": self.name, "status": self.status, "detail": self.detail}


def _c(category: str, name: str, description: str, run: CheckFn) -> Check:
    assert category in CATEGORIES, category
    return Check(category, name, description, run)


REGISTRY: tuple[Check, ...] = (
    # Reachability first: the Engine and TLS on every domain.
    _c("connectivity", "docker-engine", "the Docker Engine API of the stack's host answers", cc.check_engine),
    _c(
        "connectivity",
        "tls-handshake",
        "TCP and a TLS 1.2+ handshake to the proxy's HTTPS port, per domain",
        hc.check_tls_handshake,
    ),
    _c(
        "connectivity",
        "tls-1.2-accepted",
        "a handshake limited to TLS 1.2 succeeds on every domain",
        hc.tls_version_check("1.2", accepted=True),
    ),
    _c(
        "connectivity",
        "tls-1.3-accepted",
        "a handshake limited to TLS 1.3 succeeds on every domain",
        hc.tls_version_check("1.3", accepted=True),
    ),
    _c(
        "connectivity",
        "tls-1.0-refused",
        "a handshake limited to TLS 1.0 is refused on every domain",
        hc.tls_version_check("1.0", accepted=False),
    ),
    _c(
        "connectivity",
        "tls-1.1-refused",
        "a handshake limited to TLS 1.1 is refused on every domain",
        hc.tls_version_check("1.1", accepted=False),
    ),
    _c(
        "connectivity",
        "certificate-valid",
        "the certificate chains to tls_ca_certificate (or the system store) and names the domain",
        hc.check_certificate,
    ),
    # The Docker objects.
    _c(
        "container health",
        "services-running",
        "every expected service has a running container",
        cc.check_services_running,
    ),
    _c(
        "container health",
        "services-healthy",
        "containers with a healthcheck report healthy",
        cc.check_services_healthy,
    ),
    _c(
        "container health",
        "restart-count",
        f"no service container restarted more than {cc.MAX_RESTARTS} times",
        cc.check_restart_counts,
    ),
    _c(
        "container health",
        "jobs-completed",
        "every one-shot job (init, migrations) exited with 0",
        cc.check_jobs_completed,
    ),
    _c("container health", "labels", "every container carries the stack's labels and a service label", cc.check_labels),
    _c(
        "container health",
        "not-privileged",
        "no container is privileged or shares the host's namespaces",
        cc.check_not_privileged,
    ),
    _c(
        "container health",
        "non-root",
        "every container runs as a non-root user, but the volume-owner jobs (root, CHOWN alone, no network)",
        cc.check_non_root,
    ),
    _c(
        "container health",
        "published-ports",
        "only the proxy publishes ports; outside prod, debug ports on 127.0.0.1 only",
        cc.check_published_ports,
    ),
    _c("container health", "networks-exist", "every network of the stack exists", cc.check_networks_exist),
    _c("container health", "volumes-exist", "every volume of the stack exists", cc.check_volumes_exist),
    _c(
        "container health",
        "isolation-networks",
        "containers join only this stack's networks (name and labels)",
        cc.check_isolation_networks,
    ),
    _c(
        "container health",
        "isolation-volumes",
        "containers mount only this stack's volumes (name and labels)",
        cc.check_isolation_volumes,
    ),
    _c(
        "container health",
        "isolation-foreign-containers",
        "no other stack's container is on this stack's networks",
        cc.check_foreign_containers,
    ),
    _c(
        "environment variables",
        "no-secret-values",
        "no secret-looking variable (PASS, PWD, AUTH, KEY, TOKEN, SECRET, CREDENTIAL) carries a value",
        cc.check_env_secrets,
    ),
    _c(
        "environment variables",
        "app-env",
        "the API and web containers have APP_ENV set to the environment",
        cc.check_app_env,
    ),
    _c("log collection", "logs-readable", "every running container's logs can be read (tail)", cc.check_logs_readable),
    _c(
        "log collection",
        "log-rotation",
        "every container logs to json-file with the stack's max-size and max-file",
        cc.check_log_rotation,
    ),
    # Inside the networks.
    _c(
        "database",
        "postgres-ready",
        "Postgres accepts connections (pg_isready from the probe container)",
        pc.check_postgres_ready,
    ),
    _c("database", "app-database", "the superuser connects to the app database", pc.check_app_database),
    _c("Redis", "redis-auth-required", "PING without a password is refused (NOAUTH)", pc.check_redis_requires_auth),
    _c("Redis", "redis-ping", "PING after AUTH answers PONG", pc.check_redis_ping),
    _c(
        "Chroma",
        "chroma-heartbeat",
        "Chroma's /api/v2/heartbeat answers at its service name (bash in the chroma container)",
        pc.check_chroma_heartbeat,
    ),
    _c(
        "integration",
        "temporal-frontend",
        "Temporal's frontend reports SERVING at temporal_address, the one address it binds",
        pc.check_temporal_frontend,
    ),
    _c(
        "integration",
        "api-dependencies",
        "the API shares a network with Postgres, Redis, Chroma and Temporal, and each answers over it "
        "(probed from ops, or from the dependency's own container where ops is not on that network)",
        pc.check_api_dependencies,
    ),
    _c("monitoring stack", "prometheus-targets", "every Prometheus target is up", pc.check_prometheus_targets),
    _c(
        "monitoring stack",
        "prometheus-rules",
        "Prometheus has its rule groups loaded, none failing",
        pc.check_prometheus_rules,
    ),
    _c("monitoring stack", "grafana-health", "Grafana's /api/health reports database ok", pc.check_grafana_health),
    _c(
        "data persistence",
        "redis-marker",
        "a Redis key with a TTL is written, read back and deleted",
        pc.check_redis_marker,
    ),
    _c(
        "data persistence",
        "postgres-marker",
        "a marker row is written, read back and deleted in the app database",
        pc.check_postgres_marker,
    ),
    # Through the proxy; the requests here stay under the rate limit's burst.
    _c("health endpoints", "api-health", "the API's health path answers 200 through the proxy", hc.health_check("api")),
    _c("health endpoints", "web-health", "the web health path answers 200 through the proxy", hc.health_check("web")),
    _c(
        "health endpoints",
        "proxy-health-private",
        "the proxy's own health listener is not published",
        cc.check_proxy_health_private,
    ),
    _c(
        "security headers",
        "headers-on-200",
        "HSTS, nosniff, X-Frame-Options, CSP, Referrer- and Permissions-Policy on a 200",
        hc.headers_check(200),
    ),
    _c("security headers", "headers-on-404", "the same headers on a 404", hc.headers_check(404)),
    _c("security headers", "no-version-leak", "no version in Server, no X-Powered-By", hc.check_no_version_leak),
    _c(
        "security headers",
        "http-redirect",
        "HTTP redirects (301/308) to https://<domain>[:port]/<same path>",
        hc.check_http_redirect,
    ),
    _c(
        "security headers",
        "unknown-host-https",
        "HTTPS for a name the stack does not serve is refused (421)",
        hc.check_unknown_host_https,
    ),
    _c(
        "security headers",
        "unknown-host-http",
        "HTTP for a name the stack does not serve is not redirected there",
        hc.check_unknown_host_http,
    ),
    _c(
        "API functionality",
        "cors-allowed-origin",
        "a CORS preflight from each allowed origin is allowed",
        hc.check_cors_allowed,
    ),
    _c(
        "API functionality",
        "cors-foreign-origin",
        "a CORS preflight from another origin gets no allow header",
        hc.check_cors_foreign,
    ),
    _c(
        "API functionality",
        "blocked-paths",
        "/metrics, /admin, /debug, /internal (any spelling) answer 404",
        hc.check_blocked_paths,
    ),
    _c(
        "monitoring stack",
        "grafana-via-proxy",
        "Grafana's /api/health through the proxy reports database ok",
        hc.check_grafana_via_proxy,
    ),
    _c(
        "performance",
        "p95-latency",
        f"p95 of {hc.LATENCY_SAMPLES} sequential API health requests within the limit",
        hc.check_latency,
    ),
    _c("performance", "rate-limit", "the proxy answers 429 within burst + a margin of requests", hc.check_rate_limit),
)


def select(names: Iterable[str] = (), categories: Iterable[str] = ()) -> list[Check]:
    """The registered checks with one of ``names`` or in one of ``categories`` (all if neither)."""
    names, categories = set(names), set(categories)
    unknown = (names - {c.name for c in REGISTRY}) | (categories - set(CATEGORIES))
    if unknown:
        raise KeyError(", ".join(sorted(unknown)))
    if not names and not categories:
        return list(REGISTRY)
    return [c for c in REGISTRY if c.name in names or c.category in categories]


def run_checks(ctx: Context, checks: Sequence[Check]) -> list[Result]:
    """Run ``checks`` in order. A check that breaks is a failed result: it must not hide the
    results of the others."""
    results = []
    for check in checks:
        try:
            findings = list(check.run(ctx))
        except Exception as error:  # noqa: BLE001 - see the docstring
            where = traceback.extract_tb(error.__traceback__)[-1]
            findings = [failed(f"internal error: {type(error).__name__}: {error} ({where.filename}:{where.lineno})")]
        # One unreachable target fails every domain the same way: say it once.
        unique = list(dict.fromkeys(findings))
        results += [Result(check.category, check.name, f.status, f.detail) for f in unique]
    return results
