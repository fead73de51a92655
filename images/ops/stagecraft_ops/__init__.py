"""stagecraft's operations tool: backups, restores and restore drills of one stack.

It runs inside the stack's "ops" container (``python -m stagecraft_ops <command>``) and reads one
JSON settings file, rendered by the Pulumi program, from ``--settings`` or ``OPS_SETTINGS_FILE``.
The file holds no secret, only paths to files that do. Schema (every key required unless marked
optional; unknown keys are refused)::

    {
      "stack": "staging",                    # [a-z0-9-], the Pulumi stack
      "environment": "staging",              # [a-z0-9-]
      "prod": false,                         # restores then need --confirm-prod <stack>
      "bucket": "acme-staging-4711-staging-backups",
      "credentials_file": "/run/stagecraft/secrets/gcp-key.json",   # or null: application default
      "postgres": {
        "host": "acme-staging-postgres", "port": 5432, "user": "postgres",
        "password_file": "/run/stagecraft/secrets/postgres-superuser-password",
        "databases": ["acme_staging", "acme_staging_temporal", "acme_staging_temporal_visibility"],
        "drill_databases": ["acme_staging"],  # a subset of databases
        "bin_dir": null                      # optional: where pg_dump/pg_restore live (default: PATH)
      },
      "redis": {
        "host": "acme-staging-redis", "port": 6379, "user": "backup",
        "password_file": "/run/stagecraft/secrets/redis-backup-password"
      },
      "chroma": {"data_dir": "/chroma"},
      "schedule": {"backup_utc": "02:00", "drill": "sun 03:00", "grace_minutes": 60},
      "textfile_dir": "/metrics",
      "heartbeat_file": "/tmp/stagecraft-ops.heartbeat",
      "work_dir": "/tmp/ops"
    }

``schedule.drill`` is ``<mon|tue|wed|thu|fri|sat|sun> HH:MM`` (weekly) or ``daily HH:MM``, in UTC.
``grace_minutes`` is how late a slot may still start (after a restart, or behind a long backup).

Exit codes of every command: 0 done, 1 the operation failed, 2 bad settings or usage.
"""

import warnings

__version__ = "1.0.0"

# google-api-core warns on every start that it will drop Python 3.11 in 2027; the image's Python
# is Debian's, so the notice is for whoever bumps the base image, not for each log.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.api_core\._python_version_support")
