"""Docker networks of one environment: edge, app, data and monitoring, each on its own subnet."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import Network as NetworkSettings
from components.containers.labels import network_labels
from components.naming import Naming
from components.resources import child

# Internal networks have no route out: nothing on them reaches the internet or is published.
# edge (the proxy's published side), app (the proxy and what it serves) and egress (jobs that
# reach Google Cloud) are not internal.
INTERNAL = {
    "edge": False,
    "app": False,
    "data": True,
    "chroma": True,
    "temporal": True,
    "monitoring": True,
    "egress": False,
    "alerting": False,
}


def host_address(subnet: str, index: int) -> str:
    """The ``index``-th address of a subnet, for containers that need a fixed address."""
    return str(ipaddress.IPv4Network(subnet)[index])


@dataclass(frozen=True)
class NetworksArgs:
    naming: Naming
    settings: NetworkSettings


class Networks(pulumi.ComponentResource):
    """Creates the environment's networks with its own non-overlapping subnets, so staging and
    prod can share one Docker host. Each unauthenticated service (Chroma, Temporal) gets a
    network shared with its real clients only; the data, Chroma, Temporal and monitoring
    networks are internal: no route out, nothing published from them."""

    networks: dict[str, docker.Network]

    def __init__(self, name: str, args: NetworksArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:network:Networks", name, None, opts)
        self.networks = {}
        for purpose, internal in INTERNAL.items():
            subnet = getattr(args.settings, purpose)
            self.networks[purpose] = docker.Network(
                f"{name}-{purpose}",
                name=args.naming.network(purpose),
                driver="bridge",
                internal=internal,
                attachable=False,
                ipam_configs=[docker.NetworkIpamConfigArgs(subnet=subnet, gateway=host_address(subnet, 1))],
                labels=network_labels(args.naming.labels(network=purpose)),
                opts=child(self, was=purpose),
            )
        self.names = {purpose: network.name for purpose, network in self.networks.items()}
        self.register_outputs({"names": self.names})
