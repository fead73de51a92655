"""CIS Docker Benchmark, container runtime section, as docker-bench-security applies it (its
current numbering, 5.1-5.32, plus 4.1, the one image check it makes per container), over every
container of both stacks' plans.

docker-bench-security evaluates only running containers (`docker ps`): the long-running services,
and a one-shot job while it runs. Files carriers are created but never started, so it never sees
them. Each check below reads the provider inputs that become the `docker inspect` field the
script reads, and says what makes it warn; a container that warns must be one of the check's
documented exceptions, and every documented exception must still warn (so the list stays exact).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pytest
import yaml
from conftest import service_containers, stack_document

from preflight.engine import Plan, PlannedResource, plan
from preflight.mocks import PlanMocks

CONTAINER = "docker:index/container:Container"
COMMAND = "command:local:Command"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
BUILT_IMAGE = "docker:index/image:Image"

# Docker's default capabilities: adding one of these back is not flagged (5.4).
DEFAULT_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "NET_RAW",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
# Host directories a read-write mount of which is flagged (5.6).
SENSITIVE_DIRECTORIES = frozenset({"/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr"})
# The one-shot jobs of both stacks: they run once during a deploy and exit.
JOBS = frozenset(
    {
        "api-migrate",
        "postgres-init",
        "temporal-schema",
        "temporal-namespace",
        "ops-pre-migration-backup",
        "ops-volume-owner",
        "chroma-volume-owner",
    }
)
# The jobs that hand a fresh volume to the uid its service runs as: root, CHOWN alone, no network.
VOLUME_OWNERS = frozenset({"ops-volume-owner", "chroma-volume-owner"})
# Both stacks as configured, and prod with Let's Encrypt certificates: a certbot service beside
# the proxy, and a job handing its volumes to certbot's uid.
VARIANTS = ("staging", "prod", "prod-acme")
ACME_VOLUME_OWNER = "certbot-volume-owner"


def jobs_of(variant: str) -> frozenset[str]:
    return JOBS | {ACME_VOLUME_OWNER} if variant.endswith("acme") else JOBS


def volume_owners_of(variant: str) -> frozenset[str]:
    return VOLUME_OWNERS | {ACME_VOLUME_OWNER} if variant.endswith("acme") else VOLUME_OWNERS


# ---------------------------------------------------------------------------------------------
# What docker-bench-security scans


@dataclass(frozen=True)
class Scanned:
    """A container docker-bench-security would find running."""

    stack: str
    service: str
    job: bool
    resource: PlannedResource
    inputs: Mapping[str, Any]


@dataclass(frozen=True)
class PidsLimit:
    """A `docker update --pids-limit` run against a container once it exists."""

    limit: int
    container_id: str
    triggers: tuple[str, ...]
    docker_host: str | None


@dataclass
class Scan:
    """One stack's plan, with what some checks need beyond a container's own inputs."""

    plan: Plan
    docker_host: str
    # Container URN -> the command that limits its processes.
    pids_limits: dict[str, PidsLimit] = field(default_factory=dict)
    # Container URN -> the image reference it runs.
    images: dict[str, str] = field(default_factory=dict)


PIDS_COMMAND = re.compile(r"^docker update --pids-limit (?P<limit>[0-9]+) (?P<id>[0-9a-f]{64})$")


def _scan(result: Plan) -> Scan:
    """What a stack's checks read besides a container's own inputs."""
    assert result.config is not None
    scan = Scan(plan=result, docker_host=result.config.docker.host)
    containers = {r.urn: r for r in result.by_type(CONTAINER)}
    for command in result.by_type(COMMAND):
        match = PIDS_COMMAND.match(command.inputs.get("create", ""))
        targets = [urn for urn in command.dependencies if urn in containers]
        if match and len(targets) == 1:
            scan.pids_limits[targets[0]] = PidsLimit(
                int(match["limit"]),
                match["id"],
                tuple(command.inputs.get("triggers", [])),
                (command.inputs.get("environment") or {}).get("DOCKER_HOST"),
            )
    # A pulled image is the container's sibling; a built one (the ops image) a dependency.
    pulled = {r.parent: r.inputs["name"] for r in result.by_type(REMOTE_IMAGE)}
    built = {r.urn: r.inputs["imageName"] for r in result.by_type(BUILT_IMAGE)}
    for urn, container in containers.items():
        references = [built[dependency] for dependency in container.dependencies if dependency in built]
        if container.parent in pulled:
            references.append(pulled[container.parent])
        if len(references) == 1:
            scan.images[urn] = references[0]
    return scan


def scanned(result: Plan) -> list[Scanned]:
    """Every container that runs: the long-running services and the jobs; never the carriers."""
    found = []
    for service, container in service_containers(result).items():
        inputs = container.inputs
        if inputs.get("start") is False:
            continue
        found.append(Scanned(result.stack, service, inputs.get("mustRun") is False, container, inputs))
    return found


def _mock_id(stack: str, container: PlannedResource) -> str:
    """The ID the plan's mock engine gave a container (what its PIDs command must name)."""
    resource_id, _ = PlanMocks(stack).new_resource(
        pulumi.runtime.MockResourceArgs(container.type, container.name, dict(container.inputs), custom=True)
    )
    assert resource_id
    return resource_id


