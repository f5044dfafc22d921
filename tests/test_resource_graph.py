"""Resource Graph as the simulator serves it, against the recorded shapes (tests/data/azure, sources in
its SOURCES.md), and the sweep's pure parts: rows, candidates, exposures, signal ids, generations."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import requests

from rehearsal.simulator import Simulator
from responders.core.model import BadInput, ContainerFacts, SignalKind
from responders.core.policy import Policy
from responders.core.sweep import (
    Exposure,
    InventoryRow,
    exposure_of,
    is_candidate,
    moves_on,
    parse_row,
    parse_rows,
    query_scope,
    signal_for,
)
from responders.sweep import quota_wait
from tests.simulator_fixtures import ARM_ACCOUNT, SUB, example, make_tenant, session

GRAPH = "/providers/Microsoft.ResourceGraph/resources"
BASIC = example("resourcegraph_resources_basic_query_example.json")
MG = example("resourcegraph_resources_mg_basic_query_example.json")


def post(sim: Simulator, body: Any, version: str = "2021-03-01") -> requests.Response:
    return session(sim).post(f"{sim.url}{GRAPH}", params={"api-version": version}, json=body, timeout=30)


def shape(value: Any, key: str = "") -> Any:
    """Keys and JSON types, recursively (values differ: the tenant is not the recorded one; tags are a
    mapping whatever their names)."""
    if isinstance(value, dict) and key != "tags":
        return {k: shape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def tenant(**extra: Any) -> dict[str, Any]:
    seeded = make_tenant()
    seeded.update(extra)
    return seeded


def test_the_basic_query_example_is_answered_in_its_recorded_shape() -> None:
    request = copy.deepcopy(BASIC["parameters"]["query"])
    request["subscriptions"] = [SUB]
    recorded = BASIC["responses"]["200"]["body"]
    with Simulator(tenant()) as sim:
        answer = post(sim, request)
    assert answer.status_code == 200
    body = answer.json()
    assert shape(body) == shape(recorded)
    assert body["resultTruncated"] == "false"
    assert body["count"] == 3
    assert body["totalRecords"] == 3
    assert body["data"][0]["type"] == "microsoft.storage/storageaccounts"
    assert int(answer.headers["x-ms-user-quota-remaining"]) == 14
    assert answer.headers["x-ms-user-quota-resets-after"] == "00:00:05"


def test_the_management_group_example_is_scoped_by_the_tenants_groups() -> None:
    groups = {name: [SUB] for name in MG["parameters"]["query"]["managementGroups"]}
    with Simulator(tenant(managementGroups=groups)) as sim:
        answer = post(sim, MG["parameters"]["query"])
        unknown = post(sim, {"managementGroups": ["NoSuchMG"], "query": "resources"})
    assert answer.status_code == 200
    assert shape(answer.json()) == shape(MG["responses"]["200"]["body"])
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "BadRequest"


def test_a_query_outside_the_subset_is_refused_as_resource_graph_refuses_it() -> None:
    recorded = example("resourcegraph_400_invalid_query_issue13762.json")
    with Simulator(tenant()) as sim:
        answer = post(sim, {"subscriptions": [SUB], "query": "Resources | parse id with * '/providers/' x"})
    assert answer.status_code == 400
    body = answer.json()
    assert shape(body) == shape(recorded)
    assert body["error"]["details"][0]["code"] == "InvalidQuery"
    assert body["error"]["details"][1]["token"] == "parse"


def test_over_quota_is_a_429_with_the_quota_headers_and_retry_after() -> None:
    recorded = example("resourcegraph_429_rate_limiting_issue666.json")
    with Simulator(tenant(resourceGraphQuota={"queries": 1, "window": 60})) as sim:
        first = post(sim, {"query": "resources | project id"})
        second = post(sim, {"query": "resources | project id"})
    assert first.status_code == 200
    assert first.headers["x-ms-user-quota-remaining"] == "0"
    assert second.status_code == 429
    assert second.json() == recorded
    assert second.headers["x-ms-user-quota-remaining"] == "0"
    assert second.headers["x-ms-user-quota-resets-after"] in ("00:01:00", "00:00:59")
    assert int(second.headers["Retry-After"]) >= 59


def test_pages_carry_a_token_bound_to_their_query_and_an_id_less_query_is_truncated() -> None:
    seeded = tenant()
    seeded["storageAccounts"] = [{"id": f"{ARM_ACCOUNT}/stpage{i:03d}"} for i in range(5)]
    query = "resources | project id, name | order by name desc"
    with Simulator(seeded) as sim:
        first = post(sim, {"query": query, "options": {"$top": 2}}).json()
        second = post(sim, {"query": query, "options": {"$top": 2, "$skipToken": first["$skipToken"]}}).json()
        other = post(sim, {"query": "resources | project id", "options": {"$skipToken": first["$skipToken"]}})
        no_id = post(sim, {"query": "resources | project name", "options": {"$top": 2}}).json()
        too_many = post(sim, {"query": query, "options": {"$top": 1001}})
        old = post(sim, {"query": query}, version="2017-01-01")
    assert [r["name"] for r in first["data"] + second["data"]] == [
        "stpage004",
        "stpage003",
        "stpage002",
        "stpage001",
    ]
    assert (first["totalRecords"], first["count"], first["resultTruncated"]) == (5, 2, "false")
    assert other.status_code == 400
    assert no_id["resultTruncated"] == "true"
    assert "$skipToken" not in no_id
    assert too_many.status_code == 400
    assert old.status_code == 400
    assert old.json()["error"]["code"] == "NoRegisteredProviderFound"


def test_the_sdk_parses_the_recorded_answer_and_the_sweep_refuses_its_rows(make_harness: Any) -> None:
    """The recorded answer holds network resources: the sweep reads it and calls itself incomplete."""
    from responders.sweep import run_sweep

    h = make_harness()
    h.sim.play_recorded("POST", GRAPH, 200, BASIC["responses"]["200"]["body"], count=1)
    result = run_sweep(h.rt, sleep=lambda _: None)
    assert result.pages == 1
    assert result.total_records == 3
    assert result.inventory == []
    assert result.status == "incomplete"
    assert len([w for w in result.incomplete if "not a storage account id" in w]) == 3


# --- the pure parts ------------------------------------------------------------------------------

POLICY = Policy.from_dict(
    {
        "scope": {
            "allow": [
                f"/subscriptions/{SUB}",
                f"/subscriptions/{SUB}/resourceGroups/rg-a",
                "/subscriptions/b",
            ]
        },
        "synthetic": {"name_patterns": ["-synth$"]},
    }
)
ROW = {
    "id": f"{ARM_ACCOUNT}/stsynth01",
    "name": "stsynth01",
    "subscriptionId": SUB,
    "tags": {"data-classification": "synthetic"},
    "allowBlobPublicAccess": None,
}


def row(**changes: Any) -> InventoryRow:
    return parse_row({**ROW, **changes})


def test_the_scope_names_each_subscription_once_and_star_the_tenant() -> None:
    assert query_scope(POLICY) == ((SUB, "b"), False)
    assert query_scope(Policy.from_dict({"scope": {"allow": ["*"]}})) == ((), True)
    assert query_scope(Policy()) == ((), False)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"id": "/subscriptions/x/resourceGroups/y"}, "not a storage account id"),
        ({"id": f"{ARM_ACCOUNT}/st01/blobServices/default/containers/c"}, "not a storage account id"),
        ({"tags": ["a"]}, "tags"),
        ({"allowBlobPublicAccess": "true"}, "not a boolean"),
        ({"subscriptionId": "00000000-0000-0000-0000-000000000000"}, "does not match"),
    ],
)
def test_a_row_that_is_not_an_account_is_refused_with_its_reason(changes: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_row({**ROW, **changes})


def test_rows_that_are_not_an_array_are_one_problem() -> None:
    assert parse_rows({"columns": []}) == ([], ["the page's data is not an object array (dict)"])
    rows, problems = parse_rows([ROW, 7])
    assert [r.name for r in rows] == ["stsynth01"]
    assert problems == ["row 1: not an object"]


def test_candidates_and_exposures() -> None:
    private = row(allowBlobPublicAccess=False)
    unmarked = row(tags={}, id=f"{ARM_ACCOUNT}/stplain02", name="stplain02")
    outside = row(id=ROW["id"].replace(SUB, "c" * 8 + SUB[8:]), subscriptionId="c" * 8 + SUB[8:])
    assert is_candidate(row(), POLICY)
    assert is_candidate(private, POLICY)
    assert is_candidate(unmarked, POLICY)  # the policy marks containers by metadata
    assert not is_candidate(outside, POLICY)
    assert not is_candidate(row(tags={}, allowBlobPublicAccess=False), POLICY)
    public = (ContainerFacts("data", "Blob"), ContainerFacts("docs", "None"))
    assert exposure_of(private, public, POLICY) is None
    assert exposure_of(row(), (), POLICY) == Exposure(row().id, True, ())
    assert exposure_of(row(), public, POLICY) == Exposure(row().id, True, (("data", "Blob"),))
    assert exposure_of(unmarked, (ContainerFacts("docs", "None"),), POLICY) is None
    assert exposure_of(unmarked, public, POLICY) is not None
    assert exposure_of(unmarked, None, POLICY) is not None  # the list failed: the pipeline reads again


def test_signal_ids_name_the_exposure_not_the_sweep() -> None:
    one = Exposure(row().id, True, (("data", "Blob"),))
    assert signal_for(one, "2026-01-01T00:00:00Z").id == signal_for(one, "2026-02-01T00:00:00Z").id
    other = Exposure(row().id, True, (("data", "Container"),))
    assert signal_for(other, "t").id != signal_for(one, "t").id
    again = signal_for(one, "t", 2)
    assert again.id == signal_for(one, "t").id + "#2"
    assert again.kind is SignalKind.SWEEP
    assert again.containers == ((row().id, "data"),)


def test_a_generation_moves_on_only_past_an_incident_that_closed_its_exposure() -> None:
    one = Exposure(row().id, True, (("data", "Blob"),))
    open_state = {row().id: {"allowBlobPublicAccess": None, "containers": {"data": "Blob"}}}
    closed_state = {row().id: {"allowBlobPublicAccess": False, "containers": {"data": "Blob"}}}
    assert not moves_on(None, one)
    assert moves_on({"Status": "contained", "StateBefore": open_state}, one)
    assert not moves_on({"Status": "pending-approval", "StateBefore": open_state}, one)
    assert not moves_on({"Status": "nothing-to-do", "StateBefore": open_state}, one)
    assert moves_on({"Status": "ignored", "StateBefore": closed_state}, one)
    assert not moves_on({"Status": "dry-run", "StateBefore": closed_state}, one)
    assert not moves_on({"Status": "failed"}, one)


def test_the_quota_headers_say_how_long_to_wait() -> None:
    assert quota_wait({"x-ms-user-quota-remaining": "0", "x-ms-user-quota-resets-after": "00:00:03"}) == 3.0
    assert quota_wait({"x-ms-user-quota-remaining": "4", "x-ms-user-quota-resets-after": "00:00:03"}) == 0.0
    assert quota_wait({"x-ms-user-quota-remaining": "0", "x-ms-user-quota-resets-after": "01:00:00"}) == 30.0
    assert quota_wait({"x-ms-user-quota-remaining": "x", "x-ms-user-quota-resets-after": "soon"}) == 0.0
    assert quota_wait({}) == 0.0


def test_a_management_group_scope_allows_only_the_subscriptions_it_was_found_to_hold() -> None:
    mg = "/providers/Microsoft.Management/managementGroups/Synthetic-Data"
    policy = Policy.from_dict({"scope": {"allow": [mg]}})
    assert policy.management_groups == ("synthetic-data",)
    assert not policy.in_scope(ROW["id"])
    resolved = policy.with_members(frozenset({SUB.upper()}))
    assert resolved.in_scope(ROW["id"])
    assert not resolved.in_scope(ROW["id"].replace(SUB, "0" * 8 + SUB[8:]))
    assert query_scope(resolved) == ((SUB,), False)
    with pytest.raises(BadInput, match="managementGroups"):
        Policy.from_dict({"scope": {"allow": ["/providers/Microsoft.Management/managementGroups/a/b"]}})
