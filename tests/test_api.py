"""The API's environment: per-environment behaviour, and never debug endpoints in prod."""

from __future__ import annotations

from components.config import AppSettings
from components.containers.environment import app_environment
from components.containers.healthchecks import http_check


def test_debug_endpoints_can_never_be_enabled_in_prod() -> None:
    # Even if a model were built past validation, the rendered flag stays off in prod.
    settings = AppSettings.model_construct(
        log_level="info",
        cors_origins=["https://a.example.com"],
        email_mode="live",
        debug_endpoints=True,
        feature_flags={},
    )
    assert app_environment("prod", settings)["ENABLE_DEBUG_ENDPOINTS"] == "false"
    assert app_environment("staging", settings)["ENABLE_DEBUG_ENDPOINTS"] == "true"


def test_feature_flags_and_shadow_mode() -> None:
    settings = AppSettings(
        cors_origins=["https://s.example.com"], feature_flags={"ENABLE_LEARNING": False, "ENABLE_X": True}
    )
    env = app_environment("staging", settings)
    assert env["ENABLE_LEARNING"] == "false" and env["ENABLE_X"] == "true"
    assert env["EMAIL_SHADOW_MODE"] == "true" and env["APP_ENV"] == "staging"


def test_health_check_defaults_to_curl_and_accepts_a_custom_command() -> None:
    assert http_check(8001, "/health", None) == [
        "CMD",
        "curl",
        "-fsS",
        "-o",
        "/dev/null",
        "http://127.0.0.1:8001/health",
    ]
    assert http_check(8001, "/health", ["python", "-c", "1"]) == ["CMD", "python", "-c", "1"]
