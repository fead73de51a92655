"""`preflight rollback`: back to the images of a stack's previous release, from the stack file's
git history, with the exact commands to run, and (``--plan``) an offline proof that the rollback
changes nothing but what the images drive.

The previous release is the most recent commit of ``Pulumi.<stack>.yaml`` whose pinned service
images (``stagecraft:services.<service>.image``) differ from the working-tree file; ``--to REV``
names one instead. Only images are rolled back: ``pulumi config set --path`` rewrites one nested
key of the ``stagecraft:services`` object and leaves every other key as it is now.

The proof plans the current file and the previous release's file under the mock engine and
compares every resource's inputs: each difference must follow from an image (the pulled image, the
containers that run it, a rolling container's versioned name, the backup job keyed on the API
image, labels gating on replaced jobs). Anything else, e.g. a memory limit that also changed
between the releases, is reported as a failure. The rollback's critical path is the deploy's,
counted over the resources the rollback replaces.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

if TYPE_CHECKING:
    from preflight.critical_path import CriticalPath
    from preflight.engine import Plan, PlannedResource

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

EXIT_CODES = """exit codes:
  0  the previous release was found and the commands printed (with --plan: the rollback changes only
     what the images drive)
  1  with --plan: the rollback would change something an image does not explain (each listed), the
     previous release's file does not validate, or the program failed under the mock engine
  2  usage: not a git repository, the stack file has no history, no earlier release with other
     images, unreadable YAML at a revision (named), an unknown --to revision"""

PROJECT_DIR = Path(__file__).resolve().parent.parent
SERVICES_KEY = "stagecraft:services"
# Services that keep data: an older image may not read what a newer one wrote.
STATEFUL = ("postgres", "redis", "chroma", "temporal")
# The ops image's Python (its venv is not on the container's PATH).
OPS_PYTHON = "/opt/ops/bin/python"
CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
BUILT_IMAGE = "docker:index/image:Image"
VERSIONED_NAME = re.compile(r"^(?P<stable>.+)-[0-9a-f]{8}$")
SHOWN_CHARS = 60


class RollbackError(Exception):
    """A rollback that cannot be worked out, said in one line (exit 2)."""


class PlanFailedError(Exception):
    """The program failed under the mock engine for one of the two releases (exit 1)."""


# ---------------------------------------------------------------------------------------------
# Git


@dataclass(frozen=True)
class Commit:
    sha: str
    short: str
    date: str  # committer date, ISO 8601
    subject: str

    def to_json(self) -> dict[str, str]:
        return {"sha": self.sha, "short": self.short, "date": self.date, "subject": self.subject}

    def describe(self) -> str:
        return f'{self.short} {self.date[:10]} "{self.subject}"'


LOG_FORMAT = "%H%x1f%h%x1f%cI%x1f%s"


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", "-C", str(directory), "-c", "log.showSignature=false", *args],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise RollbackError("git is not installed (not on PATH); the rollback reads the stack file's history") from None


def _commit(line: str) -> Commit:
    sha, short, date, subject = line.split("\x1f", 3)
    return Commit(sha, short, date, subject)


def _require_repository(directory: Path, stack_file: Path) -> None:
    if not directory.is_dir():
        raise RollbackError(f"{stack_file}: its directory does not exist")
    result = _git(directory, "rev-parse", "--is-inside-work-tree")
    if result.returncode == 0:
        return
    if "not a git repository" in result.stderr:
        raise RollbackError(
            f"{stack_file}: {directory} is not a git repository; the previous release is read from the file's history"
        )
    raise RollbackError(f"{stack_file}: git cannot read {directory}: {_first_line(result.stderr)}")


def file_history(stack_file: Path) -> list[Commit]:
    """Commits that touched the stack file, newest first (from HEAD)."""
    result = _git(stack_file.parent, "log", f"--format={LOG_FORMAT}", "--", stack_file.name)
    if result.returncode != 0:
        # A repository without any commit has no HEAD to read a log from.
        return []
    return [_commit(line) for line in result.stdout.splitlines() if line]


def file_at(stack_file: Path, commit: Commit) -> str | None:
    """The stack file's text at a commit, or None if the file does not exist there."""
    result = _git(stack_file.parent, "show", f"{commit.sha}:./{stack_file.name}")
    if result.returncode == 0:
        return result.stdout
    if "does not exist in" in result.stderr or "exists on disk, but not in" in result.stderr:
        return None
    raise RollbackError(f"{stack_file.name} at {commit.short}: git show failed: {_first_line(result.stderr)}")


