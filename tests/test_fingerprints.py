"""scripts/secret-fingerprints: a secret value used twice fails, naming only where; no value, no
digest ever reaches the output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT

from components.config.loading import ciphertexts
from preflight.fingerprints import config_path, main, secure_paths

SCRIPT = ROOT / "scripts" / "secret-fingerprints"

# Distinctive values: none of them may appear in any output.
DB_STAGING = "Zq8-staging-db-Kf3v"
DB_PROD = "Zq8-prod-db-Wm9t"
API_STAGING = "Zq8-staging-api-Hq2c"
API_PROD = "Zq8-prod-api-Lp4x"
SMTP = "Zq8-smtp-shared-Rb7n"
VALUES = (DB_STAGING, DB_PROD, API_STAGING, API_PROD, SMTP)


def entry(value: str, secret: bool = True) -> dict[str, Any]:
    return {"value": value, "secret": secret}


def object_entry(value: Any, secret: bool = True) -> dict[str, Any]:
    """How `pulumi config --show-secrets --json` prints structured config: the text and the parsed
    object, with any secret inside it decrypted like every other leaf."""
    return {"value": json.dumps(value), "objectValue": value, "secret": secret}


def staging_config() -> dict[str, Any]:
    return {
        "gcp:project": entry("acme-staging-4711", secret=False),
        "stagecraft:environment": entry("staging", secret=False),
        "stagecraft:dbPassword": entry(DB_STAGING),
        "stagecraft:apiKey": entry(API_STAGING),
    }


def prod_config() -> dict[str, Any]:
    return {
        "gcp:project": entry("acme-prod-4711", secret=False),
        "stagecraft:environment": entry("prod", secret=False),
        "stagecraft:dbPassword": entry(DB_PROD),
        "stagecraft:apiKey": entry(API_PROD),
    }


# The provided SMTP password sits inside `stagecraft:secrets`, next to settings that are not
# secret and are the same in both stacks.
SECRETS_STACK_FILE = """\
config:
  gcp:project: acme-{stack}-4711
  stagecraft:secrets:
    replication:
      mode: automatic
    provided:
      smtp-password:
        value:
          secure: v1:{ciphertext}
        accessors:
          - api
          - ops
"""


def secrets_object(smtp: str) -> dict[str, Any]:
    return {
        "replication": {"mode": "automatic"},
        "provided": {"smtp-password": {"value": smtp, "accessors": ["api", "ops"]}},
    }


class Project:
    """A project directory with stack files, saved config outputs, and a way to run the check."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "Pulumi.yaml").write_text("name: stagecraft\nruntime: python\n")

    def stack_file(self, stack: str, text: str = "config: {}\n") -> None:
        (self.root / f"Pulumi.{stack}.yaml").write_text(text)

    def saved(self, stack: str, document: Any) -> str:
        path = self.root / f"{stack}-config.json"
        path.write_text(json.dumps(document) if not isinstance(document, str) else document)
        return f"{stack}={path}"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command in-process; assert nothing secret (value or digest) was printed."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert_nothing_secret(out + err)
    return code, out, err


def assert_nothing_secret(output: str) -> None:
    for value in VALUES:
        assert value not in output
    # Not even a digest: no long run of hex digits anywhere.
    assert not re.search(r"[0-9a-fA-F]{16,}", output), output


# --------------------------------------------------------------------------------------------
# Verdicts.


