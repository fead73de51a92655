"""ChromaDB: config and a healthcheck that works without curl, tried against a real listener."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator

import pytest
import yaml

from components.services.chroma import HEARTBEAT, heartbeat_check, render_chroma_config


def test_config_persists_to_data_and_forbids_reset() -> None:
    config = yaml.safe_load(render_chroma_config())
    assert config == {"port": 8000, "listen_address": "0.0.0.0", "persist_path": "/data", "allow_reset": False}


def _server(status: int, body: bytes) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == HEARTBEAT
            self.send_response(status if ok else 404)
            self.end_headers()
            self.wfile.write(body if ok else b"")

        def log_message(self, *_: object) -> None:
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def serve() -> Iterator[callable]:
    servers = []

    def start(status: int, body: bytes) -> int:
        server = _server(status, body)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _run(port: int) -> int:
    command = heartbeat_check(port)
    assert command[:2] == ["CMD", "bash"] and "curl" not in command[-1] and "wget" not in command[-1]
    return subprocess.run(command[1:], timeout=10, capture_output=True).returncode


def test_healthcheck_passes_on_a_heartbeat(serve: callable) -> None:
    assert _run(serve(200, b'{"nanosecond heartbeat": 1732445000000000000}')) == 0


def test_healthcheck_fails_when_the_server_is_not_chroma_v2(serve: callable) -> None:
    assert _run(serve(410, b'{"error": "Unimplemented"}')) != 0


def test_healthcheck_fails_when_nothing_listens() -> None:
    from conftest import free_port

    assert _run(free_port()) != 0
