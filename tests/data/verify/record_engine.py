"""Record the Docker Engine answers the verify tests replay, from the program's own plans.

    venv/bin/python tests/data/verify/record_engine.py

rewrites tests/data/verify/engine/{containers,networks,volumes,prometheus-targets,
prometheus-rules}.json and tests/data/verify/outputs-staging.json (its CA certificate kept): the
staging plan's containers, networks and volumes as `docker inspect` shows them once deployed
(files carriers created, jobs exited 0, services running and healthy), plus the prod stack's
Postgres on its own network as the foreign container on the same host. What an image brings
(entrypoint, environment, exposed ports, VOLUMEs that become anonymous volumes) comes from the
table below; everything the program sets comes from the plan. Run it after changing the program
when test_the_recorded_engine_mirrors_the_staging_plan fails, and review the diff.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from preflight.engine import Plan, PlannedResource, plan  # noqa: E402

OUT = ROOT / "tests" / "data" / "verify" / "engine"

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PG_ENV = [
    f"PATH={BASE_PATH}:/usr/lib/postgresql/15/bin",
    "GOSU_VERSION=1.17",
    "LANG=en_US.utf8",
    "PG_MAJOR=15",
    "PG_VERSION=15.12-1.pgdg120+1",
    "PGDATA=/var/lib/postgresql/data",
]
# What each image brings (its Dockerfile's ENTRYPOINT, CMD, ENV, EXPOSE, VOLUME, WORKDIR).
IMAGES: dict[str, dict[str, Any]] = {
    "postgres": dict(
        entrypoint=["docker-entrypoint.sh"],
        cmd=["postgres"],
        env=PG_ENV,
        expose=["5432/tcp"],
        volumes=["/var/lib/postgresql/data"],
        workdir="/",
    ),
    "stagecraft/ops": dict(
        entrypoint=["/opt/ops/bin/python", "-m", "stagecraft_ops"],
        cmd=["serve"],
        env=[
            f"PATH=/usr/lib/postgresql/15/bin:{BASE_PATH}:/usr/lib/postgresql/15/bin",
            *PG_ENV[1:],
            "PYTHONDONTWRITEBYTECODE=1",
            "PYTHONUNBUFFERED=1",
            "PYTHONPATH=/opt/ops/app",
        ],
        expose=["5432/tcp"],
        volumes=["/var/lib/postgresql/data"],
        workdir="/",
    ),
    "redis": dict(
        entrypoint=["docker-entrypoint.sh"],
        cmd=["redis-server"],
        env=[f"PATH={BASE_PATH}", "GOSU_VERSION=1.17", "REDIS_VERSION=7.4.2"],
        expose=["6379/tcp"],
        volumes=["/data"],
        workdir="/data",
    ),
    "chromadb/chroma": dict(
        entrypoint=["chroma"],
        cmd=["run", "/config.yaml"],
        env=[f"PATH={BASE_PATH}"],
        expose=["8000/tcp"],
        volumes=[],
        workdir="/",
    ),
    "temporalio/server": dict(
        entrypoint=["/etc/temporal/entrypoint.sh"],
        cmd=[],
        env=[f"PATH={BASE_PATH}", "TEMPORAL_HOME=/etc/temporal"],
        expose=["6933/tcp", "6934/tcp", "6935/tcp", "6939/tcp", "7233/tcp", "7234/tcp", "7235/tcp", "7239/tcp"],
        volumes=[],
        workdir="/etc/temporal",
    ),
    "temporalio/admin-tools": dict(
        entrypoint=["tini", "--", "sleep", "infinity"],
        cmd=[],
        env=[f"PATH={BASE_PATH}"],
        expose=[],
        volumes=[],
        workdir="/etc/temporal",
    ),
    "temporalio/ui": dict(
        entrypoint=["./start-ui-server.sh"],
        cmd=[],
        env=[f"PATH={BASE_PATH}"],
        expose=["8080/tcp"],
        volumes=[],
        workdir="/home/ui-server",
    ),
    "nginx": dict(
        entrypoint=["/docker-entrypoint.sh"],
        cmd=["nginx", "-g", "daemon off;"],
        env=[
            f"PATH={BASE_PATH}",
            "NGINX_VERSION=1.27.4",
            "PKG_RELEASE=1",
            "DYNPKG_RELEASE=1",
            "NJS_VERSION=0.8.9",
            "NJS_RELEASE=1",
        ],
        expose=["80/tcp"],
        volumes=[],
        workdir="/",
    ),
    "prom/prometheus": dict(
        entrypoint=["/bin/prometheus"],
        cmd=["--config.file=/etc/prometheus/prometheus.yml"],
        env=[f"PATH={BASE_PATH}"],
        expose=["9090/tcp"],
        volumes=["/prometheus"],
        workdir="/prometheus",
    ),
    "prom/alertmanager": dict(
        entrypoint=["/bin/alertmanager"],
        cmd=["--config.file=/etc/alertmanager/alertmanager.yml"],
        env=[f"PATH={BASE_PATH}"],
        expose=["9093/tcp"],
        volumes=["/alertmanager"],
        workdir="/alertmanager",
    ),
    "prom/node-exporter": dict(
        entrypoint=["/bin/node_exporter"],
        cmd=[],
        env=[f"PATH={BASE_PATH}"],
        expose=["9100/tcp"],
        volumes=[],
        workdir="/",
    ),
    "quay.io/prometheuscommunity/postgres-exporter": dict(
        entrypoint=["/bin/postgres_exporter"],
        cmd=[],
        env=[f"PATH={BASE_PATH}"],
        expose=["9187/tcp"],
        volumes=[],
        workdir="/",
    ),
    "oliver006/redis_exporter": dict(
        entrypoint=["/redis_exporter"],
        cmd=[],
        env=[f"PATH={BASE_PATH}"],
        expose=["9121/tcp"],
        volumes=[],
        workdir="/",
    ),
    "nginx/nginx-prometheus-exporter": dict(
        entrypoint=["/usr/bin/nginx-prometheus-exporter"],
        cmd=[],
        env=[f"PATH={BASE_PATH}"],
        expose=["9113/tcp"],
        volumes=[],
        workdir="/",
    ),
    "grafana/grafana": dict(
        entrypoint=["/run.sh"],
        cmd=[],
        env=[
            f"PATH=/usr/share/grafana/bin:{BASE_PATH}",
            "GF_PATHS_CONFIG=/etc/grafana/grafana.ini",
            "GF_PATHS_DATA=/var/lib/grafana",
            "GF_PATHS_HOME=/usr/share/grafana",
            "GF_PATHS_LOGS=/var/log/grafana",
            "GF_PATHS_PLUGINS=/var/lib/grafana/plugins",
            "GF_PATHS_PROVISIONING=/etc/grafana/provisioning",
        ],
        expose=["3000/tcp"],
        volumes=[],
        workdir="/usr/share/grafana",
    ),
    "ghcr.io/acme/api": dict(
        entrypoint=[],
        cmd=["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8001"],
        env=[
            f"PATH={BASE_PATH}",
            "LANG=C.UTF-8",
            "GPG_KEY=7169605F62C751356D054A26A821E680E5FA6305",
            "PYTHON_VERSION=3.12.8",
        ],
        expose=["8001/tcp"],
        volumes=[],
        workdir="/app",
    ),
    "ghcr.io/acme/web": dict(
        entrypoint=["docker-entrypoint.sh"],
        cmd=["node", "server.js"],
        env=[f"PATH={BASE_PATH}", "NODE_VERSION=22.12.0", "YARN_VERSION=1.22.22"],
        expose=["3000/tcp"],
        volumes=[],
        workdir="/app",
    ),
}


def digest(*parts: str) -> str:
    """A stable 64-hex-digit id (container, network, endpoint ids) from names."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def repository(image: str) -> str:
    """`quay.io/org/name:tag` -> `quay.io/org/name`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: -(len(last) - last.index(":"))] if ":" in last else name


def duration_ns(value: str | None) -> int:
    """A Go-style duration of the plan ("30s", "5m") in nanoseconds, as the Engine reports it."""
    if not value:
        return 0
    units = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    for unit in ("ms", "s", "m", "h"):
        if value.endswith(unit) and value[: -len(unit)].isdigit():
            return int(value[: -len(unit)]) * units[unit]
    raise ValueError(value)


def stamp(minute: int, second: float = 0.0) -> str:
    """A creation time on the recording's morning."""
    return f"2025-11-26T09:{minute:02d}:{second:012.9f}Z"


