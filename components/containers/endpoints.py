"""What services publish to each other through the composition: where they listen, and where
Prometheus scrapes them. A service never imports another service; it takes these as inputs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """Where a service listens inside the stack's networks: its container name and port."""

    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str = "", scheme: str = "http") -> str:
        return f"{scheme}://{self.address}{path}"


@dataclass(frozen=True)
class ScrapeTarget:
    """A Prometheus scrape job: one service's metrics endpoint."""

    job: str
    address: str  # host:port
    metrics_path: str = "/metrics"