def test_distinct_secrets_pass_with_a_count(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(
        capsys,
        "--project",
        str(project.root),
        project.saved("staging", staging_config()),
        project.saved("prod", prod_config()),
    )
    assert (code, out, err) == (0, "4 secrets across 2 stacks, all distinct\n", "")


def test_the_same_value_in_two_stacks_fails_naming_both_keys(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    prod = prod_config()
    prod["stagecraft:apiKey"] = entry(DB_STAGING)  # staging's database password, copied into prod
    code, out, _ = check(
        capsys, "--project", str(project.root), project.saved("staging", staging_config()), project.saved("prod", prod)
    )
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "prod stagecraft:apiKey and staging stagecraft:dbPassword: same value"
    assert lines[1].startswith("2 of 4 secrets across 2 stacks share 1 value")
    assert len(lines) == 2


def test_the_same_value_twice_in_one_stack_fails(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    staging = staging_config()
    staging["stagecraft:grafanaPassword"] = entry(API_STAGING)
    code, out, _ = check(capsys, "--project", str(project.root), project.saved("staging", staging))
    assert code == 1
    assert out.splitlines()[0] == "staging stagecraft:apiKey and staging stagecraft:grafanaPassword: same value"
    assert "across 1 stack " in out


def test_equal_values_that_are_not_secret_are_ignored(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    staging, prod = staging_config(), prod_config()
    for config in (staging, prod):
        config["gcp:region"] = entry("europe-west1", secret=False)
        config["stagecraft:tags"] = object_entry({"team": "platform", "owner": "platform"}, secret=False)
    # A secret equal to a plain setting is not a reused secret either.
    staging["stagecraft:note"] = entry(DB_STAGING, secret=False)
    code, out, _ = check(
        capsys, "--project", str(project.root), project.saved("staging", staging), project.saved("prod", prod)
    )
    assert (code, out) == (0, "4 secrets across 2 stacks, all distinct\n")


def test_a_secret_inside_an_object_value_is_compared(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    """Pulumi marks the whole `stagecraft:secrets` key secret and prints the SMTP password as a plain
    leaf; the stack file says which leaf it is. The settings around it are equal in both stacks and
    must not count as reuse."""
    for stack in ("staging", "prod"):
        project.stack_file(stack, SECRETS_STACK_FILE.format(stack=stack, ciphertext=f"{stack}CIPHER"))
    staging, prod = staging_config(), prod_config()
    staging["stagecraft:secrets"] = object_entry(secrets_object(SMTP))
    prod["stagecraft:secrets"] = object_entry(secrets_object(SMTP))
    code, out, _ = check(
        capsys, "--project", str(project.root), project.saved("staging", staging), project.saved("prod", prod)
    )
    assert code == 1
    assert out.splitlines()[0] == (
        "prod stagecraft:secrets.provided.smtp-password.value and "
        "staging stagecraft:secrets.provided.smtp-password.value: same value"
    )
    assert "2 of 6 secrets" in out

    prod["stagecraft:secrets"] = object_entry(secrets_object(API_PROD + "-smtp"))
    code, out, _ = check(
        capsys, "--project", str(project.root), project.saved("staging", staging), project.saved("prod", prod)
    )
    assert (code, out) == (0, "6 secrets across 2 stacks, all distinct\n")


def test_a_secret_object_the_stack_file_does_not_explain_stops_the_check(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """Guessing which leaves are secret would either miss reuse or flag equal settings: exit 2."""
    project.stack_file("staging", "config:\n  stagecraft:secrets:\n    replication:\n      mode: automatic\n")
    staging = staging_config()
    staging["stagecraft:secrets"] = object_entry(secrets_object(SMTP))
    code, out, err = check(capsys, "--project", str(project.root), project.saved("staging", staging))
    assert (code, out) == (2, "")
    assert "stagecraft:secrets is secret, but Pulumi.staging.yaml marks no `secure:` value inside it" in err


def test_a_stack_file_from_another_commit_stops_the_check(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    project.stack_file("prod", SECRETS_STACK_FILE.format(stack="prod", ciphertext="x"))
    prod = prod_config()
    moved = secrets_object(SMTP)
    moved["provided"]["smtp-password"]["current"] = moved["provided"]["smtp-password"].pop("value")
    prod["stagecraft:secrets"] = object_entry(moved)
    code, _, err = check(capsys, "--project", str(project.root), project.saved("prod", prod))
    assert code == 2
    assert "marks stagecraft:secrets.provided.smtp-password.value `secure:`" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("key", "shown_as"),
    [
        ("stagecraft:secrets", object_entry(secrets_object(SMTP), secret=False)),
        ("stagecraft:apiKey", entry(API_STAGING, secret=False)),
    ],
    ids=["object-shown-plain", "key-shown-plain"],
)
def test_a_secure_value_the_output_does_not_show_as_secret_stops_the_check(
    project: Project, capsys: pytest.CaptureFixture[str], key: str, shown_as: dict[str, Any]
) -> None:
    """Stack file and output from different commits: a value the file encrypts but the output
    shows in the clear would otherwise go unchecked."""
    project.stack_file(
        "staging",
        SECRETS_STACK_FILE.format(stack="staging", ciphertext="x")
        + "  stagecraft:apiKey:\n    secure: v1:y\n"
        + "  stagecraft:proxy:\n    tls:\n      private_key:\n        secure: v1:z\n",
    )
    staging = staging_config()
    staging["stagecraft:secrets"] = object_entry(secrets_object(SMTP))
    staging["stagecraft:proxy"] = object_entry({"tls": {"private_key": DB_PROD}})
    staging[key] = shown_as
    code, out, err = check(capsys, "--project", str(project.root), project.saved("staging", staging))
    assert (code, out) == (2, "")
    assert f"Pulumi.staging.yaml marks {key}" in err and "has no secret there" in err


def test_the_stack_file_is_needed_only_for_secrets_inside_objects(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    staging = staging_config()
    staging["stagecraft:secrets"] = object_entry(secrets_object(SMTP))
    code, _, err = check(capsys, "--project", str(project.root), project.saved("staging", staging))
    assert code == 2 and "Pulumi.staging.yaml" in err and "is missing" in err
    # Without secrets inside objects, no stack file is read.
    code, _, _ = check(capsys, "--project", str(project.root), project.saved("staging", staging_config()))
    assert code == 0


# --------------------------------------------------------------------------------------------
# Bad input: exit 2, one line naming the stack and file.


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (f'{{"stagecraft:dbPassword": {{"value": "{DB_STAGING}", "secret": tru', "is not JSON: Expecting value"),
        ("[1, 2]", "expected a JSON object of config keys, got an array"),
        ({"stagecraft:dbPassword": DB_STAGING}, 'stagecraft:dbPassword: expected an object with a boolean "secret"'),
        ({"stagecraft:dbPassword": {"secret": True}}, "stagecraft:dbPassword is secret but has no value"),
        (b"\xff\xfe{}", "is not UTF-8"),
    ],
    ids=["truncated-json", "not-an-object", "not-pulumi-shaped", "saved-without-show-secrets", "not-utf8"],
)
def test_bad_saved_output_exits_2_with_one_line(
    project: Project, capsys: pytest.CaptureFixture[str], document: Any, expected: str
) -> None:
    path = project.root / "staging-config.json"
    if isinstance(document, bytes):
        path.write_bytes(document)
    else:
        path.write_text(document if isinstance(document, str) else json.dumps(document))
    code, out, err = check(capsys, "--project", str(project.root), f"staging={path}")
    assert (code, out) == (2, "")
    assert err.startswith("secret-fingerprints: stack staging") and str(path) in err
    assert expected in err and err.count("\n") == 1


def test_a_missing_file_and_bad_arguments_exit_2(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = check(capsys, "--project", str(project.root), "prod=/nonexistent/prod.json")
    assert code == 2 and err == "secret-fingerprints: stack prod: /nonexistent/prod.json does not exist\n"
    code, _, err = check(capsys, "--project", str(project.root), "=x.json")
    assert code == 2 and "expected STACK or STACK=FILE" in err
    saved = project.saved("prod", prod_config())
    code, _, err = check(capsys, "--project", str(project.root), saved, saved)
    assert code == 2 and err == "secret-fingerprints: stack prod is named twice\n"


def test_saved_output_can_come_through_a_pipe(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    """`staging=<(pulumi config ...)` keeps decrypted config off the disk."""
    read_end, write_end = os.pipe()

    def feed() -> None:
        with os.fdopen(write_end, "w") as pipe:
            pipe.write(json.dumps(staging_config()))

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        code, out, _ = check(capsys, "--project", str(project.root), f"staging=/dev/fd/{read_end}")
    finally:
        writer.join()
        os.close(read_end)
    assert (code, out) == (0, "2 secrets across 1 stack, all distinct\n")


# --------------------------------------------------------------------------------------------
# Asking the Pulumi CLI (a fake one on PATH).

FAKE_PULUMI = """\
#!{python}
# Stand-in for the pulumi CLI: answers `config [--show-secrets] --json --stack S` from
# answers.json next to it and logs every call.
import json, os, sys
from pathlib import Path

here = Path(__file__).parent
args = sys.argv[1:]
with open(here / "calls.jsonl", "a") as log:
    devnull = os.path.samestat(os.fstat(0), os.stat(os.devnull))
    log.write(json.dumps({{"args": args, "cwd": os.getcwd(), "stdin_devnull": devnull}}) + "\\n")
stack = args[args.index("--stack") + 1]
mode = "show" if "--show-secrets" in args else "plain"
answer = json.loads((here / "answers.json").read_text())[stack][mode]
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(answer.get("code", 0))
"""


class FakePulumi:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir()
        executable = directory / "pulumi"
        executable.write_text(FAKE_PULUMI.format(python=sys.executable))
        executable.chmod(0o755)
        self.answers: dict[str, dict[str, Any]] = {}

    def answer(self, stack: str, show: dict[str, Any], plain: dict[str, Any] | None = None) -> None:
        self.answers[stack] = {"show": show, "plain": plain or {"stdout": "{}"}}
        (self.directory / "answers.json").write_text(json.dumps(self.answers))

    def calls(self) -> list[dict[str, Any]]:
        log = self.directory / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
    fake = FakePulumi(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{fake.directory}{os.pathsep}{os.environ['PATH']}")
    return fake


def test_every_stack_file_is_asked_of_the_pulumi_cli(
    project: Project, pulumi: FakePulumi, capsys: pytest.CaptureFixture[str]
) -> None:
    for stack in ("staging", "prod"):
        project.stack_file(stack)
    prod = prod_config()
    prod["stagecraft:dbPassword"] = entry(DB_STAGING)
    pulumi.answer("staging", {"stdout": json.dumps(staging_config())})
    pulumi.answer("prod", {"stdout": json.dumps(prod)})
    # Give this process a stdin that is not /dev/null, so the check sees what the child gets.
    read_end, write_end = os.pipe()
    saved_stdin = os.dup(0)
    os.dup2(read_end, 0)
    try:
        code, out, _ = check(capsys, "--project", str(project.root))
    finally:
        os.dup2(saved_stdin, 0)
        for fd in (saved_stdin, read_end, write_end):
            os.close(fd)
    assert code == 1
    assert out.splitlines()[0] == "prod stagecraft:dbPassword and staging stagecraft:dbPassword: same value"
    calls = pulumi.calls()
    assert [call["args"] for call in calls] == [
        ["config", "--show-secrets", "--json", "--stack", stack, "--non-interactive", "--color", "never"]
        for stack in ("prod", "staging")
    ]
    assert {call["cwd"] for call in calls} == {str(project.root)}
    # Nothing can prompt for a passphrase and hang the job.
    assert all(call["stdin_devnull"] for call in calls)


def test_a_failing_pulumi_exits_2_naming_the_stack_and_never_relays_what_it_printed(
    project: Project, pulumi: FakePulumi, capsys: pytest.CaptureFixture[str]
) -> None:
    """The decrypting run's stderr might quote a value; the reason comes from a run without secrets."""
    pulumi.answer("staging", {"stdout": json.dumps(staging_config())})
    pulumi.answer(
        "prod",
        {"code": 255, "stderr": f"error: invalid character in '{DB_PROD}'\n", "stdout": f'{{"x": "{API_PROD}'},
        {"code": 255, "stderr": "warning: update available\nerror: PULUMI_ACCESS_TOKEN must be set for login\n"},
    )
    code, out, err = check(capsys, "--project", str(project.root), "staging", "prod")
    assert (code, out) == (2, "")
    assert err == (
        "secret-fingerprints: stack prod: `pulumi config --show-secrets --json --stack prod` failed (exit 255): "
        "error: PULUMI_ACCESS_TOKEN must be set for login\n"
    )


def test_a_pulumi_that_cannot_decrypt_says_so(
    project: Project, pulumi: FakePulumi, capsys: pytest.CaptureFixture[str]
) -> None:
    pulumi.answer("prod", {"code": 255, "stderr": f"error: could not decrypt '{DB_PROD}'\n"})
    code, _, err = check(capsys, "--project", str(project.root), "prod")
    assert code == 2
    assert err.startswith("secret-fingerprints: stack prod: `pulumi config --show-secrets --json --stack prod` failed")
    assert "so decrypting failed: check the stack's secrets provider credentials" in err


def test_pulumi_printing_something_else_than_json_exits_2(
    project: Project, pulumi: FakePulumi, capsys: pytest.CaptureFixture[str]
) -> None:
    pulumi.answer("prod", {"stdout": f"KEY VALUE\nstagecraft:dbPassword {DB_PROD}\n"})
    code, _, err = check(capsys, "--project", str(project.root), "prod")
    assert (
        code == 2 and "stack prod: the output of `pulumi config --show-secrets --json --stack prod` is not JSON" in err
    )


def test_without_the_pulumi_cli_it_exits_2(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    project.stack_file("staging")
    code, _, err = check(capsys, "--project", str(project.root))
    assert code == 2 and "the pulumi CLI is not on PATH" in err and "STACK=FILE" in err


# --------------------------------------------------------------------------------------------
# The executable and the stack-file reader.


def test_the_script_runs_on_the_standard_library_alone(project: Project) -> None:
    """-S -I: no site-packages, so an import of anything outside the standard library fails."""
    staging, prod = staging_config(), prod_config()
    prod["stagecraft:apiKey"] = entry(API_STAGING)
    saved = (project.saved("staging", staging), project.saved("prod", prod))
    result = subprocess.run(
        [sys.executable, "-S", "-I", str(SCRIPT), "--project", str(project.root), *saved],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[0] == "prod stagecraft:apiKey and staging stagecraft:apiKey: same value"
    assert_nothing_secret(result.stdout + result.stderr)
    assert os.access(SCRIPT, os.X_OK)


STYLES = """\
  stagecraft:apiKey:
    secure: v1:AAAA
  "stagecraft:quoted":
    nested:
      - plain
      - secure: v1:BBBB   # a comment
      - {secure: "v1:CCCC"}
      -
        secure: v1:DDDD
  stagecraft:styles:
    text: |
      secure: inside a block scalar, not a secret
    items:
    - a: 1
      b:
        secure: v1:EEEE
    - - x
      - secure: v1:FFFF
    not_a_secret:
      secure: v1:GGGG
      other: a map with more than `secure` is ordinary config
    hash: "a # inside quotes"
"""


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_stack_file_reader_finds_what_a_yaml_parser_finds(stack: str) -> None:
    """The repository's stack files with `secure:` values in every block and flow style."""
    text = (ROOT / f"Pulumi.{stack}.yaml").read_text() + STYLES
    expected = sorted(key for key, _ in ciphertexts(yaml.safe_load(text)["config"]))
    found = sorted(key + "".join(f".{segment}" for segment in path) for key, path in secure_paths(text, "x"))
    assert found == expected
    assert len(found) == 6


def test_keys_are_named_as_pulumi_config_path_spells_them() -> None:
    assert config_path("stagecraft:secrets", ["provided", "smtp-password", "value"]) == (
        "stagecraft:secrets.provided.smtp-password.value"
    )
    assert config_path("stagecraft:x", ["a.b", 0, ""]) == 'stagecraft:x["a.b"][0][""]'
