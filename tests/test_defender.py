"""Defender for Storage alerts as first-class input: each alert type family, as Defender delivers it (a
workflow-automation body, a Sentinel SecurityAlert row, an alert inside a Sentinel incident), replayed
through the registered functions against the simulated tenant. The alert's stated authentication type
chooses the access path, with no log query; a `.Sensitive` variant raises severity; hostile bodies get
400 with a reason and change nothing."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from responders.core import defender
from responders.core.model import SignalKind
from responders.core.parse import detect_schema, parse_item
from tests.harness import SAMPLES, account_id, sample

AZURE = Path(__file__).parent / "data" / "azure"
NOW = "2026-11-25T12:00:00Z"
SAS = "Shared access signature (SAS)"
DEVOPS_SP = "6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e"  # devops-synth-pipeline, in the sample policy's scope


def workflow(alert_type: str, account: str = "stsynthvault11", auth: str | None = SAS, **ext: str) -> dict:
    """Sample 19 (a workflow-automation body) with another alert type, account and authentication."""
    body = copy.deepcopy(sample("19-defender-exfiltration-sensitive-sas.workflow.json"))
    props = body["properties"]
    props["alertType"] = alert_type
    props["systemAlertId"] = body["name"] = f"alert-{alert_type}-{account}"
    props["resourceIdentifiers"][0]["azureResourceId"] = account_id(account)
    props["entities"][0]["resourceId"] = account_id(account)
    extended = {
        k: v for k, v in props["extendedProperties"].items() if k not in ("Authentication type", "Container")
    }
    if auth is not None:
        extended["Authentication type"] = auth
    props["extendedProperties"] = {**extended, **ext}
    return body


def kinds(result: dict) -> list[str]:
    return [a["kind"] for a in result["plan"]]


def queries(h) -> list[dict]:
    """The storage-log queries asked to learn which credentials were used (evidence.access_by_account);
    the evidence pack's own queries are not among them."""
    return [
        r
        for r in h.sim.requests()
        if r["path"].endswith("/query") and "AuthenticationType, OperationName" in json.dumps(r.get("body"))
    ]


def sample_policy(**changes: Any) -> dict:
    policy = yaml.safe_load((SAMPLES / "policy.yaml").read_text())
    policy.update(changes)
    return policy


FAMILIES = [
    # (alert type, account, stated authentication, container, the plan's action kinds)
    (
        "Storage.Blob_AnonymousAccessAnomaly",
        "stsynthcohort10",
        "Anonymous",
        "cohorts",
        ["storage.disable_public_access", "storage.make_container_private"],
    ),
    (
        "Storage.Blob_OpenACL",  # a container made public: anonymous whatever the change's credential
        "stsynthcohort10",
        None,
        "cohorts",
        ["storage.disable_public_access", "storage.make_container_private"],
    ),
    (
        "Storage.Blob_DataExfiltration.AmountOfDataAnomaly",
        "stsynthvault11",
        SAS,
        "scenarios",
        ["storage.regenerate_key", "storage.regenerate_key", "storage.revoke_user_delegation_keys"],
    ),
    (
        "Storage.Blob_DataExfiltration.NumberOfBlobsAnomaly.Sensitive",
        "stsynthvault11",
        SAS,
        "scenarios",
        ["storage.regenerate_key", "storage.regenerate_key", "storage.revoke_user_delegation_keys"],
    ),
    (
        "Storage.Blob_AccountSas.InternalSasUsedExternally",  # an account SAS: user-delegation keys kept
        "stsynthvault11",
        None,
        "",
        ["storage.regenerate_key", "storage.regenerate_key"],
    ),
    ("Storage.Blob_GeoAnomaly", "stsynthvault11", "Storage account key", "", ["storage.regenerate_key"] * 2),
    (
        "Storage.Blob_TorAnomaly",  # no authentication type: the policy's paths.unknown
        "stsynthvault11",
        None,
        "",
        ["storage.regenerate_key", "storage.regenerate_key", "storage.revoke_user_delegation_keys"],
    ),
]


