"""The sweep, through the registered timer function and the real SDK clients against the simulated tenant:
it contains the exposures no event named, once; a repeated sweep changes nothing; a bad or partial
Resource Graph answer is recorded and retried, never taken as "nothing exposed"; paging and throttling
are honoured; nothing outside the policy's scope is queried or touched."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from responders.triggers.handlers import SweepIncomplete
from tests.harness import SUB, TENANT, Harness, account_id

GRAPH = "/providers/Microsoft.ResourceGraph/resources"
OTHER_SUB = "c4e8a0b2-6d1f-4f3a-8b9c-0e2d4f6a8b10"
SYNTHETIC = {"data-classification": "synthetic", "owner": "ml-platform@contoso.example"}


def account(
    name: str,
    *,
    tags: dict[str, str] | None = None,
    public: bool | None = False,
    containers: tuple[tuple[str, str], ...] = (),
    sub: str = SUB,
) -> dict[str, Any]:
    seed: dict[str, Any] = {
        "id": account_id(name, sub=sub),
        "tags": dict(tags or {}),
        "containers": [{"name": n, "publicAccess": a, "metadata": {}} for n, a in containers],
    }
    if public is not None:
        seed["allowBlobPublicAccess"] = public
    return seed


def tenant(*accounts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    seeded = copy.deepcopy(TENANT)
    seeded["storageAccounts"] = list(accounts)
    seeded.update(extra)
    return seeded


def estate() -> dict[str, Any]:
    """Exposures no event names: public since before deployment, a container made public through the
    data plane (set below, no event), and accounts that are fine or outside the policy's scope."""
    return tenant(
        account("stpredeploy01", tags=SYNTHETIC, public=True, containers=(("train-synth", "Container"),)),
        account("stdataplane02", tags=SYNTHETIC, public=None, containers=(("eval-synth", "None"),)),
        account("stlocked03", tags=SYNTHETIC, public=False, containers=(("held-synth", "None"),)),
        account("stplain04", public=False, containers=(("logs", "None"),)),
        account("stelsewhere05", tags=SYNTHETIC, public=True, containers=(("x", "Blob"),), sub=OTHER_SUB),
    )


def sweep(h: Harness) -> dict[str, Any]:
    """The registered timer function, as the host calls it; the ledger's row of the sweep it ran."""
    h.functions["sweep_timer"](TimerRequest(past_due=False))
    return h.rt.ledger.sweeps()[-1]


def graph_requests(h: Harness) -> list[dict[str, Any]]:
    return [r for r in h.sim.requests() if r["path"].lower() == GRAPH.lower()]


def make_public_via_data_plane(h: Harness, name: str, container: str, access: str = "Blob") -> None:
    """Set Container ACL on the blob endpoint: Resource Manager raises no event for it."""
    with h.sim.state.locked() as state:
        state.accounts[name]["containers"][container]["properties"]["publicAccess"] = access


def public_state(h: Harness, name: str) -> tuple[Any, dict[str, str]]:
    raw = h.sim.state.account(name)
    return raw["properties"].get("allowBlobPublicAccess"), {
        c["name"]: c["properties"]["publicAccess"] for c in raw["containers"].values()
    }


def test_one_sweep_contains_what_no_event_named_and_a_repeated_sweep_changes_nothing(
    make_harness: Any,
) -> None:
    h = make_harness(tenant=estate())
    make_public_via_data_plane(h, "stdataplane02", "eval-synth")

    first = sweep(h)

    assert first["Status"] == "complete", first["Incomplete"]
    assert first["Counts"]["exposures"] == 2
    assert first["Counts"]["contained"] == 2
    assert public_state(h, "stpredeploy01") == (False, {"train-synth": "None"})
    assert public_state(h, "stdataplane02") == (False, {"eval-synth": "None"})
    contained = {i["subject"]: i for i in first["Incidents"]}
    for name in ("stpredeploy01", "stdataplane02"):
        row = h.rt.ledger.incident(contained[account_id(name)]["incident"])
        assert row["Status"] == "contained"
        assert row["SignalKind"] == "sweep"
        assert {a["Status"] for a in row["actions"]} == {"contained"}
    # nothing outside the scope was queried or touched
    assert all(r["body"]["subscriptions"] == [SUB] for r in graph_requests(h))
    assert public_state(h, "stelsewhere05") == (True, {"x": "Blob"})
    assert not [r for r in h.sim.requests() if OTHER_SUB in r["path"]]
    writes = len(h.writes())

    for _ in range(2):
        again = sweep(h)
        assert again["Status"] == "complete"
        assert again["Counts"]["exposures"] == 0
        assert again["Incidents"] == []
    assert len(h.writes()) == writes
    assert len(h.rt.ledger.sweeps()) == 3


