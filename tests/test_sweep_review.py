"""The sweep replays the Event Grid dead letters and writes the control review: the timer function as
the host calls it, the real clients against the simulated tenant, Resource Graph and Azurite."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from responders import review
from responders.core.review import CLOSED, OPEN
from tests.harness import TENANT, sample
from tests.test_deadletters import dead_lettered, put
from tests.test_sweep import estate, sweep


def estate_with_the_sample_account() -> dict[str, Any]:
    """The sweep's estate plus the account the sample events name (public, synthetic, owned)."""
    seeded = estate()
    [public] = [a for a in TENANT["storageAccounts"] if a["id"].endswith("/stsynthpublic01")]
    seeded["storageAccounts"].append(copy.deepcopy(public))
    return seeded


def test_a_sweep_replays_dead_letters_once_and_writes_a_review_that_later_sweeps_close(
    make_harness: Any,
) -> None:
    h = make_harness(tenant=estate_with_the_sample_account())
    [event] = sample("03-listkeys-by-app.json")
    name = put(h, [dead_lettered(event)])

    first = sweep(h)

    assert first["Status"] == "complete", first["Incomplete"]
    assert first["DeadLetters"]["counts"] == {"replayed": 1}
    assert h.incident(event["id"]) is not None, "the dead-lettered event went through the pipeline"
    assert h.rt.ledger.dead_letters()[name]["Status"] == "replayed"
    line = first["Review"]
    assert line["open_exposures"] >= 2, line
    opened = review.latest(h.rt)
    exposures = {i["account"].rsplit("/", 1)[-1]: i for i in opened["items"] if i["exposure"]}
    assert {"stpredeploy01", "stsynthpublic01"} <= set(exposures), exposures
    assert exposures["stpredeploy01"]["owner"] == "ml-platform@contoso.example"
    assert all(i["status"] == OPEN for i in exposures.values())
    assert opened["items"][0]["exposure"], "the public containers rank first"
    writes = len(h.writes())

    second = sweep(h)

    assert second["DeadLetters"]["skipped"] == 1
    assert second["DeadLetters"]["counts"] == {}
    assert len(h.writes()) == writes, "the dead letter is not replayed again"
    closed = review.latest(h.rt)
    after = {i["key"]: i for i in closed["items"]}
    for item in exposures.values():
        done = after[item["key"]]
        assert done["status"] == CLOSED, "contained by the first sweep, so the second no longer finds it"
        assert done["seconds_to_close"] is not None
        assert done["seconds_to_close"] >= 0
    assert second["Review"]["closed"] >= 2
    assert [r["at"] for r in closed["trend"]] == [first["FinishedAt"], second["FinishedAt"]]
    still = [i for i in closed["items"] if i["status"] == OPEN]
    assert {i["kind"] for i in still} >= {"shared-key-access"}, "posture findings are reported, not acted on"


def test_a_dead_letter_container_that_cannot_be_read_makes_the_sweep_incomplete(make_harness: Any) -> None:
    from responders.triggers.handlers import SweepIncomplete

    h = make_harness(tenant=estate(), env={"RESPONDER_DEADLETTER_CONTAINER": "missing-container"})
    with pytest.raises(SweepIncomplete, match="dead letters"):
        sweep(h)  # the timer's retry policy runs it again
    row = h.rt.ledger.sweeps()[-1]
    assert row["Status"] == "incomplete"
    assert any("dead letters" in why and "missing-container" in why for why in row["Incomplete"])
    assert json.dumps(row["DeadLetters"]).count("ContainerNotFound") == 1
