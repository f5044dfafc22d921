"""The resource's state decides whether a step is done; the ledger's claim rows only serialise writers.

Each test reproduces a way a stale ledger record once stood in for reading the resource: a re-exposed
account reported contained, a key rotation skipped although the listed keys still worked, a replayed
event remembered as a containment it never made.
"""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from responders.core.timeutil import is_after
from tests.harness import PREFIX, SAMPLES, Harness, sample

PUBLIC = "stsynthpublic01"
CLAIMS = "stsynthclaims02"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def policy(**changes: Any) -> dict[str, Any]:
    return {**yaml.safe_load((SAMPLES / "policy.yaml").read_text()), **changes}


def monitor_alert(n: int, account: str, fired: str) -> dict[str, Any]:
    """An Azure Monitor alert (common schema) naming one account, fired at `fired`."""
    alert = copy.deepcopy(sample("07-monitor-common-alert.json"))
    essentials = alert["data"]["essentials"]
    essentials["alertId"] = (
        f"/subscriptions/7d1f3c2a-5b9e-4c1d-9a8e-3f2b1c0d4e5a/providers/Microsoft.AlertsManagement/alerts/"
        f"00000000-0000-4000-8000-{n:012d}"
    )
    essentials["alertRule"] = "synthetic-data-exfiltration"
    essentials["alertTargetIDs"] = [PREFIX + account]
    essentials["firedDateTime"] = fired
    alert["data"]["alertContext"] = {}
    return alert


def make_public_again(h: Harness) -> None:
    """Someone re-opens the account and its container by hand (not through the responder)."""
    with h.sim.state.locked() as state:
        record = state.accounts[PUBLIC]
        record["properties"]["allowBlobPublicAccess"] = True
        record["containers"]["patients-synth"]["properties"]["publicAccess"] = "Container"