def test_an_exposure_an_incident_already_contained_does_nothing_new(make_harness: Any) -> None:
    """Resource Graph lags behind Resource Manager: it may still show an exposure the event path just
    contained. The sweep's signal reads the account itself and finds nothing to do."""
    h = make_harness(tenant=estate())
    assert sweep(h)["Counts"]["contained"] == 2
    writes = len(h.writes())
    stale = {
        "totalRecords": 1,
        "count": 1,
        "resultTruncated": "false",
        "facets": [],
        "data": [
            {
                "id": account_id("stpredeploy01"),
                "name": "stpredeploy01",
                "subscriptionId": SUB,
                "tags": SYNTHETIC,
                "allowBlobPublicAccess": True,
            }
        ],
    }
    h.sim.play_recorded("POST", GRAPH, 200, stale, count=1)

    lagging = sweep(h)

    assert lagging["Status"] == "complete"
    assert lagging["Counts"]["exposures"] == 1
    assert lagging["Counts"]["contained"] == 0
    assert lagging["Counts"]["not_a_leak"] == 1  # its own read of the account found it private
    assert len(h.writes()) == writes


def test_a_new_exposure_of_a_contained_account_is_contained_again(make_harness: Any) -> None:
    h = make_harness(tenant=estate())
    first = sweep(h)
    assert first["Counts"]["contained"] == 2
    with h.sim.state.locked() as state:  # switched back on, and its event lost
        state.accounts["stpredeploy01"]["properties"]["allowBlobPublicAccess"] = True
        state.accounts["stpredeploy01"]["containers"]["train-synth"]["properties"]["publicAccess"] = (
            "Container"
        )

    second = sweep(h)

    assert second["Counts"]["contained"] == 1
    assert public_state(h, "stpredeploy01") == (False, {"train-synth": "None"})
    before = {i["subject"]: i["incident"] for i in first["Incidents"]}
    assert second["Incidents"][0]["subject"] == account_id("stpredeploy01")
    assert second["Incidents"][0]["incident"] != before[account_id("stpredeploy01")]
    assert sweep(h)["Counts"]["exposures"] == 0


def test_a_dry_run_sweep_records_the_plan_and_changes_nothing(make_harness: Any) -> None:
    h = make_harness(tenant=estate(), dry_run=True)
    first = sweep(h)
    assert first["DryRun"] is True
    assert first["Counts"]["dry_run"] == 2
    assert h.writes() == []
    second = sweep(h)
    assert second["Counts"]["already_handled"] == 2
    assert h.writes() == []


def test_exempt_and_unmarked_exposures_are_recorded_once_and_left(make_harness: Any) -> None:
    exempt = {**SYNTHETIC, "leak-responder-exempt": "true"}
    h = make_harness(
        tenant=tenant(
            account("stexempt06", tags=exempt, public=True, containers=(("open-synth", "Blob"),)),
            account("stunmarked07", public=True, containers=(("web", "Blob"),)),
        )
    )
    first = sweep(h)
    statuses = {i["subject"]: i["status"] for i in first["Incidents"]}
    assert statuses == {account_id("stexempt06"): "nothing-to-do", account_id("stunmarked07"): "ignored"}
    second = sweep(h)
    assert second["Counts"]["already_handled"] == 2
    assert h.writes() == []


def test_a_page_that_fails_is_recorded_retried_and_never_read_as_nothing_exposed(make_harness: Any) -> None:
    h = make_harness(tenant=estate())
    h.sim.play_recorded("POST", GRAPH, 200, {"totalRecords": 3, "count": 3, "data": "not rows"}, count=3)

    with pytest.raises(SweepIncomplete):
        h.functions["sweep_timer"](TimerRequest(past_due=False))

    row = h.rt.ledger.sweeps()[-1]
    assert row["Status"] == "incomplete"
    assert any("unread after 3 attempts" in why for why in row["Incomplete"])
    assert len(row["Retries"]) == 2
    assert public_state(h, "stpredeploy01") == (True, {"train-synth": "Container"})
    # the host's retry runs it again: Resource Graph answers now, and the exposure is contained
    again = sweep(h)
    assert again["Status"] == "complete"
    assert again["Counts"]["contained"] == 2


