"""Checks through the reverse proxy, as a browser sees it: TLS, status codes, headers, redirects,
CORS, blocked paths, latency and the rate limit.

Only the certificate check verifies the certificate, so one bad certificate is reported once,
by that check, and the others still say what they see.
"""

from __future__ import annotations

import json
import math
import re
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from urllib.parse import urlsplit

from preflight.verify.context import CheckError, CheckFn, Context, Finding, failed, passed, skipped
from preflight.verify.http_client import (
    PROTOCOL_NAME,
    TLS_VERSIONS,
    HandshakeError,
    Response,
    can_offer,
    client_context,
    host_header,
    served_domains,
)
from preflight.verify.targets import Targets

UNKNOWN_HOST = "verify-unknown-host.invalid"
FOREIGN_ORIGIN = "https://verify-foreign-origin.invalid"
BLOCKED = ("/metrics", "/admin", "/debug", "/internal")
# The same paths as a client could spell them: nginx decodes %XX and merges slashes before it
# matches a location, but matches letter case exactly.
BLOCKED_VARIANTS = ("/METRICS", "/Admin", "/DEBUG", "/Internal", "/metrics/", "//metrics", "/%6Detrics")
LATENCY_SAMPLES = 20
HSTS_MIN_AGE = 31_536_000  # one year


# Shared requests: several checks look at the same response, the proxy sees it once ----------


def _get(ctx: Context, domain: str, path: str) -> Response:
    return ctx.memo(("https", domain, path), lambda: ctx.http.https(domain, path))


def ok_paths(targets: Targets) -> dict[str, str]:
    """A path per domain that answers 200 through the proxy: the apps' health paths, Grafana's."""
    return {
        targets.domains.api: targets.health_paths.api,
        targets.domains.web: targets.health_paths.web,
        targets.domains.grafana: "/api/health",
    }


def _each_domain(ctx: Context, judge: Callable[[str], Finding]) -> Iterator[Finding]:
    for domain in served_domains(ctx.targets):
        try:
            yield judge(domain)
        except CheckError as error:
            yield failed(str(error))


# connectivity ------------------------------------------------------------------------------


def check_tls_handshake(ctx: Context) -> Iterator[Finding]:
    def judge(domain: str) -> Finding:
        try:
            with ctx.http.tls(domain, client_context(ssl.TLSVersion.TLSv1_2)) as sock:
                cipher = sock.cipher()
                return passed(f"{domain}: {sock.version()} {cipher[0] if cipher else ''}".rstrip())
        except OSError as error:
            return failed(f"{domain}: TLS handshake failed: {error}")

    yield from _each_domain(ctx, judge)


def _handshake(ctx: Context, domain: str, version: str) -> str | None:
    """None if the proxy completed a handshake pinned to ``version``, else its refusal."""
    tls = TLS_VERSIONS[version]
    try:
        with ctx.http.tls(domain, client_context(tls, tls)) as sock:
            if sock.version() != PROTOCOL_NAME[version]:
                return f"negotiated {sock.version()} instead"
            return None
    except ssl.SSLError as error:
        return str(error.reason or error)
    except OSError as error:  # reset, closed or silent after the hello
        return f"{type(error).__name__}: {error}"


def tls_version_check(version: str, accepted: bool) -> CheckFn:
    """A check that TLS ``version`` is accepted (or refused) on every domain."""

    def check(ctx: Context) -> Iterator[Finding]:
        if not accepted:
            reason = can_offer(version)
            if reason is not None:
                yield skipped(f"cannot test that TLS {version} is refused: {reason}")
                return
        problems, notes = [], []
        for domain in served_domains(ctx.targets):
            try:
                refusal = _handshake(ctx, domain, version)
            except CheckError as error:
                yield failed(str(error))
                return
            if accepted and refusal is not None:
                problems.append(f"{domain}: TLS {version} refused ({refusal})")
            elif not accepted and refusal is None:
                problems.append(f"{domain}: TLS {version} accepted")
            else:
                notes.append(domain)
        for problem in problems:
            yield failed(problem)
        if not problems:
            yield passed(f"TLS {version} {'accepted' if accepted else 'refused'} by {', '.join(notes)}")

    return check


