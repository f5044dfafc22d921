"""The ledger against Azurite: conditional inserts make a second claimant find the first one's row."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.data.tables import TableClient

from responders.core.model import Action, Outcome, Plan, Signal, SignalKind, Verdict
from responders.ledger import Ledger

NOW = "2026-11-25T08:00:00.000000Z"
LATER = "2026-11-25T08:10:00.000000Z"


@pytest.fixture
def ledger(azurite) -> Ledger:
    table = TableClient.from_connection_string(azurite.connection_string, "l" + uuid.uuid4().hex[:16])
    return Ledger(table)


def a_plan() -> Plan:
    signal = Signal(id="evt-1", source="eventgrid", kind=SignalKind.KEYS_LISTED, event_type="t")
    action = Action(
        kind="storage.regenerate_key",
        target="/subscriptions/s/x",
        key="act-1",
        reason="r",
        params={"key_name": "key1"},
        reversible=False,
    )
    return Plan("inc-test", signal, Verdict(True, "high", 0.9, ("why",)), (action,))


def test_only_one_of_many_concurrent_claims_wins(ledger: Ledger) -> None:
    plan = a_plan()
    ledger.record_incident(plan, status="planned", now=NOW, responder="me", dry_run=False, earlier=None)
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda _: ledger.begin(plan, plan.actions[0], 0, NOW)[0], range(8)))
    assert claims.count(True) == 1


def test_finished_action_is_found_not_redone(ledger: Ledger) -> None:
    plan = a_plan()
    owned, _ = ledger.begin(plan, plan.actions[0], 0, NOW)
    assert owned
    ledger.finish(plan.incident, Outcome(plan.actions[0], "contained", {"k": 1}, {"k": 2}), NOW)
    owned, row = ledger.begin(plan, plan.actions[0], 0, LATER)
    assert not owned
    assert row["Status"] == "contained"
    assert row["After"] == {"k": 2}


def test_an_abandoned_claim_is_taken_over_after_its_lease(ledger: Ledger) -> None:
    plan = a_plan()
    assert ledger.begin(plan, plan.actions[0], 0, NOW)[0]
    assert not ledger.begin(plan, plan.actions[0], 0, NOW)[0], "lease still open"
    owned, row = ledger.begin(plan, plan.actions[0], 0, LATER)
    assert owned
    assert row["Attempts"] == 2


def test_incident_row_keeps_first_detection_and_counts_deliveries(ledger: Ledger) -> None:
    plan = a_plan()
    ledger.record_incident(plan, status="planned", now=NOW, responder="me", dry_run=False, earlier=None)
    earlier = ledger.head(plan.incident)
    ledger.record_incident(
        plan, status="contained", now=LATER, responder="me", dry_run=False, earlier=earlier
    )
    row = ledger.incident(plan.incident)
    assert row["DetectedAt"] == NOW
    assert row["Deliveries"] == 2
    assert row["Reasons"] == ["why"]


def test_rejected_input_is_kept_once_with_its_reason(ledger: Ledger) -> None:
    first = ledger.reject(b"{bad", "body is not valid JSON", "alerts", NOW)
    second = ledger.reject(b"{bad", "body is not valid JSON", "alerts", LATER)
    assert first == second
    rows = list(ledger.table.query_entities("PartitionKey eq 'rejected'"))
    assert len(rows) == 1
    assert rows[0]["Body"] == "{bad"
