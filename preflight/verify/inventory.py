"""This stack's containers, networks and volumes as the Engine API reports them, read once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from preflight.verify.context import CheckError, container_name
from preflight.verify.targets import Targets

if TYPE_CHECKING:
    from preflight.verify.docker_api import Engine

FILES_CARRIER_ROLE = "files-carrier"  # created, never started: only carries a service's files


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    """Labels of an inspected container, network or volume."""
    labels = obj.get("Labels")
    if labels is None:
        labels = (obj.get("Config") or {}).get("Labels")
    return dict(labels or {})


def is_running(container: Mapping[str, Any]) -> bool:
    state = container.get("State") or {}
    return state.get("Status") == "running" and not state.get("Restarting")


def _pick(candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The running container if any (newest first), else the newest."""
    ordered = sorted(candidates, key=lambda c: str(c.get("Created", "")), reverse=True)
    running = [c for c in ordered if is_running(c)]
    return (running or ordered or [None])[0]


@dataclass
class Inventory:
    """This stack's Docker objects, read once per run.

    ``containers`` holds every container with the stack's ``app`` and ``stack`` labels (any
    state); a service or job is found by its ``service`` label there, else by the name in the
    outputs (it then shows up in ``unlabelled``).
    """

    containers: list[dict[str, Any]]
    unlabelled: list[dict[str, Any]]
    services: dict[str, dict[str, Any] | None]
    jobs: dict[str, dict[str, Any] | None]
    networks: dict[str, dict[str, Any]]
    volumes: dict[str, dict[str, Any]]

    @classmethod
    def collect(cls, engine: Engine, targets: Targets) -> Inventory:
        containers = [c for c in engine.containers(targets.identity_labels) if c]
        unlabelled: list[dict[str, Any]] = []

        def find(service: str, name: str) -> dict[str, Any] | None:
            labelled = [
                c
                for c in containers
                if labels_of(c).get("service") == service and labels_of(c).get("role") != FILES_CARRIER_ROLE
            ]
            found = _pick(labelled)
            if found is None:
                found = engine.inspect_container(name)
                if found is not None and all(found["Id"] != c["Id"] for c in containers + unlabelled):
                    unlabelled.append(found)
            return found

        services = {service: find(service, name) for service, name in targets.services.items()}
        jobs = {job: find(job, name) for job, name in targets.jobs.items()}
        networks = {str(n.get("Name")): n for n in engine.networks()}
        volumes = {str(v.get("Name")): v for v in engine.volumes()}
        return cls(containers, unlabelled, services, jobs, networks, volumes)

    @property
    def everything(self) -> list[dict[str, Any]]:
        """Every container this stack owns or names."""
        return self.containers + self.unlabelled

    def running(self, service: str) -> dict[str, Any]:
        container = self.services.get(service)
        if container is None:
            raise CheckError(f"no container for service {service}")
        if not is_running(container):
            status = (container.get("State") or {}).get("Status", "unknown")
            raise CheckError(f"{container_name(container)} (service {service}) is {status}, not running")
        return container


def attached_networks(container: Mapping[str, Any]) -> list[str]:
    return sorted(((container.get("NetworkSettings") or {}).get("Networks") or {}).keys())
