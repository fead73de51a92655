"""Which user each image runs as, from the image's own Dockerfile.

Every container runs as an explicit non-root uid, and every file delivered to it is owned by
that uid, so a 0400 secret is readable by the process and by nothing else. Keyed by image
repository (the reference without tag or digest).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageUser:
    """The uid:gid a container of this image runs as, and where that comes from."""

    uid: int
    gid: int
    source: str

    @property
    def user(self) -> str:
        return f"{self.uid}:{self.gid}"


IMAGE_USERS: dict[str, ImageUser] = {
    # docker-library/postgres 15/bookworm/Dockerfile: `useradd -r -g postgres --uid=999 postgres`.
    "postgres": ImageUser(999, 999, "docker-library/postgres 15/bookworm/Dockerfile: useradd --uid=999 postgres"),
    # redis/docker-library-redis 7.4/debian/Dockerfile: `useradd -r -g redis -u 999 redis`.
    "redis": ImageUser(999, 999, "redis/docker-library-redis 7.4/debian/Dockerfile: useradd -u 999 redis"),
    # chroma-core/chroma rust/Dockerfile has no USER (root); nothing in it needs root, so it runs
    # as this uid with its data volume handed over to it.
    "chromadb/chroma": ImageUser(1000, 1000, "chroma-core/chroma rust/Dockerfile: no USER; run as 1000"),
    # temporalio/docker-builds server.Dockerfile and admin-tools.Dockerfile:
    # `adduser -u 1000 -G temporal -D temporal` then `USER temporal`.
    "temporalio/server": ImageUser(1000, 1000, "temporalio/docker-builds server.Dockerfile: USER temporal (1000)"),
    "temporalio/admin-tools": ImageUser(
        1000, 1000, "temporalio/docker-builds admin-tools.Dockerfile: USER temporal (1000)"
    ),
    # temporalio/ui server/Dockerfile: no USER (root), but `adduser -u 5000 ... temporal` owns
    # /home/ui-server; it runs as that user.
    "temporalio/ui": ImageUser(5000, 5000, "temporalio/ui server/Dockerfile: adduser -u 5000 temporal"),
    # nginxinc/docker-nginx alpine-slim/Dockerfile: `adduser -S -D -H -u 101 ... nginx`; the master
    # needs no root here (ports above 1024, files owned by 101).
    "nginx": ImageUser(101, 101, "nginxinc/docker-nginx alpine-slim/Dockerfile: adduser -u 101 nginx"),
    # prometheus/*, prometheus-community/postgres_exporter Dockerfiles: `USER nobody` (65534).
    "prom/prometheus": ImageUser(65534, 65534, "prometheus/prometheus Dockerfile: USER nobody"),
    "prom/alertmanager": ImageUser(65534, 65534, "prometheus/alertmanager Dockerfile: USER nobody"),
    "prom/node-exporter": ImageUser(65534, 65534, "prometheus/node_exporter Dockerfile: USER nobody"),
    "quay.io/prometheuscommunity/postgres-exporter": ImageUser(
        65534, 65534, "prometheus-community/postgres_exporter Dockerfile: USER nobody"
    ),
    # oliver006/redis_exporter Dockerfile (alpine target): `USER 59000:59000`.
    "oliver006/redis_exporter": ImageUser(59000, 59000, "oliver006/redis_exporter Dockerfile: USER 59000:59000"),
    # nginx/nginx-prometheus-exporter build/Dockerfile: `USER 1001:1001`.
    "nginx/nginx-prometheus-exporter": ImageUser(
        1001, 1001, "nginx/nginx-prometheus-exporter build/Dockerfile: USER 1001:1001"
    ),
    # grafana/grafana Dockerfile: `ARG GF_UID="472"`, `USER "$GF_UID"`.
    "grafana/grafana": ImageUser(472, 472, "grafana/grafana Dockerfile: USER 472"),
    # certbot/certbot tools/docker/Dockerfile has no USER (root); it runs as the proxy's nginx
    # uid so the proxy can read the key it writes.
    "certbot/certbot": ImageUser(101, 101, "certbot/certbot Dockerfile: no USER; run as nginx's 101"),
    # stagecraft's own operations image (images/ops/Dockerfile): `USER 999:999` (postgres).
    "stagecraft/ops": ImageUser(999, 999, "images/ops/Dockerfile: USER 999:999"),
}


class UnknownImageError(LookupError):
    """An image whose user stagecraft does not know: it cannot choose file owners for it."""


def repository(image: str) -> str:
    """`quay.io/org/name:1.2@sha256:...` -> `quay.io/org/name`; `docker.io/library/x` -> `x`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: -(len(last) - last.index(":"))]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def image_user(image: str) -> ImageUser:
    """The user a container of ``image`` runs as."""
    found = IMAGE_USERS.get(repository(image))
    if found is None:
        raise UnknownImageError(
            f"image {image!r}: stagecraft does not know which user it runs as; add its repository to "
            "components/containers/images.py (from the image's Dockerfile)"
        )
    return found
