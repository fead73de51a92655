"""What a deployed stack tells the tools that check it: the ``verify`` output."""

from __future__ import annotations

from typing import Any

from components.config import StackConfig
from components.containers.container import LOG_OPTIONS, secret_path
from components.containers.service import ServiceComponent
from components.naming import Naming
from components.services import chroma, grafana, postgres, prometheus, redis
from components.services.proxy import HEALTH_PORT

# The probes run in the ops container: it has psql, redis-cli and python3, and it is on the data
# network with Postgres and Redis.
PROBE_SERVICE = "ops"
PROBE_POSTGRES_USER = "postgres"
PROBE_REDIS_USER = "verify"
PROBE_SECRETS = {"postgres": "postgres-superuser-password", "redis": redis.USER_SECRETS[PROBE_REDIS_USER]}


def verify_output(
    config: StackConfig,
    naming: Naming,
    components: list[ServiceComponent],
    networks: list[str],
    temporal_address: str,
) -> dict[str, Any]:
    """Where each part of the stack is and what it must look like, for ``preflight verify``:
    every long-running service by its stable name, every job, network and volume, the ports,
    domains and limits the live checks compare against. Nothing in it is secret."""
    sc = config.stagecraft
    containers = [container for component in components for container in component.containers]
    return {
        "stack": naming.stack,
        "environment": sc.environment,
        "docker_host": config.docker.host,
        "name_prefix": f"{naming.prefix}-",
        "proxy": {"http_port": sc.proxy.http_port, "https_port": sc.proxy.https_port, "health_port": HEALTH_PORT},
        "domains": sc.domains.model_dump(),
        "health_paths": {"api": sc.services.api.health_path, "web": sc.services.web.health_path},
        "cors_origins": list(sc.app.cors_origins),
        "rate_limit": {"per_minute": sc.proxy.rate_limit_per_minute, "burst": sc.proxy.rate_limit_burst},
        "p95_latency_ms": sc.monitoring.alerts.p95_latency_ms,
        "labels": naming.labels(),
        "log_options": dict(LOG_OPTIONS),
        "services": {c.service: c.stable_name for c in containers if not c.one_shot},
        "jobs": {c.service: c.stable_name for c in containers if c.one_shot},
        "networks": sorted(networks),
        "volumes": sorted({name for component in components for name in component.volume_names}),
        "databases": {"app": naming.database()},
        "postgres_port": postgres.PORT,
        "redis_port": redis.PORT,
        "chroma_port": chroma.PORT,
        "temporal_address": temporal_address,
        "monitoring": {"prometheus_port": prometheus.PORT, "grafana_port": grafana.PORT},
        # By service label (temporal_ui in config is the temporal-ui service).
        "debug_ports": {
            key.replace("_", "-"): port for key, port in sc.debug_ports.model_dump().items() if port is not None
        },
        "probe": {
            "service": PROBE_SERVICE,
            "postgres_user": PROBE_POSTGRES_USER,
            "postgres_password_file": secret_path(PROBE_SECRETS["postgres"]),
            "redis_user": PROBE_REDIS_USER,
            "redis_password_file": secret_path(PROBE_SECRETS["redis"]),
        },
    }
