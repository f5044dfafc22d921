"""Service principals pass the same guardrails as accounts: disabled only when the incident concerns an
in-scope, non-exempt synthetic-data resource, never the responder itself, and only within the policy's
principal scope (`principals.allow`)."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.harness import PREFIX, RESPONDER_OID, SAMPLES, Harness, sample

ROOT = Path(__file__).resolve().parents[1]
DEVOPS_SP = "6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e"
DEVOPS_APP = "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"
ETL_SP = "3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d"


def sample_policy(**changes: Any) -> dict[str, Any]:
    return {**yaml.safe_load((SAMPLES / "policy.yaml").read_text()), **changes}


def incident_naming(account: str, *principal_entities: dict[str, Any]) -> dict[str, Any]:
    """Sample 06 (a Sentinel incident) naming `account` and, instead of its app, these entities."""
    body = copy.deepcopy(sample("06-sentinel-incident.json"))
    body["eventUniqueId"] = str(uuid.uuid4())
    entities = body["object"]["properties"]["relatedEntities"]
    entities[0]["properties"]["resourceId"] = PREFIX + account
    entities[1:2] = list(principal_entities) or entities[1:2]
    return body


def cloud_app(app_id: str) -> dict[str, Any]:
    return {"kind": "CloudApplication", "properties": {"appId": app_id, "friendlyName": "app"}}


def aad_principal(object_id: str) -> dict[str, Any]:
    return {"kind": "Account", "properties": {"aadUserId": object_id, "friendlyName": "principal"}}


def disabled(h: Harness) -> dict[str, bool]:
    return {k: v["accountEnabled"] is False for k, v in h.sim.state.snapshot()["servicePrincipals"].items()}


def run(h: Harness, body: dict[str, Any]) -> dict[str, Any]:
    status, reply, _ = h.http("alerts", body)
    assert status == 200, reply
    return reply["results"][0]


def test_the_shipped_policy_disables_no_service_principal(make_harness) -> None:
    h = make_harness(policy=yaml.safe_load((ROOT / "policy.yaml").read_text()))
    result = run(h, sample("06-sentinel-incident.json"))
    assert not any(disabled(h).values()), result["outcomes"]
    assert not [w for w in h.writes() if "/serviceprincipals/" in w["path"].lower()]


def test_an_alert_naming_only_an_exempt_account_disables_no_principal(make_harness) -> None:
    h = make_harness(policy=sample_policy(principals={"allow": ["*"]}))
    result = run(h, incident_naming("stsynthshare05"))
    assert not any(disabled(h).values()), result["outcomes"]
    assert any(
        s["what"] == DEVOPS_SP and "in-scope, non-exempt synthetic-data resource" in s["why"]
        for s in result["skipped"]
    ), result["skipped"]


def test_a_principal_outside_the_principal_scope_is_skipped_with_the_reason(make_harness) -> None:
    h = make_harness(policy=sample_policy(principals={"allow": [ETL_SP]}))
    result = run(h, incident_naming("stsynthlake09", cloud_app(DEVOPS_APP)))
    assert result["status"] == "contained"
    assert disabled(h)[DEVOPS_SP] is False
    assert any(s["what"] == DEVOPS_SP and "principals.allow" in s["why"] for s in result["skipped"])


def test_the_responder_is_never_disabled_and_says_so(make_harness) -> None:
    h = make_harness(policy=sample_policy(principals={"allow": ["*"]}))
    result = run(h, incident_naming("stsynthlake09", aad_principal(RESPONDER_OID)))
    assert not [o for o in result["outcomes"] if o["target"] == RESPONDER_OID]
    assert any(s["what"] == RESPONDER_OID and "responder" in s["why"] for s in result["skipped"])


def test_the_shipped_policy_documents_the_principal_scope() -> None:
    text = (ROOT / "policy.yaml").read_text()
    policy = yaml.safe_load(text)
    assert policy["principals"] == {"allow": []}
    assert "principals:" in (ROOT / "README.md").read_text()
