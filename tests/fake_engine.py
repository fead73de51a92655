"""A fake Docker Engine API on 127.0.0.1 serving recorded responses of the staging stack.

It answers the endpoints `preflight verify` uses, shaped like Engine API v1.47 answers:
/version, /containers/json (with label filters), /containers/{id}/json, /containers/{id}/logs
(multiplexed stream), /networks, /networks/{id}, /volumes, and exec create/start/inspect, where
the start answer streams Docker's multiplexed frames and the command's output comes from a
handler the test chooses. Tests change the recorded documents to break the stack.

The default exec handler answers the probes as the recorded stack would: a program the image
lacks cannot run; a name resolves only on the networks the container shares with the target
(its container name, aliases, DNS names), an address is reachable only on a shared network; and
a connection succeeds only where something listens (Temporal's frontend on its fixed address
alone, as the program configures it).
"""

from __future__ import annotations

import copy
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

from preflight.verify import probes

ExecHandler = Callable[[str, list[str]], tuple[int, bytes, bytes]]


# The programs on each image's PATH that the probes may ask for, by image repository.
IMAGE_PROGRAMS: dict[str, frozenset[str]] = {
    "postgres": frozenset({"bash", "sh", "env", "psql", "pg_isready"}),
    "stagecraft/ops": frozenset({"bash", "sh", "env", "psql", "pg_isready", "python3", "redis-cli"}),
    "redis": frozenset({"bash", "sh", "env", "redis-cli"}),
    # A Rust server on a slim base: bash and grep, no python, curl or wget.
    "chromadb/chroma": frozenset({"bash", "sh", "grep", "chroma"}),
    # Alpine with bash and the temporal CLI.
    "temporalio/server": frozenset({"bash", "sh", "wget", "temporal", "temporal-server"}),
    "temporalio/admin-tools": frozenset({"bash", "sh", "temporal", "tctl"}),
    "temporalio/ui": frozenset({"sh", "wget"}),
    "nginx": frozenset({"sh", "wget", "nginx"}),
    "prom/prometheus": frozenset({"sh", "wget", "promtool"}),
    "prom/alertmanager": frozenset({"sh", "wget", "amtool"}),
    "prom/node-exporter": frozenset({"sh", "wget"}),
    "quay.io/prometheuscommunity/postgres-exporter": frozenset({"sh", "wget"}),
    "oliver006/redis_exporter": frozenset({"sh", "wget"}),
    "nginx/nginx-prometheus-exporter": frozenset(),  # FROM scratch: the exporter binary alone
    "grafana/grafana": frozenset({"bash", "sh", "wget"}),
    "ghcr.io/acme/api": frozenset({"bash", "sh", "python3", "curl"}),
    "ghcr.io/acme/web": frozenset({"bash", "sh", "node", "curl"}),
}
# What listens, by service label: port -> "*" (every address of the container, loopback too),
# "fixed" (only the address the container was given on a network, as Temporal's frontend) or
# "loopback" (127.0.0.1 only: a server that is misconfigured for a container). Tests may change
# a FakeEngine's own copy.
LISTENERS: dict[str, dict[int, str]] = {
    "postgres": {5432: "*"},
    "redis": {6379: "*"},
    "chroma": {8000: "*"},
    "temporal": {7233: "fixed", 9090: "*"},
    "api": {8001: "*"},
    "prometheus": {9090: "*"},
    "grafana": {3000: "*"},
}
LOOPBACK = ("127.0.0.1", "localhost")


def _repository(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: -(len(last) - last.index(":"))] if ":" in last else name


