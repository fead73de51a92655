"""The pack's settings: settings.json is the one source (the config schema's defaults come from it),
a policy config can only add to it, and a broken settings.json stops the pack with one line."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "policies"))

from stagecraft_policy import POLICIES
from stagecraft_policy.config import (
    BASE,
    DEFAULT,
    KEYS,
    SETTINGS_FILE,
    SettingsError,
    load_settings,
    merge,
    settings_for,
)

from preflight.policy import PackProcess, PolicyPackError

SETTINGS = json.loads(SETTINGS_FILE.read_text())


def test_settings_json_holds_this_repositorys_values() -> None:
    assert SETTINGS == {
        "productionStacks": ["prod"],
        "productionPrefixes": ["prod-", "acme-prod-"],
        "environmentProjects": {"staging": ["acme-staging-4711"], "prod": ["acme-prod-4711"]},
        "allowedMembers": {"prod": ["group:cloud-storage-analytics@google.com"]},
        "prodMinDeleteAgeDays": 30,
        "prodMinSoftDeleteDays": 7,
        "prodMinNoncurrentDays": 7,
    }
    assert BASE == SETTINGS


def test_every_policy_schema_defaults_to_settings_json_and_documents_each_key() -> None:
    for policy in POLICIES:
        assert policy.config_schema is not None, policy.name
        properties = policy.config_schema.properties
        assert {key: value["default"] for key, value in properties.items()} == SETTINGS, policy.name
        assert all(len(value["description"]) > 40 for value in properties.values())


def test_the_clis_defaults_change_nothing() -> None:
    """The CLI sends each schema default, numbers as floats: the same settings as none at all."""
    delivered = json.loads(json.dumps(SETTINGS), parse_int=float)
    resolved = settings_for(delivered)
    assert resolved.problems == ()
    for name in ("production_stacks", "production_prefixes", "environment_projects", "allowed_members"):
        assert getattr(resolved, name) == getattr(DEFAULT, name)
    assert resolved.prod_min_delete_age_days == 30 and isinstance(resolved.prod_min_delete_age_days, int)


@pytest.mark.parametrize(
    "config",
    [
        {"productionPrefixes": []},
        {"productionStacks": []},
        {"environmentProjects": {}},
        {"environmentProjects": {"staging": []}},
        {"allowedMembers": {"prod": []}},
    ],
)
def test_a_config_cannot_take_anything_away(config: dict[str, Any]) -> None:
    resolved = settings_for(config)
    assert resolved.production_prefixes == ("prod-", "acme-prod-")
    assert resolved.production_stacks == ("prod",)
    assert resolved.own_projects("staging") == {"acme-staging-4711"}
    assert resolved.members("prod") == {"group:cloud-storage-analytics@google.com"}


def test_a_config_adds_to_lists_and_per_environment_maps() -> None:
    resolved = settings_for(
        {
            "productionPrefixes": ["legacy-"],
            "productionStacks": ["prod-eu"],
            "environmentProjects": {"staging": ["acme-staging-9999"], "dev": ["acme-dev-1234"]},
            "allowedMembers": {"staging": ["user:qa@example.com"]},
        }
    )
    assert resolved.production_prefixes == ("prod-", "acme-prod-", "legacy-")
    assert resolved.environment_of("prod-eu") == "prod"
    assert resolved.own_projects("staging") == {"acme-staging-4711", "acme-staging-9999"}
    assert resolved.own_projects("dev") == {"acme-dev-1234"}
    assert resolved.members("staging") == {"user:qa@example.com"}
    assert resolved.members("prod") == {"group:cloud-storage-analytics@google.com"}
    assert resolved.problems == ()


def test_floors_only_rise() -> None:
    raised = settings_for({"prodMinDeleteAgeDays": 90.0, "prodMinSoftDeleteDays": 7.0})
    assert raised.prod_min_delete_age_days == 90 and raised.prod_min_soft_delete_days == 7
    lowered = settings_for({"prodMinNoncurrentDays": 1})
    assert lowered.prod_min_noncurrent_days == 7
    assert lowered.problems == ("prodMinNoncurrentDays: 1 is below this repository's 7; ignored",)


def test_a_project_keeps_its_one_environment() -> None:
    resolved = settings_for({"environmentProjects": {"staging": ["acme-prod-4711"]}})
    assert resolved.own_projects("staging") == {"acme-staging-4711"}
    assert resolved.problems == (
        "environmentProjects.staging: acme-prod-4711 belongs to prod; a project has one owner",
    )


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"prodMinDeleteAgeDays": float("nan")}, "prodMinDeleteAgeDays: must be a whole number of days (got nan)"),
        ({"prodMinDeleteAgeDays": float("inf")}, "prodMinDeleteAgeDays: must be a whole number of days (got inf)"),
        ({"prodMinDeleteAgeDays": True}, "prodMinDeleteAgeDays: must be a whole number of days (got 'True')"),
        ({"prodMinSoftDeleteDays": 365}, "prodMinSoftDeleteDays: must be between 1 and 90 (got 365)"),
        ({"productionPrefixes": [""]}, "productionPrefixes[0]: '' must match"),
        ({"productionPrefixes": ["prod"]}, "productionPrefixes[0]: 'prod' must match"),
        ({"productionStacks": {"prod": 1}}, "productionStacks: must be a list of strings (got dict)"),
        ({"environmentProjects": ["acme-staging-4711"]}, "environmentProjects: must be an object"),
        ({"environmentProjects": {"staging": ["UPPER-case"]}}, "environmentProjects.staging[0]: 'UPPER-case' must"),
        ({"allowedMembers": {"prod": ["allUsers"]}}, "allowedMembers.prod[0]: 'allUsers' must match"),
        ({"allowedMembers": {"prod": ["serviceAccount:a@b.iam.gserviceaccount.com"]}}, "allowedMembers.prod[0]: '"),
        ({"nonsense": 1}, "unknown setting 'nonsense'"),
    ],
)
def test_garbage_is_named_and_ignored(config: dict[str, Any], problem: str) -> None:
    resolved = settings_for(config)
    assert len(resolved.problems) == 1 and resolved.problems[0].startswith(problem), resolved.problems
    assert resolved.production_prefixes == DEFAULT.production_prefixes
    assert resolved.prod_min_delete_age_days == DEFAULT.prod_min_delete_age_days


def test_allowed_members_config_never_admits_the_public() -> None:
    merged, problems = merge(BASE, {"allowedMembers": {"prod": ["allUsers", "domain:example.com"]}})
    assert merged["allowedMembers"]["prod"] == ["group:cloud-storage-analytics@google.com", "domain:example.com"]
    assert len(problems) == 1


def test_each_config_is_parsed_once() -> None:
    config = {"productionPrefixes": ["legacy-"]}
    assert settings_for(dict(config)) is settings_for(dict(config))
    assert settings_for({}) is DEFAULT and settings_for(None) is DEFAULT


@pytest.mark.parametrize(
    ("stack", "environment"),
    [("prod", "prod"), ("staging", "staging"), ("staging-feature-x", "staging"), ("prod-eu", "prod"), ("dev", "dev")],
)
def test_a_stacks_environment(stack: str, environment: str) -> None:
    assert DEFAULT.environment_of(stack) == environment


def test_an_environment_without_projects_owns_nothing() -> None:
    assert DEFAULT.own_projects("dev") == frozenset()
    assert DEFAULT.foreign_projects("dev") == {"acme-staging-4711", "acme-prod-4711"}


def _write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "cannot be read as JSON"),
        ([], "must be a JSON object of settings"),
        ({k: v for k, v in SETTINGS.items() if k != "allowedMembers"}, "missing allowedMembers"),
        ({**SETTINGS, "extra": 1}, "unknown setting 'extra'"),
        ({**SETTINGS, "prodMinSoftDeleteDays": 0}, "prodMinSoftDeleteDays: must be between 1 and 90 (got 0)"),
        (
            {**SETTINGS, "environmentProjects": {"staging": ["acme-x-1234"], "prod": ["acme-x-1234"]}},
            "environmentProjects.prod: acme-x-1234 belongs to staging",
        ),
    ],
)
def test_a_broken_settings_file_is_named_with_its_key(tmp_path: Path, document: Any, message: str) -> None:
    path = _write(tmp_path, document)
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_pack_refuses_to_start_on_a_broken_settings_file(tmp_path: Path) -> None:
    pack_dir = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", pack_dir, ignore=shutil.ignore_patterns("__pycache__"))
    (pack_dir / "stagecraft_policy" / "settings.json").write_text(json.dumps({**SETTINGS, "prodMinDeleteAgeDays": -1}))
    pack = PackProcess(pack_dir)
    try:
        with pytest.raises(PolicyPackError) as caught:
            _ = pack.port
        assert pack.process.returncode == 2
    finally:
        pack.stop()
    message = str(caught.value)
    assert "settings.json: prodMinDeleteAgeDays: must be between 1 and 3650 (got -1)" in message
    assert "Traceback" not in message


def test_keys_are_the_documented_ones() -> None:
    assert [key.name for key in KEYS] == list(SETTINGS)
