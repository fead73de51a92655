"""`preflight rollback`: the previous release from a stack file's git history, the commands that
pin its images, the schema-restore reminder, and the offline proof that a rollback changes only
what the images drive. Every test builds its own git repository under tmp_path."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, require_tool

from components.config import load_from_file
from preflight import rollback
from preflight.cli import main as preflight_main

API = "ghcr.io/acme/api"
WEB = "ghcr.io/acme/web"
PREFIX = "stagecraft-application-"


def with_images(text: str, api: str, web: str) -> str:
    """The stack file's text with the API and web images set to these tags (comments kept)."""
    text, count_api = re.subn(rf"(image: {re.escape(API)}:)\S+", rf"\g<1>{api}", text)
    text, count_web = re.subn(rf"(image: {re.escape(WEB)}:)\S+", rf"\g<1>{web}", text)
    assert count_api == count_web == 1
    return text


def with_api_memory(text: str, memory_mb: int) -> str:
    text, count = re.subn(r"(    api:\n      image: \S+\n      memory_mb: )\d+", rf"\g<1>{memory_mb}", text)
    assert count == 1
    return text


class Repo:
    """A git repository holding one stack file, committed release by release."""

    def __init__(self, path: Path, stack: str) -> None:
        self.path = path
        self.stack = stack
        self.file = path / f"Pulumi.{stack}.yaml"
        self.original = (ROOT / f"Pulumi.{stack}.yaml").read_text()
        self.count = 0
        path.mkdir()
        self.git("init", "-q")

    def git(self, *args: str, date: str | None = None) -> str:
        env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Release Bot",
            "GIT_AUTHOR_EMAIL": "release@example.com",
            "GIT_COMMITTER_NAME": "Release Bot",
            "GIT_COMMITTER_EMAIL": "release@example.com",
            **({"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if date else {}),
        }
        result = subprocess.run(["git", *args], cwd=self.path, env=env, capture_output=True, text=True, check=True)
        return result.stdout.strip()

    def commit(self, text: str, subject: str) -> str:
        """Commit the stack file with this text on its own day; its short sha."""
        self.count += 1
        self.file.write_text(text)
        self.git("add", self.file.name)
        date = f"2026-03-{self.count:02d}T10:00:00+00:00"
        self.git("-c", "commit.gpgsign=false", "commit", "-q", "-m", subject, date=date)
        return self.git("rev-parse", "--short", "HEAD")

    def release(self, api: str, web: str | None = None, subject: str | None = None) -> str:
        return self.commit(with_images(self.original, api, web or api), subject or f"Release {api}")


@pytest.fixture(autouse=True)
def _git_installed() -> None:
    require_tool("git")


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper's own git calls see no user or system configuration."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture
def staging(tmp_path: Path) -> Repo:
    """The real staging file released as 2.13.4, then bumped to 2.14.0."""
    repo = Repo(tmp_path / "staging", "staging")
    repo.release("2.13.4")
    repo.release("2.14.0")
    return repo


def cli(*argv: str) -> tuple[int, str, str]:
    """`preflight rollback ...` through the preflight CLI itself."""
    out, err = io.StringIO(), io.StringIO()
    code = preflight_main(["rollback", *argv], out, err)
    return code, out.getvalue(), err.getvalue()


def roll(repo: Repo, *argv: str) -> tuple[int, str, str]:
    return cli("--stack", repo.stack, "--config-file", str(repo.file), *argv)


def set_path(document: dict[str, Any], key: str, value: str) -> None:
    """What `pulumi config set --path KEY VALUE` does to a stack file: the key's first segment
    (up to the first dot) is the config key, the rest a path inside its object."""
    top, _, rest = key.partition(".")
    node = document["config"].setdefault(top, {})
    *parents, leaf = rest.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


# ---------------------------------------------------------------------------------------------
# Finding the previous release


def test_prints_the_previous_tags_their_commit_and_the_commands(staging: Repo) -> None:
    previous = staging.git("rev-parse", "--short", "HEAD~1")
    code, out, err = roll(staging)
    assert (code, err) == (0, "")
    assert re.search(rf"api\s+{API}:2\.14\.0\s+{API}:2\.13\.4", out)
    assert re.search(rf"web\s+{WEB}:2\.14\.0\s+{WEB}:2\.13\.4", out)
    assert f'previous: {previous} 2026-03-01 "Release 2.13.4"' in out
    commands = [
        f"pulumi config set --path 'stagecraft:services.api.image' '{API}:2.13.4' -s staging",
        f"pulumi config set --path 'stagecraft:services.web.image' '{WEB}:2.13.4' -s staging",
        "pulumi up -s staging",
    ]
    lines = [line.strip() for line in out.splitlines()]
    positions = [lines.index(command) for command in commands]
    assert positions == sorted(positions)
    # Nothing else was pinned differently: no other service is offered for rollback.
    assert "pulumi config set --path 'stagecraft:services.postgres" not in out


def test_the_commands_set_exactly_the_keys_the_config_reads(staging: Repo, tmp_path: Path) -> None:
    """Applied to the working-tree file as `pulumi config set --path` would, the printed commands
    give a stack file that validates and pins the previous release's images, nothing else changed."""
    _, out, _ = roll(staging, "--json")
    document = yaml.safe_load(staging.file.read_text())
    for command in json.loads(out)["commands"][:-1]:
        argv = shlex.split(command)
        assert argv[:4] == ["pulumi", "config", "set", "--path"] and argv[-2:] == ["-s", "staging"]
        set_path(document, argv[4], argv[5])
    rolled = tmp_path / "Pulumi.staging.yaml"
    rolled.write_text(yaml.safe_dump(document, sort_keys=False))
    now, then = load_from_file(staging.file).model_dump(), load_from_file(rolled).model_dump()
    services = then["stagecraft"]["services"]
    assert (services["api"]["image"], services["web"]["image"]) == (f"{API}:2.13.4", f"{WEB}:2.13.4")
    for service in ("api", "web"):
        services[service]["image"] = now["stagecraft"]["services"][service]["image"]
    assert then == now


def test_json_is_the_same_rollback_for_machines(staging: Repo) -> None:
    code, out, _ = roll(staging, "--json")
    document = json.loads(out)
    assert code == 0
    assert document["previous"]["subject"] == "Release 2.13.4"
    assert document["previous"]["short"] == staging.git("rev-parse", "--short", "HEAD~1")
    assert document["current"]["commit"]["subject"] == "Release 2.14.0"
    assert document["changed"] == [
        {"service": "api", "current": f"{API}:2.14.0", "previous": f"{API}:2.13.4"},
        {"service": "web", "current": f"{WEB}:2.14.0", "previous": f"{WEB}:2.13.4"},
    ]
    assert "postgres" in document["unchanged"]
    assert document["commands"][-1] == "pulumi up -s staging"
    assert document["schema_restore"]["confirm_prod"] is None
    assert document["plan"] is None


def test_to_picks_a_specific_commit(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", "staging")
    oldest = repo.release("2.12.0")
    repo.git("tag", "v2.12.0")
    repo.release("2.13.4")
    repo.release("2.14.0")
    assert f"{API}:2.13.4' -s staging" in roll(repo)[1]
    for revision in (oldest, "v2.12.0"):
        code, out, _ = roll(repo, "--to", revision)
        assert code == 0
        assert f"pulumi config set --path 'stagecraft:services.api.image' '{API}:2.12.0' -s staging" in out
        assert f'previous: {oldest} 2026-03-01 "Release 2.12.0"' in out
    code, _, err = roll(repo, "--to", "v9.9.9")
    assert code == 2 and err.count("\n") == 1 and "--to v9.9.9" in err
    code, _, err = roll(repo, "--to", "HEAD")
    assert code == 2 and "same images as the working tree" in err


def test_commits_with_the_same_images_are_not_a_release(tmp_path: Path) -> None:
    """A later config-only commit is skipped; the previous release is the last other images, and
    what else differs from it is listed as left alone."""
    repo = Repo(tmp_path / "repo", "staging")
    previous = repo.release("2.13.4")
    bump = repo.release("2.14.0")
    repo.commit(with_api_memory(with_images(repo.original, "2.14.0", "2.14.0"), 2048), "More memory for the API")
    code, out, _ = roll(repo)
    assert code == 0
    assert f"previous: {previous} " in out
    assert f'these images since {bump} 2026-03-02 "Release 2.14.0"' in out
    assert "stagecraft:services.api.memory_mb: now 2048, then 1024" in out


def test_an_uncommitted_bump_rolls_back_to_the_committed_file(staging: Repo) -> None:
    head = staging.git("rev-parse", "--short", "HEAD")
    staging.file.write_text(with_images(staging.original, "2.15.0", "2.15.0"))
    code, out, _ = roll(staging)
    assert code == 0
    assert f"previous: {head} " in out and "uncommitted" in out
    assert f"'{API}:2.14.0' -s staging" in out


def test_a_web_only_release_needs_no_schema_restore(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", "staging")
    repo.release("2.13.4")
    repo.release("2.13.4", web="2.13.5")
    code, out, _ = roll(repo)
    assert code == 0
    assert f"'stagecraft:services.web.image' '{WEB}:2.13.4'" in out
    assert "stagecraft:services.api.image" not in out
    assert "stagecraft_ops restore" not in out and json.loads(roll(repo, "--json")[1])["schema_restore"] is None


def test_the_schema_restore_uses_the_ops_tool_as_it_is(staging: Repo) -> None:
    """Before `pulumi up`: find the pre-migration backup's id, stop the API, restore the app
    database only, with the venv's Python (the image has no `python` on its PATH)."""
    _, out, _ = roll(staging)
    lines = [line.strip() for line in out.splitlines()]
    restore = (
        "docker exec acme-staging-ops /opt/ops/bin/python -m stagecraft_ops restore "
        "--backup <backup-id> --only postgres --database acme_staging"
    )
    assert restore in lines
    assert "docker logs acme-staging-ops-pre-migration-backup 2>&1 | grep '^backup '" in lines
    assert lines.index(restore) < lines.index("pulumi up -s staging")
    assert "--confirm-prod" not in out


def test_prod_restore_hint_carries_the_confirmation(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "prod", "prod")
    repo.release("2.13.0")
    repo.release("2.13.4")
    code, out, _ = roll(repo)
    assert code == 0
    assert (
        "docker exec acme-prod-ops /opt/ops/bin/python -m stagecraft_ops restore --backup <backup-id> "
        "--only postgres --database acme_prod --confirm-prod prod"
    ) in out
    assert f"pulumi config set --path 'stagecraft:services.api.image' '{API}:2.13.0' -s prod" in out


def test_secure_values_that_differ_are_not_printed(staging: Repo) -> None:
    text = staging.file.read_text()
    staging.commit(text + "  stagecraft:note:\n    secure: AAAAcipher-one\n", "Release 2.14.0 note")
    staging.file.write_text(with_images(text, "2.15.0", "2.15.0") + "  stagecraft:note:\n    secure: AAAAcipher-two\n")
    code, out, _ = roll(staging)
    assert code == 0 and "stagecraft:note: now [secret], then [secret]" in out
    assert "cipher-" not in out + roll(staging, "--json")[1]


# ---------------------------------------------------------------------------------------------
# Errors: one line, exit 2


def test_not_a_git_repository(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.staging.yaml"
    path.write_text((ROOT / "Pulumi.staging.yaml").read_text())
    code, out, err = cli("--stack", "staging", "--config-file", str(path))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "not a git repository" in err


def test_an_unknown_stack_names_the_known_ones() -> None:
    code, _, err = cli("--stack", "nope")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"preflight rollback: --stack nope: no Pulumi.nope.yaml in {ROOT}; stacks here: ")
    assert "staging" in err and "prod" in err


def test_a_file_without_history(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", "staging")
    (repo.path / "README").write_text("x\n")
    repo.git("add", "README")
    repo.git("-c", "commit.gpgsign=false", "commit", "-q", "-m", "readme")
    repo.file.write_text(repo.original)
    code, _, err = roll(repo)
    assert code == 2 and err.count("\n") == 1 and "no commit" in err and "Pulumi.staging.yaml" in err


def test_no_earlier_release_with_other_images(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", "staging")
    repo.release("2.14.0")
    repo.commit(with_api_memory(with_images(repo.original, "2.14.0", "2.14.0"), 2048), "More memory")
    code, _, err = roll(repo)
    assert code == 2 and err.count("\n") == 1
    assert "2 commit(s)" in err and "no earlier release" in err


def test_unreadable_yaml_at_a_revision_names_it(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", "staging")
    repo.release("2.13.4")
    broken = repo.commit("config: [unclosed\n", "Broken edit")
    repo.release("2.14.0")
    code, _, err = roll(repo)
    assert code == 2 and err.count("\n") == 1
    assert f"Pulumi.staging.yaml at {broken}: not valid YAML" in err


def test_help_documents_the_exit_codes() -> None:
    parser = argparse.ArgumentParser(prog="preflight")
    help_text = rollback.add_parser(parser.add_subparsers()).format_help()
    assert "exit codes:" in help_text
    assert all(re.search(rf"^\s+{code}\s+\S", help_text, re.MULTILINE) for code in (0, 1, 2))


# ---------------------------------------------------------------------------------------------
# The offline proof


def test_a_real_rollback_changes_only_image_bearing_resources(staging: Repo) -> None:
    proof = rollback.prove(rollback.find_rollback("staging", staging.file), ROOT)
    assert proof.ok, proof.failures
    # The API's and web's pulled images, the containers that run them (the migration job, the
    # servers and their files carriers), and the backup job keyed on the API release.
    assert {item.name.removeprefix(PREFIX) for item in proof.changed} == {
        "api-migrate",
        "api-migrate-files",
        "api-migrate-image",
        "api-server",
        "api-server-files",
        "api-server-image",
        "ops-pre-migration-backup",
        "web-server",
        "web-server-image",
    }
    reasons = {item.name.removeprefix(PREFIX): item.reasons for item in proof.changed}
    assert "versioned name (changes with the image)" in reasons["web-server"]
    # A replaced server gets a new ID, so its process limit is applied again.
    assert {item.name.removeprefix(PREFIX) for item in proof.follow_ons} == {
        "api-server-pids-limit",
        "web-server-pids-limit",
    }
    assert proof.path is not None and proof.path.seconds > 0
    assert [step.name for step in proof.path.steps if step.kind == "wait"] == ["api"]
    assert "api-migrate" in [step.name for step in proof.path.steps]


def test_the_proof_fails_when_another_key_changed_between_releases(tmp_path: Path) -> None:
    """The previous release also had another API memory limit: the API resources change anyway
    (their image does), but the memory change is not the image's, and neither are the alert rules
    derived from it."""
    repo = Repo(tmp_path / "repo", "staging")
    repo.release("2.13.4")
    repo.commit(with_api_memory(with_images(repo.original, "2.14.0", "2.14.0"), 2048), "Release 2.14.0")
    code, out, _ = roll(repo, "--plan")
    assert code == 1
    assert "FAILED" in out
    assert re.search(rf"{PREFIX}api-server \(docker:index/container:Container\): memory changes \(2048 -> 1024\)", out)
    assert re.search(rf"{PREFIX}prometheus-server-files .*uploads\[0\]\.content changes", out)
    document = json.loads(roll(repo, "--plan", "--json")[1])
    assert document["plan"]["only_images"] is False


def test_a_previous_release_the_program_no_longer_accepts_fails_the_proof(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", "staging")
    previous = repo.commit(with_api_memory(with_images(repo.original, "2.13.4", "2.13.4"), 64), "Release 2.13.4")
    repo.release("2.14.0")
    code, out, _ = roll(repo, "--plan")
    assert code == 1
    assert f"does not validate under the current program: Pulumi.staging.yaml at {previous}" in out
    assert "stagecraft:services.api.memory_mb" in out
