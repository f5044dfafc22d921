"""Approve and restore write to Azure long after the plan was made: each re-checks the policy's scope as
the pipeline reads it when it plans (a management group's subscriptions included), and neither writes
to an account the policy no longer allows."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import yaml

from tests.harness import PREFIX, SAMPLES, SUB, TENANT

GROUP = "/providers/Microsoft.Management/managementGroups/synthetic-data"
TARGET = PREFIX + "stsynthexport08"


def sample_policy(**changes: Any) -> dict[str, Any]:
    policy = yaml.safe_load((SAMPLES / "policy.yaml").read_text())
    policy.update(changes)
    return policy


def account_writes(h: Any) -> list[dict[str, Any]]:
    return [w for w in h.writes() if w["path"].lower().endswith("/storageaccounts/stsynthexport08")]


def test_an_approval_under_a_management_group_scope_runs_on_an_account_the_group_holds(make_harness) -> None:
    seeded = copy.deepcopy(TENANT)
    seeded["managementGroups"] = {"synthetic-data": [SUB]}
    h = make_harness(tenant=seeded, policy=sample_policy(scope={"allow": [GROUP]}))
    body = {"resourceId": TARGET, "actions": ["storage.disable_shared_key"], "execute": True}
    status, answer, _ = h.http("playbook", body)
    assert status == 200, answer
    [result] = answer["results"]
    assert [o["status"] for o in result["outcomes"]] == ["pending-approval"], result

    status, approved, _ = h.http("playbook", {"approve": result["incident"], "execute": True})
    assert status == 200, approved
    assert [o["status"] for o in approved["outcomes"]] == ["contained"], approved
    assert h.sim.state.account("stsynthexport08")["properties"]["allowSharedKeyAccess"] is False


def test_restore_writes_nothing_to_an_account_that_left_the_policys_scope(make_harness) -> None:
    h = make_harness()
    body = {"resourceId": TARGET, "actions": ["storage.disable_public_access"], "execute": True}
    status, answer, _ = h.http("playbook", body)
    assert status == 200, answer
    [result] = answer["results"]
    assert result["status"] == "contained", result
    writes = len(account_writes(h))

    narrowed = dataclasses.replace(
        h.rt.settings.policy, allowed_scopes=(f"/subscriptions/{SUB}/resourcegroups/rg-elsewhere",)
    )
    h.rt.settings = dataclasses.replace(h.rt.settings, policy=narrowed)  # the policy redeployed since
    status, restored, _ = h.http("playbook", {"restore": result["incident"], "execute": True})
    assert status == 200, restored
    assert restored["restored"] == [], restored
    assert any("scope" in r["why"] for r in restored["refused"]), restored["refused"]
    assert len(account_writes(h)) == writes
    assert h.sim.state.account("stsynthexport08")["properties"]["allowBlobPublicAccess"] is False