def test_a_server_error_is_retried_within_the_sweep(make_harness: Any) -> None:
    h = make_harness(tenant=estate())
    h.sim.set_faults([{"method": "POST", "path": "ResourceGraph", "status": 503, "count": 4}])
    row = sweep(h)
    assert row["Status"] == "complete"
    assert row["Counts"]["contained"] == 2
    assert len(row["Retries"]) == 1
    assert "503" in row["Retries"][0]
    assert [r["status"] for r in graph_requests(h)] == [503, 503, 503, 503, 200]


def test_a_truncated_answer_or_a_malformed_row_makes_the_sweep_incomplete(make_harness: Any) -> None:
    h = make_harness(tenant=estate())
    good = {
        "id": account_id("stpredeploy01"),
        "name": "stpredeploy01",
        "subscriptionId": SUB,
        "tags": SYNTHETIC,
        "allowBlobPublicAccess": True,
    }
    bad = {"id": "/subscriptions/x/not-an-account", "tags": "oops"}
    body = {"totalRecords": 9, "count": 2, "resultTruncated": "true", "facets": [], "data": [good, bad]}
    h.sim.play_recorded("POST", GRAPH, 200, body, count=1)

    with pytest.raises(SweepIncomplete):
        h.functions["sweep_timer"](TimerRequest(past_due=False))

    row = h.rt.ledger.sweeps()[-1]
    assert row["Status"] == "incomplete"
    reasons = " ".join(row["Incomplete"])
    assert "truncated" in reasons
    assert "row 1" in reasons
    # what it could read is still contained
    assert row["Counts"]["contained"] == 1
    assert public_state(h, "stpredeploy01") == (False, {"train-synth": "None"})


def paged_estate(count: int, **extra: Any) -> dict[str, Any]:
    """`count` plain accounts (not candidates), and two exposures that sort onto the first and last page."""
    plain = [account(f"stplain{i:05d}", public=False) for i in range(count)]
    return tenant(
        account("staaafirst", tags=SYNTHETIC, public=True, containers=(("a-synth", "Blob"),)),
        *plain,
        account("stzzzlast", tags=SYNTHETIC, public=True, containers=(("z-synth", "Container"),)),
        **extra,
    )


def test_paging_across_three_pages_paced_by_the_quota_headers(make_harness: Any) -> None:
    # two queries per two-second window: the third page must wait for the quota's reset, not get a 429
    h = make_harness(tenant=paged_estate(2100, resourceGraphQuota={"queries": 2, "window": 2}))

    row = sweep(h)

    assert row["Status"] == "complete", row["Incomplete"]
    assert row["Pages"] == 3
    assert row["TotalRecords"] == 2102
    assert row["Counts"]["accounts"] == 2102
    assert row["Counts"]["contained"] == 2
    pages = graph_requests(h)
    assert [r["status"] for r in pages] == [200, 200, 200]
    assert "$skipToken" not in pages[0]["body"]["options"]
    assert pages[1]["body"]["options"]["$skipToken"]
    assert pages[2]["body"]["options"]["$skipToken"]
    assert all(r["body"]["options"]["$top"] == 1000 for r in pages)
    assert pages[2]["time"] - pages[1]["answered"] >= 1.0  # waited for x-ms-user-quota-resets-after
    assert public_state(h, "stzzzlast") == (False, {"z-synth": "None"})


def test_a_429_from_resource_graph_is_honoured(make_harness: Any) -> None:
    h = make_harness(tenant=estate())
    h.sim.set_faults(
        [{"method": "POST", "path": "ResourceGraph", "status": 429, "retry_after": 1, "count": 1}]
    )
    started = time.time()
    row = sweep(h)
    assert row["Status"] == "complete"
    assert row["Counts"]["contained"] == 2
    first, second = graph_requests(h)[:2]
    assert (first["status"], second["status"]) == (429, 200)
    assert second["time"] - first["answered"] >= 0.9
    assert time.time() - started >= 1.0


