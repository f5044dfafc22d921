"""The manual playbook naming an account and a principal together (`principalId`): through the HTTP
trigger, the principal's steps are planned on that account with the same guardrails as any signal
that implicates a principal; a bad principalId is a 400 with its reason, never a partial action."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import RESPONDER_OID
from tests.test_role_removal import (
    CLAIMS,
    DEVOPS_SP,
    ETL_SP,
    KIND,
    ON_ACCOUNT,
    ON_CONTAINER,
    claims_tenant,
    names,
    role_deletes,
)

DISABLE = "identity.disable_service_principal"


def planned(result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(o["kind"], o["target"], o["params"]) for o in result["outcomes"]]


def test_a_playbook_naming_an_account_and_a_principal_plans_the_principals_steps_on_it(make_harness) -> None:
    h = make_harness(tenant=claims_tenant())
    request = {"resourceId": CLAIMS, "principalId": ETL_SP.upper(), "reason": "ticket 4711", "execute": True}
    status, body, _ = h.http("playbook", request)
    assert status == 200, body
    [result] = body["results"]
    steps = planned(result)
    assert (KIND, CLAIMS.lower(), {"principal": ETL_SP}) in steps, steps
    assert (DISABLE, ETL_SP, {}) in steps, steps
    role = next(o for o in result["outcomes"] if o["kind"] == KIND)
    assert role["status"] == "pending-approval"  # the policy's default for this step
    assert {ON_ACCOUNT, ON_CONTAINER} <= names(h)
    assert role_deletes(h) == []

    status, again, _ = h.http("playbook", {**request, "principalId": DEVOPS_SP})
    assert status == 200, again
    assert again["results"][0]["incident"] != result["incident"], "another principal is another request"


def test_a_playbook_naming_the_responder_as_the_principal_plans_nothing_against_it(make_harness) -> None:
    h = make_harness(tenant=claims_tenant())
    request = {"resourceId": CLAIMS, "principalId": RESPONDER_OID, "execute": True}
    status, body, _ = h.http("playbook", request)
    assert status == 200, body
    [result] = body["results"]
    assert not [s for s in planned(result) if s[0] in (KIND, DISABLE)], result
    why = " ".join(s["why"] for s in result["skipped"] if RESPONDER_OID in s["what"])
    assert "never" in why, result["skipped"]
    assert role_deletes(h) == []


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"principalId": "etl-synth-exporter"}, "principalId must be"),
        ({"principalId": 7}, "principalId must be"),
        ({"principalId": "3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d/../x"}, "principalId must be"),
        ({"resourceId": ETL_SP, "principalId": DEVOPS_SP}, "principalId goes with"),
    ],
)
def test_a_bad_principal_id_is_refused_with_its_reason(make_harness, extra: dict[str, Any], why: str) -> None:
    h = make_harness(tenant=claims_tenant())
    status, body, _ = h.http("playbook", {"resourceId": CLAIMS, "execute": True, **extra})
    assert status == 400, body
    assert why in str(body), body
    assert h.writes() == []
    assert list(h.rt.ledger.incidents()) == []
