"""The ledger never cuts a value: a plan, a state or a list larger than a Table Storage property is kept
whole (split over part rows of the incident's partition) and reads back exactly."""

from __future__ import annotations

import copy
from typing import Any

from tests.harness import PREFIX, TENANT, sample

ACCOUNT = "stsynthwide10"
CONTAINERS = 500


def wide_tenant() -> dict[str, Any]:
    tenant = copy.deepcopy(TENANT)
    tenant["storageAccounts"].append(
        {
            "id": PREFIX + ACCOUNT,
            "location": "westeurope",
            "kind": "StorageV2",
            "tags": {"data-classification": "synthetic"},
            "allowBlobPublicAccess": True,
            "containers": [
                {"name": f"synthetic-shard-{n:04d}", "publicAccess": "Blob", "metadata": {}}
                for n in range(CONTAINERS)
            ],
        }
    )
    return tenant


def test_an_account_with_500_public_containers_is_contained_redelivered_and_restored(make_harness) -> None:
    h = make_harness(tenant=wide_tenant())
    [event] = copy.deepcopy(sample("02-account-public-access-enabled.json"))
    event["id"] = "5005005a-0000-4000-8000-000000000500"
    for holder in (event, event["data"], event["data"]["authorization"]):
        for key in ("subject", "resourceUri", "scope"):
            if key in holder:
                holder[key] = PREFIX + ACCOUNT
    h.eventgrid(event)
    row = h.incident(event["id"])
    assert row["Status"] == "contained"
    assert len(row["Plan"]) == CONTAINERS + 1, "the whole plan reads back"
    assert len(row["StateBefore"][PREFIX.lower() + ACCOUNT]["containers"]) == CONTAINERS
    assert len(row["actions"]) == CONTAINERS + 1
    snap = h.sim.state.account(ACCOUNT)
    assert {c["properties"]["publicAccess"] for c in snap["containers"].values()} == {"None"}

    writes = len(h.writes())
    h.eventgrid(event)  # a redelivery reports the recorded incident and acts on nothing
    assert len(h.writes()) == writes
    assert h.incident(event["id"])["Deliveries"] == 2

    status, body, _ = h.http("playbook", {"restore": row["PartitionKey"], "execute": True})
    assert status == 200, body
    assert len(body["restored"]) == CONTAINERS + 1
    assert {r["status"] for r in body["restored"]} == {"restored"}
    snap = h.sim.state.account(ACCOUNT)
    assert snap["properties"]["allowBlobPublicAccess"] is True
    assert {c["properties"]["publicAccess"] for c in snap["containers"].values()} == {"Blob"}


def test_values_of_any_size_read_back_exactly_through_every_path(azurite) -> None:
    import uuid

    from azure.data.tables import TableClient

    from responders.core.model import Action, Outcome, Plan, Signal, SignalKind, Verdict
    from responders.ledger import INLINE, Ledger

    ledger = Ledger(
        TableClient.from_connection_string(azurite.connection_string, "l" + uuid.uuid4().hex[:16])
    )
    now = "2026-11-25T08:00:00.000000Z"
    reasons = tuple(f"reason {n} " + "x" * 200 for n in range(400))  # ~84,000 characters of JSON
    signal = Signal(id="evt-big", source="eventgrid", kind=SignalKind.MANUAL, event_type="t")
    action = Action(
        "storage.make_container_private", "/subscriptions/s/x", "act-big", "r", {"container": "c"}
    )
    plan = Plan("inc-big", signal, Verdict(True, "high", 0.9, reasons), (action,))
    ledger.record_incident(plan, status="planned", now=now, responder="me", dry_run=False, earlier=None)
    assert ledger.head("inc-big")["Reasons"] == list(reasons)

    before = {"containers": {f"c{n:05d}": "Blob" for n in range(5000)}}
    assert len(str(before)) > 2 * INLINE
    ledger.begin(plan, action, 0, now)
    ledger.finish("inc-big", Outcome(action, "failed", before=before), now)
    owned, row = ledger.begin(plan, action, 0, "2026-11-25T09:00:00.000000Z")
    assert not owned
    assert row["Before"] == before
    assert ledger.incident("inc-big")["actions"][0]["Before"] == before

    document = [{"row": n, "text": "y" * 100} for n in range(20_000)]  # ~2.4 MB: more than a row holds
    ledger.store_document("inc-big", "evidence-before", document)
    assert ledger.document("inc-big", "evidence-before") == document
