"""HTTP(S) to the stack's reverse proxy, the way a browser reaches it.

Requests go to ``--address`` when given (DNS may not point at the host from CI), otherwise to the
domain itself; either way the TLS handshake sends the domain as SNI and the request its Host.
Every connect, handshake and read is bounded by the timeout.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import warnings
from dataclasses import dataclass
from email.message import Message

from preflight.verify.context import CheckError
from preflight.verify.targets import Targets

BODY_LIMIT = 256 * 1024
TLS_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
PROTOCOL_NAME = {"1.0": "TLSv1", "1.1": "TLSv1.1", "1.2": "TLSv1.2", "1.3": "TLSv1.3"}  # SSLSocket.version()
_HELLO_VERSION = {"1.0": b"\x03\x01", "1.1": b"\x03\x02"}


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def host_header(domain: str, port: int, default: int) -> str:
    return domain if port == default else f"{domain}:{port}"


def client_context(low: ssl.TLSVersion, high: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context that does not judge the certificate: the certificate check does that,
    once, and every other check still reports what it sees."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        # Offering TLS 1.0/1.1 is the point of the checks that they are refused.
        warnings.simplefilter("ignore", DeprecationWarning)
        if low < ssl.TLSVersion.TLSv1_2:
            # OpenSSL 3 offers TLS 1.0/1.1 only at security level 0.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = low
        context.maximum_version = high or ssl.TLSVersion.MAXIMUM_SUPPORTED
    return context


def can_offer(version: str) -> str | None:
    """None if this machine's OpenSSL can send a ClientHello for ``version`` (1.0 or 1.1), else
    why not. Decided offline: the hello is written into memory, never sent."""
    tls = TLS_VERSIONS[version]
    try:
        context = client_context(tls, tls)
        hello_out = ssl.MemoryBIO()
        connection = context.wrap_bio(ssl.MemoryBIO(), hello_out, server_hostname="offer.invalid")
        connection.do_handshake()
    except ssl.SSLWantReadError:
        hello = hello_out.read()
        # record header (5 bytes), handshake type and length (4), then client_version
        if len(hello) > 10 and hello[0] == 0x16 and hello[5] == 0x01 and hello[9:11] == _HELLO_VERSION[version]:
            return None
        return f"the local OpenSSL ({ssl.OPENSSL_VERSION}) did not write a TLS {version} ClientHello"
    except (ssl.SSLError, ValueError) as error:
        return f"the local OpenSSL ({ssl.OPENSSL_VERSION}) cannot offer TLS {version}: {error}"
    return f"the local OpenSSL ({ssl.OPENSSL_VERSION}) did not start a TLS {version} handshake"


def exchange(connection: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str]) -> Response:
    """Send one request and read its answer (at most BODY_LIMIT bytes of body; a longer body
    ends the connection, so a kept-alive one never carries the rest into the next answer)."""
    connection.request(method, path, headers=headers)
    response = connection.getresponse()
    body = response.read(BODY_LIMIT)
    if not response.isclosed():
        connection.close()
    return Response(response.status, response.msg, body)


class HandshakeError(CheckError):
    """TCP connected, TLS did not complete."""


class ProxyClient:
    """HTTP(S) to the stack's proxy, one bounded request at a time."""

    def __init__(self, targets: Targets, address: str | None, timeout: float, ca_pem: str | None) -> None:
        self.targets = targets
        self.address = address
        self.timeout = timeout
        self.ca_pem = ca_pem
        self._dead: dict[tuple[str, int], str] = {}

    def target(self, domain: str) -> str:
        return self.address or domain

    def connect(self, domain: str, port: int) -> socket.socket:
        """A TCP connection to the proxy; a refusal is remembered, later calls fail at once."""
        host = self.target(domain)
        key = (host, port)
        if key in self._dead:
            raise CheckError(self._dead[key])
        try:
            return socket.create_connection((host, port), timeout=self.timeout)
        except OSError as error:
            reason = "no answer" if isinstance(error, TimeoutError) else (error.strerror or str(error))
            kind = "HTTPS" if port == self.targets.proxy.https_port else "HTTP"
            message = f"cannot connect to {host}:{port} (the proxy's {kind} port): {reason}"
            self._dead[key] = message
            raise CheckError(message) from None

    def tls(self, domain: str, context: ssl.SSLContext, sni: str | None = None) -> ssl.SSLSocket:
        raw = self.connect(domain, self.targets.proxy.https_port)
        try:
            return context.wrap_socket(raw, server_hostname=sni or domain)
        except BaseException:
            raw.close()
            raise

    def https(
        self,
        domain: str,
        path: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        host: str | None = None,
    ) -> Response:
        """One request on a fresh TLS connection (SNI and Host: ``host`` or ``domain``)."""
        name = host or domain
        port = self.targets.proxy.https_port
        where = f"https://{name}:{port}{path}"
        try:
            sock = self.tls(domain, client_context(ssl.TLSVersion.TLSv1_2), sni=name)
        except ssl.SSLError as error:
            raise HandshakeError(f"{where}: TLS handshake failed: {error.reason or error}") from None
        except OSError as error:
            raise HandshakeError(f"{where}: TLS handshake failed: {error}") from None
        connection = http.client.HTTPConnection(name, port, timeout=self.timeout)
        connection.sock = sock
        try:
            return exchange(connection, method, path, {"Host": host_header(name, port, 443), **(headers or {})})
        except (OSError, http.client.HTTPException) as error:
            raise CheckError(f"{where}: {type(error).__name__}: {error}") from None
        finally:
            connection.close()

    def http(self, host: str, path: str) -> Response:
        """One plain-HTTP request to the proxy's HTTP port with ``Host: host``."""
        port = self.targets.proxy.http_port
        # Without --address, a name the stack does not serve is sent to the web domain's address.
        sock = self.connect(host if host in served_domains(self.targets) else self.targets.domains.web, port)
        connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
        connection.sock = sock
        try:
            return exchange(connection, "GET", path, {"Host": host_header(host, port, 80)})
        except (OSError, http.client.HTTPException) as error:
            raise CheckError(f"http://{host}:{port}{path}: {type(error).__name__}: {error}") from None
        finally:
            connection.close()

    def session(self, domain: str) -> KeepAlive:
        return KeepAlive(self, domain)