def test_the_cli_sweeps_the_simulated_tenant_in_dry_run_then_executes(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from responders.cli import main

    for name in ("RESPONDER_LEDGER_CONNECTION_STRING", "RESPONDER_LEDGER_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    seeded = tmp_path / "tenant.json"
    seeded.write_text(json.dumps(estate()), encoding="utf-8")
    args = ["sweep", "--tenant", str(seeded), "--format", "json"]

    assert main(args) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True
    assert dry["counts"]["dry_run"] == 2
    assert main([*args, "--execute"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["counts"]["contained"] == 2
    assert done["status"] == "complete"
    assert main(["sweep", "--tenant", str(seeded), "--format", "md", "--execute"]) == 0
    assert "0 exposed" in capsys.readouterr().out


def test_a_management_group_scope_sweeps_the_subscriptions_it_holds(make_harness: Any) -> None:
    seeded = estate()
    seeded["managementGroups"] = {"synthetic-data": [SUB]}
    policy = {
        "scope": {"allow": ["/providers/Microsoft.Management/managementGroups/synthetic-data"]},
        "synthetic": {"tags": {"data-classification": ["synthetic"]}},
    }
    h = make_harness(tenant=seeded, policy=policy)

    row = sweep(h)

    assert row["Status"] == "complete", row["Incomplete"]
    assert row["Scope"] == [SUB]
    assert row["Counts"]["contained"] == 2
    members, inventory = graph_requests(h)[:2]
    assert members["body"]["managementGroups"] == ["synthetic-data"]
    assert inventory["body"]["subscriptions"] == [SUB]
    assert public_state(h, "stelsewhere05") == (True, {"x": "Blob"})


def test_an_unknown_management_group_leaves_its_scope_empty_and_the_sweep_incomplete(
    make_harness: Any,
) -> None:
    policy = {"scope": {"allow": ["/providers/Microsoft.Management/managementGroups/nowhere"]}}
    h = make_harness(tenant=estate(), policy=policy)
    with pytest.raises(SweepIncomplete):
        h.functions["sweep_timer"](TimerRequest(past_due=False))
    row = h.rt.ledger.sweeps()[-1]
    assert any("management groups nowhere" in why for why in row["Incomplete"])
    assert h.writes() == []


def test_container_lists_keep_within_the_storage_providers_read_budget(make_harness: Any) -> None:
    """Accounts that allow public access are listed first and always; the others wait for a sweep with
    budget left, since nothing on them can be read anonymously."""
    from responders.sweep import run_sweep

    h = make_harness(
        tenant=tenant(
            *(account(f"stoff{i:02d}", tags=SYNTHETIC, public=False) for i in range(3)),
            account("stzopen09", tags=SYNTHETIC, public=True, containers=(("z-synth", "Blob"),)),
        )
    )
    result = run_sweep(h.rt, list_budget=2, sleep=lambda _: None)
    listed = [r["path"].split("/")[8] for r in h.sim.requests() if r["path"].endswith("/containers")]
    assert result.status == "complete"
    assert listed.count("stzopen09") == 2  # the sweep's list, then its incident's own read
    assert len(result.unlisted) == 2
    assert len(result.containers) == 2
    assert public_state(h, "stzopen09") == (False, {"z-synth": "None"})


def test_a_skip_token_that_never_ends_is_an_incomplete_sweep_not_a_loop(make_harness: Any) -> None:
    h = make_harness(tenant=estate())
    first = {
        "id": account_id("stpredeploy01"),
        "name": "stpredeploy01",
        "subscriptionId": SUB,
        "tags": SYNTHETIC,
        "allowBlobPublicAccess": True,
    }
    body = {"totalRecords": 2, "count": 1, "resultTruncated": "false", "$skipToken": "again", "data": [first]}
    h.sim.play_recorded("POST", GRAPH, 200, body)  # every page answers the same token
    with pytest.raises(SweepIncomplete):
        h.functions["sweep_timer"](TimerRequest(past_due=False))
    row = h.rt.ledger.sweeps()[-1]
    assert row["Pages"] == 2
    assert any("$skipToken after" in why for why in row["Incomplete"])
    assert row["Counts"]["accounts"] == 1  # the repeated row is one account
    assert row["Counts"]["contained"] == 1


def test_an_exposure_an_event_already_contained_is_read_and_left(make_harness: Any) -> None:
    """The event path contained stsynthpublic01; Resource Graph, minutes behind, still shows it open."""
    from tests.harness import sample

    h = make_harness()
    h.eventgrid(sample("01-container-made-public.json")[0])
    assert public_state(h, "stsynthpublic01")[0] is False
    writes = len(h.writes())
    before = {
        "id": account_id("stsynthpublic01"),
        "name": "stsynthpublic01",
        "subscriptionId": SUB,
        "tags": {"data-classification": "synthetic"},
        "allowBlobPublicAccess": True,
    }
    body = {"totalRecords": 1, "count": 1, "resultTruncated": "false", "facets": [], "data": [before]}
    h.sim.play_recorded("POST", GRAPH, 200, body, count=1)

    row = sweep(h)

    assert row["Status"] == "complete"
    assert row["Counts"]["exposures"] == 1
    assert row["Counts"]["contained"] == 0
    assert row["Incidents"][0]["status"] == "ignored"  # its own read found the account closed
    assert len(h.writes()) == writes
