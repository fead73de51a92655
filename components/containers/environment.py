"""Environment variables of containers: plain, non-secret values only."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from components.config import AppSettings

# A variable whose name contains one of these words looks like it carries a secret.
SECRET_NAME = re.compile(r"PASS|PWD|AUTH|KEY|TOKEN|SECRET|CREDENTIAL|PRIVATE", re.IGNORECASE)
# Where delivered files live: a secret-looking variable may point at one of them.
FILES_PREFIX = "/run/stagecraft/"
# Settings whose names look secret but whose values are not.
NON_SECRET_SETTINGS = {
    "POSTGRES_HOST_AUTH_METHOD": "scram-sha-256",
    "GF_AUTH_ANONYMOUS_ENABLED": "false",
}


class UnsafeEnvironmentError(ValueError):
    """An environment variable that would carry a secret in plaintext."""


def safe_value(key: str, value: str) -> bool:
    """Whether a variable can be set to ``value`` without leaking a secret: a name that looks
    secret may only hold the path of a delivered file, true/false, or a listed setting."""
    if not SECRET_NAME.search(key):
        return True
    return value.startswith(FILES_PREFIX) or value in ("true", "false") or NON_SECRET_SETTINGS.get(key) == value


def checked_env(env: Mapping[str, str]) -> list[str]:
    """`KEY=value` pairs; a secret-looking name holds only a file path (deliver the secret as a
    file and point `<NAME>_FILE` at it), and values are plain text known now (a pulumi Output
    could be a secret, so it is refused)."""
    pairs = []
    for key, value in sorted(env.items()):
        if not isinstance(value, str):
            raise UnsafeEnvironmentError(f"{key}: environment values must be plain strings, never Outputs")
        if not safe_value(key, value):
            raise UnsafeEnvironmentError(
                f"{key}: looks like a secret; deliver it as a file under {FILES_PREFIX} and set {key}_FILE"
            )
        pairs.append(f"{key}={value}")
    return pairs


def app_environment(environment: str, app: AppSettings) -> dict[str, str]:
    """Settings of the application containers that differ per environment: log level, email
    shadow mode (staging never emails real users), CORS origins, debug endpoints, feature flags."""
    env = {
        "APP_ENV": environment,
        "LOG_LEVEL": app.log_level.upper(),
        "EMAIL_MODE": app.email_mode,
        "EMAIL_SHADOW_MODE": "true" if app.email_mode == "shadow" else "false",
        "CORS_ORIGINS": json.dumps(app.cors_origins),
        # The config model refuses debug endpoints in prod; this is belt and braces.
        "ENABLE_DEBUG_ENDPOINTS": "true" if app.debug_endpoints and environment != "prod" else "false",
        "APP_DEBUG": "false",
    }
    env.update({name: "true" if value else "false" for name, value in sorted(app.feature_flags.items())})
    return env
