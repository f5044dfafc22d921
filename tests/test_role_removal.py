"""authorization.remove_role_assignments through the registered functions: a signal that implicates a
service principal plans the removal of its role assignments at or under the account, approval runs
it, the simulated tenant loses exactly those (inherited and other principals' stay, and the inherited
ones are recorded), the ledger holds each removed assignment, and restore re-creates exactly them."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.harness import RESPONDER_OID, SUB, TENANT, account_id, sample
from tests.simulator_fixtures import example

KIND = "authorization.remove_role_assignments"
ETL_SP = "3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d"  # etl-synth-exporter, the caller of sample 03
DEVOPS_SP = "6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e"  # devops-synth-pipeline, named by sample 06
CLAIMS, LAKE = account_id("stsynthclaims02"), account_id("stsynthlake09")
ROLE_DEFS = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions"
BLOB_READER = f"{ROLE_DEFS}/2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
BLOB_CONTRIBUTOR = f"{ROLE_DEFS}/ba92f5b4-2d11-453d-a403-e96b0029c9fe"
READER = f"{ROLE_DEFS}/acdd72a7-3385-48ef-bd42-f606fba81ae7"
CONDITION = (
    "((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'})) OR "
    "(@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals "
    "'claims-synth'))"
)
# the assignments seeded for the tests, by name
ON_ACCOUNT, ON_CONTAINER, ON_SUBSCRIPTION, ON_GROUP = (
    "a1111111-1111-4111-8111-111111111111",
    "a2222222-2222-4222-8222-222222222222",
    "a3333333-3333-4333-8333-333333333333",
    "a4444444-4444-4444-8444-444444444444",
)
OTHER_PRINCIPAL, RESPONDERS, ELSEWHERE, LAKE_DEVOPS = (
    "b1111111-1111-4111-8111-111111111111",
    "b2222222-2222-4222-8222-222222222222",
    "b3333333-3333-4333-8333-333333333333",
    "b4444444-4444-4444-8444-444444444444",
)
RECORDED = ("name", "roleDefinitionId", "scope", "principalId", "principalType", "condition")


def seed(name: str, scope: str, role: str, principal: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "scope": scope, "roleDefinitionId": role, "principalId": principal, **more}


def tenant(*assignments: dict[str, Any]) -> dict[str, Any]:
    """The sample tenant, with role assignments."""
    t = copy.deepcopy(TENANT)
    t["roleAssignments"] = list(assignments)
    return t


def claims_tenant() -> dict[str, Any]:
    return tenant(
        seed(
            ON_ACCOUNT,
            CLAIMS,
            BLOB_READER,
            ETL_SP,
            condition=CONDITION,
            conditionVersion="2.0",
            description="nightly export reads claims",
        ),
        seed(
            ON_CONTAINER, f"{CLAIMS}/blobServices/default/containers/claims-synth", BLOB_CONTRIBUTOR, ETL_SP
        ),
        seed(ON_SUBSCRIPTION, f"/subscriptions/{SUB}", READER, ETL_SP),
        seed(OTHER_PRINCIPAL, CLAIMS, BLOB_READER, DEVOPS_SP),
        seed(RESPONDERS, CLAIMS, READER, RESPONDER_OID),
        seed(ELSEWHERE, account_id("stsynthpublic01"), BLOB_READER, ETL_SP),
    )


def names(h: Any) -> set[str]:
    return {a["name"] for a in h.sim.state.role_assignment_list()}


def assignment(h: Any, name: str) -> dict[str, Any]:
    [found] = [a for a in h.sim.state.role_assignment_list() if a["name"] == name]
    return found


def role_deletes(h: Any) -> list[str]:
    return [r["path"] for r in h.sim.requests() if r["method"] == "DELETE" and "roleAssignments" in r["path"]]


def role_row(h: Any, event: dict[str, Any]) -> dict[str, Any]:
    [row] = [a for a in h.incident(event["id"])["actions"] if a["Kind"] == KIND]
    return row


def listkeys_on(account: str) -> dict[str, Any]:
    """Sample 03 (keys listed by etl-synth-exporter) about another account, as its own event."""
    [event] = sample("03-listkeys-by-app.json")
    text = json.dumps(event).replace("stsynthclaims02", account)
    moved = json.loads(text)
    moved["id"] = f"{event['id'][:-2]}{len(account):02d}"
    return moved


def test_listed_keys_plan_the_removal_approval_removes_only_the_principals_assignments_at_the_account(
    make_harness,
) -> None:
    h = make_harness(tenant=claims_tenant())
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)
    row = role_row(h, event)
    assert (row["Target"], row["Params"], row["Status"]) == (
        CLAIMS.lower(),
        {"principal": ETL_SP},
        "pending-approval",
    )
    assert role_deletes(h) == []  # the default is approval: a removed role breaks a pipeline

    status, body, _ = h.http("playbook", {"approve": row["PartitionKey"], "execute": True})
    assert status == 200, body
    # at and under the account: gone; inherited, another principal's, the responder's, elsewhere: kept
    assert names(h) == {ON_SUBSCRIPTION, OTHER_PRINCIPAL, RESPONDERS, ELSEWHERE}
    assert len(role_deletes(h)) == 2
    row = role_row(h, event)
    assert row["Status"] == "contained"
    before, after = row["Before"], row["After"]
    assert [a["name"] for a in before["assignments"]] == [ON_ACCOUNT, ON_CONTAINER]
    recorded = next(a for a in before["assignments"] if a["name"] == ON_ACCOUNT)
    assert recorded == {
        "id": f"{CLAIMS}/providers/Microsoft.Authorization/roleAssignments/{ON_ACCOUNT}",
        "name": ON_ACCOUNT,
        "roleDefinitionId": BLOB_READER,
        "scope": CLAIMS,
        "principalId": ETL_SP,
        "principalType": "ServicePrincipal",
        "condition": CONDITION,
        "conditionVersion": "2.0",
        "description": "nightly export reads claims",
    }
    # the inherited assignment is left, and recorded: a path the step leaves open
    assert [a["name"] for a in before["inherited"]] == [ON_SUBSCRIPTION]
    assert (after["assignments"], [a["name"] for a in after["inherited"]]) == ([], [ON_SUBSCRIPTION])

    # the evidence pack shows, per principal, what it held on the account before and what is left
    from datetime import UTC, datetime

    from responders.evidence_pack import build_pack, render_markdown

    pack = build_pack(h.incident(event["id"]), datetime.now(UTC))
    held_before = pack["state"]["before"][CLAIMS.lower()]["roleAssignments"][ETL_SP]
    left = pack["state"]["after"][CLAIMS.lower()]["roleAssignments"][ETL_SP]
    assert [a["name"] for a in held_before["assignments"]] == [ON_ACCOUNT, ON_CONTAINER]
    assert (left["assignments"], [a["name"] for a in left["inherited"]]) == ([], [ON_SUBSCRIPTION])
    assert "allowBlobPublicAccess" in pack["state"]["before"][CLAIMS.lower()]  # the account's own state kept
    assert ON_SUBSCRIPTION in render_markdown(pack)

    # a redelivery of the original event deletes nothing twice
    h.eventgrid(event)
    assert len(role_deletes(h)) == 2


def test_restore_recreates_exactly_the_recorded_assignments(make_harness) -> None:
    h = make_harness(tenant=claims_tenant())
    originals = {n: assignment(h, n) for n in (ON_ACCOUNT, ON_CONTAINER)}
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)
    incident = role_row(h, event)["PartitionKey"]
    h.http("playbook", {"approve": incident, "execute": True})
    assert not names(h) & set(originals)

    status, body, _ = h.http("playbook", {"restore": incident, "execute": True})
    assert status == 200, body
    [entry] = [r for r in body["restored"] if r["kind"] == KIND]
    assert entry["status"] == "restored"
    for name, was in originals.items():
        now = assignment(h, name)
        for field in RECORDED:
            assert (
                str(now["properties"].get(field) or now.get(field) or "").lower()
                == str(was["properties"].get(field) or was.get(field) or "").lower()
            ), (name, field)
        assert now["properties"]["conditionVersion"] == was["properties"]["conditionVersion"]
        assert now["properties"]["description"] == was["properties"]["description"]
    assert names(h) == {ON_ACCOUNT, ON_CONTAINER, ON_SUBSCRIPTION, OTHER_PRINCIPAL, RESPONDERS, ELSEWHERE}
    assert role_row(h, event)["Status"] == "restored"


def test_a_sentinel_incident_naming_a_principal_plans_the_removal_on_the_named_account(make_harness) -> None:
    h = make_harness(tenant=tenant(seed(LAKE_DEVOPS, LAKE, BLOB_READER, DEVOPS_SP)))
    status, body, _ = h.http("alerts", sample("06-sentinel-incident.json"))
    assert status == 200, body
    [result] = body["results"]
    planned = [o for o in result["outcomes"] if o["kind"] == KIND]
    assert [(o["target"], o["params"]) for o in planned] == [(LAKE.lower(), {"principal": DEVOPS_SP})]
    assert planned[0]["status"] == "pending-approval"
    assert result["status"] == "pending-approval"
    assert LAKE_DEVOPS in names(h)


def test_only_inherited_assignments_plan_nothing_and_say_what_is_left_open(make_harness) -> None:
    h = make_harness(
        tenant=tenant(seed(ON_GROUP, f"/subscriptions/{SUB}/resourceGroups/rg-synth-prod", READER, ETL_SP))
    )
    status, body, _ = h.http("alerts", sample("03-listkeys-by-app.json"))
    assert status == 200, body
    [result] = body["results"]
    assert not [o for o in result["outcomes"] if o["kind"] == KIND]
    skipped = [s for s in result["skipped"] if KIND in s["what"]]
    assert [s["what"] for s in skipped] == [f"{KIND} {CLAIMS.lower()} {ETL_SP}"], result
    assert "inherited from /subscriptions/" in skipped[0]["why"]
    assert "rg-synth-prod (left in place" in skipped[0]["why"]
    assert ON_GROUP in names(h)


def test_the_responders_own_assignments_are_never_touched(make_harness) -> None:
    from responders.actions import HANDLERS
    from responders.core.model import Action

    h = make_harness(tenant=claims_tenant())
    handler = HANDLERS[KIND]
    own = Action(
        kind=KIND, target=CLAIMS.lower(), key="act-own", reason="test", params={"principal": RESPONDER_OID}
    )
    state = handler.read(h.rt.clients, own)
    assert [a["name"] for a in state["assignments"]] == [RESPONDERS]
    with pytest.raises(ValueError, match="own role assignments are never removed"):
        handler.apply(h.rt.clients, own)
    assert role_deletes(h) == []
    assert RESPONDERS in names(h)


def test_an_exempt_or_out_of_scope_account_is_not_touched(make_harness) -> None:
    exempt, partner = account_id("stsynthshare05"), TENANT["storageAccounts"][-1]["id"]
    h = make_harness(
        tenant=tenant(
            seed(ON_ACCOUNT, exempt, BLOB_READER, ETL_SP),
            seed(ON_CONTAINER, partner, BLOB_READER, ETL_SP),
        )
    )
    for account in ("stsynthshare05", "stsynthpartner07"):
        event = listkeys_on(account)
        if account == "stsynthpartner07":
            event = json.loads(json.dumps(event).replace(f"/subscriptions/{SUB}/resourceGroups/rg-synth-prod",
                                                         partner.rsplit("/providers/", 1)[0]))  # fmt: skip
        h.eventgrid(event)
        row = h.incident(event["id"])
        assert not [a for a in row.get("actions", []) if a["Kind"] == KIND], row
    assert names(h) == {ON_ACCOUNT, ON_CONTAINER}
    assert role_deletes(h) == []


def test_a_403_from_authorization_is_a_clear_failed_row(make_harness) -> None:
    h = make_harness(tenant=claims_tenant())
    denied = example("arm_role_assignments_403_authorization_failed_docs.json")
    denied["error"]["message"] = denied["error"]["message"].replace(
        "roleAssignments/write", "roleAssignments/delete"
    )
    h.sim.play_recorded("DELETE", r"/providers/Microsoft\.Authorization/roleAssignments/", 403, denied)
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)
    incident = role_row(h, event)["PartitionKey"]
    status, body, _ = h.http("playbook", {"approve": incident, "execute": True})
    assert status == 200, body
    row = role_row(h, event)
    assert row["Status"] == "failed"
    assert "403" in row["Error"]
    assert "AuthorizationFailed" in row["Error"]
    assert "Traceback" not in row["Error"]
    assert {ON_ACCOUNT, ON_CONTAINER} <= names(h)


def test_role_assignments_the_facts_cannot_read_still_plan_the_step_which_records_the_failure(
    make_harness,
) -> None:
    h = make_harness(tenant=claims_tenant())
    denied = example("arm_role_assignments_403_authorization_failed_docs.json")
    denied["error"]["message"] = denied["error"]["message"].replace(
        "roleAssignments/write", "roleAssignments/read"
    )
    h.sim.play_recorded("GET", r"/providers/Microsoft\.Authorization/roleAssignments$", 403, denied)
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)
    row = role_row(h, event)
    status, body, _ = h.http("playbook", {"approve": row["PartitionKey"], "execute": True})
    assert status == 200, body
    row = role_row(h, event)
    assert row["Status"] == "failed"
    assert "AuthorizationFailed" in row["Error"]
    assert role_deletes(h) == []


def test_the_plan_never_removes_the_responders_own_or_an_unlisted_principals_assignments() -> None:
    """The plan alone (pure): the same guardrails as disabling, decided from the facts."""
    from responders.core.model import (
        AccountFacts,
        Caller,
        Facts,
        RoleAssignmentFacts,
        Signal,
        SignalKind,
        Verdict,
    )
    from responders.core.plan import plan
    from responders.core.policy import Policy

    account = CLAIMS.lower()
    held = tuple(
        RoleAssignmentFacts(name=n, scope=CLAIMS, role_definition_id=BLOB_READER, principal_id=p)
        for n, p in ((ON_ACCOUNT, RESPONDER_OID), (ON_CONTAINER, ETL_SP), (OTHER_PRINCIPAL, DEVOPS_SP))
    )
    accounts = {account: AccountFacts(id=account, allow_blob_public_access=False)}
    facts = Facts(accounts=accounts, role_assignments={account: held})
    verdict = Verdict(leak=True, severity="high", confidence=1.0, reasons=(), synthetic_accounts=(account,))
    policy = Policy(responder_object_ids=(RESPONDER_OID,), principal_scope=(ETL_SP,), allowed_scopes=("*",))

    def steps(caller: str) -> tuple[list[tuple[str, dict[str, str]]], list[tuple[str, str]]]:
        signal = Signal(
            id=f"keys-{caller}",
            source="eventgrid",
            kind=SignalKind.KEYS_LISTED,
            event_type="Microsoft.Resources.ResourceActionSuccess",
            accounts=(account,),
            caller=Caller(object_id=caller, principal_type="ServicePrincipal"),
        )
        made = plan(signal, facts, verdict, policy)
        planned = [(a.target, dict(a.params)) for a in made.actions if a.kind == KIND]
        return planned, [(w, y) for w, y in made.skipped if w.startswith(KIND)]

    assert steps(ETL_SP) == ([(account, {"principal": ETL_SP})], [])
    assert steps(RESPONDER_OID) == (
        [],
        [(f"{KIND} {account} {RESPONDER_OID}", "the responder's own role assignments are never removed")],
    )
    assert steps(DEVOPS_SP) == (
        [],
        [(f"{KIND} {account} {DEVOPS_SP}", "outside the policy's principal scope (principals.allow)")],
    )
    # the facts show nothing of the principal at the account: nothing to remove, no step
    assert steps("c1111111-1111-4111-8111-111111111111") == ([], [])
    # the facts could not be read: the step is planned, and its own read decides
    unread = Facts(
        accounts=accounts, role_assignments_error={account: "HttpResponseError 403: AuthorizationFailed"}
    )
    facts = unread
    assert steps(ETL_SP) == ([(account, {"principal": ETL_SP})], [])


def test_offline_replay_plans_the_removal_the_tenant_would(make_harness) -> None:
    """The offline classifier reads the snapshot's roleAssignments as gathering the facts reads Azure."""
    from responders.offline import OfflineClassifier

    h = make_harness(dry_run=True, tenant=claims_tenant())
    [event] = sample("03-listkeys-by-app.json")
    status, body, _ = h.http("alerts", [event])
    assert status == 200, body
    online = [(a["kind"], a["target"], a["params"]) for a in body["results"][0]["plan"]]
    offline = OfflineClassifier(claims_tenant(), h.rt.settings.policy).plan(event)
    assert [(a.kind, a.target, dict(a.params)) for a in offline.actions] == online
    assert (KIND, CLAIMS.lower(), {"principal": ETL_SP}) in online
    inherited_only = tenant(
        seed(ON_GROUP, f"/subscriptions/{SUB}/resourceGroups/rg-synth-prod", READER, ETL_SP)
    )
    skipped = OfflineClassifier(inherited_only, h.rt.settings.policy).plan(event).skipped
    assert [w for w, _ in skipped if w.startswith(KIND)] == [f"{KIND} {CLAIMS.lower()} {ETL_SP}"]