class KeepAlive:
    """Sequential requests on one kept-alive TLS connection (reopened if the server closes it),
    so latency samples and the rate-limit probe measure requests, not handshakes."""

    def __init__(self, client: ProxyClient, domain: str) -> None:
        self.client = client
        self.domain = domain
        self.connection: http.client.HTTPConnection | None = None

    def get(self, path: str) -> tuple[Response, float]:
        """The response and its time in milliseconds (request sent to body read)."""
        port = self.client.targets.proxy.https_port
        for attempt in (1, 2):
            if self.connection is None:
                try:
                    sock = self.client.tls(self.domain, client_context(ssl.TLSVersion.TLSv1_2))
                except OSError as error:
                    raise CheckError(f"https://{self.domain}:{port}: TLS handshake failed: {error}") from None
                self.connection = http.client.HTTPConnection(self.domain, port, timeout=self.client.timeout)
                self.connection.sock = sock
            try:
                start = time.perf_counter()
                response = exchange(self.connection, "GET", path, {"Host": host_header(self.domain, port, 443)})
                elapsed = (time.perf_counter() - start) * 1000
            except (OSError, http.client.HTTPException) as error:
                self.close()
                if attempt == 2:
                    raise CheckError(f"https://{self.domain}:{port}{path}: {type(error).__name__}: {error}") from None
                continue
            if self.connection.sock is None:  # the server closed it, or the body was cut short
                self.close()
            return response, elapsed
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def __enter__(self) -> KeepAlive:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def served_domains(targets: Targets) -> list[str]:
    return [targets.domains.web, targets.domains.api, targets.domains.grafana]