@pytest.mark.parametrize(("alert_type", "account", "auth", "container", "expected"), FAMILIES)
def test_each_alert_family_takes_the_path_its_authentication_type_states(
    make_harness, alert_type: str, account: str, auth: str | None, container: str, expected: list[str]
) -> None:
    h = make_harness()
    before = h.sim.state.snapshot()["accounts"][account]
    extra = {"Container": container} if container else {}
    status, body, _ = h.http("alerts", workflow(alert_type, account, auth, **extra))
    assert status == 200, body
    [result] = body["results"]
    assert kinds(result) == expected
    assert result["status"] == "contained"
    assert queries(h) == [], "the alert states its authentication: no log query is waited for"
    after = h.sim.state.snapshot()["accounts"][account]
    if "storage.disable_public_access" in expected:
        assert after["properties"]["allowBlobPublicAccess"] is False
        assert after["containers"][container]["properties"]["publicAccess"] == "None"
        assert after["keys"] == before["keys"], "anonymous reads: keys kept"
    if "storage.regenerate_key" in expected:
        assert all(
            after["keys"][k]["creationTime"] > before["keys"][k]["creationTime"] for k in after["keys"]
        )
    assert bool(h.sim.state.udk_revocations(account)) == ("storage.revoke_user_delegation_keys" in expected)


def test_an_entra_token_names_the_principal_to_disable_and_keeps_the_keys(make_harness) -> None:
    h = make_harness()
    body = workflow("Storage.Blob_SuspiciousIp", "stsynthvault11", "OAuth")
    body["properties"]["entities"].append({"$id": "3", "aadUserId": DEVOPS_SP, "type": "account"})
    status, answer, _ = h.http("alerts", body)
    assert status == 200, answer
    [result] = answer["results"]
    # the network step cuts the tokens already issued, and waits for approval
    assert kinds(result) == ["storage.restrict_network", "identity.disable_service_principal"]
    assert [a["mode"] for a in result["plan"]] == ["approval", "auto"]
    assert result["plan"][1]["target"] == DEVOPS_SP
    assert result["status"] == "pending-approval"
    assert h.sim.state.snapshot()["servicePrincipals"][DEVOPS_SP]["accountEnabled"] is False
    assert any("keys not rotated: the alert states oauth access" in s["why"] for s in result["skipped"])


def test_a_display_name_in_the_alert_never_selects_a_principal(make_harness) -> None:
    h = make_harness(dry_run=True)
    body = workflow("Storage.Blob_SuspiciousIp", "stsynthvault11", "OAuth")
    body["properties"]["extendedProperties"]["Azure AD user"] = "devops-synth-pipeline"
    status, answer, _ = h.http("alerts", body)
    assert status == 200, answer
    assert "identity.disable_service_principal" not in kinds(answer["results"][0])


def test_the_sensitive_variant_raises_severity(make_harness) -> None:
    h = make_harness(dry_run=True)
    severities = {}
    for alert_type in (
        "Storage.Blob_DataExfiltration.AmountOfDataAnomaly",
        "Storage.Blob_DataExfiltration.AmountOfDataAnomaly.Sensitive",
    ):
        status, body, _ = h.http("alerts", workflow(alert_type))
        assert status == 200, body
        severities[alert_type] = body["results"][0]["verdict"]["severity"]
    assert list(severities.values()) == ["medium", "high"]


def test_the_policy_decides_an_unstated_path(make_harness) -> None:
    h = make_harness(dry_run=True, policy=sample_policy(paths={"unknown": []}))
    status, body, _ = h.http("alerts", workflow("Storage.Blob_TorAnomaly", auth=None))
    assert status == 200, body
    [result] = body["results"]
    assert kinds(result) == []
    assert any("keys not rotated: the alert states unknown access" in s["why"] for s in result["skipped"])


def test_shared_key_by_policy_instead_of_rotation_is_validated() -> None:
    from responders.core.model import BadInput
    from responders.core.policy import Policy

    with pytest.raises(BadInput, match="unknown access path 'tokens'"):
        Policy.from_dict({"paths": {"tokens": []}})
    with pytest.raises(BadInput, match=r"names unknown action 'storage\.nuke'"):
        Policy.from_dict({"paths": {"sas": ["storage.nuke"]}})
    with pytest.raises(BadInput, match="must be a list of action names"):
        Policy.from_dict({"paths": {"sas": "storage.regenerate_key"}})
    policy = Policy.from_dict({"paths": {"account-key": ["storage.revoke_user_delegation_keys"]}})
    assert policy.paths["account-key"] == ("storage.revoke_user_delegation_keys",)
    assert policy.paths["sas"] == ("storage.regenerate_key", "storage.revoke_user_delegation_keys")


