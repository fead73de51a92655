"""The public URLs of a stack."""

from __future__ import annotations


def https_url(domain: str, port: int) -> str:
    """`https://<domain>`, with the port when it is not 443."""
    return f"https://{domain}" if port == 443 else f"https://{domain}:{port}"
