"""Environment variables of containers: plain, non-secret values only."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from components.config import AppSettings

# Variable names that must never carry a value, only a *_FILE path.
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|_PWD|SECRET|TOKEN|_KEY|CREDENTIAL|PRIVATE)", re.IGNORECASE)


class UnsafeEnvironmentError(ValueError):
    """An environment variable that would carry a secret in plaintext."""


def checked_env(env: Mapping[str, str]) -> list[str]:
    """`KEY=value` pairs; a secret-looking name must end in _FILE, and values must be plain text
    known now (a pulumi Output could be a secret, so it is refused)."""
    pairs = []
    for key, value in sorted(env.items()):
        if not isinstance(value, str):
            raise UnsafeEnvironmentError(f"{key}: environment values must be plain strings, never Outputs")
        if SECRET_NAME.search(key) and not key.endswith("_FILE"):
            raise UnsafeEnvironmentError(f"{key}: looks like a secret; deliver it as a file and set {key}_FILE")
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
