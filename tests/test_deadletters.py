"""Event Grid dead letters: blobs in Azurite's blob service, read with the real blob client, replayed
through the pipeline an Event Grid delivery takes, each blob recorded as handled in the ledger."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from responders.core.model import BadInput
from responders.deadletters import dead_letter_events, replay_dead_letters
from tests.harness import Harness, sample
from tests.simulator_fixtures import example

PUBLIC = "stsynthpublic01"
SUBSCRIPTION = "risky-storage-changes"  # the Event Grid subscription whose dead letters these are


def dead_lettered(event: dict[str, Any], reason: str = "MaxDeliveryAttemptsExceeded") -> dict[str, Any]:
    """An event as Event Grid writes it to the dead-letter container: the event, its delivery fields
    beside it (the shape of eventgrid_deadletter_blob_array_issue26198.json)."""
    capture = example("eventgrid_deadletter_blob_array_issue26198.json")[0]
    fields = {k: capture[k] for k in ("deliveryAttempts", "lastDeliveryOutcome", "publishTime")}
    return {**copy.deepcopy(event), **fields, "deadLetterReason": reason}


def blob_name(at: datetime | None = None) -> str:
    """Named as Event Grid names them (eventgrid_deadletter_blob_name_docs.json): the subscription in
    upper case, the UTC date and hour without zero padding, a GUID."""
    at = at or datetime.now(UTC)
    return f"{SUBSCRIPTION.upper()}/{at.year}/{at.month}/{at.day}/{at.hour}/{uuid.uuid4()}.json"


def container(h: Harness) -> ContainerClient:
    client = h.rt.clients.deadletters()
    assert client is not None
    return client


def put(h: Harness, body: bytes | list[Any], name: str | None = None) -> str:
    name = name or blob_name()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    container(h).upload_blob(name, data, overwrite=True)
    return name


def dead_letter_rows(h: Harness) -> dict[str, dict[str, Any]]:
    return h.rt.ledger.dead_letters()


def test_the_vendored_blob_shapes_are_read_as_dead_letters() -> None:
    array = json.dumps(example("eventgrid_deadletter_blob_array_issue26198.json")).encode()
    [(event, why)] = dead_letter_events(array)
    assert why == ""
    assert event["deadLetterReason"] == "UndeliverableDueToProbationCausedByClientError"
    single = json.dumps(example("eventgrid_deadletter_blob_created_eventgridschema_docs.json")).encode()
    [(event, why)] = dead_letter_events(single)
    assert why == ""
    assert event["lastDeliveryOutcome"] == "NotFound"
    assert example("eventgrid_deadletter_blob_name_docs.json")["blob"].split("/")[1:5] == [
        "2019",
        "8",
        "8",
        "5",
    ]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "empty"),
        (b"[", "not valid JSON"),
        (b"[]", "empty array"),
        (b'[{"a": 1, "a": 2}]', "duplicate key"),
    ],
)
def test_a_blob_that_is_no_dead_letter_blob_is_refused_with_its_reason(raw: bytes, why: str) -> None:
    with pytest.raises(BadInput, match=why):
        dead_letter_events(raw)


def test_items_that_are_not_dead_lettered_events_are_refused_one_by_one() -> None:
    [event] = sample("01-container-made-public.json")
    items = [dead_lettered(event), 7, {"resourceId": "/subscriptions/x"}, event]
    reasons = [why for _, why in dead_letter_events(json.dumps(items).encode())]
    assert reasons[0] == ""
    assert "not a JSON object" in reasons[1]
    assert "not an Event Grid or CloudEvents event" in reasons[2]  # a playbook request never runs from here
    assert "no deadLetterReason" in reasons[3]


def test_dead_lettered_events_are_contained_once_and_a_rerun_replays_none(make_harness) -> None:
    h = make_harness()
    [public] = sample("01-container-made-public.json")
    [listkeys] = sample("03-listkeys-by-app.json")
    name = put(h, [dead_lettered(public), dead_lettered(listkeys, "UndeliverableDueToHttpBadRequest")])

    report = replay_dead_letters(h.rt, execute=True)

    assert (report.error, report.listed, report.skipped) == ("", 1, 0), report.as_dict()
    [outcome] = report.outcomes
    assert (outcome.name, outcome.status, outcome.events, outcome.rejected) == (name, "replayed", 2, 0)
    snap = h.sim.state.snapshot()["accounts"][PUBLIC]
    assert snap["properties"]["allowBlobPublicAccess"] is False
    assert snap["containers"]["patients-synth"]["properties"]["publicAccess"] == "None"
    incident = h.incident(public["id"])
    assert incident is not None
    assert incident["Status"] == "contained"
    assert incident["Source"] == "dead-letter"
    assert h.incident(listkeys["id"]) is not None
    row = dead_letter_rows(h)[name]
    assert row["Status"] == "replayed"
    assert row["Events"] == 2
    assert set(json.loads(row["Incidents"])) == set(outcome.incidents)

    writes = len(h.writes())
    again = replay_dead_letters(h.rt, execute=True)
    assert (again.listed, again.skipped, again.outcomes) == (1, 1, [])
    assert len(h.writes()) == writes, "a rerun sends nothing"
    assert h.incident(public["id"])["Deliveries"] == 1


def test_an_event_both_delivered_and_dead_lettered_acts_once(make_harness) -> None:
    h = make_harness()
    [public] = sample("01-container-made-public.json")
    h.eventgrid(public)
    writes = len(h.writes())
    put(h, [dead_lettered(public)])
    report = replay_dead_letters(h.rt, execute=True)
    assert report.outcomes[0].status == "replayed"
    assert len(h.writes()) == writes
    assert h.incident(public["id"])["Deliveries"] == 2


def test_a_malformed_blob_is_recorded_with_its_reason_and_never_read_again(make_harness) -> None:
    h = make_harness()
    [public] = sample("01-container-made-public.json")
    broken = put(h, b'[{"id": "truncated')
    mixed = put(h, [dead_lettered(public), {"not": "an event"}])

    report = replay_dead_letters(h.rt, execute=True)

    outcomes = {o.name: o for o in report.outcomes}
    assert outcomes[broken].status == "rejected"
    assert "not valid JSON" in outcomes[broken].reason
    assert outcomes[mixed].status == "replayed"
    assert (outcomes[mixed].events, outcomes[mixed].rejected) == (2, 1)
    rows = dead_letter_rows(h)
    assert rows[broken]["Status"] == "rejected"
    assert "not valid JSON" in rows[broken]["Reason"]
    assert "not an Event Grid or CloudEvents event" in rows[mixed]["Reason"]
    # what each later pass loads of every blob handled so far: three columns, not the reasons
    slim = h.rt.ledger.dead_letters(select=["ETag", "Status"])
    assert {k for row in slim.values() for k in row if not k.startswith(("PartitionKey", "RowKey"))} <= {
        "Blob",
        "ETag",
        "Status",
    }
    assert slim[broken]["Status"] == "rejected"
    kept = [
        r for r in h.all_ledger_rows() if r["PartitionKey"] == "rejected" and r["Source"] == "dead-letter"
    ]
    assert any(r["Body"] == '[{"id": "truncated' for r in kept), "the bad blob's body is kept"
    assert any(broken in r["Reason"] or "not valid JSON" in r["Reason"] for r in kept)
    assert h.sim.state.snapshot()["accounts"][PUBLIC]["properties"]["allowBlobPublicAccess"] is False

    again = replay_dead_letters(h.rt, execute=True)
    assert (again.skipped, again.outcomes) == (2, [])


def test_a_dry_run_replays_again_when_a_later_run_executes(make_harness) -> None:
    h = make_harness(dry_run=True)
    [public] = sample("01-container-made-public.json")
    name = put(h, [dead_lettered(public)])
    first = replay_dead_letters(h.rt)
    assert first.outcomes[0].status == "dry-run"
    assert h.writes() == []
    assert replay_dead_letters(h.rt).outcomes == [], "another dry run skips it"
    executed = replay_dead_letters(h.rt, execute=True)
    assert [(o.name, o.status) for o in executed.outcomes] == [(name, "replayed")]
    assert h.sim.state.snapshot()["accounts"][PUBLIC]["properties"]["allowBlobPublicAccess"] is False


def test_a_missing_container_is_an_error_not_nothing_dead_lettered(make_harness) -> None:
    h = make_harness(env={"RESPONDER_DEADLETTER_CONTAINER": "no-such-container"})
    report = replay_dead_letters(h.rt, execute=True)
    assert "no-such-container" in report.error, report.error
    assert "ContainerNotFound" in report.error, report.error
    assert report.outcomes == []


def test_the_cli_replays_dead_letters_from_the_configured_container(make_harness, capsys) -> None:
    from responders.cli import main

    h = make_harness()
    [public] = sample("01-container-made-public.json")
    name = put(h, [dead_lettered(public)])
    assert main(["deadletters", "--execute"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [(b["name"], b["status"]) for b in printed["blobs"]] == [(name, "replayed")]
    assert main(["deadletters", "--execute"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 1


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"RESPONDER_DEADLETTER_ENDPOINT": "http://st.blob.core.windows.net"}, "https"),
        (
            {"RESPONDER_DEADLETTER_ENDPOINT": "https://st.blob.core.windows.net"},
            "RESPONDER_DEADLETTER_CONTAINER",
        ),
        (
            {
                "RESPONDER_DEADLETTER_ENDPOINT": "https://st.blob.core.windows.net/",
                "RESPONDER_DEADLETTER_CONTAINER": "A_b",
            },
            "RESPONDER_DEADLETTER_CONTAINER",
        ),
        (
            {
                "RESPONDER_LOCAL": "true",
                "RESPONDER_ARM_ENDPOINT": "https://127.0.0.1:1",
                "RESPONDER_GRAPH_ENDPOINT": "https://127.0.0.1:1/v1.0",
                "RESPONDER_LOGS_ENDPOINT": "https://127.0.0.1:1/v1",
                "RESPONDER_DEADLETTER_ENDPOINT": "https://st.blob.core.windows.net",
                "RESPONDER_DEADLETTER_CONTAINER": "eventgrid-deadletter",
            },
            "loopback",
        ),
    ],
)
def test_dead_letter_settings_are_checked_at_start(env: dict[str, str], why: str) -> None:
    from responders.settings import ConfigError, Settings

    with pytest.raises(ConfigError, match=why):
        Settings.from_env({"RESPONDER_LEDGER_ENDPOINT": "https://127.0.0.1:2", **env})