def labels(resource: PlannedResource) -> dict[str, str]:
    """A planned resource's labels as the Engine reports them."""
    return {item["label"]: item["value"] for item in resource.inputs.get("labels") or []}


class Host:
    """One Docker host: networks with address allocation, volumes, containers."""

    def __init__(self) -> None:
        self.networks: dict[str, dict[str, Any]] = {}
        self.next_ip: dict[str, int] = {}
        # Fixed addresses the program assigns: never handed out to another container.
        self.reserved: set[str] = set()
        self.volumes: list[dict[str, Any]] = []
        self.containers: list[dict[str, Any]] = []
        self.clock = 0

    def tick(self) -> str:
        self.clock += 1
        return stamp(13 + self.clock // 60, (self.clock % 60) + 0.123456789)

    def add_network(self, resource: PlannedResource) -> None:
        i = resource.inputs
        name = i["name"]
        config = [{"Subnet": c["subnet"], "Gateway": c["gateway"]} for c in i.get("ipamConfigs") or []]
        self.networks[name] = {
            "Name": name,
            "Id": digest("network", name),
            "Created": stamp(13, 41.270195327),
            "Scope": "local",
            "Driver": i.get("driver") or "bridge",
            "EnableIPv4": True,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {}, "Config": config},
            "Internal": bool(i.get("internal")),
            "Attachable": bool(i.get("attachable")),
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": {},
            "Options": dict(i.get("options") or {}),
            "Labels": labels(resource),
        }
        self.next_ip[name] = 2

    def builtin_networks(self) -> None:
        for name, driver, subnet in (
            ("bridge", "bridge", "172.17.0.0/16"),
            ("host", "host", None),
            ("none", "null", None),
        ):
            self.networks[name] = {
                "Name": name,
                "Id": digest("network", name),
                "Created": stamp(0, 1.0),
                "Scope": "local",
                "Driver": driver,
                "EnableIPv4": True,
                "EnableIPv6": False,
                "IPAM": {
                    "Driver": "default",
                    "Options": None if name != "bridge" else {},
                    "Config": [{"Subnet": subnet, "Gateway": "172.17.0.1"}] if subnet else [],
                },
                "Internal": False,
                "Attachable": False,
                "Ingress": False,
                "ConfigFrom": {"Network": ""},
                "ConfigOnly": False,
                "Containers": {},
                "Options": {"com.docker.network.bridge.default_bridge": "true"} if name == "bridge" else {},
                "Labels": {},
            }

    def add_volume(self, name: str, volume_labels: dict[str, str]) -> None:
        self.volumes.append(
            {
                "CreatedAt": "2025-11-26T09:13:44Z",
                "Driver": "local",
                "Labels": volume_labels,
                "Mountpoint": f"/var/lib/docker/volumes/{name}/_data",
                "Name": name,
                "Options": None,
                "Scope": "local",
            }
        )

    def allocate(self, network: str, static: str | None) -> tuple[str, str, int]:
        subnet = ipaddress.ip_network(self.networks[network]["IPAM"]["Config"][0]["Subnet"])
        gateway = self.networks[network]["IPAM"]["Config"][0]["Gateway"]
        if static:
            return static, gateway, subnet.prefixlen
        taken = {
            c["NetworkSettings"]["Networks"][network]["IPAddress"]
            for c in self.containers
            if network in c["NetworkSettings"]["Networks"]
        }
        while True:
            address = str(subnet.network_address + self.next_ip[network])
            self.next_ip[network] += 1
            if address not in taken and address not in self.reserved:
                return address, gateway, subnet.prefixlen

    def add_container(self, resource: PlannedResource, image_ref: str, state: str) -> dict[str, Any]:
        """The container as `docker inspect` shows it in ``state``, attached (with addresses and
        endpoints on its networks) if running."""
        i = resource.inputs
        name = i["name"]
        cid = digest("container", name)
        facts = IMAGES[repository(image_ref)]
        created = self.tick()
        entrypoint = i.get("entrypoints") or facts["entrypoint"]
        command = i.get("command") if i.get("command") is not None else ([] if i.get("entrypoints") else facts["cmd"])
        argv = [*(entrypoint or []), *(command or [])]
        env = dict(pair.split("=", 1) for pair in facts["env"])
        env.update(pair.split("=", 1) for pair in i.get("envs") or [])
        running = state == "running"
        mounts_in = i.get("mounts") or []
        mount_targets = {m["target"] for m in mounts_in}
        inspect_mounts = [
            {
                "Type": "volume",
                "Name": m["source"],
                "Source": f"/var/lib/docker/volumes/{m['source']}/_data",
                "Destination": m["target"],
                "Driver": "local",
                "Mode": "z",
                "RW": not m.get("readOnly", False),
                "Propagation": "",
            }
            for m in mounts_in
        ]
        for path in facts["volumes"]:
            if path in mount_targets:
                continue
            anonymous = digest("anonymous", name, path)
            self.add_volume(anonymous, {"com.docker.volume.anonymous": ""})
            inspect_mounts.append(
                {
                    "Type": "volume",
                    "Name": anonymous,
                    "Source": f"/var/lib/docker/volumes/{anonymous}/_data",
                    "Destination": path,
                    "Driver": "local",
                    "Mode": "",
                    "RW": True,
                    "Propagation": "",
                }
            )
        network_mode = i.get("networkMode") or ((i.get("networksAdvanced") or [{}])[0].get("name") or "none")
        endpoints: dict[str, Any] = {}
        for attachment in i.get("networksAdvanced") or []:
            net = attachment["name"]
            static = attachment.get("ipv4Address")
            aliases = attachment.get("aliases")
            if running:
                address, gateway, prefix = self.allocate(net, static)
            else:
                address, gateway, prefix = "", "", 0
            endpoints[net] = {
                "IPAMConfig": {"IPv4Address": static} if static else None,
                "Links": None,
                "Aliases": aliases,
                "MacAddress": "02:42:" + ":".join(f"{int(o):02x}" for o in address.split(".")) if address else "",
                "DriverOpts": None,
                "GwPriority": 0,
                "NetworkID": self.networks[net]["Id"],
                "EndpointID": digest("endpoint", name, net) if running else "",
                "Gateway": gateway,
                "IPAddress": address,
                "IPPrefixLen": prefix,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "DNSNames": [name, *(aliases or []), cid[:12]] if running else None,
            }
            if running:
                self.networks[net]["Containers"][cid] = {
                    "Name": name,
                    "EndpointID": endpoints[net]["EndpointID"],
                    "MacAddress": endpoints[net]["MacAddress"],
                    "IPv4Address": f"{address}/{prefix}",
                    "IPv6Address": "",
                }
        if not endpoints:
            endpoints["none"] = {
                "IPAMConfig": None,
                "Links": None,
                "Aliases": None,
                "MacAddress": "",
                "DriverOpts": None,
                "GwPriority": 0,
                "NetworkID": self.networks["none"]["Id"],
                "EndpointID": "",
                "Gateway": "",
                "IPAddress": "",
                "IPPrefixLen": 0,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "DNSNames": None,
            }
        bindings: dict[str, list[dict[str, str]]] = {}
        for port in i.get("ports") or []:
            key = f"{port['internal']}/{port.get('protocol') or 'tcp'}"
            bindings.setdefault(key, []).append({"HostIp": port.get("ip") or "", "HostPort": str(port["external"])})
        live_ports: dict[str, Any] = {}
        if running:
            live_ports = {port: None for port in facts["expose"]}
            live_ports.update(bindings)
        hc = i.get("healthcheck")
        healthcheck = None
        if hc:
            healthcheck = {
                "Test": hc["tests"],
                "Interval": duration_ns(hc.get("interval")),
                "Timeout": duration_ns(hc.get("timeout")),
                "StartPeriod": duration_ns(hc.get("startPeriod")),
                "StartInterval": duration_ns(hc.get("startInterval")),
                "Retries": hc.get("retries", 0),
            }
        if state == "running":
            state_doc: dict[str, Any] = {
                "Status": "running",
                "Running": True,
                "Paused": False,
                "Restarting": False,
                "OOMKilled": False,
                "Dead": False,
                "Pid": 7000 + len(self.containers),
                "ExitCode": 0,
                "Error": "",
                "StartedAt": created,
                "FinishedAt": "0001-01-01T00:00:00Z",
            }
            if healthcheck:
                state_doc["Health"] = {
                    "Status": "healthy",
                    "FailingStreak": 0,
                    "Log": [
                        {
                            "Start": "2025-11-26T10:41:33.118309552Z",
                            "End": "2025-11-26T10:41:33.201954127Z",
                            "ExitCode": 0,
                            "Output": "",
                        }
                    ],
                }
        elif state == "exited":
            state_doc = {
                "Status": "exited",
                "Running": False,
                "Paused": False,
                "Restarting": False,
                "OOMKilled": False,
                "Dead": False,
                "Pid": 0,
                "ExitCode": 0,
                "Error": "",
                "StartedAt": created,
                "FinishedAt": self.tick(),
            }
        else:
            state_doc = {
                "Status": "created",
                "Running": False,
                "Paused": False,
                "Restarting": False,
                "OOMKilled": False,
                "Dead": False,
                "Pid": 0,
                "ExitCode": 0,
                "Error": "",
                "StartedAt": "0001-01-01T00:00:00Z",
                "FinishedAt": "0001-01-01T00:00:00Z",
            }
        caps = i.get("capabilities") or {}
        memory = (i.get("memory") or 0) * 1024 * 1024
        swap = (i.get("memorySwap") or 0) * 1024 * 1024
        doc = {
            "Id": cid,
            "Created": created,
            "Path": argv[0] if argv else "",
            "Args": argv[1:],
            "State": state_doc,
            "Image": "sha256:" + digest("image", image_ref),
            "ResolvConfPath": f"/var/lib/docker/containers/{cid}/resolv.conf",
            "HostnamePath": f"/var/lib/docker/containers/{cid}/hostname",
            "HostsPath": f"/var/lib/docker/containers/{cid}/hosts",
            "LogPath": f"/var/lib/docker/containers/{cid}/{cid}-json.log",
            "Name": "/" + name,
            "RestartCount": 0,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "docker-default",
            "ExecIDs": None,
            "HostConfig": {
                "Binds": None,
                "ContainerIDFile": "",
                "LogConfig": {"Type": i.get("logDriver") or "json-file", "Config": dict(i.get("logOpts") or {})},
                "NetworkMode": network_mode,
                "PortBindings": bindings,
                "RestartPolicy": {"Name": i.get("restart") or "no", "MaximumRetryCount": 0},
                "AutoRemove": bool(i.get("rm")),
                "VolumeDriver": "",
                "VolumesFrom": None,
                "ConsoleSize": [0, 0],
                "CapAdd": caps.get("adds") or None,
                "CapDrop": caps.get("drops") or None,
                "CgroupnsMode": "private",
                "Dns": [],
                "DnsOptions": [],
                "DnsSearch": [],
                "ExtraHosts": [],
                "GroupAdd": None,
                "IpcMode": i.get("ipcMode") or "private",
                "Cgroup": "",
                "Links": None,
                "OomScoreAdj": 0,
                "PidMode": i.get("pidMode") or "",
                "Privileged": bool(i.get("privileged")),
                "PublishAllPorts": bool(i.get("publishAllPorts")),
                "ReadonlyRootfs": bool(i.get("readOnly")),
                "SecurityOpt": i.get("securityOpts"),
                "Tmpfs": i.get("tmpfs"),
                "UTSMode": "",
                "UsernsMode": "",
                "ShmSize": 67108864,
                "Runtime": "runc",
                "Isolation": "",
                "CpuShares": 0,
                "Memory": memory,
                "NanoCpus": int(float(i.get("cpus") or 0) * 1e9),
                "MemorySwap": swap,
                "Ulimits": [{"Name": u["name"], "Hard": u["hard"], "Soft": u["soft"]} for u in i.get("ulimits") or []]
                or None,
                "Mounts": [
                    {
                        "Type": "volume",
                        "Source": m["source"],
                        "Target": m["target"],
                        "ReadOnly": bool(m.get("readOnly")),
                    }
                    for m in mounts_in
                ],
            },
            "Mounts": inspect_mounts,
            "Config": {
                "Hostname": i.get("hostname") or cid[:12],
                "Domainname": "",
                "User": i.get("user") or "",
                "AttachStdin": False,
                "AttachStdout": bool(i.get("attach")),
                "AttachStderr": bool(i.get("attach")),
                "ExposedPorts": {port: {} for port in facts["expose"]} or None,
                "Tty": False,
                "OpenStdin": False,
                "StdinOnce": False,
                "Env": [f"{k}={v}" for k, v in env.items()],
                "Cmd": command or None,
                "Healthcheck": healthcheck,
                "Image": image_ref,
                "Volumes": {path: {} for path in facts["volumes"]} or None,
                "WorkingDir": facts["workdir"],
                "Entrypoint": entrypoint or None,
                "OnBuild": None,
                "Labels": labels(resource),
            },
            "NetworkSettings": {
                "Bridge": "",
                "SandboxID": digest("sandbox", name) if running else "",
                "SandboxKey": f"/var/run/docker/netns/{digest('netns', name)[:12]}" if running else "",
                "Ports": live_ports,
                "HairpinMode": False,
                "LinkLocalIPv6Address": "",
                "LinkLocalIPv6PrefixLen": 0,
                "SecondaryIPAddresses": None,
                "SecondaryIPv6Addresses": None,
                "EndpointID": "",
                "Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "IPAddress": "",
                "IPPrefixLen": 0,
                "IPv6Gateway": "",
                "MacAddress": "",
                "Networks": endpoints,
            },
        }
        self.containers.append(doc)
        return doc


