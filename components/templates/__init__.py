"""Rendered files that are text, not data (nginx.conf, the init SQL): Jinja2 templates in this
folder, filled with plain values. Structured files (Prometheus, Grafana) are dicts dumped to YAML
or JSON by the service modules instead."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent


@cache
def _environment() -> jinja2.Environment:
    # Not HTML: nothing is escaped, and a missing value is an error rather than an empty string.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - config files, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **values: Any) -> str:
    """Render ``components/templates/<template>`` with ``values``."""
    return _environment().get_template(template).render(**values)