def resolve_commit(stack_file: Path, revision: str) -> Commit:
    """``--to REV`` as a commit."""
    if revision.startswith("-"):
        raise RollbackError(f"--to {revision!r}: not a revision (a commit, tag or branch)")
    result = _git(stack_file.parent, "log", "-1", f"--format={LOG_FORMAT}", f"{revision}^{{commit}}", "--")
    if result.returncode != 0 or not result.stdout.strip():
        raise RollbackError(f"--to {revision}: no such commit in the repository of {stack_file.name}")
    return _commit(result.stdout.strip())


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")


# ---------------------------------------------------------------------------------------------
# Stack files


def parse_config(text: str, where: str) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file's text; ``where`` names the file and revision."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark else ""
        raise RollbackError(f"{where}: not valid YAML ({at}{getattr(error, 'problem', None) or error})") from None
    if document is None:
        document = {}
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise RollbackError(f"{where}: `config` must be a mapping of `namespace:key: value`")
    config = document.get("config") or {}
    # A key without a namespace belongs to the project, as the Pulumi CLI reads it.
    return {(str(key) if ":" in str(key) else f"stagecraft:{key}"): value for key, value in config.items()}


def service_images(config: Mapping[str, Any]) -> dict[str, str]:
    """{service: image} for every service of ``stagecraft:services`` that pins an image."""
    services = config.get(SERVICES_KEY)
    if not isinstance(services, dict):
        return {}
    return {
        str(name): settings["image"]
        for name, settings in services.items()
        if isinstance(settings, dict) and isinstance(settings.get("image"), str)
    }


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and set(value) != {"secure"}:
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}")
    else:
        yield prefix, value


def _is_image_key(path: str) -> bool:
    return re.fullmatch(rf"{re.escape(SERVICES_KEY)}\.[^.]+\.image", path) is not None


def other_differences(current: Mapping[str, Any], previous: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key path, current, previous) of every config key besides images that differs."""
    now = dict(item for key, value in current.items() for item in _flatten(value, key))
    then = dict(item for key, value in previous.items() for item in _flatten(value, key))
    missing = object()
    found = []
    for path in sorted(set(now) | set(then)):
        a, b = now.get(path, missing), then.get(path, missing)
        if a != b and not _is_image_key(path):
            found.append((path, None if a is missing else a, None if b is missing else b))
    return found


def _masked(value: Any) -> Any:
    return "[secret]" if isinstance(value, dict) and set(value) == {"secure"} else value


def _shown(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"secure"}:
        return "[secret]"
    text = "(not set)" if value is None else json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


# ---------------------------------------------------------------------------------------------
# The rollback


@dataclass(frozen=True)
class ImageChange:
    service: str
    current: str
    previous: str

    def to_json(self) -> dict[str, str]:
        return {"service": self.service, "current": self.current, "previous": self.previous}


@dataclass(frozen=True)
class RestoreHint:
    """Restoring the backup taken before the current release's migration, with the ops tool."""

    ops_container: str
    backup_job: str
    database: str
    stack: str
    prod: bool
    docker_host: str | None

    @property
    def restore_command(self) -> str:
        command = (
            f"docker exec {self.ops_container} {OPS_PYTHON} -m stagecraft_ops restore "
            f"--backup <backup-id> --only postgres --database {self.database}"
        )
        return command + (f" --confirm-prod {shlex.quote(self.stack)}" if self.prod else "")

    @property
    def commands(self) -> list[str]:
        stack = shlex.quote(self.stack)
        return [
            f"docker logs {self.backup_job} 2>&1 | grep '^backup '",
            f"docker stop $(docker ps -q --filter label=stack={stack} --filter label=service=api)",
            self.restore_command,
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "ops_container": self.ops_container,
            "backup_job": self.backup_job,
            "database": self.database,
            "confirm_prod": self.stack if self.prod else None,
            "docker_host": self.docker_host,
            "commands": self.commands,
        }


