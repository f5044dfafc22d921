"""A duplicate is the same delivery, not a coincidence of ids: what makes two bodies one event."""

from __future__ import annotations

import copy

from tests.harness import PREFIX, sample


def _make_public(h, account: str) -> None:
    with h.sim.state.locked() as state:
        state.accounts[account]["properties"]["allowBlobPublicAccess"] = True


def _public_access_writes(h, account: str) -> list[dict]:
    return [w for w in h.writes() if w["path"].lower().endswith(f"/storageaccounts/{account}")]


def test_a_playbook_request_without_request_id_is_a_new_request_each_time(make_harness) -> None:
    h = make_harness()
    request = {"resourceId": PREFIX + "stsynthexport08", "actions": ["storage.disable_public_access"]}
    request["execute"] = True
    status, first, _ = h.http("playbook", request)
    assert status == 200, first
    assert first["results"][0]["status"] == "contained"
    _make_public(h, "stsynthexport08")  # exposed again after containment
    status, second, _ = h.http("playbook", request)
    assert status == 200, second
    [result] = second["results"]
    assert not result.get("duplicate"), "asking again after a re-exposure must act again"
    assert result["incident"] != first["results"][0]["incident"]
    assert h.sim.state.account("stsynthexport08")["properties"]["allowBlobPublicAccess"] is False
    assert len(_public_access_writes(h, "stsynthexport08")) == 2


def test_a_playbook_request_id_given_by_the_caller_makes_a_retry_a_duplicate(make_harness) -> None:
    h = make_harness()
    request = {"resourceId": PREFIX + "stsynthexport08", "requestId": "ticket-4711", "execute": True}
    h.http("playbook", request)
    writes = len(h.writes())
    status, again, _ = h.http("playbook", request)
    assert status == 200, again
    assert again["results"][0]["duplicate"] is True
    assert len(h.writes()) == writes


def test_the_same_event_id_about_another_resource_is_a_new_event(make_harness) -> None:
    h = make_harness()
    [event] = sample("02-account-public-access-enabled.json")
    h.eventgrid(event)
    assert h.sim.state.account("stsynthexport08")["properties"]["allowBlobPublicAccess"] is False
    other = copy.deepcopy(event)
    other["subject"] = other["subject"].replace("stsynthexport08", "stsynthpublic01")
    other["data"]["resourceUri"] = other["subject"]
    h.eventgrid(other)
    assert h.sim.state.account("stsynthpublic01")["properties"]["allowBlobPublicAccess"] is False, (
        "an id seen before does not make a different body a duplicate"
    )
    incidents = [r for r in h.rt.ledger.incidents() if r.get("Subject", "").endswith("stsynthpublic01")]
    assert len(incidents) == 1
    writes = len(h.writes())
    h.eventgrid(other)  # the same delivery again is a duplicate
    h.eventgrid(event)
    assert len(h.writes()) == writes


def test_a_resolved_monitor_alert_delivered_first_does_not_swallow_the_fired_one(make_harness) -> None:
    h = make_harness()
    fired = sample("07-monitor-common-alert.json")
    resolved = copy.deepcopy(fired)
    resolved["data"]["essentials"]["monitorCondition"] = "Resolved"
    resolved["data"]["essentials"]["resolvedDateTime"] = "2026-11-25T08:20:00.0000000Z"
    status, body, _ = h.http("alerts", resolved)
    assert status == 200, body
    [first] = body["results"]
    assert first["status"] == "ignored"
    assert h.writes() == [], "a resolved notification is recorded, not acted on"
    status, body, _ = h.http("alerts", fired)
    assert status == 200, body
    [second] = body["results"]
    assert not second.get("duplicate")
    assert second["status"] == "contained"
    assert second["incident"] != first["incident"]
    assert h.rt.ledger.incident(first["incident"])["Status"] == "ignored"
