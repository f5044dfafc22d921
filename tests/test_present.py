"""Restore and approve look at the present: restore refuses, with the reason, when a later incident acted
on the same resource or the resource is no longer as this incident left it; approve re-checks scope and
exemptions before each write."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import yaml

from tests.harness import SAMPLES, Harness, sample

ACCOUNT = "stsynthexport08"


def event_now(n: int) -> dict[str, Any]:
    [event] = copy.deepcopy(sample("02-account-public-access-enabled.json"))
    event["id"] = f"2b2b2b2b-0000-4000-8000-{n:012d}"
    event["eventTime"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return event


def reopen(h: Harness) -> None:
    with h.sim.state.locked() as state:
        record = state.accounts[ACCOUNT]
        record["properties"]["allowBlobPublicAccess"] = True
        record["containers"]["exports"]["properties"]["publicAccess"] = "Blob"


def restore(h: Harness, incident: str) -> dict[str, Any]:
    status, body, _ = h.http("playbook", {"restore": incident, "execute": True})
    assert status == 200, body
    return body


def test_restore_refuses_when_a_later_incident_contained_the_resource_again(make_harness) -> None:
    h = make_harness()
    first = event_now(1)
    h.eventgrid(first)
    reopen(h)
    second = event_now(2)
    h.eventgrid(second)
    later = h.incident(second["id"])
    assert later["Status"] == "contained"
    writes = len(h.writes())

    body = restore(h, h.incident(first["id"])["PartitionKey"])
    assert body["restored"] == []
    assert body["refused"], body
    assert all(later["PartitionKey"] in r["why"] for r in body["refused"]), body["refused"]
    assert len(h.writes()) == writes, "nothing is re-opened"
    snap = h.sim.state.snapshot()["accounts"][ACCOUNT]
    assert snap["properties"]["allowBlobPublicAccess"] is False
    assert h.incident(first["id"])["Status"] == "contained"


def test_restore_refuses_when_the_state_is_not_what_the_incident_left(make_harness) -> None:
    h = make_harness()
    event = event_now(3)
    h.eventgrid(event)
    with h.sim.state.locked() as state:  # someone re-opened the container by hand since
        state.accounts[ACCOUNT]["properties"]["allowBlobPublicAccess"] = True
        state.accounts[ACCOUNT]["containers"]["exports"]["properties"]["publicAccess"] = "Container"
    writes = len(h.writes())
    body = restore(h, h.incident(event["id"])["PartitionKey"])
    assert body["restored"] == []
    assert any("not what this incident left" in r["why"] for r in body["refused"]), body["refused"]
    assert len(h.writes()) == writes
    assert h.sim.state.container(ACCOUNT, "exports")["properties"]["publicAccess"] == "Container"


def test_approve_rechecks_exemptions_and_scope_before_writing(make_harness) -> None:
    policy = yaml.safe_load((SAMPLES / "policy.yaml").read_text())
    policy["approval"] = {
        "storage.disable_public_access": "approval",
        "storage.make_container_private": "approval",
    }
    h = make_harness(policy=policy)
    event = event_now(4)
    h.eventgrid(event)
    row = h.incident(event["id"])
    assert row["Status"] == "pending-approval"
    # the account became exempt after the plan was made
    with h.sim.state.locked() as state:
        state.accounts[ACCOUNT]["tags"]["leak-responder-exempt"] = "true"
    status, body, _ = h.http("playbook", {"approve": row["PartitionKey"], "execute": True})
    assert status == 200, body
    assert h.writes() == [], "an exempt account is not written, whatever was approved"
    statuses = {o["kind"]: (o["status"], o["error"]) for o in body["outcomes"]}
    assert {s for s, _ in statuses.values()} == {"skipped"}, statuses
    assert all("exempt" in why for _, why in statuses.values()), statuses