# ---------------------------------------------------------------------------------------------
# The checks


def _security_opts(c: Scanned) -> list[str]:
    return list(c.inputs.get("securityOpts") or [])


def _mounts(c: Scanned) -> list[Mapping[str, Any]]:
    return list(c.inputs.get("mounts") or [])


def _ports(c: Scanned) -> list[Mapping[str, Any]]:
    return list(c.inputs.get("ports") or [])


def _apparmor(c: Scanned, _: Scan) -> bool:
    unconfined = any(re.fullmatch(r"apparmor[=:]unconfined", opt) for opt in _security_opts(c))
    return bool(c.inputs.get("privileged")) or unconfined


def _capabilities(c: Scanned, _: Scan) -> bool:
    added = (c.inputs.get("capabilities") or {}).get("adds") or []
    return any(cap.upper().removeprefix("CAP_") not in DEFAULT_CAPABILITIES for cap in added)


def _sensitive_mount(c: Scanned, _: Scan) -> bool:
    for mount in _mounts(c):
        if mount.get("type") == "bind" and not mount.get("readOnly"):
            if {mount.get("source"), mount.get("target")} & SENSITIVE_DIRECTORIES:
                return True
    for volume in c.inputs.get("volumes") or []:
        if not volume.get("readOnly") and {volume.get("hostPath"), volume.get("containerPath")} & SENSITIVE_DIRECTORIES:
            return True
    return False


def _sshd(c: Scanned, _: Scan) -> bool:
    words = [*(c.inputs.get("command") or []), *(c.inputs.get("entrypoints") or [])]
    return any("sshd" in word for word in words) or any(port.get("internal") == 22 for port in _ports(c))


def _privileged_port(c: Scanned, _: Scan) -> bool:
    # An unset external port is a random one above 32767.
    return any(port.get("external") is not None and port["external"] < 1025 for port in _ports(c))


def _cpu(c: Scanned, _: Scan) -> bool:
    return not c.inputs.get("cpuShares") and not float(c.inputs.get("cpus") or 0)


def _any_interface(c: Scanned, _: Scan) -> bool:
    # The provider's default address is 0.0.0.0.
    return any(port.get("ip", "0.0.0.0") in ("0.0.0.0", "") for port in _ports(c))


def _restart_retries(c: Scanned, _: Scan) -> bool:
    """docker-bench-security's current script flags MaximumRetryCount above 5 (always, unless-stopped
    and no have 0 and pass); an `on-failure` policy with no count retries forever, which the
    benchmark's intent forbids too. Its 1.6.x releases pass only `on-failure:5`: see
    test_restart_policy_is_unless_stopped_by_design."""
    retries = int(c.inputs.get("maxRetryCount") or 0)
    return retries > 5 or (c.inputs.get("restart") == "on-failure" and retries == 0)


def _propagation(c: Scanned, _: Scan) -> bool:
    return any("shared" in str((mount.get("bindOptions") or {}).get("propagation", "")) for mount in _mounts(c))


def _seccomp(c: Scanned, _: Scan) -> bool:
    return any(re.fullmatch(r"seccomp[=:]unconfined", opt) for opt in _security_opts(c))


def _new_privileges(c: Scanned, _: Scan) -> bool:
    # docker-bench-security only looks for the substring; `no-new-privileges:false` must fail too.
    return not any(
        opt in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true") for opt in _security_opts(c)
    )


def _healthcheck(c: Scanned, _: Scan) -> bool:
    tests = (c.inputs.get("healthcheck") or {}).get("tests") or []
    return not tests or tests[0] not in ("CMD", "CMD-SHELL") or len(tests) < 2


def _pids_limit(c: Scanned, scan: Scan) -> bool:
    """The provider has no PIDs limit, so each container gets a `docker update --pids-limit` run
    against the stack's Docker host, again whenever the container is replaced (its ID changes)."""
    limit = scan.pids_limits.get(c.resource.urn)
    if limit is None or limit.limit <= 0:
        return True
    container_id = _mock_id(c.stack, c.resource)
    return (
        limit.container_id != container_id
        or container_id not in limit.triggers
        or limit.docker_host != scan.docker_host
    )