def test_the_sentinel_security_alert_row_takes_the_same_path(make_harness) -> None:
    h = make_harness()
    status, body, _ = h.http("alerts", sample("18-defender-anonymous-access.sentinel-alert.json"))
    assert status == 200, body
    [result] = body["results"]
    assert kinds(result) == ["storage.disable_public_access", "storage.make_container_private"]
    assert result["status"] == "contained"
    assert queries(h) == []


def test_a_defender_alert_inside_a_sentinel_incident_states_its_path(make_harness) -> None:
    h = make_harness(dry_run=True)
    incident = copy.deepcopy(sample("06-sentinel-incident.json"))
    props = incident["object"]["properties"]
    props["relatedEntities"] = [
        {"kind": "AzureResource", "properties": {"resourceId": account_id("stsynthcohort10")}}
    ]
    props["alerts"] = [
        {
            "kind": "SecurityAlert",
            "properties": {
                "alertType": "Storage.Blob_AnonymousAccessAnomaly",
                "productName": "Azure Security Center",
                "additionalData": {"Authentication type": "Anonymous", "Container": "cohorts"},
            },
        }
    ]
    status, body, _ = h.http("alerts", incident)
    assert status == 200, body
    [result] = body["results"]
    assert kinds(result) == ["storage.disable_public_access", "storage.make_container_private"]
    assert queries(h) == []


def _set(body: dict, path: str, value: Any) -> dict:
    out = copy.deepcopy(body)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return out


DELETE = object()
EVIL = "https://evil.example/subscriptions/7d1f3c2a-5b9e-4c1d-9a8e-3f2b1c0d4e5a/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/stsynthvault11"


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("properties.alertType", DELETE, "missing required field 'properties.alertType'"),
        ("properties.extendedProperties", ["Anonymous"], "properties.extendedProperties must be an object"),
        (
            "properties.extendedProperties",
            "{not json",
            "properties.extendedProperties is a string but not JSON",
        ),
        ("properties.extendedProperties.Authentication type", 5, "'Authentication type' must be a string"),
        ("properties.extendedProperties.Container", "../$logs", "is not a blob container name"),
        ("properties.extendedProperties.User agent", "x" * 5000, "'User agent' is longer than 1024"),
        ("properties.resourceIdentifiers", "all", "resourceIdentifiers must be a list of objects"),
        ("properties.resourceIdentifiers.0.azureResourceId", EVIL, "is not a valid storage account ARM id"),
        ("properties.entities", {"type": "ip"}, "entities must be a list of objects"),
    ],
)
def test_a_hostile_workflow_body_is_refused_with_its_reason(
    make_harness, path: str, value: Any, reason: str
) -> None:
    h = make_harness()
    status, body, _ = h.http("alerts", _set(workflow("Storage.Blob_GeoAnomaly"), path, value))
    assert status == 400
    assert reason in body["error"]
    assert body["rejected"]
    assert h.writes() == []


def test_an_alert_naming_its_account_only_by_a_forged_id_is_refused(make_harness) -> None:
    h = make_harness()
    body = workflow("Storage.Blob_GeoAnomaly")
    body["properties"]["resourceIdentifiers"] = []
    body["properties"]["entities"][0]["resourceId"] = EVIL
    status, answer, _ = h.http("alerts", body)
    assert status == 400
    assert "names no storage account" in answer["error"]
    assert h.writes() == []


def test_a_closed_alert_is_recorded_not_acted_on(make_harness) -> None:
    h = make_harness()
    status, body, _ = h.http(
        "alerts", _set(workflow("Storage.Blob_GeoAnomaly"), "properties.status", "Dismissed")
    )
    assert status == 200, body
    assert body["results"][0]["status"] == "ignored"
    assert h.writes() == []


