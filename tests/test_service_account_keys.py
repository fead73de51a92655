"""Service account keys and rotations as both stacks plan them: a key only for a workload whose
credentials are a key file, delivered only to that workload's containers as a 0400 file owned by
the uid reading it, never in an output or an environment variable; a new key generation or a new
secret generation replaces what it must and never a protected resource."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
from conftest import service_containers, stack_document

from components.config import ConfigError
from components.containers.container import FILES_ROOT, secret_path
from components.services.api import GCP_KEY_FILE
from preflight import engine
from preflight.engine import MASK, SECRET_SIG, SIG_KEY, Plan, PlannedResource, plan
from preflight.mocks import PlanMocks, digest

KEY = "gcp:serviceaccount/key:Key"
ACCOUNT = "gcp:serviceaccount/account:Account"
CONTAINER = "docker:index/container:Container"
PASSWORD = "random:index/randomPassword:RandomPassword"
VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
KEY_PATH = secret_path(GCP_KEY_FILE)
CREDENTIALS_VARIABLE = "GOOGLE_APPLICATION_CREDENTIALS"
# Which containers read each workload's key: the API server (not its migration job, which only
# touches the database), and the backup service with the backup it takes before a migration.
KEY_READERS = {"api": {"api"}, "backup": {"ops", "ops-pre-migration-backup"}}


# ---------------------------------------------------------------------------------------------
# Reading keys out of a plan


def _secret_value(value: Any) -> Any:
    """The plaintext inside a secret envelope of raw inputs (the plan's masked inputs hide it)."""
    if isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG:
        return value.get("value")
    return value


def _account_of(key: PlannedResource) -> str:
    """`acme-staging-api` from the key's `projects/.../serviceAccounts/acme-staging-api@...`."""
    return str(key.inputs["serviceAccountId"]).rsplit("/", 1)[-1].split("@", 1)[0]


def _keys_by_account(result: Plan) -> dict[str, PlannedResource]:
    return {_account_of(key): key for key in result.by_type(KEY)}


def _key_deliveries(result: Plan) -> dict[str, tuple[PlannedResource, dict[str, Any]]]:
    """{service: (its files carrier, the raw upload of its key file)} for every container that
    gets a key file."""
    found = {}
    for service, carrier in service_containers(result).items():
        if not service.endswith("-files"):
            continue
        for upload in carrier.raw_inputs.get("uploads", []):
            if upload["file"] == KEY_PATH:
                found[service.removesuffix("-files")] = (carrier, upload)
    return found


def _key_material(result: Plan) -> list[str]:
    """Every form a key of the plan can take: the JSON key file, its private key and key ID, and
    the base64 text the provider returns."""
    material = []
    for upload in (upload for _, upload in _key_deliveries(result).values()):
        key_file = _secret_value(upload["content"])
        document = json.loads(key_file)
        material += [
            key_file,
            document["private_key"],
            document["private_key_id"],
            base64.b64encode(key_file.encode()).decode(),
        ]
        # The PEM body alone, line by line, in case something reformats the key.
        material += [line for line in document["private_key"].splitlines() if "-----" not in line]
    return material


def _strings(value: Any) -> Iterator[str]:
    """Every string in a nested output value, keys included."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def _env(container: PlannedResource) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in container.inputs.get("envs", []))


def _planned(document: dict[str, Any], stack: str, write_stack: Callable[..., Path]) -> Plan:
    return plan(stack, write_stack(document, name=f"Pulumi.{stack}.yaml"))


# ---------------------------------------------------------------------------------------------
# Which workloads get a key, and where it goes


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_only_key_file_workloads_get_a_key(stack: str, plans: dict[str, Plan]) -> None:
    """By default the API and the backup service, each a key of its own account."""
    result = plans[stack]
    keys = _keys_by_account(result)
    assert set(keys) == {f"acme-{stack}-api", f"acme-{stack}-backup"}
    accounts = {account.inputs["accountId"]: account for account in result.by_type(ACCOUNT)}
    for account_id, key in keys.items():
        assert key.parent == accounts[account_id].urn
        assert key.inputs["keepers"] == {"generation": "1"}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_each_key_reaches_only_its_workloads_containers_as_a_0400_file(stack: str, plans: dict[str, Plan]) -> None:
    result = plans[stack]
    containers = service_containers(result)
    deliveries = _key_deliveries(result)
    readers = {service: _account_of_key_file(upload) for service, (_, upload) in deliveries.items()}
    expected = {
        service: f"acme-{stack}-{workload}" for workload, services in KEY_READERS.items() for service in services
    }
    assert readers == expected
    assert "api-migrate" not in readers
    for service, (carrier, upload) in deliveries.items():
        reader = containers[service]
        uid, gid = reader.inputs["user"].split(":")
        assert (upload["permissions"], upload["owner"], upload["group"]) == ("0400", uid, gid), service
        assert carrier.inputs["start"] is False and carrier.inputs["networkMode"] == "none"
        # The carrier's volume reaches the reading container alone, read-only.
        (volume,) = [m["source"] for m in carrier.inputs["mounts"] if m["target"] == FILES_ROOT]
        mounted_by = {
            name: mount
            for name, container in containers.items()
            for mount in container.inputs.get("mounts", [])
            if mount["source"] == volume
        }
        assert set(mounted_by) == {service, f"{service}-files"}
        assert mounted_by[service]["readOnly"] is True


def _account_of_key_file(upload: dict[str, Any]) -> str:
    return str(json.loads(_secret_value(upload["content"]))["client_email"]).split("@", 1)[0]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_only_the_api_is_pointed_at_a_key_file(stack: str, plans: dict[str, Plan]) -> None:
    """GOOGLE_APPLICATION_CREDENTIALS names the delivered file, on the API alone (the ops tool
    reads the path from its settings file)."""
    pointed = {
        service: env[CREDENTIALS_VARIABLE]
        for service, container in service_containers(plans[stack]).items()
        if CREDENTIALS_VARIABLE in (env := _env(container))
    }
    assert pointed == {"api": KEY_PATH}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_no_key_in_any_output_or_environment_variable(stack: str, plans: dict[str, Plan]) -> None:
    result = plans[stack]
    material = _key_material(result)
    assert len(material) > 8
    outputs = list(_strings(result.outputs))
    assert "verify" in result.outputs and len(outputs) > 50
    # Nothing secret is exported at all: a key exported as a secret would show as the mask.
    assert MASK not in outputs
    for text in outputs:
        for value in material:
            assert value not in text
        assert "PRIVATE KEY" not in text
    for container in result.by_type(CONTAINER):
        for pair in container.inputs.get("envs", []):
            assert "PRIVATE KEY" not in pair and "service_account" not in pair, pair
            for value in material:
                assert value not in pair


def test_the_seed_job_loads_with_the_api_key(write_stack: Callable[..., Path]) -> None:
    """Loading a dump from the uploads bucket needs an identity that may read it: the API's."""
    document = stack_document("staging")
    document["config"]["stagecraft:seed"] = {"mode": "load", "object": "seed/2024-05.dump"}
    result = _planned(document, "staging", write_stack)
    deliveries = _key_deliveries(result)
    assert set(deliveries) == {"api", "seed", "ops", "ops-pre-migration-backup"}
    carrier, upload = deliveries["seed"]
    assert _account_of_key_file(upload) == "acme-staging-api"
    assert _secret_value(upload["content"]) == _secret_value(deliveries["api"][1]["content"])
    uid, gid = service_containers(result)["seed"].inputs["user"].split(":")
    assert (upload["permissions"], upload["owner"], upload["group"]) == ("0400", uid, gid)
    settings = next(u for u in carrier.inputs["uploads"] if u["file"].endswith("/ops.json"))
    assert json.loads(settings["content"])["credentials_file"] == KEY_PATH


def test_generated_seed_data_gets_no_key(write_stack: Callable[..., Path]) -> None:
    document = stack_document("staging")
    document["config"]["stagecraft:seed"] = {"mode": "generate", "spec": "seed/example-spec.json"}
    assert "seed" not in _key_deliveries(_planned(document, "staging", write_stack))


# ---------------------------------------------------------------------------------------------
# credentials: none


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_credentials_none_removes_the_api_key_and_its_file_only(stack: str, write_stack: Callable[..., Path]) -> None:
    """`credentials: {api: none}` overrides the API's default alone; the backup service keeps
    its key."""
    document = stack_document(stack)
    document["config"]["stagecraft:identity"] = {"credentials": {"api": "none"}}
    result = _planned(document, stack, write_stack)
    assert set(_keys_by_account(result)) == {f"acme-{stack}-backup"}
    assert set(_key_deliveries(result)) == KEY_READERS["backup"]
    api = service_containers(result)["api"]
    assert CREDENTIALS_VARIABLE not in _env(api)
    assert "GOOGLE_CLOUD_PROJECT" in _env(api)


def test_credentials_none_for_every_key_workload_leaves_no_key(write_stack: Callable[..., Path]) -> None:
    document = stack_document("prod")
    document["config"]["stagecraft:identity"] = {"credentials": {"api": "none", "backup": "none"}}
    result = _planned(document, "prod", write_stack)
    assert result.by_type(KEY) == [] and _key_deliveries(result) == {}
    ops = next(u for u in service_containers(result)["ops-files"].inputs["uploads"] if u["file"].endswith("ops.json"))
    assert json.loads(ops["content"])["credentials_file"] is None


@pytest.mark.parametrize("workload", ["web", "temporal", "monitoring"])
def test_a_key_file_for_a_workload_whose_containers_never_read_one_is_refused(
    workload: str, write_stack: Callable[..., Path]
) -> None:
    """Such a key would be minted and kept in state without ever being used."""
    document = stack_document("staging")
    document["config"]["stagecraft:identity"] = {"credentials": {workload: "key-file"}}
    with pytest.raises(ConfigError) as error:
        _planned(document, "staging", write_stack)
    assert f"stagecraft:identity.credentials.{workload}: " in str(error.value)
    assert "api, backup" in str(error.value)


# ---------------------------------------------------------------------------------------------
# Rotations: what a new generation replaces


class ReplacingMocks(PlanMocks):
    """The plan's mocks, behaving as a real update would where rotations are concerned: a
    resource whose keepers change is a new resource with a new value (a new password, a new
    key), and a container whose inputs change is a new container with a new ID, which whatever
    reads that ID sees change in turn."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        keepers = args.inputs.get("keepers")
        if keepers:
            args = pulumi.runtime.MockResourceArgs(
                args.typ, f"{args.name}#{json.dumps(keepers, sort_keys=True)}", args.inputs, args.provider, None, True
            )
        resource_id, outputs = super().new_resource(args)
        if args.typ == CONTAINER:
            resource_id = digest(json.dumps(args.inputs, sort_keys=True, default=str))[:64]
        return resource_id, outputs


def _replacing_plan(stack: str, document: dict[str, Any], write_stack: Callable[..., Path], name: str) -> Plan:
    return plan(stack, write_stack(document, name=f"{name}-Pulumi.{stack}.yaml"))


def _changed(before: Plan, after: Plan) -> dict[str, PlannedResource]:
    """Resources (by URN) whose inputs or options differ between two plans of one stack."""
    old = {r.urn: r for r in before.resources}
    new = {r.urn: r for r in after.resources}
    assert set(old) == set(new), "a rotation must not add or remove resources"
    return {
        urn: new[urn]
        for urn in old
        if (old[urn].raw_inputs, old[urn].protect, old[urn].dependencies)
        != (new[urn].raw_inputs, new[urn].protect, new[urn].dependencies)
    }


@pytest.fixture
def replacing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "PlanMocks", ReplacingMocks)


def test_replacing_mocks_see_a_new_generation(write_stack: Callable[..., Path], replacing: None) -> None:
    """The rotation tests below mean something only if a new generation changes what it feeds."""
    document = stack_document("staging")
    base = _replacing_plan("staging", document, write_stack, "base")
    document["config"]["stagecraft:secrets"]["generations"] = {"redis-password": 2}
    rotated = _replacing_plan("staging", document, write_stack, "rotated")
    changed = {(r.type, r.name) for r in _changed(base, rotated).values()}
    assert ("random:index/randomPassword:RandomPassword", "stagecraft-security-secrets-redis-password") in changed
    assert (CONTAINER, "stagecraft-application-api-server-files") in changed
    assert (CONTAINER, "stagecraft-application-redis-server") in changed


def test_a_new_key_generation_replaces_that_key_and_nothing_protected(
    write_stack: Callable[..., Path], replacing: None
) -> None:
    document = stack_document("prod")
    base = _replacing_plan("prod", document, write_stack, "base")
    document["config"]["stagecraft:identity"] = {"key_generations": {"api": 2}}
    rotated = _replacing_plan("prod", document, write_stack, "rotated")
    changed = _changed(base, rotated)

    # The same logical key (same URN) with a new replace trigger: the provider mints a new key.
    old_key, new_key = _keys_by_account(base)["acme-prod-api"], _keys_by_account(rotated)["acme-prod-api"]
    assert new_key.urn == old_key.urn and new_key.urn in changed
    assert (old_key.inputs["keepers"], new_key.inputs["keepers"]) == ({"generation": "1"}, {"generation": "2"})
    old_file = _secret_value(_key_deliveries(base)["api"][1]["content"])
    new_file = _secret_value(_key_deliveries(rotated)["api"][1]["content"])
    assert json.loads(old_file)["private_key_id"] != json.loads(new_file)["private_key_id"]

    assert not [r.name for r in changed.values() if r.protect]
    assert not [r.name for r in changed.values() if r.type == ACCOUNT]
    # Only the API's side moves: the backup key and the ops containers stay as they are.
    assert _keys_by_account(rotated)["acme-prod-backup"].urn not in changed
    touched = {(r.type, r.name) for r in changed.values()}
    assert touched == {
        (KEY, "stagecraft-security-identities-api-key"),
        (CONTAINER, "stagecraft-application-api-server-files"),
        (CONTAINER, "stagecraft-application-api-server"),
        ("command:local:Command", "stagecraft-application-api-server-pids-limit"),
    }


def test_rotating_every_generated_secret_in_prod_replaces_no_protected_resource(
    write_stack: Callable[..., Path], replacing: None
) -> None:
    """Prod protects its secrets, buckets and data volumes (not the grants on them: revoking
    access must stay possible); a rotation replaces only the generated values and their versions
    (neither protected, and neither ever updated in place), then redelivers the files."""
    document = stack_document("prod")
    base = _replacing_plan("prod", document, write_stack, "base")
    generated = [r.name.removeprefix("stagecraft-security-secrets-") for r in base.by_type(PASSWORD)]
    assert len(generated) >= 10
    document["config"]["stagecraft:secrets"]["generations"] = {name: 2 for name in generated}
    rotated = _replacing_plan("prod", document, write_stack, "rotated")
    changed = _changed(base, rotated)

    assert not sorted(r.name for r in changed.values() if r.protect)
    assert {r.type for r in base.resources if r.protect} == {
        "gcp:secretmanager/secret:Secret",
        "gcp:storage/bucket:Bucket",
        "docker:index/volume:Volume",
    }
    for type_ in (PASSWORD, VERSION):
        assert {r.urn for r in rotated.by_type(type_)} <= set(changed), type_
        assert not any(r.protect for r in rotated.by_type(type_)), type_
    # Each version is written under the new generation, so Secret Manager gets a new version.
    assert {r.inputs["secretDataWoVersion"] for r in rotated.by_type(VERSION)} == {"2"}
    assert not any(r.type in (ACCOUNT, KEY) for r in changed.values())
    # The new values reach the services that read them.
    services = {r.name for r in changed.values() if r.type == CONTAINER}
    assert {"stagecraft-application-postgres-server", "stagecraft-application-redis-server"} <= services