def remote_image_names(p: Plan) -> dict[str, str]:
    """RemoteImage resource name -> the image reference it pulls."""
    return {r.name: r.inputs["name"] for r in p.by_type("docker:index/remoteImage:RemoteImage")}


def container_images(p: Plan) -> dict[str, str]:
    """Container name -> image reference, matched through the resource names the program uses
    (`<container resource>-image`), the built ops image for the ops containers."""
    remote = remote_image_names(p)
    built = {r.name: r.inputs["imageName"] for r in p.by_type("docker:index/image:Image")}
    found = {}
    containers = [r for r in p.by_type("docker:index/container:Container")]
    for r in containers:
        base = r.name.removesuffix("-files")
        image = remote.get(f"{base}-image") or remote.get(f"{base.removesuffix('-server')}-image")
        if image is None:
            service = labels(r)["service"]
            image = next(iter(built.values())) if service.startswith("ops") else None
        if image is None:
            raise SystemExit(f"no image for {r.name}")
        found[r.inputs["name"]] = image
    return found


def state_of(resource: PlannedResource) -> str:
    """How a container is found after a good deploy: carriers created, services running, jobs
    exited."""
    i = resource.inputs
    if labels(resource).get("role") == "files-carrier":
        return "created"
    return "running" if i.get("mustRun") else "exited"