@dataclass
class Rollback:
    """What rolling a stack back to its previous release means: per service the image it runs
    now and the one it ran then, and the commands that put the previous ones back."""

    stack: str
    stack_file: Path
    previous: Commit
    previous_text: str
    changes: list[ImageChange]
    unchanged: list[str]
    # Services pinned now that the previous release did not pin (left as they are).
    not_in_previous: list[str]
    # The commit the current images come from (None: uncommitted, or not looked for with --to).
    current_commit: Commit | None
    uncommitted: bool
    other_differences: list[tuple[str, Any, Any]]
    restore: RestoreHint | None
    proof: Proof | None = None

    @property
    def config_commands(self) -> list[str]:
        stack = shlex.quote(self.stack)
        return [
            f"pulumi config set --path {_single_quoted(f'{SERVICES_KEY}.{c.service}.image')} "
            f"{_single_quoted(c.previous)} -s {stack}"
            for c in self.changes
        ]

    @property
    def up_command(self) -> str:
        return f"pulumi up -s {shlex.quote(self.stack)}"

    @property
    def commands(self) -> list[str]:
        return [*self.config_commands, self.up_command]

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "stack_file": str(self.stack_file),
            "current": {
                "source": "working tree",
                "commit": self.current_commit.to_json() if self.current_commit else None,
                "uncommitted": self.uncommitted,
            },
            "previous": self.previous.to_json(),
            "changed": [change.to_json() for change in self.changes],
            "unchanged": self.unchanged,
            "not_in_previous": self.not_in_previous,
            "commands": self.commands,
            "schema_restore": self.restore.to_json() if self.restore else None,
            "other_differences": [
                {"key": key, "current": _masked(now), "previous": _masked(then)}
                for key, now, then in self.other_differences
            ],
            "plan": self.proof.to_json() if self.proof else None,
        }