def _unpinned_image(c: Scanned, scan: Scan) -> bool:
    reference = scan.images.get(c.resource.urn)
    if reference is None:
        return True
    if "@sha256:" in reference:
        return False
    tag = reference.rsplit("/", 1)[-1].partition(":")[2]
    return tag in ("", "latest") or not any(ch.isdigit() for ch in tag)


def _docker0(c: Scanned, _: Scan) -> bool:
    # With networks of its own the provider disconnects a container from the default bridge.
    mode = c.inputs.get("networkMode")
    if mode == "none":
        return False
    return mode in ("bridge", "default") or not c.inputs.get("networksAdvanced")


def _root_user(c: Scanned, _: Scan) -> bool:
    # docker-bench-security compares the whole string, so `0:0` slips through there; not here.
    user = str(c.inputs.get("user") or "")
    return user.split(":", 1)[0] in ("", "0", "root")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to a container's inputs: set the value at a dotted key path."""

    def apply(inputs: dict[str, Any]) -> None:
        target = inputs
        keys = path.split(".")
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value

    return apply


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda inputs: inputs.pop(key, None)


@dataclass(frozen=True)
class Check:
    """One docker-bench-security check: when a container's planned inputs make it warn."""

    id: str
    title: str
    warns: Callable[[Scanned, Scan], bool]
    # A change that makes a compliant container warn: proof the predicate can fail.
    breaks: Callable[[dict[str, Any]], None]
    # The services that warn and are accepted in each variant, each for the reason given with it.
    exceptions: Callable[[str], frozenset[str]] = lambda _variant: frozenset()


def _everywhere(*services: str) -> Callable[[str], frozenset[str]]:
    return lambda _variant: frozenset(services)


