"""ChromaDB 1.x: the vector store, reachable by the API only."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import ChromaService
from components.containers.container import Attachment, config_path
from components.containers.endpoints import Endpoint
from components.containers.images import image_user
from components.containers.service import ServiceComponent
from components.naming import Naming

PORT = 8000
DATA_DIR = "/data"
HEARTBEAT = "/api/v2/heartbeat"  # v1 paths answer 410 in Chroma 1.x


def render_chroma_config(port: int = PORT, persist_path: str = DATA_DIR) -> str:
    return "\n".join(
        [
            "# stagecraft: rendered, do not edit",
            f"port: {port}",
            'listen_address: "0.0.0.0"',
            f'persist_path: "{persist_path}"',
            "allow_reset: false",
            "",
        ]
    )


def heartbeat_check(port: int = PORT) -> list[str]:
    """The image has no curl or wget: bash's /dev/tcp speaks HTTP/1.0 to the heartbeat."""
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{port} && "
        f"printf 'GET {HEARTBEAT} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && "
        "grep -q 'nanosecond heartbeat' <&3"
    )
    return ["CMD", "bash", "-c", script]


@dataclass(frozen=True)
class ChromaArgs:
    naming: Naming
    settings: ChromaService
    chroma_network: docker.Network
    protect: bool = False


class Chroma(ServiceComponent):
    """Creates ChromaDB. Chroma 1.x has no authentication of its own, so it joins only its own
    internal network, shared with its one client (the API), and publishes no port in any
    environment. It runs as a non-root uid its data volume is handed to."""

    def __init__(self, name: str, args: ChromaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stagecraft:chroma:Chroma", name, args.naming, opts)
        naming = args.naming
        self.endpoint = Endpoint(naming.container("chroma"), PORT)
        self.volume = self.data_volume("chroma", args.protect)
        user = image_user(args.settings.image).user
        owner = self.volume_owner("chroma", args.settings, user, {DATA_DIR: self.volume})
        self.server = self.container(
            "server",
            "chroma",
            args.settings,
            networks=[Attachment(args.chroma_network, aliases=("chroma",))],
            command=["run", config_path("chroma.yaml")],
            config_files={"chroma.yaml": render_chroma_config()},
            health_test=heartbeat_check(),
            volumes={DATA_DIR: self.volume.name},
            tmp_mb=64,
            after=[owner],
        )
        self.register_outputs({"host": self.endpoint.host})