def build() -> None:
    """Plan both stacks and write every recorded document."""
    staging, prod = plan("staging"), plan("prod")
    host = Host()
    for resource in staging.by_type("docker:index/network:Network"):
        host.add_network(resource)
    prod_data = next(n for n in prod.by_type("docker:index/network:Network") if n.inputs["name"] == "acme-prod-data")
    host.add_network(prod_data)
    host.builtin_networks()
    for resource in staging.by_type("docker:index/volume:Volume"):
        host.add_volume(resource.inputs["name"], labels(resource))
    prod_postgres = next(
        c for c in prod.by_type("docker:index/container:Container") if c.inputs["name"] == "acme-prod-postgres"
    )
    for mount in prod_postgres.inputs["mounts"]:
        volume = next(v for v in prod.by_type("docker:index/volume:Volume") if v.inputs["name"] == mount["source"])
        host.add_volume(volume.inputs["name"], labels(volume))
    for resource in staging.by_type("docker:index/container:Container"):
        host.reserved |= {
            a["ipv4Address"] for a in resource.inputs.get("networksAdvanced") or [] if a.get("ipv4Address")
        }
    images = container_images(staging)
    # Creation order (which decides the addresses handed out): files carriers, jobs, services,
    # each by name; the plan's registration order varies from run to run.
    rank = {"created": 0, "exited": 1, "running": 2}
    containers = staging.by_type("docker:index/container:Container")
    for resource in sorted(containers, key=lambda r: (rank[state_of(r)], r.inputs["name"])):
        host.add_container(resource, images[resource.inputs["name"]], state_of(resource))
    host.add_container(prod_postgres, container_images(prod)["acme-prod-postgres"], "running")

    OUT.mkdir(parents=True, exist_ok=True)
    order = [
        *[n.inputs["name"] for n in staging.by_type("docker:index/network:Network")],
        "acme-prod-data",
        "bridge",
        "host",
        "none",
    ]
    (OUT / "containers.json").write_text(json.dumps(host.containers, indent=1) + "\n")
    (OUT / "networks.json").write_text(json.dumps([host.networks[n] for n in order], indent=1) + "\n")
    (OUT / "volumes.json").write_text(json.dumps({"Volumes": host.volumes, "Warnings": None}, indent=1) + "\n")
    prometheus_documents(staging)
    outputs = json.loads(json.dumps(staging.outputs))
    fixture_path = ROOT / "tests" / "data" / "verify" / "outputs-staging.json"
    fixture = json.loads(fixture_path.read_text())
    ca = fixture["tls_ca_certificate"]
    outputs["tls_ca_certificate"] = ca
    fixture_path.write_text(json.dumps(outputs, indent=2, sort_keys=True) + "\n")