# The shapes of the vendored captures (tests/data/azure/SOURCES.md) ------------------------------------
def test_the_alerts_api_example_is_a_defender_alert_but_not_a_storage_one() -> None:
    alert = json.loads((AZURE / "defender_alert_get_subscription_location_example.json").read_text())
    body = alert["responses"]["200"]["body"]
    assert detect_schema(body) == "defender-alert"
    signal = parse_item(body, now=NOW)
    assert signal.kind is SignalKind.OTHER
    assert "VM_EICAR is not a Defender for Storage alert" in signal.notes[0]
    assert signal.ips == ("192.0.2.1",)


def test_the_continuous_export_capture_is_a_sample_alert_and_its_lower_case_properties_are_read() -> None:
    capture = json.loads((AZURE / "defender_storage_sample_alert_continuous_export_capture.json").read_text())
    signal = parse_item(capture, now=NOW)
    assert signal.kind is SignalKind.OTHER  # SIMULATED_: the resources are made up
    assert "Defender sample alert" in signal.notes[0]
    real = copy.deepcopy(capture)
    real["properties"]["alertName"] = "Storage.Blob_DataExfiltration.AmountOfDataAnomaly"
    real["properties"]["associatedResource"] = account_id("stsynthvault11").upper()
    signal = parse_item(real, now=NOW)
    assert signal.kind is SignalKind.ALERT
    assert signal.access == ("anonymous",)
    assert signal.accounts == (account_id("stsynthvault11").lower(),)
    assert signal.containers == ((account_id("stsynthvault11").lower(), "eicarteststoragecontainer"),)
    assert signal.occurred_at == "2022-03-28T18:26:07.7031757Z"


def test_the_graph_capture_extended_properties_state_a_sas() -> None:
    capture = json.loads((AZURE / "graph_security_alert_storage_geoanomaly_capture.json").read_text())
    extended = json.loads(json.loads(capture["CustomProperties"])[0])
    row = {
        "SystemAlertId": capture["id"],
        "AlertType": capture["category"],
        "AlertDisplayName": capture["title"],
        "ResourceId": capture["securityResources"][0]["resource"],
        "ExtendedProperties": json.dumps(extended),
        "Entities": json.dumps(
            [{"Address": capture["networkConnections"][0]["sourceAddress"], "Type": "ip"}]
        ),
    }
    signal = parse_item(row, now=NOW)
    assert signal.access == ("sas",)
    assert signal.operation == "storage.blob_geoanomaly"
    [(account, container)] = signal.containers
    assert account.endswith("/storageaccounts/scanwesteuropegivcebj")
    assert container == "temporary"
    assert signal.ips == ("52.214.204.49",)


def test_every_documented_alert_type_is_recognised() -> None:
    text = (AZURE / "defender_storage_alert_types_docs.md").read_text()
    types = sorted(set(re.findall(r"Storage\.(?:Blob|Files)_[A-Za-z.]+[A-Za-z]", text)))
    assert len(types) > 30
    for alert_type in types:
        assert defender.is_storage_alert(alert_type), alert_type
        assert defender.is_sensitive(alert_type) == alert_type.endswith(".Sensitive")
        unstated = defender.stated_access(alert_type, {})
        if "_AccountSas." in alert_type:
            assert unstated == ("accountsas",), alert_type
        elif re.search(r"_(AnonymousAccessAnomaly|OpenACL|OpenContainersScanning)", alert_type):
            assert unstated == ("anonymous",), alert_type
        else:
            assert unstated == ("unknown",), alert_type


def test_the_security_alert_schema_names_the_fields_read() -> None:
    text = (AZURE / "security_alert_schema_docs.md").read_text()
    for name in ("AlertType", "Entities", "ExtendedProperties", "ResourceId", "SystemAlertId"):
        assert f"|**{name}**|" in text


def test_an_alert_stating_no_authentication_type_waits_for_the_storage_logs(make_harness) -> None:
    h = make_harness(dry_run=True)
    status, body, _ = h.http("alerts", sample("16-sentinel-alert-sas-reads.json"))
    assert status == 200, body
    assert len(queries(h)) == 1