def _single_quoted(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _changes(current: Mapping[str, str], previous: Mapping[str, str]) -> list[ImageChange]:
    return [
        ImageChange(service, image, previous[service])
        for service, image in current.items()
        if service in previous and previous[service] != image
    ]


def _restore_hint(stack: str, config: Mapping[str, Any]) -> RestoreHint:
    from components.naming import Naming, NamingError

    app = str(config.get("stagecraft:app_name", "<app>"))
    environment = str(config.get("stagecraft:environment", "<env>"))
    host = config.get("docker:host")
    try:
        naming = Naming(app=app, environment=environment, stack=stack, project=str(config.get("gcp:project", "")))
        ops, job, database = (
            naming.container("ops"),
            naming.container("ops-pre-migration-backup"),
            naming.database(),
        )
    except NamingError:
        ops, job, database = f"{app}-{environment}-ops", f"{app}-{environment}-ops-pre-migration-backup", "<database>"
    return RestoreHint(
        ops_container=ops,
        backup_job=job,
        database=database,
        stack=stack,
        prod=environment == "prod",
        docker_host=host if isinstance(host, str) else None,
    )


@dataclass(frozen=True)
class _Found:
    commit: Commit
    text: str
    config: dict[str, Any]
    # The oldest of the newer commits that pin the working tree's images (None: uncommitted).
    current_commit: Commit | None


def _release_at(stack_file: Path, images: Mapping[str, str], to: str) -> _Found:
    commit = resolve_commit(stack_file, to)
    text = file_at(stack_file, commit)
    if text is None:
        raise RollbackError(f"--to {to}: {stack_file.name} does not exist at {commit.short}")
    config = parse_config(text, f"{stack_file.name} at {commit.short}")
    if not _changes(images, service_images(config)):
        raise RollbackError(f"--to {to}: {stack_file.name} at {commit.short} pins the same images as the working tree")
    return _Found(commit, text, config, None)


def _previous_release(stack_file: Path, images: Mapping[str, str], history: Sequence[Commit]) -> _Found:
    """The newest commit whose images differ from the working tree's."""
    current_commit: Commit | None = None
    for commit in history:
        text = file_at(stack_file, commit)
        if text is None:  # the commit deleted the file
            continue
        config = parse_config(text, f"{stack_file.name} at {commit.short}")
        if _changes(images, service_images(config)):
            return _Found(commit, text, config, current_commit)
        current_commit = commit
    raise RollbackError(
        f"{stack_file.name}: none of its {len(history)} commit(s) pins other images than the working tree; "
        "there is no earlier release to roll back to"
    )


def find_rollback(stack: str, stack_file: Path, to: str | None = None) -> Rollback:
    """The previous release of ``stack_file`` (or the commit ``to`` names) against the working
    tree's file; raises RollbackError with one line when there is none or it cannot be read."""
    stack_file = stack_file.resolve()
    _require_repository(stack_file.parent, stack_file)
    name = stack_file.name
    try:
        current_text = stack_file.read_text()
    except FileNotFoundError:
        raise RollbackError(f"{stack_file}: not found (the working-tree stack file is what is rolled back)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RollbackError(f"{stack_file}: cannot be read ({error})") from None
    current = parse_config(current_text, f"{name} (working tree)")
    images = service_images(current)
    if not images:
        raise RollbackError(f"{name} (working tree): {SERVICES_KEY} pins no image; there is nothing to roll back")
    history = file_history(stack_file)
    if not history:
        raise RollbackError(f"{name}: no commit in the history of {stack_file.parent} holds it; commit it first")
    found = _release_at(stack_file, images, to) if to is not None else _previous_release(stack_file, images, history)
    previous_images = service_images(found.config)
    changes = _changes(images, previous_images)
    changed = {change.service for change in changes}
    return Rollback(
        stack=stack,
        stack_file=stack_file,
        previous=found.commit,
        previous_text=found.text,
        changes=changes,
        unchanged=[service for service in images if service in previous_images and service not in changed],
        not_in_previous=[service for service in images if service not in previous_images],
        current_commit=found.current_commit,
        uncommitted=to is None and found.current_commit is None,
        other_differences=other_differences(current, found.config),
        # The migration job runs the API image: a new one may have moved the schema.
        restore=_restore_hint(stack, current) if "api" in changed else None,
    )


# ---------------------------------------------------------------------------------------------
# The offline proof


@dataclass(frozen=True)
class Changed:
    """A resource the rollback changes, and why."""

    urn: str
    name: str
    type: str
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"urn": self.urn, "name": self.name, "type": self.type, "reasons": list(self.reasons)}


@dataclass
class Proof:
    """The mock engine's verdict on a rollback: what it changes, what an image does not explain."""

    changed: list[Changed]
    # Unchanged inputs that read the ID of a replaced resource (new on a real update).
    follow_ons: list[Changed]
    failures: list[str]
    path: CriticalPath | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def urns(self) -> set[str]:
        return {item.urn for item in [*self.changed, *self.follow_ons]}

    def to_json(self) -> dict[str, Any]:
        return {
            "only_images": self.ok,
            "changed": [item.to_json() for item in self.changed],
            "follow_ons": [item.to_json() for item in self.follow_ons],
            "failures": self.failures,
            "critical_path": self.path.to_json() if self.path else None,
        }


KeyPath = tuple[str | int, ...]


def _is_envelope(value: Any) -> bool:
    from preflight.engine import SIG_KEY

    return isinstance(value, dict) and SIG_KEY in value


def _differences(old: Any, new: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any, Any]]:
    """Leaf differences between two input trees; secret envelopes are compared whole."""
    if isinstance(old, dict) and isinstance(new, dict) and not _is_envelope(old) and not _is_envelope(new):
        for key in sorted(set(old) | set(new)):
            yield from _differences(old.get(key), new.get(key), (*path, key))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from _differences(a, b, (*path, index))
    elif old != new:
        yield path, old, new


