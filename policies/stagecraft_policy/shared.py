"""Facts the pack shares with the program it judges.

The pack runs in its own virtualenv and never imports the program, so it keeps its own copies of
the few constants and rules both sides must agree on; tests/test_pack_parity.py proves each copy
equals the program's.
"""

from __future__ import annotations

import re

# Roles never granted, and principals that are the public.
PRIMITIVE_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})
# The only roles granted on a whole project: writing logs, metrics and traces.
PROJECT_ROLES: tuple[str, ...] = ("roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/cloudtrace.agent")

# An environment variable whose name contains one of these words looks like it carries a secret.
SECRET_NAME = re.compile(r"PASS|PWD|AUTH|KEY|TOKEN|SECRET|CREDENTIAL|PRIVATE", re.IGNORECASE)
# Where delivered files live inside a container: a secret-looking variable may point at one.
FILES_PREFIX = "/run/stagecraft/"
# Settings whose names look secret but whose values are not.
NON_SECRET_SETTINGS = {
    "POSTGRES_HOST_AUTH_METHOD": "scram-sha-256",
    "GF_AUTH_ANONYMOUS_ENABLED": "false",
}

# The reverse proxy's ports inside its container; only these are ever published for it.
PROXY_HTTP_PORT = 8080
PROXY_HTTPS_PORT = 8443
# The smallest PIDs limit the program sets on a container.
MIN_PIDS_LIMIT = 32

# A version tag names at least major.minor (`15.12-bookworm`, `v3.2.1`); a digest is sha256.
_VERSION_TAG = re.compile(r"^v?[0-9]+\.[0-9]+[A-Za-z0-9_.-]*$")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def safe_value(key: str, value: str) -> bool:
    """Whether a variable can be set to ``value`` without leaking a secret: a name that looks
    secret may only hold the path of a delivered file, true/false, or a listed setting."""
    if not SECRET_NAME.search(key):
        return True
    return value.startswith(FILES_PREFIX) or value in ("true", "false") or NON_SECRET_SETTINGS.get(key) == value


def image_is_pinned(image: str) -> bool:
    """A reference pinned to a full version (major.minor at least) or to a sha256 digest."""
    if _DIGEST.search(image):
        return bool(image.split("@", 1)[0])
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return False
    return _VERSION_TAG.match(tag) is not None


def names_environment(text: str, environment: str) -> bool:
    """True if ``environment`` is a whole dash-separated word of ``text``."""
    return environment in text.split("-")
