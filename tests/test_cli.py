"""`python -m preflight` as a user meets it: each command's help states its exit codes; a stack
file that cannot be read, a bad value or an unknown stack is one clean line and exit 2 before
anything is planned; `--project` works from any directory; and isolation catches a stack that
took over another's GCP project."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, stack_document

from preflight import cli, engine
from preflight.cli import main
from preflight.engine import Plan

COMMANDS = ("plan", "policy", "isolation", "check", "verify", "rollback")


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _subprocess(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "preflight", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def nothing_planned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a command runs the program under the mock engine or starts the policy
    pack (reading and validating stack files is all that may happen)."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a stack was planned (or the pack started) after a usage or config error")

    monkeypatch.setattr(engine, "capture", refuse)
    monkeypatch.setattr(cli, "PackProcess", refuse)
    monkeypatch.setattr(cli, "policy_pack", refuse)


# ---------------------------------------------------------------------------------------------
# Help


def test_the_commands_are_the_ones_these_tests_cover() -> None:
    subparsers = next(a for a in cli._parser()._actions if a.dest == "command")
    assert set(subparsers.choices) == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_commands_help_prints_its_exit_codes(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    codes = text[text.index("exit codes:") :].splitlines()[1:]
    # One line per code, 0, 1 and 2 in order, each saying what it means.
    numbered = [line.split(None, 1) for line in codes if line.strip()[:1].isdigit()]
    assert [number for number, _ in numbered] == ["0", "1", "2"]
    assert all(len(meaning) > 5 for _, meaning in numbered)


def test_the_top_level_help_points_at_each_commands_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "Every command has its own --help with its exit codes." in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Stack files that cannot be read


def _unreadable(kind: str, tmp_path: Path) -> Path:
    if kind == "directory":
        path = tmp_path / "Pulumi.staging.yaml"
        path.mkdir()
        return path
    # A real stack file with one Latin-1 byte in a comment.
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"# caf\xe9\n" + (ROOT / "Pulumi.staging.yaml").read_bytes())
    return path


@pytest.mark.parametrize("kind", ["directory", "not-utf8"])
@pytest.mark.parametrize(
    "argv",
    [
        ("plan", "--stack", "staging", "--config-file", "{path}"),
        ("policy", "--stack", "staging", "--config-file", "{path}"),
        ("isolation", "staging", "prod", "--config-file", "staging={path}"),
        ("check", "--config-file", "staging={path}"),
    ],
    ids=["plan", "policy", "isolation", "check"],
)
def test_an_unreadable_config_file_is_one_line_naming_it(
    kind: str, argv: tuple[str, ...], tmp_path: Path, nothing_planned: None
) -> None:
    path = _unreadable(kind, tmp_path)
    code, out, err = _run(*(arg.format(path=path) for arg in argv))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"{path.name}: file: "), err
    expected = "is a directory" if kind == "directory" else "is not UTF-8 text"
    assert expected in err


def test_an_unreadable_config_file_leaves_no_traceback(tmp_path: Path) -> None:
    """The same through a real process: exit 2 and one line on stderr, whatever reaches it."""
    path = _unreadable("not-utf8", tmp_path)
    result = _subprocess("plan", "--stack", "staging", "--config-file", str(path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "latin1.yaml: file: is not UTF-8 text (invalid byte at offset 5)\n"


# ---------------------------------------------------------------------------------------------
# Bad values


def _prod_with_small_postgres(write_stack: Callable[..., Path]) -> Path:
    document = stack_document("prod")
    document["config"]["stagecraft:services"]["postgres"]["memory_mb"] = 64
    return write_stack(document, name="prod-small.yaml")


def test_check_refuses_a_bad_prod_value_before_planning_anything(
    write_stack: Callable[..., Path], nothing_planned: None
) -> None:
    path = _prod_with_small_postgres(write_stack)
    code, out, err = _run("check", "--config-file", f"prod={path}")
    assert (code, out) == (2, "")
    assert err == "prod-small.yaml: stagecraft:services.postgres.memory_mb: must be >= 256 (got 64)\n"


def test_check_with_a_bad_prod_value_prints_one_clean_line(write_stack: Callable[..., Path]) -> None:
    result = _subprocess("check", "--config-file", f"prod={_prod_with_small_postgres(write_stack)}")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "prod-small.yaml: stagecraft:services.postgres.memory_mb: must be >= 256 (got 64)\n"


# ---------------------------------------------------------------------------------------------
# Unknown stacks


@pytest.mark.parametrize(
    "argv",
    [("plan", "--stack", "nosuch"), ("policy", "--stack", "nosuch"), ("isolation", "staging", "nosuch")],
    ids=["plan", "policy", "isolation"],
)
def test_an_unknown_stack_exits_2_listing_the_stacks_that_exist(argv: tuple[str, ...], nothing_planned: None) -> None:
    code, out, err = _run(*argv)
    assert (code, out) == (2, "")
    assert err == f"Pulumi.nosuch.yaml: file: not found in {ROOT}; stacks here: prod, staging\n"


def test_the_stacks_listed_are_the_projects_own(tmp_path: Path, nothing_planned: None) -> None:
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    for stack in ("qa", "demo"):
        (tmp_path / f"Pulumi.{stack}.yaml").write_text("config: {}\n")
    code, _, err = _run("--project", str(tmp_path), "plan", "--stack", "staging")
    assert code == 2
    assert err == f"Pulumi.staging.yaml: file: not found in {tmp_path}; stacks here: demo, qa\n"


def test_a_directory_without_a_project_is_refused(tmp_path: Path, nothing_planned: None) -> None:
    code, out, err = _run("--project", str(tmp_path), "plan", "--stack", "staging")
    assert (code, out) == (2, "")
    assert err == f"preflight plan: --project {tmp_path}: no Pulumi.yaml there; give the stagecraft checkout\n"


# ---------------------------------------------------------------------------------------------
# --project from elsewhere


def test_plan_with_project_from_another_directory_is_the_same_plan(tmp_path: Path, plans: dict[str, Plan]) -> None:
    """Nothing depends on where preflight is started, and nothing is written there."""
    result = _subprocess("--project", str(ROOT), "plan", "--stack", "staging", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    resources = json.loads(result.stdout)["resources"]
    assert resources == json.loads(json.dumps([r.to_json() for r in plans["staging"].resources]))
    assert list(tmp_path.iterdir()) == []


def test_check_with_a_relative_project_from_another_directory(tmp_path: Path) -> None:
    """The policy pack and every stack file are found under the project, not the working
    directory."""
    relative = os.path.relpath(ROOT, tmp_path)
    result = _subprocess("--project", relative, "check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "check: ok"
    assert "plan staging:" in result.stdout and "plan prod:" in result.stdout
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# A stack that takes over another's project


def test_isolation_names_a_project_two_stacks_share(write_stack: Callable[..., Path]) -> None:
    """A staging stack file that is a copy of prod's (prod's project, prod's environment) is a
    valid file on its own; comparing the two finds the shared project, and says which it is."""
    path = write_stack(stack_document("prod"), name="staging-from-prod.yaml")
    code, out, err = _run("isolation", "staging", "prod", "--config-file", f"staging={path}")
    assert code == 1, err
    assert "[mandatory] isolation-gcp-project: 1" in out
    assert "gcp-project 'acme-prod-4711' is used by both staging:gcp:project and prod:gcp:project" in out
    code, out, _ = _run("isolation", "staging", "prod", "--config-file", f"staging={path}", "--json")
    (shared,) = [v for v in json.loads(out)["violations"] if v["policy"] == "isolation-gcp-project"]
    assert "acme-prod-4711" in shared["message"]


def test_a_staging_stack_given_prods_project_is_refused_before_planning(
    write_stack: Callable[..., Path], nothing_planned: None
) -> None:
    """Only prod's project copied in: the staging file is wrong on its own, so it is refused as
    config (exit 2), naming the key and the project, before the two are planned and compared."""
    document = stack_document("staging")
    document["config"]["gcp:project"] = stack_document("prod")["config"]["gcp:project"]
    path = write_stack(document, name="staging-prod-project.yaml")
    code, out, err = _run("isolation", "staging", "prod", "--config-file", f"staging={path}")
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert lines and all(line.startswith("staging-prod-project.yaml: gcp:project: ") for line in lines)
    assert "names the prod environment; each environment has its own project" in err
    assert "'acme-prod-4711'" in err
