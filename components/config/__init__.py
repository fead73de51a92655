"""A stack's whole configuration as one pydantic model, split by concern:

- ``base``: the strict model base, the secret type and shared field types;
- ``app``, ``services``, ``cloud``, ``host``, ``operations``: one module per section, each model
  checking the rules that touch only its own fields;
- ``stack``: the whole config and the rules that set prod apart from staging;
- ``errors``: messages that name the stack file and the key path;
- ``loading``: from the Pulumi engine (a real run) or a stack file (preflight).
"""

from components.config.app import AppSettings, Domains
from components.config.base import ConfigSecret
from components.config.cloud import (
    GENERATED_SECRETS,
    PRIMITIVE_ROLES,
    PUBLIC_MEMBERS,
    WORKLOADS,
    Gcp,
    Identity,
    ProvidedSecret,
    SecretSettings,
    Storage,
)
from components.config.errors import ConfigError, validate
from components.config.host import (
    AcmeTls,
    DebugPorts,
    Docker,
    Network,
    ProvidedTls,
    Proxy,
    SecretManagerTls,
    SelfSignedTls,
    normalized_docker_host,
)
from components.config.loading import (
    engine_view,
    load_for_current_stack,
    load_from_engine,
    load_from_file,
    read_stack_file,
)
from components.config.operations import Alerting, AlertThresholds, Backup, Monitoring, OpsService, Seed
from components.config.services import (
    ApiService,
    AppService,
    ChromaService,
    PostgresService,
    RedisService,
    Service,
    Services,
    TemporalService,
    image_is_pinned,
)
from components.config.stack import StackConfig, Stagecraft

__all__ = [
    "GENERATED_SECRETS",
    "PRIMITIVE_ROLES",
    "PUBLIC_MEMBERS",
    "WORKLOADS",
    "AcmeTls",
    "AlertThresholds",
    "Alerting",
    "ApiService",
    "AppService",
    "AppSettings",
    "Backup",
    "ChromaService",
    "ConfigError",
    "ConfigSecret",
    "DebugPorts",
    "Docker",
    "Domains",
    "Gcp",
    "Identity",
    "Monitoring",
    "Network",
    "OpsService",
    "PostgresService",
    "ProvidedSecret",
    "ProvidedTls",
    "Proxy",
    "RedisService",
    "SecretManagerTls",
    "SecretSettings",
    "Seed",
    "SelfSignedTls",
    "Service",
    "Services",
    "StackConfig",
    "Stagecraft",
    "Storage",
    "TemporalService",
    "engine_view",
    "image_is_pinned",
    "load_for_current_stack",
    "load_from_engine",
    "load_from_file",
    "normalized_docker_host",
    "read_stack_file",
    "validate",
]
