"""Restore trusts the ledger only as far as it must: it puts back the recorded state of the new account
and role steps only when the present state is the one the incident left, sends only what the
recorded state validates to, and never creates a role assignment for the responder itself."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from azure.data.tables import UpdateMode

from responders.service import plan_from_ledger
from tests.harness import RESPONDER_OID, SUB
from tests.test_network_actions import (
    ACCOUNT,
    OPEN_ACLS,
    approve,
    policy,
    request,
    restore,
    rows,
    shown,
    tenant,
)
from tests.test_role_removal import (
    BLOB_READER,
    KIND,
    ON_ACCOUNT,
    ON_CONTAINER,
    READER,
    claims_tenant,
    names,
    role_row,
    sample,
)


def role_puts(h: Any) -> list[str]:
    return [r["path"] for r in h.sim.requests() if r["method"] == "PUT" and "roleAssignments" in r["path"]]


def test_restore_refuses_when_public_network_access_was_disabled_after_the_restriction(make_harness) -> None:
    h = make_harness(tenant=tenant(networkAcls=OPEN_ACLS, publicNetworkAccess="Enabled"), policy=policy())
    result = request(h, "storage.restrict_network", "change-net-pna")
    approve(h, result["incident"])
    with h.sim.state.locked() as state:  # someone closes the public endpoint by hand since
        state.accounts[ACCOUNT]["properties"]["publicNetworkAccess"] = "Disabled"
    writes = len(h.writes())
    restored = restore(h, result["incident"])
    assert restored["restored"] == [], restored
    assert any("not what this incident left" in r["why"] for r in restored["refused"]), restored["refused"]
    assert len(h.writes()) == writes
    assert shown(h)["publicNetworkAccess"] == "Disabled", "a later, stricter change is not undone"


def test_restore_refuses_when_the_bypass_was_narrowed_after_the_restriction(make_harness) -> None:
    h = make_harness(tenant=tenant(networkAcls=OPEN_ACLS), policy=policy())
    result = request(h, "storage.restrict_network", "change-net-bypass")
    approve(h, result["incident"])
    with h.sim.state.locked() as state:
        state.accounts[ACCOUNT]["properties"]["networkAcls"]["bypass"] = "None"
    writes = len(h.writes())
    restored = restore(h, result["incident"])
    assert restored["restored"] == [], restored
    assert len(h.writes()) == writes
    assert shown(h)["networkAcls"]["bypass"] == "None"


@pytest.mark.parametrize(
    "tamper",
    [
        {"networkAcls": {**OPEN_ACLS, "ipRules": [{"value": "0.0.0.0/0 ; x", "action": "Allow"}]}},
        {"networkAcls": {**OPEN_ACLS, "defaultAction": "Everything"}},
        {"networkAcls": {**OPEN_ACLS, "virtualNetworkRules": [{"id": "https://example.com/x"}]}},
        {"networkAcls": {**OPEN_ACLS, "extra": {"allowSharedKeyAccess": True}}},
        {"networkAcls": OPEN_ACLS, "publicNetworkAccess": "Wide open"},
    ],
)
def test_a_recorded_network_state_that_is_no_network_state_is_refused_and_nothing_is_written(
    make_harness, tamper: dict[str, Any]
) -> None:
    h = make_harness(tenant=tenant(networkAcls=OPEN_ACLS), policy=policy())
    result = request(h, "storage.restrict_network", "change-net-tamper")
    approve(h, result["incident"])
    [row] = rows(h, result["incident"])
    h.rt.ledger.update_action(result["incident"], row["RowKey"], Before={**row["Before"], **tamper})
    kept = copy.deepcopy(shown(h))
    writes = len(h.writes())
    restored = restore(h, result["incident"])
    [entry] = restored["restored"]
    assert entry["status"] == "failed", entry
    assert "recorded" in entry["error"], entry
    assert len(h.writes()) == writes
    assert shown(h) == kept


def contained_role_removal(h: Any) -> tuple[str, dict[str, Any]]:
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)
    incident = role_row(h, event)["PartitionKey"]
    status, body, _ = h.http("playbook", {"approve": incident, "execute": True})
    assert status == 200, body
    row = role_row(h, event)
    assert row["Status"] == "contained"
    assert not names(h) & {ON_ACCOUNT, ON_CONTAINER}
    return incident, row


def test_restore_never_creates_an_assignment_for_the_responder_whatever_the_ledger_says(make_harness) -> None:
    seeded = claims_tenant()
    seeded["roleAssignments"] = [a for a in seeded["roleAssignments"] if a["principalId"] != RESPONDER_OID]
    h = make_harness(tenant=seeded)
    incident, row = contained_role_removal(h)
    before = copy.deepcopy(row["Before"])
    for record in before["assignments"]:
        record["principalId"] = RESPONDER_OID
    h.rt.ledger.update_action(incident, row["RowKey"], Before=before)
    plan = h.rt.ledger.incident(incident)["Plan"]
    for step in plan:
        if step["kind"] == KIND:
            step["params"] = {"principal": RESPONDER_OID}
    h.rt.clients.table().upsert_entity(
        {"PartitionKey": incident, "RowKey": "incident", "Plan": json.dumps(plan)}, mode=UpdateMode.MERGE
    )
    status, body, _ = h.http("playbook", {"restore": incident, "execute": True})
    assert status == 200, body
    assert body["restored"] == [], body
    assert any(r["kind"] == KIND and "never" in r["why"] for r in body["refused"]), body
    assert role_puts(h) == []

    # the adapter refuses it too, whoever calls it
    from responders.actions import HANDLERS

    action = next(a for a in plan_from_ledger(h.rt.ledger.incident(incident)).actions if a.kind == KIND)
    with pytest.raises(ValueError, match="never"):
        HANDLERS[KIND].restore(h.rt.clients, action, before)
    assert role_puts(h) == []
    assert not [a for a in h.sim.state.role_assignment_list() if a["name"] in (ON_ACCOUNT, ON_CONTAINER)]


def test_restore_refuses_a_recorded_role_of_another_subscription(make_harness) -> None:
    h = make_harness(tenant=claims_tenant())
    incident, row = contained_role_removal(h)
    before = copy.deepcopy(row["Before"])
    other = "00000000-0000-4000-8000-000000000999"
    before["assignments"][0]["roleDefinitionId"] = BLOB_READER.replace(SUB, other)
    h.rt.ledger.update_action(incident, row["RowKey"], Before=before)
    status, body, _ = h.http("playbook", {"restore": incident, "execute": True})
    assert status == 200, body
    [entry] = [e for e in body["restored"] if e["kind"] == KIND]
    assert entry["status"] == "failed", entry
    assert "subscription" in entry["error"], entry
    assert role_puts(h) == []
    assert not names(h) & {ON_ACCOUNT, ON_CONTAINER}, "all recorded ones are checked before any is sent"


def test_a_removal_that_failed_part_way_is_restored_for_what_it_removed(make_harness) -> None:
    from tests.simulator_fixtures import example

    h = make_harness(tenant=claims_tenant())
    denied = example("arm_role_assignments_403_authorization_failed_docs.json")
    under = r"containers/claims-synth/providers/Microsoft\.Authorization/roleAssignments/"
    h.sim.play_recorded("DELETE", under, 403, denied)  # the second DELETE is refused, the first landed
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)
    incident = role_row(h, event)["PartitionKey"]
    h.http("playbook", {"approve": incident, "execute": True})
    assert role_row(h, event)["Status"] == "failed"
    assert ON_ACCOUNT not in names(h)
    assert ON_CONTAINER in names(h)
    h.sim.clear_recorded()

    status, body, _ = h.http("playbook", {"restore": incident, "execute": True})
    assert status == 200, body
    [entry] = [e for e in body["restored"] if e["kind"] == KIND]
    assert entry["status"] == "restored", entry
    assert {ON_ACCOUNT, ON_CONTAINER} <= names(h)
    assert [p.rsplit("/", 1)[-1] for p in role_puts(h)] == [ON_ACCOUNT], "only what the step removed"
    assert role_row(h, event)["Status"] == "restored"


def test_a_removal_that_failed_part_way_is_not_restored_over_a_later_assignment(make_harness) -> None:
    from tests.simulator_fixtures import example

    h = make_harness(tenant=claims_tenant())
    denied = example("arm_role_assignments_403_authorization_failed_docs.json")
    under = r"containers/claims-synth/providers/Microsoft\.Authorization/roleAssignments/"
    h.sim.play_recorded("DELETE", under, 403, denied)
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)
    incident = role_row(h, event)["PartitionKey"]
    h.http("playbook", {"approve": incident, "execute": True})
    h.sim.clear_recorded()
    later = "a5555555-5555-4555-8555-555555555555"
    with h.sim.state.locked() as state:  # someone grants the principal another role on the account since
        granted = copy.deepcopy(state.role_assignments[ON_CONTAINER])
        granted["name"] = later
        granted["properties"]["roleDefinitionId"] = READER
        state.role_assignments[later] = granted
    status, body, _ = h.http("playbook", {"restore": incident, "execute": True})
    assert status == 200, body
    assert not [e for e in body["restored"] if e["kind"] == KIND], body
    assert any(r["kind"] == KIND and "not what this incident left" in r["why"] for r in body["refused"]), body
    assert role_puts(h) == []
