"""Healthcheck commands for images with different tools inside."""

from __future__ import annotations

from collections.abc import Sequence


def wget_check(port: int, path: str) -> list[str]:
    """Healthcheck for images that ship wget but no curl: an HTTP 2xx from the service itself."""
    return ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{path}"]


def http_check(port: int, path: str, command: Sequence[str] | None) -> list[str]:
    """The application images' healthcheck: the configured command, else curl on the health path."""
    if command:
        return ["CMD", *command]
    return ["CMD", "curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{port}{path}"]