def _is_ip(host: str) -> bool:
    return re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3}){3}", host) is not None


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
        self.listeners = copy.deepcopy(LISTENERS)
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

    # The stack's answers to probes --------------------------------------------------------

    def programs(self, container: dict[str, Any]) -> frozenset[str]:
        return IMAGE_PROGRAMS.get(_repository(container["Config"]["Image"]), frozenset())

    def _endpoints(self, container: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The container's live attachments (a stopped container has no address)."""
        if not container["State"]["Running"]:
            return {}
        networks = container["NetworkSettings"]["Networks"] or {}
        return {name: e for name, e in networks.items() if e and e.get("IPAddress")}

    def resolve(self, source: dict[str, Any], host: str) -> tuple[dict[str, Any], str] | None:
        """The container and address ``host`` reaches from ``source``: loopback is the source
        itself; a name or an address only on a network both are attached to."""
        if host in LOOPBACK:
            return source, "127.0.0.1"
        for network in sorted(self._endpoints(source)):
            for target in self.containers:
                endpoint = self._endpoints(target).get(network)
                if endpoint is None:
                    continue
                names = {
                    target["Name"].lstrip("/"),
                    *(endpoint.get("Aliases") or []),
                    *(endpoint.get("DNSNames") or []),
                }
                if host == endpoint["IPAddress"] or (not _is_ip(host) and host in names):
                    return target, endpoint["IPAddress"]
        return None

    def connect(self, source: dict[str, Any], host: str, port: int) -> str | None:
        """None if a connection from ``source`` to ``host:port`` succeeds, else why not."""
        found = self.resolve(source, host)
        if found is None:
            return "Connection timed out" if _is_ip(host) else "Name or service not known"
        target, address = found
        bind = self.listeners.get(target["Config"]["Labels"].get("service", ""), {}).get(port)
        fixed = {
            (e.get("IPAMConfig") or {}).get("IPv4Address") for e in target["NetworkSettings"]["Networks"].values() if e
        }
        if bind == "*" or (bind == "fixed" and address in fixed) or (bind == "loopback" and address in LOOPBACK):
            return None
        return "Connection refused"

    def stack_exec(self, name: str, argv: list[str]) -> tuple[int, bytes, bytes]:
        """What the stack's containers answer to the probes verify runs over exec."""
        container = self.find(name)
        assert container is not None, name
        if argv[0] not in self.programs(container):
            return (
                126,
                b"",
                f"OCI runtime exec failed: exec failed: unable to start container process: exec: "
                f'"{argv[0]}": executable file not found in $PATH: unknown\n'.encode(),
            )
        if argv[0] == "wget":
            url = urlsplit(argv[-1])
            refused = self.connect(container, url.hostname or "", url.port or 80)
            if refused:
                return 1, b"", f"wget: can't connect to remote host: {refused}\n".encode()
            documents = {
                "/api/v1/targets": "prometheus-targets.json",
                "/api/v1/rules": "prometheus-rules.json",
                "/api/health": "grafana-health.json",
            }
            if url.path in documents:
                return 0, (self.data / documents[url.path]).read_bytes(), b""
            return 1, b"", b"wget: server returned error: HTTP/1.1 404 Not Found\n"
        if argv[:4] == ["temporal", "operator", "cluster", "health"]:
            host, _, port = argv[argv.index("--address") + 1].rpartition(":")
            refused = self.connect(container, host, int(port))
            if refused:
                return 1, b"", f"Error: unable to health check: dial tcp {host}:{port}: {refused.lower()}\n".encode()
            return 0, b"SERVING\n", b""
        if argv[0] == "python3" and "create_connection" in argv[2]:
            refused = self.connect(container, argv[3], int(argv[4]))
            if refused:
                return 1, b"", f"OSError: [Errno 111] {refused}\n".encode()
            return 0, b"connected\n", b""
        if argv[0] == "bash" and argv[2] in (probes.BASH_TCP_CONNECT, probes.BASH_HTTP_GET):
            host, port = argv[4], int(argv[5])
            refused = self.connect(container, host, port)
            if refused:
                return 7, b"", f"bash: connect: {refused}\nbash: line 1: /dev/tcp/{host}/{port}: {refused}\n".encode()
            if argv[2] == probes.BASH_TCP_CONNECT:
                return 0, b"connected\n", b""
            target, _ = self.resolve(container, host) or (container, "")
            if target["Config"]["Labels"].get("service") == "chroma" and argv[6] == "/api/v2/heartbeat":
                return 0, (self.data / "chroma-heartbeat.http").read_bytes(), b""
            return 0, b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", b""
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