CHECKS = [
    Check("5.2", "AppArmor profile enabled", _apparmor, _set("privileged", True)),
    Check("5.3", "SELinux security options set", lambda c, _: not _security_opts(c), _without("securityOpts")),
    Check("5.4", "capabilities restricted", _capabilities, _set("capabilities.adds", ["SYS_ADMIN"])),
    Check("5.5", "no privileged containers", lambda c, _: bool(c.inputs.get("privileged")), _set("privileged", True)),
    Check(
        "5.6",
        "no sensitive host directory mounted",
        _sensitive_mount,
        _set("mounts", [{"type": "bind", "source": "/etc", "target": "/host/etc"}]),
    ),
    Check("5.7", "no sshd", _sshd, _set("command", ["/usr/sbin/sshd", "-D"])),
    Check(
        "5.8",
        "no privileged host ports",
        _privileged_port,
        _set("ports", [{"internal": 8080, "external": 80, "ip": "127.0.0.1"}]),
        # Prod's proxy answers on the standard HTTP and HTTPS ports.
        exceptions=lambda variant: frozenset({"proxy"} if variant.startswith("prod") else ()),
    ),
    Check(
        "5.9",
        "only needed ports open",
        lambda c, _: bool(_ports(c)),
        _set("ports", [{"internal": 8080, "external": 18080, "ip": "127.0.0.1"}]),
        # The edge proxy is the one container that must publish ports (any published port warns).
        exceptions=_everywhere("proxy"),
    ),
    Check(
        "5.10",
        "host network not shared",
        lambda c, _: c.inputs.get("networkMode") == "host",
        _set("networkMode", "host"),
    ),
    Check("5.11", "memory limited", lambda c, _: not c.inputs.get("memory"), _without("memory")),
    Check("5.12", "CPU priority set", _cpu, lambda i: (i.pop("cpus", None), i.pop("cpuShares", None))),
    Check(
        "5.13", "read-only root filesystem", lambda c, _: c.inputs.get("readOnly") is not True, _set("readOnly", False)
    ),
    Check(
        "5.14",
        "incoming traffic bound to a host interface",
        _any_interface,
        _set("ports", [{"internal": 8080, "external": 18080}]),
        # The proxy listens on stagecraft:proxy.bind_address, 0.0.0.0 in both stack files.
        exceptions=_everywhere("proxy"),
    ),
    Check("5.15", "restart retries bounded", _restart_retries, _set("restart", "on-failure")),
    Check(
        "5.16", "host PID namespace not shared", lambda c, _: c.inputs.get("pidMode") == "host", _set("pidMode", "host")
    ),
    Check(
        "5.17", "host IPC namespace not shared", lambda c, _: c.inputs.get("ipcMode") == "host", _set("ipcMode", "host")
    ),
    Check(
        "5.18",
        "no host devices",
        lambda c, _: bool(c.inputs.get("devices")),
        _set("devices", [{"hostPath": "/dev/sda", "containerPath": "/dev/sda"}]),
    ),
    Check("5.19", "ulimits set", lambda c, _: not c.inputs.get("ulimits"), _without("ulimits")),
    Check(
        "5.20",
        "mount propagation not shared",
        _propagation,
        _set(
            "mounts", [{"type": "bind", "source": "/srv", "target": "/srv", "bindOptions": {"propagation": "rshared"}}]
        ),
    ),
    Check(
        "5.21", "host UTS namespace not shared", lambda c, _: c.inputs.get("utsMode") == "host", _set("utsMode", "host")
    ),
    Check(
        "5.22",
        "default seccomp profile kept",
        _seccomp,
        _set("securityOpts", ["no-new-privileges:true", "seccomp=unconfined"]),
    ),
    Check("5.25", "no cgroup parent", lambda c, _: bool(c.inputs.get("cgroupParent")), _set("cgroupParent", "/custom")),
    Check("5.26", "no new privileges", _new_privileges, _set("securityOpts", ["no-new-privileges:false"])),
    Check(
        "5.27",
        "health checked at runtime",
        _healthcheck,
        _without("healthcheck"),
        # A job runs to completion and exits; what gates on it is its exit code.
        exceptions=jobs_of,
    ),
    Check("5.28", "image pinned (docker-bench only notes it)", _unpinned_image, lambda i: None),
    Check(
        "5.29",
        "PIDs cgroup limit",
        _pids_limit,
        lambda i: None,
        # The limit is applied with `docker update` once a container exists, and a job has
        # started by then; a job runs once and exits.
        exceptions=jobs_of,
    ),
    Check("5.30", "default bridge docker0 not used", _docker0, _without("networksAdvanced")),
    Check(
        "5.31",
        "host user namespace not shared",
        lambda c, _: "host" in str(c.inputs.get("usernsMode", "")),
        _set("usernsMode", "host"),
    ),
    Check(
        "5.32",
        "Docker socket not mounted",
        lambda c, _: any("docker.sock" in str(m.get("source", "")) + str(m.get("target", "")) for m in _mounts(c)),
        _set(
            "mounts",
            [{"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock", "readOnly": True}],
        ),
    ),
    Check(
        "4.1",
        "runs as a non-root user",
        _root_user,
        _set("user", "0:0"),
        # They hand a fresh volume to its service's uid: root with CHOWN alone, no network, once.
        exceptions=volume_owners_of,
    ),
]
# Checks no container input decides, and where they are covered instead.
NOT_PER_CONTAINER = {
    "5.1": "swarm mode is daemon state; the plan creates no swarm object (test_no_swarm_object)",
    "5.23": "docker exec --privileged is something an operator does, not configuration",
    "5.24": "docker exec --user=root is something an operator does, not configuration",
}


def acme_document() -> dict[str, Any]:
    """Prod's stack file with Let's Encrypt certificates."""
    document = stack_document("prod")
    document["config"]["stagecraft:proxy"]["tls"] = {
        "mode": "acme",
        "email": "ops@acme.example.com",
        "certbot": {"image": "certbot/certbot:v4.0.0", "memory_mb": 64, "cpus": 0.1},
    }
    return document


@pytest.fixture(scope="module")
def variant_plans(plans: dict[str, Plan], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Plan]:
    path = tmp_path_factory.mktemp("acme") / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(acme_document(), sort_keys=False))
    return {**plans, "prod-acme": plan("prod", path)}


@pytest.fixture(scope="module")
def scans(variant_plans: dict[str, Plan]) -> dict[str, tuple[Scan, list[Scanned]]]:
    return {variant: (_scan(result), scanned(result)) for variant, result in variant_plans.items()}


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.id)
def test_every_running_container_passes_or_is_a_documented_exception(
    check: Check, scans: dict[str, tuple[Scan, list[Scanned]]]
) -> None:
    assert set(scans) == set(VARIANTS)
    for variant, (scan, containers) in scans.items():
        warned = {c.service for c in containers if check.warns(c, scan)}
        assert warned == check.exceptions(variant), f"{check.id} {check.title} ({variant})"


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.id)
def test_each_check_warns_on_what_docker_bench_flags(
    check: Check, scans: dict[str, tuple[Scan, list[Scanned]]]
) -> None:
    """The API passes every check; changed as docker-bench-security would flag it, it warns."""
    scan, containers = scans["staging"]
    api = next(c for c in containers if c.service == "api")
    assert not check.warns(api, scan)
    inputs = copy.deepcopy(dict(api.inputs))
    check.breaks(inputs)
    resource = api.resource
    if check.id in ("5.28", "5.29"):
        # What these read lives beside the container: its image, its PIDs command.
        resource = dataclasses.replace(resource, urn=resource.urn + "-other", parent=resource.parent + "-other")
    broken = Scanned(api.stack, api.service, api.job, resource, inputs)
    assert check.warns(broken, scan)


