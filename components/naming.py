"""The single source of every physical name and every label.

Each name carries the environment as a dash-separated word (or, for Postgres identifiers, an
underscore-separated one), so staging and prod can share a Docker host and a GCP project without
a single name in common.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SERVICE_ACCOUNT_ID = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
BUCKET_NAME = re.compile(r"^[a-z0-9][-a-z0-9_.]{1,61}[a-z0-9]$")
SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
POSTGRES_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
LABEL_VALUE_MAX = 63


class NamingError(ValueError):
    """A generated name would break a provider's naming rule."""


def label_value(text: str) -> str:
    """GCP label value: lowercase letters, digits, `_` and `-`, at most 63 characters."""
    value = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")
    return value[:LABEL_VALUE_MAX].rstrip("-")


def _check(pattern: re.Pattern[str], name: str, what: str) -> str:
    if not pattern.fullmatch(name):
        raise NamingError(f"{what} {name!r} does not match {pattern.pattern}")
    return name


@dataclass(frozen=True)
class Naming:
    """Names and labels for one stack of one application."""

    app: str
    environment: str
    stack: str
    project: str
    branch: str | None = None

    @property
    def prefix(self) -> str:
        return f"{self.app}-{self.environment}"

    # Docker ---------------------------------------------------------------------------------

    def container(self, service: str) -> str:
        return _check(DOCKER_NAME, f"{self.prefix}-{service}", "container name")

    def volume(self, service: str, purpose: str = "data") -> str:
        return _check(DOCKER_NAME, f"{self.prefix}-{service}-{purpose}", "volume name")

    def network(self, purpose: str) -> str:
        return _check(DOCKER_NAME, f"{self.prefix}-{purpose}", "network name")

    # Google Cloud ---------------------------------------------------------------------------

    def bucket(self, purpose: str) -> str:
        """Globally unique: prefixed with the project, then the environment."""
        name = f"{self.project}-{self.environment}-{purpose}"
        if len(name) > 63 or "google" in name or name.startswith("goog"):
            raise NamingError(f"bucket name {name!r} must be 3-63 characters and not mention google")
        return _check(BUCKET_NAME, name, "bucket name")

    def secret_id(self, name: str) -> str:
        return _check(SECRET_ID, f"{self.environment}-{name}", "secret ID")

    def service_account_id(self, workload: str) -> str:
        return _check(SERVICE_ACCOUNT_ID, f"{self.prefix}-{workload}", "service account ID")

    # Postgres -------------------------------------------------------------------------------

    def database(self, purpose: str = "app") -> str:
        base = f"{self.app}_{self.environment}"
        return _check(POSTGRES_IDENTIFIER, base if purpose == "app" else f"{base}_{purpose}", "database name")

    def database_user(self, purpose: str = "app") -> str:
        return _check(POSTGRES_IDENTIFIER, f"{self.app}_{self.environment}_{purpose}", "database user")

    # People-facing --------------------------------------------------------------------------

    def display_name(self, what: str) -> str:
        """For humans in the console: environment and, when set, the git branch."""
        text = f"{self.app} {self.environment} {what}"
        return f"{text} (branch {self.branch})" if self.branch else text

    def description(self, what: str) -> str:
        return f"{self.display_name(what)}; managed by stagecraft (stack {self.stack})"

    def labels(self, **extra: str) -> dict[str, str]:
        """Labels for every resource that takes them."""
        labels = {
            "app": label_value(self.app),
            "environment": label_value(self.environment),
            "stack": label_value(self.stack),
            "managed-by": "pulumi",
        }
        if self.branch:
            labels["git-branch"] = label_value(self.branch)
        labels.update({key: label_value(value) for key, value in extra.items()})
        return labels
