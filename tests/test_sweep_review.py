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


FINISHED = "5c4d3e2f-1a0b-4c9d-8e7f-6a5b4c3d2e1f"
READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"


def test_a_finished_pipeline_still_holding_a_data_role_is_found_and_closes_when_removed(
    make_harness: Any,
) -> None:
    seeded = estate()
    seeded["servicePrincipals"] = [
        *seeded["servicePrincipals"],
        {
            "id": FINISHED,
            "appId": "6b5a4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d",
            "displayName": "train-pipeline-7",
            "servicePrincipalType": "Application",
            "accountEnabled": True,
            "tags": ["lifecycle:finished"],
        },
    ]
    account = next(a["id"] for a in seeded["storageAccounts"] if a["id"].endswith("/stlocked03"))
    sub = account.split("/")[2]
    seeded["roleAssignments"] = [
        {
            "name": "7f3e2d1c-0b9a-4877-8665-544332211000",
            "scope": account,
            "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
            + READER,
            "principalId": FINISHED,
            "principalType": "ServicePrincipal",
        }
    ]
    h = make_harness(tenant=seeded, env={"RESPONDER_REVIEW_DIAGNOSTICS_HOURS": "0"})
    sweep(h)
    items = {i["key"]: i for i in review.latest(h.rt)["items"]}
    key = f"finished-principal-data-role|{account.lower()}|{FINISHED}"
    assert items[key]["status"] == OPEN, sorted(items)
    assert items[key]["owner"] == "ml-platform@contoso.example"
    assert "Storage Blob Data Reader" in items[key]["summary"]
    assert h.sim.state.role_assignment_list(), "reported, never acted on: the assignment is still there"

    h.rt.clients.authorization(sub).role_assignments.delete(account, "7f3e2d1c-0b9a-4877-8665-544332211000")
    sweep(h)
    after = {i["key"]: i for i in review.latest(h.rt)["items"]}[key]
    assert after["status"] == CLOSED