def test_the_checks_cover_the_whole_runtime_section() -> None:
    ids = [check.id for check in CHECKS if check.id.startswith("5.")] + list(NOT_PER_CONTAINER)
    assert sorted(ids, key=lambda i: int(i.split(".")[1])) == [f"5.{n}" for n in range(1, 33)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("variant", VARIANTS)
def test_what_docker_bench_sees(variant: str, variant_plans: dict[str, Plan]) -> None:
    """Services run and are kept running, jobs run once attached, carriers never start (and have
    no network), so the scan covers every container that ever runs."""
    result = variant_plans[variant]
    jobs = jobs_of(variant)
    running = {c.service: c for c in scanned(result)}
    assert {service for service, c in running.items() if c.job} == jobs
    assert ("certbot" in running) is variant.endswith("acme")
    for service, container in service_containers(result).items():
        inputs = container.inputs
        if service in running:
            assert inputs["mustRun"] is (service not in jobs), service
            assert inputs.get("attach", False) is (service in jobs), service
        else:
            assert service.endswith("-files") and inputs["start"] is False and inputs["networkMode"] == "none"


@pytest.mark.parametrize("variant", VARIANTS)
def test_restart_policy_is_unless_stopped_by_design(variant: str, variant_plans: dict[str, Plan]) -> None:
    """docker-bench-security 1.6.x passes only `on-failure:5` (5.15); stagecraft's services use
    `unless-stopped`, which its current script passes (no retry count): a service comes back after
    any exit and after a daemon restart, where `on-failure:5` would leave it down after five
    failures. Jobs never restart: a failed job stops the update."""
    for c in scanned(variant_plans[variant]):
        assert c.inputs["restart"] == ("no" if c.job else "unless-stopped"), c.service
        assert "maxRetryCount" not in c.inputs, c.service


@pytest.mark.parametrize("variant", VARIANTS)
def test_volume_owner_jobs_are_root_only_to_chown(variant: str, variant_plans: dict[str, Plan]) -> None:
    """The accepted 4.1 exception, and no more than it needs: CHOWN alone, no network, no ports,
    a read-only root filesystem, run once."""
    containers = service_containers(variant_plans[variant])
    for service in volume_owners_of(variant):
        inputs = containers[service].inputs
        assert inputs["user"] == "0:0"
        assert inputs["capabilities"] == {"drops": ["ALL"], "adds": ["CHOWN"]}
        assert inputs["networkMode"] == "none" and not inputs.get("networksAdvanced") and not inputs.get("ports")
        assert inputs["entrypoints"][:2] == ["chown", "-R"]
        assert inputs["readOnly"] is True and inputs["mustRun"] is False and inputs["restart"] == "no"


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_swarm_object(variant: str, variant_plans: dict[str, Plan]) -> None:
    """5.1: swarm mode stays off only if nothing needs it; services, swarm secrets and configs do."""
    swarm = {"docker:index/service:Service", "docker:index/secret:Secret", "docker:index/config:Config"}
    result = variant_plans[variant]
    assert not [r.name for r in result.resources if r.type in swarm]
    assert result.by_type(CONTAINER)


@pytest.mark.parametrize("variant", VARIANTS)
def test_pids_limits_go_to_the_stacks_own_docker_host(
    variant: str, scans: dict[str, tuple[Scan, list[Scanned]]]
) -> None:
    """A `docker update` sent to another daemon (or naming another container) limits nothing."""
    scan, containers = scans[variant]
    services = [c for c in containers if not c.job]
    assert services and not any(_pids_limit(c, scan) for c in services)
    elsewhere = dataclasses.replace(scan, docker_host="ssh://deploy@elsewhere.example.com")
    assert all(_pids_limit(c, elsewhere) for c in services)
    swapped = dict(scan.pids_limits)
    first, second = services[0].resource.urn, services[1].resource.urn
    swapped[first], swapped[second] = swapped[second], swapped[first]
    assert _pids_limit(services[0], dataclasses.replace(scan, pids_limits=swapped))