def _path_text(path: KeyPath) -> str:
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    return text.lstrip(".") or "(inputs)"


def _value_text(value: Any) -> str:
    from preflight.engine import mask_secrets

    shown = mask_secrets(value)
    text = "(none)" if value is None else shown if isinstance(shown, str) else json.dumps(shown, sort_keys=True)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _change_text(old: Any, new: Any) -> str:
    """``old -> new``; for rendered files, the first line that differs."""
    if isinstance(old, str) and isinstance(new, str) and ("\n" in old or "\n" in new):
        before, after = old.splitlines(), new.splitlines()
        for number, (a, b) in enumerate(zip([*before, ""], [*after, ""], strict=False), start=1):
            if a != b:
                return f"line {number}: {_value_text(a.strip())} -> {_value_text(b.strip())}"
    return f"{_value_text(old)} -> {_value_text(new)}"


def _contains(value: Any, needles: Sequence[str]) -> bool:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return any(needle in text for needle in needles)


def _label_name(inputs: Mapping[str, Any], path: KeyPath) -> str | None:
    if len(path) >= 2 and path[0] == "labels" and isinstance(path[1], int):
        labels = inputs.get("labels") or []
        if path[1] < len(labels) and isinstance(labels[path[1]], dict):
            return str(labels[path[1]].get("label"))
    return None


def _mock_id(stack: str, resource: PlannedResource) -> str | None:
    """The ID the mock engine gave a resource (stable across plans, unlike a real replacement's)."""
    import pulumi

    from preflight.mocks import PlanMocks

    try:
        resource_id, _ = PlanMocks(stack).new_resource(
            pulumi.runtime.MockResourceArgs(resource.type, resource.name, dict(resource.inputs), custom=True)
        )
    except (KeyError, TypeError, ValueError):
        return None
    return resource_id or None