def _upload(p: Plan, container: str, path: str) -> str:
    """The content of a file a carrier uploads (the rendered Prometheus config and rules)."""
    carrier = next(c for c in p.by_type("docker:index/container:Container") if c.inputs["name"] == container)
    return next(u["content"] for u in carrier.inputs["uploads"] if u["file"] == path)


def prometheus_documents(p: Plan) -> None:
    """Prometheus's answers for its rendered config: every scrape target up, every rule loaded."""
    config = yaml.safe_load(_upload(p, "acme-staging-prometheus-files", "/run/stagecraft/config/prometheus.yml"))
    rules = yaml.safe_load(_upload(p, "acme-staging-prometheus-files", "/run/stagecraft/config/alerts.yml"))
    interval = config["global"]["scrape_interval"]
    environment = config["global"]["external_labels"]["environment"]
    targets = []
    for n, job in enumerate(config["scrape_configs"]):
        for address in job["static_configs"][0]["targets"]:
            url = f"http://{address}{job.get('metrics_path', '/metrics')}"
            targets.append(
                {
                    "discoveredLabels": {
                        "__address__": address,
                        "__metrics_path__": job.get("metrics_path", "/metrics"),
                        "__scheme__": "http",
                        "__scrape_interval__": interval,
                        "__scrape_timeout__": "10s",
                        "job": job["job_name"],
                    },
                    "labels": {"environment": environment, "instance": address, "job": job["job_name"]},
                    "scrapePool": job["job_name"],
                    "scrapeUrl": url,
                    "globalUrl": url,
                    "lastError": "",
                    "lastScrape": f"2025-11-26T10:42:{10 + n:02d}.418720519Z",
                    "lastScrapeDuration": 0.004218911 + n / 1000,
                    "health": "up",
                    "scrapeInterval": interval,
                    "scrapeTimeout": "10s",
                }
            )
    (OUT / "prometheus-targets.json").write_text(
        json.dumps(
            {"status": "success", "data": {"activeTargets": targets, "droppedTargets": [], "droppedTargetCounts": {}}},
            indent=1,
        )
        + "\n"
    )
    groups = []
    for group in rules["groups"]:
        out_rules = []
        for rule in group["rules"]:
            seconds = duration_ns(rule.get("for", "0s")) // 10**9
            out_rules.append(
                {
                    "state": "inactive",
                    "name": rule["alert"],
                    "query": rule["expr"],
                    "duration": seconds,
                    "keepFiringFor": 0,
                    "labels": rule.get("labels", {}),
                    "annotations": rule.get("annotations", {}),
                    "alerts": [],
                    "health": "ok",
                    "evaluationTime": 0.000412,
                    "lastEvaluation": "2025-11-26T10:42:03.120038264Z",
                    "type": "alerting",
                }
            )
        groups.append(
            {
                "name": group["name"],
                "file": "/run/stagecraft/config/alerts.yml",
                "rules": out_rules,
                "interval": 15,
                "limit": 0,
                "evaluationTime": 0.002611,
                "lastEvaluation": "2025-11-26T10:42:03.119954735Z",
            }
        )
    (OUT / "prometheus-rules.json").write_text(
        json.dumps({"status": "success", "data": {"groups": groups}}, indent=1) + "\n"
    )


if __name__ == "__main__":
    build()