def outcome_statuses(result: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {
        (o["kind"], o["params"].get("container") or o["params"].get("key_name") or ""): o["status"]
        for o in result["outcomes"]
    }


def test_an_alert_about_a_re_exposed_account_contains_it_again(make_harness) -> None:
    h = make_harness()
    [first] = sample("01-container-made-public.json")
    h.eventgrid(first)
    assert h.incident(first["id"])["Status"] == "contained"
    make_public_again(h)

    # an alert about the exposure, fired before incident A contained it, arrives after the re-exposure
    status, body, _ = h.http("alerts", monitor_alert(1, PUBLIC, "2026-11-25T08:01:30.0000000Z"))
    assert status == 200, body
    [result] = body["results"]
    statuses = outcome_statuses(result)
    assert statuses[("storage.disable_public_access", "")] == "contained", statuses
    assert statuses[("storage.make_container_private", "patients-synth")] == "contained", statuses
    assert result["status"] == "contained"
    snap = h.sim.state.snapshot()["accounts"][PUBLIC]
    assert snap["properties"]["allowBlobPublicAccess"] is False
    assert snap["containers"]["patients-synth"]["properties"]["publicAccess"] == "None"


def test_keys_listed_after_a_hand_rotation_are_rotated_again(make_harness) -> None:
    h = make_harness(policy=policy(alerts={"revoke_credentials": "always"}))
    fired = iso(datetime.now(UTC) - timedelta(minutes=5))
    # the owner rotates both keys by hand
    with h.sim.state.locked() as state:
        for name in ("key1", "key2"):
            state.regenerate_key(state.accounts[CLAIMS], name)
    rotated = h.sim.state.key_creation_times(CLAIMS)
    time.sleep(0.01)
    # a contractor lists the new keys; an alert (from before the rotation) is processed first
    [listed] = copy.deepcopy(sample("03-listkeys-by-app.json"))
    listed["id"] = "8e3a4b5c-2d3e-4f4a-9b5c-000000000003"
    listed["eventTime"] = iso(datetime.now(UTC))
    time.sleep(0.01)
    status, body, _ = h.http("alerts", monitor_alert(2, CLAIMS, fired))
    assert status == 200, body
    alert_steps = outcome_statuses(body["results"][0])
    assert alert_steps[("storage.regenerate_key", "key1")] == "already-contained"
    assert h.sim.state.key_creation_times(CLAIMS) == rotated, "the alert's exposure is covered"

    h.eventgrid(listed)
    row = h.incident(listed["id"])
    steps = {(a["Kind"], a["Params"].get("key_name", "")): a["Status"] for a in row["actions"]}
    assert steps[("storage.regenerate_key", "key1")] == "contained", steps
    assert steps[("storage.regenerate_key", "key2")] == "contained", steps
    now_times = h.sim.state.key_creation_times(CLAIMS)
    assert all(is_after(now_times[k], listed["eventTime"]) for k in ("key1", "key2")), now_times
    assert row["Status"] == "contained"


def dead_letter(event: dict[str, Any], event_id: str, when: str) -> dict[str, Any]:
    """A dead-letter record of `event` (Event Grid keeps the event and adds delivery fields)."""
    return {
        **copy.deepcopy(event),
        "id": event_id,
        "eventTime": when,
        "deadLetterReason": "MaxDeliveryAttemptsExceeded",
        "deliveryAttempts": 30,
        "lastDeliveryOutcome": "Unavailable",
        "publishTime": when,
        "lastDeliveryAttemptTime": when,
    }


def test_replayed_dead_letters_do_not_fold_a_re_exposure_into_a_stale_containment(make_harness) -> None:
    h = make_harness()
    [event] = sample("01-container-made-public.json")
    stale = dead_letter(
        event, "6c1e2f3a-0b1c-4d2e-9f3a-000000000001", iso(datetime.now(UTC) - timedelta(hours=1))
    )
    # incident A: a human contains the account through the playbook
    status, body, _ = h.http(
        "playbook", {"resourceId": PREFIX + PUBLIC, "execute": True, "requestId": "contain-public01"}
    )
    assert status == 200, body
    assert body["results"][0]["status"] == "contained"
    # the account is made public again; that event, too, is dead-lettered
    time.sleep(0.01)
    make_public_again(h)
    again = dead_letter(event, "6c1e2f3a-0b1c-4d2e-9f3a-000000000002", iso(datetime.now(UTC)))
    time.sleep(0.01)

    for record in (stale, again):  # the dead letters are replayed in order
        status, body, _ = h.http("alerts", record)
        assert status == 200, body

    snap = h.sim.state.snapshot()["accounts"][PUBLIC]
    assert snap["properties"]["allowBlobPublicAccess"] is False, "the re-exposure must be contained"
    assert snap["containers"]["patients-synth"]["properties"]["publicAccess"] == "None"
    first = h.incident(stale["id"])
    assert {a["Status"] for a in first["actions"]} == {"contained"}, [
        (a["Kind"], a["Status"]) for a in first["actions"]
    ]


def test_a_replayed_listkeys_found_rotated_does_not_fold_a_later_listing(make_harness) -> None:
    h = make_harness()
    [event] = sample("03-listkeys-by-app.json")
    stale = dead_letter(
        event, "8e3a4b5c-2d3e-4f4a-9b5c-000000000011", iso(datetime.now(UTC) - timedelta(hours=1))
    )
    # the keys were rotated (by hand) after the old listing, and then listed again
    with h.sim.state.locked() as state:
        for name in ("key1", "key2"):
            state.regenerate_key(state.accounts[CLAIMS], name)
    time.sleep(0.01)
    again = dead_letter(event, "8e3a4b5c-2d3e-4f4a-9b5c-000000000012", iso(datetime.now(UTC)))
    time.sleep(0.01)
    for record in (stale, again):
        status, body, _ = h.http("alerts", record)
        assert status == 200, body
    old = h.incident(stale["id"])
    assert {a["Status"] for a in old["actions"] if a["Kind"] == "storage.regenerate_key"} == {
        "already-contained"
    }
    times = h.sim.state.key_creation_times(CLAIMS)
    assert all(is_after(times[k], again["eventTime"]) for k in ("key1", "key2")), times
    assert h.incident(again["id"]).get("FoldedInto") is None
