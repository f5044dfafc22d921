"""A blob name alone does not mark an account synthetic against its own tags: a name pattern marks the
blob's container, an account's own classification tag that says otherwise wins, and the conflict is
recorded as a finding."""

from __future__ import annotations

import copy
from typing import Any

from tests.harness import sample

WEB = "stmarketingweb04"  # tagged data-classification=public, serving a public website


def upload(account: str, group: str, container: str, blob: str, n: int) -> dict[str, Any]:
    [event] = copy.deepcopy(sample("05-blob-created-in-public-container.json"))
    event["id"] = f"a05b6c7d-001e-0000-2a4b-{n:012d}"
    event["topic"] = (
        f"/subscriptions/7d1f3c2a-5b9e-4c1d-9a8e-3f2b1c0d4e5a/resourceGroups/{group}"
        f"/providers/Microsoft.Storage/storageAccounts/{account}"
    )
    event["subject"] = f"/blobServices/default/containers/{container}/blobs/{blob}"
    event["data"]["url"] = f"https://{account}.blob.core.windows.net/{container}/{blob}"
    return event


def test_a_synthetic_looking_blob_name_does_not_contain_an_account_tagged_public(make_harness) -> None:
    h = make_harness()
    event = upload(WEB, "rg-web", "web-assets", "synthetic_customers.csv", 1)
    h.eventgrid(event)
    row = h.incident(event["id"])
    assert row["Status"] == "ignored", row["Reasons"]
    assert h.writes() == [], "the marketing website stays public"
    assert any(
        "synthetic_customers.csv" in f and "data-classification=public" in f and "wins" in f
        for f in row["Findings"]
    ), row["Findings"]


def test_the_blob_name_marks_its_container_in_an_unclassified_account(make_harness) -> None:
    h = make_harness()
    [event] = sample("05-blob-created-in-public-container.json")
    h.eventgrid(event)
    row = h.incident(event["id"])
    assert row["Status"] == "contained"
    assert any("container scratch" in r and "synthetic_patients" in r for r in row["Reasons"]), row["Reasons"]
