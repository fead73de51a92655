"""A fake Docker Engine API on 127.0.0.1 serving recorded responses of the staging stack.

It answers the endpoints `preflight verify` uses, shaped like Engine API v1.47 answers:
/version, /containers/json (with label filters), /containers/{id}/json, /containers/{id}/logs
(multiplexed stream), /networks, /networks/{id}, /volumes, and exec create/start/inspect, where
the start answer streams Docker's multiplexed frames and the command's output comes from a
handler the test chooses. Tests change the recorded documents to break the stack.
"""

from __future__ import annotations

import http.server
import itertools
import json
import re
import struct
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ExecHandler = Callable[[str, list[str]], tuple[int, bytes, bytes]]


def frame(stream: int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stream: stream (1 stdout, 2 stderr), 3 zero bytes, length."""
    return struct.pack(">BxxxL", stream, len(data)) + data


class FakeEngine:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.version = self._load("version.json")
        self.containers: list[dict[str, Any]] = self._load("containers.json")
        self.networks: list[dict[str, Any]] = self._load("networks.json")
        self.volumes: list[dict[str, Any]] = self._load("volumes.json")["Volumes"]
        self.exec_handler: ExecHandler = self.stack_exec
        self.execs: list[tuple[str, list[str]]] = []
        self._exec_state: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _load(self, name: str) -> Any:
        return json.loads((self.data / name).read_text())

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeEngine:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # The recorded objects -------------------------------------------------------------------

    def container(self, name: str) -> dict[str, Any]:
        return next(c for c in self.containers if c["Name"] == "/" + name)

    def network(self, name: str) -> dict[str, Any]:
        return next(n for n in self.networks if n["Name"] == name)

    def find(self, ref: str) -> dict[str, Any] | None:
        for c in self.containers:
            if ref in (c["Id"], c["Name"].lstrip("/")) or (len(ref) >= 12 and c["Id"].startswith(ref)):
                return c
        return None

    def stack_exec(self, container: str, argv: list[str]) -> tuple[int, bytes, bytes]:
        """What the stack's containers answer to the probes verify runs over exec."""
        if argv[0] == "wget" and argv[-1].endswith("/api/v1/targets?state=active"):
            return 0, (self.data / "prometheus-targets.json").read_bytes(), b""
        if argv[0] == "wget" and argv[-1].endswith("/api/v1/rules"):
            return 0, (self.data / "prometheus-rules.json").read_bytes(), b""
        if argv[0] == "wget" and argv[-1].endswith(":3000/api/health"):
            return 0, (self.data / "grafana-health.json").read_bytes(), b""
        if argv[:4] == ["temporal", "operator", "cluster", "health"]:
            return 0, b"SERVING\n", b""
        if argv[0] == "python3" and "create_connection" in argv[2]:
            return 0, b"connected\n", b""
        return 126, b"", f"OCI runtime exec failed: {argv[0]}: not faked\n".encode()

    # The API -------------------------------------------------------------------------------

    def _summary(self, c: dict[str, Any]) -> dict[str, Any]:
        state = c["State"]
        health = state.get("Health", {}).get("Status")
        status = "Up 2 hours" + (f" ({health})" if health else "") if state["Running"] else "Exited (0) 2 hours ago"
        created = int(datetime.fromisoformat(c["Created"].replace("Z", "+00:00")[:26] + "+00:00").timestamp())
        ports = [
            {"IP": b["HostIp"], "PrivatePort": int(p.split("/")[0]), "PublicPort": int(b["HostPort"]), "Type": "tcp"}
            for p, bindings in (c["NetworkSettings"]["Ports"] or {}).items()
            for b in bindings or []
        ]
        return {
            "Id": c["Id"],
            "Names": [c["Name"]],
            "Image": c["Config"]["Image"],
            "ImageID": c["Image"],
            "Command": " ".join([c["Path"], *c["Args"]]),
            "Created": created,
            "Ports": ports,
            "Labels": c["Config"]["Labels"],
            "State": state["Status"],
            "Status": status,
            "HostConfig": {"NetworkMode": c["HostConfig"]["NetworkMode"]},
            "NetworkSettings": {"Networks": c["NetworkSettings"]["Networks"]},
            "Mounts": c["Mounts"],
        }

    def _list(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        filters = json.loads(query.get("filters", ["{}"])[0])
        wanted = [label.split("=", 1) for label in filters.get("label", [])]
        found = []
        for c in self.containers:
            labels = c["Config"]["Labels"] or {}
            if query.get("all", ["0"])[0] not in ("1", "true", "True") and not c["State"]["Running"]:
                continue
            if all(labels.get(k[0]) == k[1] if len(k) == 2 else k[0] in labels for k in wanted):
                found.append(self._summary(c))
        return found

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        engine = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "Docker/27.5.1 (linux)"
            disable_nagle_algorithm = True
            sys_version = ""

            def log_message(self, *_: object) -> None:
                pass

            def _json(self, status: int, document: Any) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Api-Version", engine.version["ApiVersion"])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _missing(self, what: str, ref: str) -> None:
                self._json(404, {"message": f"No such {what}: {ref}"})

            def _route(self) -> tuple[str, dict[str, list[str]]]:
                parts = urlsplit(self.path)
                return re.sub(r"^/v1\.\d+", "", parts.path), parse_qs(parts.query)

            def do_GET(self) -> None:
                path, query = self._route()
                if path == "/version":
                    return self._json(200, engine.version)
                if path == "/containers/json":
                    return self._json(200, engine._list(query))
                if m := re.fullmatch(r"/containers/([^/]+)/json", path):
                    c = engine.find(m[1])
                    return self._json(200, c) if c else self._missing("container", m[1])
                if m := re.fullmatch(r"/containers/([^/]+)/logs", path):
                    return self._logs(m[1])
                if path == "/networks":
                    return self._json(200, [{**n, "Containers": {}} for n in engine.networks])
                if m := re.fullmatch(r"/networks/([^/]+)", path):
                    n = next((n for n in engine.networks if m[1] in (n["Id"], n["Name"])), None)
                    return self._json(200, n) if n else self._missing("network", m[1])
                if path == "/volumes":
                    return self._json(200, {"Volumes": engine.volumes, "Warnings": None})
                if m := re.fullmatch(r"/exec/([^/]+)/json", path):
                    state = engine._exec_state.get(m[1])
                    return self._json(200, state) if state else self._missing("exec instance", m[1])
                return self._json(404, {"message": "page not found"})

            def do_POST(self) -> None:
                path, _ = self._route()
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if m := re.fullmatch(r"/containers/([^/]+)/exec", path):
                    c = engine.find(m[1])
                    if c is None:
                        return self._missing("container", m[1])
                    if not c["State"]["Running"]:
                        return self._json(409, {"message": f"container {c['Id']} is not running"})
                    exec_id = f"{next(engine._ids):064x}"
                    argv = list(body["Cmd"])
                    engine._exec_state[exec_id] = {
                        "CanRemove": False,
                        "ContainerID": c["Id"],
                        "DetachKeys": "",
                        "ExitCode": None,
                        "ID": exec_id,
                        "OpenStderr": bool(body.get("AttachStderr")),
                        "OpenStdin": False,
                        "OpenStdout": bool(body.get("AttachStdout")),
                        "ProcessConfig": {
                            "arguments": argv[1:],
                            "entrypoint": argv[0],
                            "privileged": False,
                            "tty": False,
                            "user": "",
                        },
                        "Running": False,
                        "Pid": 0,
                        "_name": c["Name"].lstrip("/"),
                        "_argv": argv,
                    }
                    return self._json(201, {"Id": exec_id})
                if m := re.fullmatch(r"/exec/([^/]+)/start", path):
                    return self._exec_start(m[1])
                return self._json(404, {"message": "page not found"})

            def _exec_start(self, exec_id: str) -> None:
                state = engine._exec_state.get(exec_id)
                if state is None:
                    return self._missing("exec instance", exec_id)
                name, argv = state.pop("_name"), state.pop("_argv")
                engine.execs.append((name, argv))
                code, out, err = engine.exec_handler(name, argv)
                state.update(ExitCode=code, Pid=31337)
                # The Engine hijacks the connection: headers, then frames until the process ends.
                if "Upgrade" in self.headers:
                    self.send_response(101, "UPGRADED")
                    self.send_header("Content-Type", "application/vnd.docker.multiplexed-stream")
                    self.send_header("Connection", "Upgrade")
                    self.send_header("Upgrade", "tcp")
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/vnd.docker.raw-stream")
                self.end_headers()
                self.wfile.write((frame(1, out) if out else b"") + (frame(2, err) if err else b""))
                self.close_connection = True

            def _logs(self, ref: str) -> None:
                c = engine.find(ref)
                if c is None:
                    return self._missing("container", ref)
                if c["HostConfig"]["LogConfig"]["Type"] == "none":
                    return self._json(501, {"message": "configured logging driver does not support reading"})
                body = frame(1, b"2025-11-26 10:41:33 ready\n") + frame(2, b"warning: nothing to see\n")
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.docker.multiplexed-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
