"""``python -m stagecraft_ops <command>``: backup, restore, drill, serve, health.

Each command is one subparser plus one handler taking the parsed arguments and the validated
settings. A ``seed`` command is added by ``stagecraft_ops.seed`` when that module exists: it
defines ``register(subparsers)``, which adds its subparser and sets ``handler`` on it the same way.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

from stagecraft_ops import __version__
from stagecraft_ops.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, OperationError, UsageError, log
from stagecraft_ops.manifest import REASONS
from stagecraft_ops.runtime import COMPONENTS, parse_components
from stagecraft_ops.settings import ENV_VAR, Settings, load

Handler = Callable[[argparse.Namespace, Settings], int]
EXIT_CODES = """exit codes:
  0  {ok}
  1  {failed}
  2  bad settings or usage (one line naming the file, key or argument)"""


def _epilog(ok: str, failed: str) -> str:
    return EXIT_CODES.format(ok=ok, failed=failed)


# Command modules are imported when their command runs: `health` (the healthcheck, every 30 s)
# then never loads the Google and Postgres client libraries.


def _backup(args: argparse.Namespace, settings: Settings) -> int:
    from stagecraft_ops import backup

    only = parse_components("--only", args.only)
    manifest = backup.run(settings, reason=args.reason, only=only)
    print(
        f"backup {manifest.id}: {len(manifest.artifacts)} artifacts, manifest gs://{settings.bucket}/{manifest.object}"
    )
    return EXIT_OK


def _restore(args: argparse.Namespace, settings: Settings) -> int:
    from stagecraft_ops import restore

    request = restore.Request(
        backup=args.backup,
        only=parse_components("--only", args.only),
        databases=tuple(args.database or ()),
        confirm_prod=args.confirm_prod,
        redis_data_dir=args.redis_data_dir,
        chroma_data_dir=args.chroma_data_dir,
    )
    outcome = restore.run(settings, request)
    print(f"restored from gs://{settings.bucket}/{outcome.manifest.object}:")
    for line in outcome.lines:
        print(f"  {line}")
    if outcome.differences:
        for difference in outcome.differences:
            print(f"  MISMATCH {difference}")
        raise OperationError(f"{len(outcome.differences)} check(s) against the manifest failed after the restore")
    if any(kind in (request.only or COMPONENTS) for kind in ("redis", "chroma")):
        print("  start the stopped services again (Redis, Chroma) to load the restored files")
    return EXIT_OK


def _drill(args: argparse.Namespace, settings: Settings) -> int:
    from stagecraft_ops import drill

    result = drill.run(settings, backup=args.backup)
    print(f"restore drill of {result.backup} passed: {', '.join(result.passed)}")
    return EXIT_OK


def _serve(_args: argparse.Namespace, settings: Settings) -> int:
    from stagecraft_ops import schedule

    return schedule.serve(settings)


def _health(_args: argparse.Namespace, settings: Settings) -> int:
    from stagecraft_ops import schedule

    return schedule.health(settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stagecraft_ops",
        description="Backups, restores and restore drills of one stagecraft stack (Postgres, Redis, Chroma).",
        epilog=_epilog("the command did its job", "the operation failed (the message says which step and why)"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--settings", metavar="FILE", help=f"the settings JSON file (default: ${ENV_VAR})")
    parser.add_argument("--version", action="version", version=f"stagecraft_ops {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, handler: Handler, summary: str, description: str, ok: str, failed: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=textwrap.fill(description, width=100),
            epilog=_epilog(ok, failed),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    only_help = f"comma-separated subset of {','.join(COMPONENTS)} (default: all)"
    sub = add(
        "backup",
        _backup,
        "back up Postgres, Redis and Chroma to the bucket",
        "Dump every Postgres database from one snapshot per database (with per-table row counts, "
        "checksums and sequence values), take a Redis RDB snapshot and a crash-consistent archive of "
        "Chroma's data directory; upload each with its sha256, then the manifest, then write the "
        "backup metrics file. Never deletes anything (retention is the bucket's lifecycle rule).",
        "every artifact and the manifest were uploaded",
        "an artifact failed (the others are still uploaded and listed in a manifest marked incomplete)",
    )
    sub.add_argument("--reason", choices=REASONS, default="manual", help="recorded in the manifest (default: manual)")
    sub.add_argument("--only", metavar="LIST", help=only_help)

    sub = add(
        "restore",
        _restore,
        "restore a backup (Postgres online; Redis and Chroma into stopped services' data directories)",
        "Download the chosen backup's manifest and artifacts and verify every sha256 before touching "
        "anything. Postgres: end the database's sessions, drop it, recreate it from the dump and check "
        "row counts, checksums and sequences against the manifest. Redis and Chroma are restored offline: "
        "stop the service, mount its data volume, pass its directory; what was there is moved into a "
        ".stagecraft-replaced-<time> folder. Stop the writers (API, Temporal) before restoring Postgres. "
        "A production stack needs --confirm-prod <stack>.",
        "restored, and the Postgres checks match the manifest",
        "a checksum mismatch (nothing touched), a failed restore step or a check that does not match",
    )
    sub.add_argument("--backup", default="latest", help="'latest' (default), a backup id or a manifest object name")
    sub.add_argument(
        "--only", metavar="LIST", help=f"comma-separated subset of {','.join(COMPONENTS)} (default: all in the backup)"
    )
    sub.add_argument(
        "--database", action="append", metavar="NAME", help="restore only this Postgres database (repeatable)"
    )
    sub.add_argument("--confirm-prod", metavar="STACK", help="required on a production stack: its name")
    sub.add_argument("--redis-data-dir", metavar="DIR", help="the stopped Redis's data directory (required for redis)")
    sub.add_argument(
        "--chroma-data-dir", metavar="DIR", help="the stopped Chroma's data directory (required for chroma)"
    )

    sub = add(
        "drill",
        _drill,
        "restore the latest Postgres backup into scratch databases and check it",
        "For each drill database: download and verify the dump, restore it into <db>_drill_<time>, "
        "compare every table's row count and checksum and every sequence with the manifest, and always "
        "drop the scratch database. Writes the restore drill metrics file (a failure keeps the last "
        "success time).",
        "the backup restored and matches its manifest",
        "a download, checksum, pg_restore or comparison failed (the message names the table or error)",
    )
    sub.add_argument("--backup", default="latest", help="'latest' (default), a backup id or a manifest object name")

    add(
        "serve",
        _serve,
        "run the scheduler: daily backup, weekly drill, heartbeat",
        "Run until SIGTERM: the backup at schedule.backup_utc every day, the drill at schedule.drill, "
        "each slot once (late by up to schedule.grace_minutes). Touches the heartbeat file at least "
        "every 30 s. A failing run is logged and recorded in the metrics; the service keeps going.",
        "stopped by SIGTERM or SIGINT",
        "the service could not run",
    )
    add(
        "health",
        _health,
        "exit 0 if the service's heartbeat is fresh (the container healthcheck)",
        "Check that the heartbeat file was touched less than 120 s ago.",
        "healthy",
        "the heartbeat file is missing or older than 120 s",
    )
    sub = add(
        "fetch",
        _fetch,
        "download one object (a seed dump) from a bucket of the stack",
        "Download --object from --bucket (default: the settings' bucket) to --to, with the settings' "
        "credentials; the object's checksum is verified by the download.",
        "downloaded",
        "the object is missing or the download failed",
    )
    sub.add_argument("--bucket", help="the bucket (default: the settings' bucket)")
    sub.add_argument("--object", required=True, help="the object name, e.g. seed/anonymized.dump")
    sub.add_argument("--to", required=True, type=Path, help="where to write it")

    # Staging seed data has its own commands and options: `seed --help` lists them.
    commands.add_parser(
        "seed",
        help="staging seed data: anonymize, verify-anonymized, load, generate (see `seed --help`)",
        add_help=False,
    )
    return parser


def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    from stagecraft_ops.storage import Bucket  # the health check must not pay for the cloud client

    bucket = Bucket(settings, args.bucket)
    args.to.parent.mkdir(parents=True, exist_ok=True)
    bucket.download(args.object, args.to)
    log("fetch", f"{bucket.url(args.object)} -> {args.to} ({args.to.stat().st_size} bytes)")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["seed"]:
        from stagecraft_ops.seed import main as seed_main

        return seed_main(arguments[1:])
    args = build_parser().parse_args(arguments)
    try:
        settings = load(args.settings)
        return int(args.handler(args, settings))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OperationError as error:
        log(args.command, f"FAILED: {error}")
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
