"""One exclusive write per storage account at a time, as on Azure: the simulator answers an overlapping
write 409 StorageAccountOperationInProgress, and the executor serialises writes per account (across
instances too, through the ledger) while other accounts and Graph run in parallel."""

from __future__ import annotations

import json
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from rehearsal.simulator import Simulator
from responders.execute import is_transient
from tests import simulator_fixtures
from tests.harness import Harness, sample
from tests.simulator_fixtures import SUB, example

azure_env_fixture = simulator_fixtures.azure_env_fixture
sim_fixture = simulator_fixtures.sim_fixture
WRITE_LATENCY = {"method": "*", "path": r"/(regenerateKey|revokeUserDelegationKeys)$", "latency_ms": 300}
ACCOUNT_WRITES = ("/regeneratekey", "/revokeuserdelegationkeys")


def account_writes(requests: list[dict[str, Any]], account: str = "") -> list[dict[str, Any]]:
    return [
        r
        for r in requests
        if r["path"].lower().endswith(ACCOUNT_WRITES) and f"/storageaccounts/{account}" in r["path"].lower()
    ]


def overlapping(requests: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of requests whose time on the server (arrival to answer) overlaps."""
    ordered = sorted(requests, key=lambda r: r["time"])
    return [
        (a["path"], b["path"])
        for i, a in enumerate(ordered)
        for b in ordered[i + 1 :]
        if b["time"] < a["answered"]
    ]


def test_overlapping_account_writes_answer_409_in_progress_with_azures_body(azure_env: Simulator) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.storage import StorageManagementClient

    sim = azure_env
    sim.set_faults([WRITE_LATENCY])
    client = StorageManagementClient(DefaultAzureCredential(), SUB, base_url=sim.url)
    client.storage_accounts.get_properties("rg-test", "stleaky01")  # token and connection first
    start = threading.Barrier(3)

    def write(step: str) -> Exception | None:
        start.wait()
        try:
            if step == "key1":
                client.storage_accounts.regenerate_key("rg-test", "stleaky01", {"keyName": "key1"})
            elif step == "revoke":
                client.storage_accounts.revoke_user_delegation_keys("rg-test", "stleaky01")
            else:
                client.storage_accounts.regenerate_key("rg-test", "stdefault03", {"keyName": "key1"})
        except HttpResponseError as exc:
            return exc
        return None

    with ThreadPoolExecutor(3) as pool:
        key1, revoke, other = pool.map(write, ("key1", "revoke", "other"))
    assert other is None, "another account is not held"
    assert (key1 is None) != (revoke is None), "one of the two writes on stleaky01 is refused"
    refusal = key1 or revoke
    assert isinstance(refusal, HttpResponseError)
    assert refusal.status_code == 409
    assert refusal.error is not None
    assert refusal.error.code == "StorageAccountOperationInProgress"
    assert is_transient(refusal)
    refused = next(r for r in sim.requests() if r["status"] == 409)
    body = example("arm_storage_account_operation_in_progress_409_issue.json")
    assert refused["error"] == body
    # a read is not exclusive: it is answered while a write holds the account
    sim.set_faults([WRITE_LATENCY, {"method": "GET", "path": "stleaky01$", "latency_ms": 300}])
    sim.clear_requests()
    both = threading.Barrier(2)

    def revoke_keys() -> None:
        both.wait()
        client.storage_accounts.revoke_user_delegation_keys("rg-test", "stleaky01")

    with ThreadPoolExecutor(1) as pool:
        wrote = pool.submit(revoke_keys)
        both.wait()
        assert client.storage_accounts.get_properties("rg-test", "stleaky01").name == "stleaky01"
        wrote.result()
    assert {r["status"] for r in sim.requests()} == {200}
    assert overlapping(sim.requests()), "the GET ran while the write held the account"


def test_a_plan_with_several_writes_on_one_account_completes(make_harness) -> None:
    h: Harness = make_harness()
    h.sim.set_faults([WRITE_LATENCY])
    item = sample("03-listkeys-by-app.json")[0]
    h.eventgrid(item)
    incident = h.incident(item["id"])
    assert incident is not None
    assert incident["Status"] == "contained", [
        (a["Kind"], a["Status"], a["Error"]) for a in incident["actions"]
    ]
    writes = account_writes(h.sim.requests(), "stsynthclaims02")
    assert len(writes) == 3
    assert {w["status"] for w in writes} == {200}
    assert overlapping(writes) == []
    leases = [r for r in h.all_ledger_rows() if r["PartitionKey"] == "account-write"]
    assert len(leases) == 1
    assert leases[0]["Holder"] == "", "the account's write lease is free once the delivery is done"


def _plan(h: Harness, item: dict[str, Any], kinds: set[str]) -> Any:
    """The plan the pipeline makes for `item`, cut down to the steps of `kinds`, as a new incident."""
    from responders.core.classify import classify
    from responders.core.parse import parse_item
    from responders.core.plan import plan as make_plan
    from responders.service import gather_facts

    signal = parse_item(item, now=h.rt.clock())
    facts = gather_facts(signal, h.rt)
    made = make_plan(signal, facts, classify(signal, facts, h.rt.settings.policy), h.rt.settings.policy)
    actions = tuple(a._replace(after=()) for a in made.actions if a.kind in kinds)
    return made._replace(incident=f"inc-{uuid.uuid4().hex[:24]}", actions=actions)


def test_two_instances_writing_one_account_both_succeed(make_harness) -> None:
    from responders.service import Runtime
    from responders.settings import Settings

    h: Harness = make_harness()
    other = Runtime.from_settings(Settings.from_env(dict(os.environ)))  # a second function instance
    try:
        item = sample("03-listkeys-by-app.json")[0]
        rotate = _plan(h, item, {"storage.regenerate_key"})
        revoke = _plan(h, item, {"storage.revoke_user_delegation_keys"})
        h.sim.set_faults([WRITE_LATENCY])
        h.sim.clear_requests()
        start = threading.Barrier(2)

        def run(rt: Runtime, plan: Any) -> list[Any]:
            start.wait()
            return rt.executor.run(plan, dry_run=False)

        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(run, h.rt, rotate)
            second = pool.submit(run, other, revoke)
            outcomes = first.result() + second.result()
    finally:
        other.close()
    assert [o.status for o in outcomes] == ["contained"] * 3, [(o.action.kind, o.error) for o in outcomes]
    writes = account_writes(h.sim.requests(), "stsynthclaims02")
    assert {w["status"] for w in writes} == {200}, "no write was refused: the instances took turns"
    assert overlapping(writes) == []


def test_different_accounts_are_written_in_parallel(make_harness) -> None:
    h: Harness = make_harness()
    h.sim.set_faults([WRITE_LATENCY])
    items = [sample("03-listkeys-by-app.json")[0], sample("04-sas-listed.cloudevents.json")[0]]
    with ThreadPoolExecutor(2) as pool:
        delivered = [pool.submit(h.eventgrid, items[0]), pool.submit(h.http, "alerts", items[1])]
        assert delivered[1].result()[0] == 200
        delivered[0].result()
    claims = account_writes(h.sim.requests(), "stsynthclaims02")
    sas = account_writes(h.sim.requests(), "stsynthsas03")
    assert len(claims) == len(sas) == 3
    assert overlapping(claims) == overlapping(sas) == []
    assert overlapping(claims + sas), "writes on different accounts overlap in time"


def test_other_conflicts_stay_permanent(azure_env: Simulator) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.storage import StorageManagementClient

    client = StorageManagementClient(DefaultAzureCredential(), SUB, base_url=azure_env.url)
    with pytest.raises(HttpResponseError) as raised:  # public access on an account that forbids it
        client.blob_containers.update(
            "rg-test", "stlocked02", "private", {"properties": {"publicAccess": "Blob"}}
        )
    assert raised.value.status_code == 409
    assert not is_transient(raised.value)


def test_the_facts_and_each_writes_answer_stand_in_for_reads(make_harness, caplog) -> None:
    """The account read before planning answers each step's first read, and regenerateKey's answer
    (each key's creationTime) its read-back: no account GET after the facts; no key value kept."""
    h: Harness = make_harness()
    item = sample("03-listkeys-by-app.json")[0]
    h.eventgrid(item)
    incident = h.incident(item["id"])
    assert incident is not None
    assert incident["Status"] == "contained"
    calls = [
        (r["method"], r["path"].lower().rsplit("/", 1)[-1])
        for r in h.sim.requests()
        if "/storageaccounts/stsynthclaims02" in r["path"].lower()
    ]
    assert calls.count(("GET", "stsynthclaims02")) == 1, calls
    assert sorted(c for c in calls if c[0] == "POST") == [
        ("POST", "regeneratekey"),
        ("POST", "regeneratekey"),
        ("POST", "revokeuserdelegationkeys"),
    ]
    keys = h.sim.state.snapshot()["accounts"]["stsynthclaims02"]["keys"]
    rotated = {
        a["Params"]["key_name"]: a["After"]
        for a in incident["actions"]
        if a["Kind"].endswith("regenerate_key")
    }
    for name, after in rotated.items():
        assert after["keyCreationTime"] == str(
            datetime.fromisoformat(keys[name]["creationTime"].replace("Z", "+00:00"))
        )
    kept = json.dumps(h.all_ledger_rows(), default=str) + caplog.text
    assert not [s for s in h.sim.secrets() if s in kept]


def test_a_step_starts_when_its_predecessor_ends_not_when_the_whole_wave_does(make_harness) -> None:
    h: Harness = make_harness()
    h.sim.set_faults([{"method": "*", "path": "/servicePrincipals/", "latency_ms": 1500}])
    item = sample("03-listkeys-by-app.json")[0]
    h.eventgrid(item)
    requests = h.sim.requests()
    key2 = next(
        r for r in requests if r["path"].endswith("regenerateKey") and r["body"] == {"keyName": "key2"}
    )
    patch = next(r for r in requests if r["method"] == "PATCH" and "/servicePrincipals/" in r["path"])
    assert key2["time"] < patch["answered"], "key2 waited only for key1, not for the slow Graph step"


def test_a_restore_takes_its_turn_behind_another_instances_write(make_harness) -> None:
    from responders.core.model import Action
    from responders.service import Runtime
    from responders.settings import Settings

    h: Harness = make_harness()
    [event] = sample("02-account-public-access-enabled.json")
    event = {**event, "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    h.eventgrid(event)
    incident = h.incident(event["id"])
    assert incident is not None
    assert incident["Status"] == "contained"
    account = next(a["Target"] for a in incident["actions"] if a["Kind"] == "storage.disable_public_access")
    rotate = Action("storage.regenerate_key", account, "act-rotate", "test", {"key_name": "key1"})
    plan = _plan(h, event, set())._replace(actions=(rotate,))
    other = Runtime.from_settings(Settings.from_env(dict(os.environ)))  # another instance, rotating a key
    h.sim.set_faults(
        [
            {"method": "POST", "path": "/regenerateKey$", "latency_ms": 1000},
            {"method": "PATCH", "path": "/storageAccounts/stsynthexport08$", "latency_ms": 300},
        ]
    )
    h.sim.clear_requests()
    try:
        with ThreadPoolExecutor(1) as pool:
            rotating = pool.submit(other.executor.run, plan, dry_run=False)
            status, body, _ = h.http("playbook", {"restore": incident["PartitionKey"], "execute": True})
            [rotated] = rotating.result()
    finally:
        other.close()
    assert status == 200, body
    assert rotated.status == "contained"
    assert [r["status"] for r in body["restored"]] == ["restored"] * len(body["restored"]), body
    writes = account_writes(h.sim.requests(), "stsynthexport08") + [
        r for r in h.sim.requests() if r["method"] == "PATCH" and r["path"].endswith("stsynthexport08")
    ]
    assert {w["status"] for w in writes} == {200}
    assert overlapping(writes) == []