def compare_plans(current: Plan, rolled_back: Plan, changes: Sequence[ImageChange]) -> Proof:
    """Every input that differs between the two plans, each explained by an image change or
    reported as a failure; plus the resources that hold a changed image but would not change."""
    before = {resource.urn: resource for resource in current.resources}
    after = {resource.urn: resource for resource in rolled_back.resources}
    failures: list[str] = []
    for urn in sorted(set(before) - set(after)):
        failures.append(f"{before[urn].name} ({before[urn].type}): would be deleted by the rollback")
    for urn in sorted(set(after) - set(before)):
        failures.append(f"{after[urn].name} ({after[urn].type}): would be created by the rollback")

    diffs: dict[str, list[tuple[KeyPath, Any, Any]]] = {}
    for urn in sorted(set(before) & set(after)):
        a, b = before[urn], after[urn]
        found = list(_differences(a.raw_inputs, b.raw_inputs))
        for option, x, y in (
            ("(protect)", a.protect, b.protect),
            ("(retain_on_delete)", a.retain_on_delete, b.retain_on_delete),
            ("(dependencies)", a.dependencies, b.dependencies),
        ):
            if x != y:
                found.append(((option,), x, y))
        if found:
            diffs[urn] = found

    # Image references: the configured ones, then tags derived from them (an image built on a
    # changed base image gets a new tag, and whatever pulls that tag follows).
    old_refs = [change.current for change in changes]
    new_refs = [change.previous for change in changes]
    image_bearing: set[str] = set()
    grew = True
    while grew:
        grew = False
        for urn, found in diffs.items():
            if urn in image_bearing or not any(_contains(x, old_refs) or _contains(y, new_refs) for _, x, y in found):
                continue
            image_bearing.add(urn)
            grew = True
            if before[urn].type == BUILT_IMAGE:
                for path, x, y in found:
                    if path == ("imageName",) and isinstance(x, str) and isinstance(y, str):
                        old_refs.append(x)
                        new_refs.append(y)

    changed: list[Changed] = []
    for urn, found in diffs.items():
        resource = before[urn]
        depends_on_changed = any(dependency in diffs for dependency in resource.dependencies)
        uses_changed_image = resource.type == CONTAINER and any(
            dependency in image_bearing and before[dependency].type in (REMOTE_IMAGE, BUILT_IMAGE)
            for dependency in resource.dependencies
        )
        explained_image = urn in image_bearing or uses_changed_image
        reasons: list[str] = []
        for path, x, y in found:
            label = _label_name(resource.raw_inputs, path)
            if _contains(x, old_refs) or _contains(y, new_refs):
                reason = "image reference" if path == ("name",) else f"{_path_text(path)} names the image"
            elif path == ("image",) and uses_changed_image:
                reason = "runs the changed image"
            elif path == ("name",) and resource.type == CONTAINER and explained_image and _same_stable_name(x, y):
                reason = "versioned name (changes with the image)"
            elif label is not None and label.startswith("stagecraft.") and depends_on_changed:
                reason = f"label {label} (gates on a replaced resource)"
            else:
                failures.append(
                    f"{resource.name} ({resource.type}): {_path_text(path)} changes "
                    f"({_change_text(x, y)}), not explained by an image change"
                )
                continue
            if reason not in reasons:
                reasons.append(reason)
        changed.append(Changed(urn, resource.name, resource.type, tuple(reasons)))

    # Whatever holds a changed image must change with it.
    for urn, resource in before.items():
        if urn in diffs:
            continue
        holds = _contains(resource.raw_inputs, [change.current for change in changes]) or (
            resource.type == CONTAINER
            and any(
                dependency in image_bearing and before[dependency].type == REMOTE_IMAGE
                for dependency in resource.dependencies
            )
        )
        if holds:
            failures.append(f"{resource.name} ({resource.type}): holds a changed image but would not change")

    follow_ons = _follow_ons(rolled_back, {item.urn for item in changed})
    return Proof(changed=sorted(changed, key=lambda item: item.name), follow_ons=follow_ons, failures=failures)


def _same_stable_name(old: Any, new: Any) -> bool:
    a = VERSIONED_NAME.match(old) if isinstance(old, str) else None
    b = VERSIONED_NAME.match(new) if isinstance(new, str) else None
    return bool(a and b and a.group("stable") == b.group("stable"))


def _follow_ons(plan: Plan, changed: set[str]) -> list[Changed]:
    """Resources whose inputs read the ID of a changed resource: a real update replaces that
    resource, so they see its new ID (the mock engine keeps IDs stable, so they show no diff)."""
    by_urn = {resource.urn: resource for resource in plan.resources}
    ids: dict[str, str] = {}
    found: dict[str, Changed] = {}
    replaced = set(changed)
    grew = True
    while grew:
        grew = False
        for urn in replaced - set(ids):
            ids[urn] = _mock_id(plan.stack, by_urn[urn]) or ""
        for resource in plan.resources:
            if resource.urn in replaced:
                continue
            text = json.dumps(resource.raw_inputs, default=str)
            for dependency in resource.dependencies:
                if _reads_id(text, ids.get(dependency, "")):
                    name = by_urn[dependency].name
                    found[resource.urn] = Changed(
                        resource.urn, resource.name, resource.type, (f"reads the ID of {name}, which is replaced",)
                    )
                    if resource.type == CONTAINER:
                        replaced.add(resource.urn)
                        grew = True
                    break
    return sorted(found.values(), key=lambda item: item.name)


def _reads_id(text: str, identifier: str) -> bool:
    """Whether serialised inputs hold this ID, whole or (a Docker ID) as its 12-character short form."""
    if not identifier:
        return False
    return identifier in text or (re.fullmatch(r"[0-9a-f]{64}", identifier) is not None and identifier[:12] in text)