def check_certificate(ctx: Context) -> Iterator[Finding]:
    source = "the stack's CA (tls_ca_certificate)" if ctx.ca_pem else "the system trust store"

    def judge(domain: str) -> Finding:
        context = ssl.create_default_context(cadata=ctx.ca_pem) if ctx.ca_pem else ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            with ctx.http.tls(domain, context) as sock:
                cert = sock.getpeercert() or {}
        except ssl.SSLCertVerificationError as error:
            return failed(f"{domain}: certificate not valid against {source}: {error.verify_message}")
        except OSError as error:
            return failed(f"{domain}: TLS handshake failed: {error}")
        expires = cert.get("notAfter")
        days = int((ssl.cert_time_to_seconds(expires) - time.time()) // 86400) if expires else None
        expiry = "" if days is None else f", expires in {days} day{'' if days == 1 else 's'}"
        return passed(f"{domain}: valid against {source}{expiry}")

    yield from _each_domain(ctx, judge)


# health endpoints --------------------------------------------------------------------------


def health_check(app: str) -> CheckFn:
    def check(ctx: Context) -> Iterator[Finding]:
        domain = getattr(ctx.targets.domains, app)
        path = getattr(ctx.targets.health_paths, app)
        try:
            response = _get(ctx, domain, path)
        except CheckError as error:
            yield failed(str(error))
            return
        where = f"https://{domain}{path}"
        if response.status == 200:
            yield passed(f"{where}: 200")
        else:
            yield failed(f"{where}: {response.status}, expected 200")

    return check


# security headers --------------------------------------------------------------------------


def missing_security_headers(response: Response) -> list[str]:
    """What a response lacks of the headers every answer of the proxy must carry."""
    problems = []
    hsts = response.header("Strict-Transport-Security")
    age = re.search(r"max-age=\"?(\d+)", hsts or "", re.IGNORECASE)
    if hsts is None:
        problems.append("no Strict-Transport-Security")
    elif age is None or int(age.group(1)) < HSTS_MIN_AGE:
        problems.append(f"Strict-Transport-Security max-age below one year ({hsts!r})")
    if (response.header("X-Content-Type-Options") or "").strip().lower() != "nosniff":
        problems.append("X-Content-Type-Options is not nosniff")
    if (response.header("X-Frame-Options") or "").strip().upper() not in ("DENY", "SAMEORIGIN"):
        problems.append("no X-Frame-Options DENY/SAMEORIGIN")
    for name in ("Content-Security-Policy", "Referrer-Policy", "Permissions-Policy"):
        if not (response.header(name) or "").strip():
            problems.append(f"no {name}")
    return problems


def headers_check(expected_status: int) -> CheckFn:
    """Security headers on a 200 (each domain's health path) or a 404 (a blocked path)."""

    def check(ctx: Context) -> Iterator[Finding]:
        paths = (
            ok_paths(ctx.targets) if expected_status == 200 else dict.fromkeys(served_domains(ctx.targets), "/metrics")
        )

        def judge(domain: str) -> Finding:
            path = paths[domain]
            response = _get(ctx, domain, path)
            where = f"https://{domain}{path}"
            if response.status != expected_status:
                return failed(f"{where}: {response.status}, expected {expected_status}; headers not judged")
            problems = missing_security_headers(response)
            if problems:
                return failed(f"{where} ({response.status}): {'; '.join(problems)}")
            return passed(f"{where} ({response.status}): all security headers")

        yield from _each_domain(ctx, judge)

    return check


def check_no_version_leak(ctx: Context) -> Iterator[Finding]:
    def judge(domain: str) -> Finding:
        leaks = []
        for path in (ok_paths(ctx.targets)[domain], "/metrics"):
            response = _get(ctx, domain, path)
            server = response.header("Server")
            if server and re.search(r"\d", server):
                leaks.append(f"{path}: Server: {server}")
            if response.header("X-Powered-By"):
                leaks.append(f"{path}: X-Powered-By: {response.header('X-Powered-By')}")
        if leaks:
            return failed(f"{domain}: version leaked ({'; '.join(leaks)})")
        return passed(f"{domain}: no version in Server or X-Powered-By")

    yield from _each_domain(ctx, judge)


def expected_redirect(domain: str, https_port: int, path: str) -> str:
    return f"https://{host_header(domain, https_port, 443)}{path}"


def check_http_redirect(ctx: Context) -> Iterator[Finding]:
    path = "/verify/redirect-check?from=http"
    https_port = ctx.targets.proxy.https_port

    def judge(domain: str) -> Finding:
        response = ctx.http.http(domain, path)
        location = response.header("Location")
        want = expected_redirect(domain, https_port, path)
        where = f"http://{domain}:{ctx.targets.proxy.http_port}{path}"
        if response.status not in (301, 308):
            return failed(f"{where}: {response.status}, expected 301 or 308 to {want}")
        if location != want:
            return failed(f"{where}: redirects to {location!r}, expected {want!r}")
        return passed(f"{where}: {response.status} to {location}")

    yield from _each_domain(ctx, judge)


def check_unknown_host_https(ctx: Context) -> Iterator[Finding]:
    try:
        response = ctx.http.https(ctx.targets.domains.web, "/", host=UNKNOWN_HOST)
    except HandshakeError:
        yield passed(f"{UNKNOWN_HOST}: TLS refused for a name it does not serve")
        return
    except CheckError as error:
        yield failed(str(error))
        return
    if response.status == 421:
        yield passed(f"https://{UNKNOWN_HOST}/: 421")
    else:
        yield failed(f"https://{UNKNOWN_HOST}/ (SNI and Host unknown): {response.status}, expected 421")


def check_unknown_host_http(ctx: Context) -> Iterator[Finding]:
    try:
        response = ctx.http.http(UNKNOWN_HOST, "/")
    except CheckError as error:
        yield failed(str(error))
        return
    location = response.header("Location") or ""
    target = urlsplit(location).hostname if location else None
    if 300 <= response.status < 400 and target not in served_domains(ctx.targets):
        yield failed(f"http://{UNKNOWN_HOST}/: {response.status} to {location!r}: redirects a name it does not serve")
    else:
        yield passed(f"http://{UNKNOWN_HOST}/: {response.status}" + (f" to {location}" if location else ""))


# API functionality -------------------------------------------------------------------------


def _preflight(ctx: Context, origin: str) -> Response:
    api = ctx.targets.domains.api
    path = ctx.targets.health_paths.api
    headers = {"Origin": origin, "Access-Control-Request-Method": "GET"}
    return ctx.memo(("preflight", origin), lambda: ctx.http.https(api, path, "OPTIONS", headers))


def check_cors_allowed(ctx: Context) -> Iterator[Finding]:
    for origin in ctx.targets.cors_origins:
        sent = "https://verify-any-origin.invalid" if origin == "*" else origin
        try:
            response = _preflight(ctx, sent)
        except CheckError as error:
            yield failed(str(error))
            return
        allowed = response.header("Access-Control-Allow-Origin")
        if allowed == origin or (origin == "*" and allowed == sent):
            yield passed(f"OPTIONS from {sent}: {response.status}, Access-Control-Allow-Origin: {allowed}")
        else:
            yield failed(f"OPTIONS from {sent}: {response.status}, Access-Control-Allow-Origin: {allowed!r}")


def check_cors_foreign(ctx: Context) -> Iterator[Finding]:
    try:
        response = _preflight(ctx, FOREIGN_ORIGIN)
    except CheckError as error:
        yield failed(str(error))
        return
    allowed = response.header("Access-Control-Allow-Origin")
    if "*" in ctx.targets.cors_origins:
        yield passed(f"OPTIONS from {FOREIGN_ORIGIN}: every origin is allowed by the stack's config ({allowed!r})")
    elif allowed:
        yield failed(f"OPTIONS from {FOREIGN_ORIGIN}: Access-Control-Allow-Origin: {allowed}")
    else:
        yield passed(f"OPTIONS from {FOREIGN_ORIGIN}: {response.status}, no Access-Control-Allow-Origin")


def blocked_requests(targets: Targets) -> list[tuple[str, str]]:
    """(domain, path) pairs that must answer 404: the blocked paths on every domain, and their
    other spellings on the API's."""
    pairs = [(domain, path) for domain in served_domains(targets) for path in BLOCKED]
    return pairs + [(targets.domains.api, path) for path in BLOCKED_VARIANTS]


def check_blocked_paths(ctx: Context) -> Iterator[Finding]:
    served = []
    pairs = blocked_requests(ctx.targets)
    for domain, path in pairs:
        try:
            response = _get(ctx, domain, path)
        except CheckError as error:
            yield failed(str(error))
            return
        if response.status != 404:
            served.append(f"https://{domain}{path}: {response.status}")
    for line in served:
        yield failed(f"{line}, expected 404")
    if not served:
        yield passed(f"{len(pairs)} requests for /metrics, /admin, /debug, /internal (and spellings): all 404")


# performance -------------------------------------------------------------------------------


def p95(samples: Sequence[float]) -> float:
    """Nearest-rank 95th percentile."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def judge_latency(samples: Sequence[float], limit_ms: int, where: str) -> Finding:
    value = p95(samples)
    summary = f"{where}: p95 {value:.1f} ms over {len(samples)} requests (limit {limit_ms} ms)"
    return passed(summary) if value <= limit_ms else failed(summary)


def check_latency(ctx: Context) -> Iterator[Finding]:
    domain, path = ctx.targets.domains.api, ctx.targets.health_paths.api
    samples = []
    try:
        with ctx.http.session(domain) as session:
            for index in range(LATENCY_SAMPLES):
                response, elapsed = session.get(path)
                if response.status != 200:
                    yield failed(f"https://{domain}{path}: request {index + 1} answered {response.status}")
                    return
                samples.append(elapsed)
    except CheckError as error:
        yield failed(str(error))
        return
    yield judge_latency(samples, ctx.targets.p95_latency_ms, f"https://{domain}{path}")


def rate_limit_budget(burst: int) -> int:
    """How many requests the probe may send: the burst, the one the rate allows, and a margin
    for what the bucket drains meanwhile."""
    return burst + 1 + max(10, burst // 2)


def check_rate_limit(ctx: Context) -> Iterator[Finding]:
    domain, path = ctx.targets.domains.web, ctx.targets.health_paths.web
    budget = rate_limit_budget(ctx.targets.rate_limit.burst)
    statuses: dict[int, int] = {}
    try:
        with ctx.http.session(domain) as session:
            for index in range(budget):
                response, _ = session.get(path)
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status == 429:
                    yield passed(
                        f"https://{domain}{path}: 429 after {index + 1} requests (burst {ctx.targets.rate_limit.burst})"
                    )
                    return
    except CheckError as error:
        yield failed(str(error))
        return
    seen = ", ".join(f"{count}x {status}" for status, count in sorted(statuses.items()))
    yield failed(f"https://{domain}{path}: no 429 in {budget} requests ({seen})")


# monitoring stack (through the proxy) ------------------------------------------------------


def check_grafana_via_proxy(ctx: Context) -> Iterator[Finding]:
    domain = ctx.targets.domains.grafana
    try:
        response = _get(ctx, domain, "/api/health")
    except CheckError as error:
        yield failed(str(error))
        return
    where = f"https://{domain}/api/health"
    if response.status != 200:
        yield failed(f"{where}: {response.status}, expected 200")
        return
    try:
        database = json.loads(response.body).get("database")
    except (ValueError, AttributeError):
        database = None
    if database == "ok":
        yield passed(f"{where}: 200, database ok")
    else:
        yield failed(f"{where}: 200 but database is {database!r}, expected 'ok'")
