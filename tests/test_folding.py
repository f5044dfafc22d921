"""Storm folding: events of a change an incident already contained, from before that containment, are
recorded as folded into it without calling Azure; the same change made again afterwards is contained
again."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from responders.cli import main
from tests.harness import SAMPLES, Harness, sample

EVENT = sample("01-container-made-public.json")[0]
ACCOUNT = "stsynthpublic01"


def storm_event(n: int, when: datetime) -> dict[str, Any]:
    return {**EVENT, "id": f"00000000-0000-4000-8000-{n:012d}", "eventTime": when.isoformat()}


def arm_calls(h: Harness) -> int:
    return sum(1 for r in h.sim.requests() if "/providers/microsoft.storage/" in r["path"].lower())


def sample_policy(**changes: Any) -> dict[str, Any]:
    return {**yaml.safe_load((SAMPLES / "policy.yaml").read_text()), **changes}


def test_a_storm_is_contained_once_and_the_rest_is_folded_without_azure_calls(make_harness) -> None:
    h = make_harness()
    before = datetime.now(UTC) - timedelta(seconds=30)
    h.eventgrid(storm_event(0, before))
    first = h.incident(storm_event(0, before)["id"])
    assert first is not None
    assert first["Status"] == "contained"
    writes, calls = len(h.writes()), arm_calls(h)

    storm = [storm_event(n, before + timedelta(milliseconds=n)) for n in range(1, 41)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(h.eventgrid, storm))

    assert len(h.writes()) == writes
    assert arm_calls(h) == calls, "a folded event reads nothing from Azure"
    for event in storm:
        row = h.incident(event["id"])
        assert row is not None
        assert row["Status"] == "folded"
        assert row["FoldedInto"] == first["PartitionKey"]
        assert row["actions"] == []
        assert first["PartitionKey"] in row["Reasons"][0]
    # a redelivery of a folded event is settled: counted, nothing else
    h.eventgrid(storm[0])
    assert h.incident(storm[0]["id"])["Deliveries"] == 2
    assert arm_calls(h) == calls


def test_the_same_change_made_again_after_containment_is_contained_again(make_harness) -> None:
    h = make_harness()
    h.eventgrid(storm_event(0, datetime.now(UTC) - timedelta(seconds=30)))
    # someone makes the container public again: a new event, after the containment
    with h.sim.state.locked() as state:
        record = state.accounts[ACCOUNT]
        record["properties"]["allowBlobPublicAccess"] = True
        record["containers"]["patients-synth"]["properties"]["publicAccess"] = "Container"
    again = storm_event(1, datetime.now(UTC) + timedelta(seconds=1))
    h.eventgrid(again)
    row = h.incident(again["id"])
    assert row is not None
    assert row["Status"] == "contained", row["Reasons"]
    assert "FoldedInto" not in row
    snap = h.sim.state.snapshot()["accounts"][ACCOUNT]
    assert snap["properties"]["allowBlobPublicAccess"] is False
    assert snap["containers"]["patients-synth"]["properties"]["publicAccess"] == "None"


@pytest.mark.parametrize(
    "options",
    [{"policy": sample_policy(dedupe_window_seconds=0)}, {"dry_run": True}],
    ids=["window-zero", "dry-run"],
)
def test_no_folding_when_the_window_is_zero_or_in_dry_run(make_harness, options: dict[str, Any]) -> None:
    h = make_harness(**options)
    before = datetime.now(UTC) - timedelta(seconds=30)
    h.eventgrid(storm_event(0, before))
    h.eventgrid(storm_event(1, before))
    second = h.incident(storm_event(1, before)["id"])
    assert second is not None
    assert second["Status"] != "folded"
    assert "FoldedInto" not in second


def test_an_event_without_a_time_is_never_folded(make_harness) -> None:
    h = make_harness()
    h.eventgrid(storm_event(0, datetime.now(UTC) - timedelta(seconds=30)))
    untimed = {**storm_event(1, datetime.now(UTC)), "eventTime": ""}
    h.eventgrid(untimed)
    assert h.incident(untimed["id"])["Status"] != "folded"


def test_folded_incidents_show_in_the_ledger_summary_and_evidence_pack(make_harness, capsys) -> None:
    h = make_harness()
    before = datetime.now(UTC) - timedelta(seconds=30)
    h.eventgrid(storm_event(0, before))
    h.eventgrid(storm_event(1, before))
    folded = h.incident(storm_event(1, before)["id"])["PartitionKey"]
    first = h.incident(storm_event(0, before)["id"])["PartitionKey"]
    assert main(["ledger"]) == 0
    assert "folded" in capsys.readouterr().out
    assert main(["evidence", folded, "--format", "json"]) == 0
    pack = json.loads(capsys.readouterr().out)
    assert pack["status"] == "folded"
    assert pack["folded_into"] == first
    assert main(["evidence", folded]) == 0
    assert f"Folded into {first}" in capsys.readouterr().out


def test_the_shipped_policy_documents_the_window() -> None:
    text = (Path(__file__).resolve().parents[1] / "policy.yaml").read_text()
    assert "dedupe_window_seconds" in text


def test_an_event_from_while_containment_was_writing_is_not_folded(make_harness) -> None:
    h = make_harness()
    h.eventgrid(storm_event(0, datetime.now(UTC) - timedelta(seconds=30)))
    first = h.incident(storm_event(0, datetime.now(UTC))["id"])
    remembered = next(r for r in h.all_ledger_rows() if r["PartitionKey"] == "contained")
    acted_from = datetime.fromisoformat(remembered["ActedFrom"].replace("Z", "+00:00"))
    writes = [datetime.fromisoformat(a["ActedAt"].replace("Z", "+00:00")) for a in first["actions"]]
    assert acted_from < min(writes), "the cut-off is taken before the first write"
    during = storm_event(1, acted_from + timedelta(microseconds=1))
    h.eventgrid(during)
    assert h.incident(during["id"])["Status"] != "folded"
    just_before = storm_event(2, acted_from - timedelta(microseconds=1))
    h.eventgrid(just_before)
    assert h.incident(just_before["id"])["FoldedInto"] == first["PartitionKey"]