def prove(rollback: Rollback, project_dir: Path) -> Proof:
    """Plan the working-tree stack file and the previous release's (written to a temp file of the
    same name) under the mock engine and compare them; the rollback's critical path counts only
    the resources it changes."""
    from components.config import ConfigError
    from preflight.critical_path import critical_path
    from preflight.engine import ProgramError, plan

    name = rollback.stack_file.name
    try:
        current = plan(rollback.stack, rollback.stack_file, project_dir)
    except ConfigError as error:
        raise RollbackError(str(error)) from None
    except ProgramError as error:
        raise PlanFailedError(f"{name} (working tree): the program failed under the mock engine: {error}") from None
    with tempfile.TemporaryDirectory(prefix="stagecraft-rollback-") as directory:
        previous_file = Path(directory) / name
        previous_file.write_text(rollback.previous_text)
        at = f"{name} at {rollback.previous.short}"
        try:
            rolled_back = plan(rollback.stack, previous_file, project_dir)
        except ConfigError as error:
            reason = str(error).replace(name, at, 1)
            failure = f"the previous release's stack file does not validate under the current program: {reason}"
            return Proof(changed=[], follow_ons=[], failures=[failure])
        except ProgramError as error:
            raise PlanFailedError(f"{at}: the program failed under the mock engine: {error}") from None
    proof = compare_plans(current, rolled_back, rollback.changes)
    proof.path = critical_path(rolled_back, changed=proof.urns | (set(_urns(rolled_back)) - set(_urns(current))))
    return proof


def _urns(plan: Plan) -> list[str]:
    return [resource.urn for resource in plan.resources]


# ---------------------------------------------------------------------------------------------
# Output


