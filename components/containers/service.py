"""The base of every service component: it runs its containers and keeps its data volumes with
the environment's names, under logical names prefixed with its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_docker as docker

from components.config import Service
from components.containers.container import Attachment, ContainerArgs, HardenedContainer
from components.containers.labels import volume_labels
from components.naming import Naming
from components.resources import child


class ServiceComponent(pulumi.ComponentResource):
    """A component that runs one service of one environment (its containers, its jobs, its data
    volume). ``was_parent``: the resource its children lived under before the layout of
    components changed, so their aliases find their old URNs."""

    def __init__(
        self,
        type_: str,
        name: str,
        naming: Naming,
        opts: pulumi.ResourceOptions | None = None,
        was_parent: pulumi.Input[str] | None = None,
    ) -> None:
        super().__init__(type_, name, None, opts)
        self.naming = naming
        self._prefix = name
        self._was_parent = was_parent
        # What this component runs and keeps, for the stack's outputs.
        self.containers: list[HardenedContainer] = []
        self.volume_names: list[str] = []

    def container(
        self,
        suffix: str,
        service: str,
        settings: Service,
        networks: Sequence[Attachment],
        **options: Any,
    ) -> HardenedContainer:
        """A hardened container named ``<naming prefix>-<service>``; ``options`` are the other
        fields of ``ContainerArgs``."""
        container = HardenedContainer(
            f"{self._prefix}-{suffix}",
            ContainerArgs(naming=self.naming, service=service, settings=settings, networks=networks, **options),
            opts=child(self, was=service, was_parent=self._was_parent),
        )
        self.containers.append(container)
        self.volume_names.extend(container.volume_names)
        return container

    def volume_owner(
        self,
        service: str,
        settings: Service,
        owner: str,
        volumes: Mapping[str, docker.Volume],
        image: pulumi.Input[str] | None = None,
    ) -> HardenedContainer:
        """A job that hands fresh volumes to the uid a service runs as, for images whose data
        directory a volume cannot inherit an owner from. It runs as root with CHOWN alone and no
        network, once per volume (and again only if the volumes or the owner change). ``image``:
        an image built by the stack (its ID), instead of pulling ``settings.image``."""
        return self.container(
            "volume-owner",
            f"{service}-volume-owner",
            settings,
            networks=[],
            entrypoint=["chown", "-R", owner, *sorted(volumes)],
            user="0:0",
            volumes={path: volume.name for path, volume in volumes.items()},
            cap_add=("CHOWN",),
            one_shot=True,
            image=image,
        )

    def data_volume(self, service: str, protect: bool) -> docker.Volume:
        """The named volume holding the service's data; prod protects and retains it."""
        return self.volume("data", service, "data", protect)

    def volume(self, suffix: str, service: str, purpose: str, protect: bool) -> docker.Volume:
        """A named volume of the service (``<prefix>-<service>-<purpose>``) that holds state;
        prod protects and retains it."""
        name = self.naming.volume(service, purpose)
        self.volume_names.append(name)
        return docker.Volume(
            f"{self._prefix}-{suffix}",
            name=name,
            labels=volume_labels(self.naming.labels(service=service)),
            opts=child(
                self,
                was=f"{service}-{purpose}",
                was_parent=self._was_parent,
                protect=protect,
                retain_on_delete=protect,
            ),
        )
