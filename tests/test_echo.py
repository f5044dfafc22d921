"""Echo suppression covers exactly the responder's own recorded writes.

Resource Manager answers each write with `x-ms-correlation-request-id` and Event Grid carries the same
id as `data.correlationId` (tests/data/azure/arm_storage_account_update_wire_format_oav.md and the
ResourceWriteSuccess examples). The ledger records the id of every write the responder makes; an event
is ignored as an echo only when its id, resource and operation match one of them. Anything else made
with the responder's identity (a stolen token, a hand-made call) is handled in full and flagged.
"""

from __future__ import annotations

import copy
from typing import Any

import requests

from tests.harness import PREFIX, RESPONDER_OID, Harness, sample
from tests.simulator_fixtures import EXAMPLES, session

ACCOUNT = "stsynthexport08"
API = {"api-version": "2023-05-01"}


def with_responder_token(h: Harness) -> requests.Session:
    """What anyone holding the responder's token (a stolen one) can do against Resource Manager."""
    return session(h.sim)


def reopen(h: Harness, http: requests.Session) -> requests.Response:
    reply = http.patch(
        f"{h.sim.url}{PREFIX}{ACCOUNT}",
        params=API,
        json={"properties": {"allowBlobPublicAccess": True}},
        timeout=10,
    )
    reply.raise_for_status()
    return reply


def last_event(h: Harness) -> dict[str, Any]:
    return h.sim.events()[-1]


def test_resource_manager_answers_a_write_with_the_correlation_id_its_event_carries(make_harness) -> None:
    wire = (EXAMPLES / "arm_storage_account_update_wire_format_oav.md").read_text()
    assert "x-ms-correlation-request-id: 5b5328de-f430-4a61-9d1b-76d115147e49" in wire
    h = make_harness()
    reply = reopen(h, with_responder_token(h))
    correlation = reply.headers["x-ms-correlation-request-id"]
    assert correlation
    assert last_event(h)["data"]["correlationId"] == correlation


def test_a_change_made_with_the_responders_token_but_not_by_it_is_contained_and_flagged(
    make_harness,
) -> None:
    h = make_harness()
    reopen(h, with_responder_token(h))
    event = last_event(h)
    claims = event["data"]["claims"]
    assert claims["http://schemas.microsoft.com/identity/claims/objectidentifier"] == RESPONDER_OID

    h.eventgrid(event)
    row = h.incident(event["id"])
    assert row["Status"] == "contained", row["Reasons"]
    assert any("responder's own identity" in f and "no write" in f for f in row["Findings"]), row["Findings"]
    snap = h.sim.state.snapshot()["accounts"][ACCOUNT]
    assert snap["properties"]["allowBlobPublicAccess"] is False


def test_only_the_recorded_write_itself_is_an_echo(make_harness) -> None:
    h = make_harness()
    [event] = sample("02-account-public-access-enabled.json")
    h.eventgrid(event)
    assert h.incident(event["id"])["Status"] == "contained"
    echoes = [e for e in h.sim.events() if e["subject"].lower().endswith(ACCOUNT)]
    assert echoes
    rows = [r for r in h.all_ledger_rows() if r["PartitionKey"] == "write"]
    assert {r["RowKey"] for r in rows} >= {e["data"]["correlationId"] for e in echoes}

    # the same correlation id on another account, or another operation, is not our write
    with h.sim.state.locked() as state:
        state.accounts["stsynthpublic01"]["properties"]["allowBlobPublicAccess"] = True
    forged = copy.deepcopy(echoes[0])
    forged["id"] = "f0f0f0f0-0000-4000-8000-000000000001"
    other = PREFIX + "stsynthpublic01"
    forged["subject"] = forged["data"]["resourceUri"] = forged["data"]["authorization"]["scope"] = other
    h.eventgrid(forged)
    row = h.incident(forged["id"])
    assert row["Status"] == "contained", row["Findings"]
    assert h.sim.state.account("stsynthpublic01")["properties"]["allowBlobPublicAccess"] is False

    writes = len(h.writes())
    for echo in echoes:
        h.eventgrid(echo)
        row = h.incident(echo["id"])
        assert row["Status"] == "ignored"
        assert "echo of the responder's own write" in row["Reasons"][0]
    assert len(h.writes()) == writes, "an echo reads and writes nothing"


def test_the_echo_of_a_restore_does_not_contain_again(make_harness) -> None:
    h = make_harness()
    [event] = sample("02-account-public-access-enabled.json")
    h.eventgrid(event)
    incident = h.incident(event["id"])["PartitionKey"]
    h.sim.clear_events()
    status, body, _ = h.http("playbook", {"restore": incident, "execute": True})
    assert status == 200, body
    restored = h.sim.events()
    assert restored
    for echo in restored:
        h.eventgrid(echo)
        assert h.incident(echo["id"])["Status"] == "ignored"
    assert h.sim.state.snapshot()["accounts"][ACCOUNT]["properties"]["allowBlobPublicAccess"] is True