def render(rollback: Rollback, out: TextIO) -> None:
    """The rollback for a person: tags, where they come from, the commands in order."""
    name = rollback.stack_file.name
    out.write(f"rollback of stack {rollback.stack} ({name})\n")
    if rollback.uncommitted:
        source = "working tree (uncommitted image changes)"
    elif rollback.current_commit:
        source = f"working tree; these images since {rollback.current_commit.describe()}"
    else:
        source = "working tree"
    out.write(f"  current:  {source}\n")
    out.write(f"  previous: {rollback.previous.describe()}\n\n")
    rows = [("service", "current", "previous")] + [(c.service, c.current, c.previous) for c in rollback.changes]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        out.write("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
    if rollback.unchanged:
        out.write(f"  unchanged: {', '.join(rollback.unchanged)}\n")
    if rollback.not_in_previous:
        out.write(f"  not pinned in the previous release (left as is): {', '.join(rollback.not_in_previous)}\n")
    stateful = [c.service for c in rollback.changes if c.service in STATEFUL]
    if stateful:
        out.write(
            f"  note: {', '.join(stateful)} {'keeps' if len(stateful) == 1 else 'keep'} data; an older image may not "
            "read what the newer one wrote\n"
        )

    out.write("\nroll back with:\n")
    step = 1
    out.write(f"  {step}. pin the previous images\n")
    for command in rollback.config_commands:
        out.write(f"     {command}\n")
    if rollback.restore:
        step += 1
        hint = rollback.restore
        where = f"DOCKER_HOST={hint.docker_host}" if hint.docker_host else "DOCKER_HOST set to the stack's Docker host"
        out.write(
            f"  {step}. only if the current release's migration changed the database schema: restore the backup\n"
            "     taken just before it, before `pulumi up` (the API image drives the migration job, and the previous\n"
            "     code expects the previous schema; writes since that backup are lost). Stop the API (the writer)\n"
            "     first. The backup's id (YYYYMMDDTHHMMSSZ) is in the pre-migration job's log; `--backup latest` is\n"
            "     that backup only if no scheduled backup ran since. Run on the Docker host, or with\n"
            f"     {where}:\n"
        )
        for command in hint.commands:
            out.write(f"     {command}\n")
    step += 1
    out.write(f"  {step}. deploy\n     {rollback.up_command}\n")

    if rollback.other_differences:
        out.write(
            f"\nthe previous release's {name} also differs in these keys; the commands above leave them as now:\n"
        )
        for key, now, then in rollback.other_differences:
            out.write(f"  {key}: now {_shown(now)}, then {_shown(then)}\n")
    if rollback.proof:
        out.write("\n")
        render_proof(rollback.proof, out)


def render_proof(proof: Proof, out: TextIO) -> None:
    out.write(f"offline plan (mock engine): the rollback changes {len(proof.changed)} resources\n")
    for item in proof.changed:
        out.write(f"  {item.name} ({item.type}): {'; '.join(item.reasons) or 'not explained (below)'}\n")
    for item in proof.follow_ons:
        out.write(f"  {item.name} ({item.type}): {item.reasons[0]}\n")
    if proof.path is not None:
        out.write(f"critical path of the rollback: {proof.path.seconds:.0f} s of health waits\n")
        for step in proof.path.steps:
            detail = {"wait": f"first healthy check after {step.seconds:.0f} s", "build": "built on the Docker host"}
            out.write(f"  {step.kind:5}  {step.name}: {detail.get(step.kind, 'runs to completion')}\n")
    if proof.ok:
        out.write("only images: every change follows from an image\n")
    else:
        out.write(f"FAILED: {len(proof.failures)} change(s) not explained by an image:\n")
        for failure in proof.failures:
            out.write(f"  {failure}\n")


# ---------------------------------------------------------------------------------------------
# Command line


DESCRIPTION = (
    "Find the stack's previous release in the git history of Pulumi.<stack>.yaml (the most recent commit whose "
    "pinned service images differ from the working-tree file, or --to REV), print each changed image now and "
    "then, the commit it comes from, and the commands that pin the previous images and deploy them. With --plan, "
    "plan both releases under the mock engine and prove the rollback changes only what the images drive, with "
    "the rollback's critical path."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, help="stack name, e.g. staging or prod")
    parser.add_argument(
        "--to", metavar="REV", help="roll back to the stack file at this commit (sha, tag or branch) instead"
    )
    parser.add_argument(
        "--config-file",
        help="stack file to roll back instead of Pulumi.<stack>.yaml (its history is read from its own repository)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--plan",
        action="store_true",
        help="plan both releases offline: fail if anything but the images' resources changes; show the critical path",
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``rollback`` to a parser's subcommands (``preflight rollback``)."""
    parser = subparsers.add_parser(
        "rollback",
        help="the previous release's images, and the commands to go back to them",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``preflight rollback`` from parsed arguments (``args.project`` is the checkout)."""
    out = out or sys.stdout
    err = err or sys.stderr
    project = Path(args.project).resolve()
    try:
        if not (project / "Pulumi.yaml").is_file():
            raise RollbackError(f"--project {project}: no Pulumi.yaml there; give the stagecraft checkout")
        stack_file = Path(args.config_file) if args.config_file else project / f"Pulumi.{args.stack}.yaml"
        if not args.config_file and not stack_file.is_file():
            known = ", ".join(
                sorted(path.name[len("Pulumi.") : -len(".yaml")] for path in project.glob("Pulumi.*.yaml"))
            )
            raise RollbackError(
                f"--stack {args.stack}: no {stack_file.name} in {project}; stacks here: {known or 'none'}"
            )
        rollback = find_rollback(args.stack, stack_file, args.to)
        if args.plan:
            rollback.proof = prove(rollback, project)
    except RollbackError as error:
        err.write(f"preflight rollback: {error}\n")
        return EXIT_USAGE
    except PlanFailedError as error:
        err.write(f"preflight rollback: {error}\n")
        return EXIT_FAILED
    if args.json:
        json.dump(rollback.to_json(), out, indent=2)
        out.write("\n")
    else:
        render(rollback, out)
    return EXIT_FAILED if rollback.proof is not None and not rollback.proof.ok else EXIT_OK


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``python -m preflight.rollback``: the same command on its own."""
    parser = argparse.ArgumentParser(
        prog="preflight rollback",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--project", type=Path, default=PROJECT_DIR, help="the project directory (default: this checkout)"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv), out, err)


if __name__ == "__main__":
    sys.exit(main())
