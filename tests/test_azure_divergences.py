"""Where real Azure differs from what the code first assumed: the simulated tenant answers as Azure
does (sources in tests/data/azure/SOURCES.md), and containment still works end to end."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.harness import TENANT, account_id, sample
from tests.simulator_fixtures import example

EXPORT = "stsynthexport08"
SAS_ALERT_INCIDENT = "d4e5f6a7-b8c9-4d0e-9f1a-3b4c5d6e7f80"


def tenant_with(name: str, **changes: Any) -> dict[str, Any]:
    """samples/tenant.json with one account's seed changed."""
    tenant = copy.deepcopy(TENANT)
    seed = next(a for a in tenant["storageAccounts"] if a["id"].endswith("/" + name))
    seed.update(changes)
    return tenant


def account_write(name: str) -> dict[str, Any]:
    """Sample 02 (account public access switched on), about another account."""
    [event] = copy.deepcopy(sample("02-account-public-access-enabled.json"))
    old = event["subject"]
    new = account_id(name)
    event = json.loads(json.dumps(event).replace(old, new))
    event["id"] = f"7d2f3a4b-1c2d-4e3f-8a4b-{name[-2:]}c6d7e8f9a02"
    return event


def container_gets(h: Any) -> list[str]:
    return [
        r["path"].rsplit("/", 1)[-1]
        for r in h.sim.requests()
        if r["method"] == "GET" and "/blobServices/default/containers/" in r["path"]
    ]


# --- 1. the container list carries no metadata ----------------------------------------------------


def test_an_account_marked_only_by_container_metadata_is_contained(make_harness) -> None:
    tags = {"owner": "data-sharing@contoso.example"}  # no classification tag: only metadata marks it
    h = make_harness(tenant=tenant_with(EXPORT, tags=tags))
    event = account_write(EXPORT)
    h.eventgrid(event)
    row = h.incident(event["id"])
    assert row["Leak"] is True, row["Reasons"]
    assert any("container exports metadata data_classification=synthetic" in r for r in row["Reasons"])
    assert row["Status"] == "contained"
    assert {"exports", "staging"} <= set(container_gets(h))  # read from each container itself


def test_container_metadata_is_not_read_when_the_tags_decide(make_harness) -> None:
    h = make_harness(dry_run=True)
    [event] = sample("02-account-public-access-enabled.json")  # tagged synthetic: the tags decide
    h.eventgrid(event)
    row = h.incident(event["id"])
    assert row["Leak"] is True, (row["Reasons"], row["Findings"])
    assert container_gets(h) == []


def test_container_metadata_reads_are_bounded_and_say_what_was_not_read(make_harness, monkeypatch) -> None:
    from responders.actions import storage

    monkeypatch.setattr(storage, "MAX_METADATA_READS", 1)
    containers = [
        {"name": "a-plain", "publicAccess": "Blob", "metadata": {}},
        {"name": "b-marked", "publicAccess": "None", "metadata": {"data_classification": "synthetic"}},
    ]
    h = make_harness(dry_run=True, tenant=tenant_with(EXPORT, tags={}, containers=containers))
    event = account_write(EXPORT)
    h.eventgrid(event)
    row = h.incident(event["id"])
    assert container_gets(h) == ["a-plain"]
    assert any("metadata of 1 containers not read" in f for f in row["Findings"])


# --- 3. a workspace without StorageBlobLogs ---------------------------------------------------------


def test_alert_without_storage_logs_falls_back_to_the_policy_and_records_why(make_harness) -> None:
    tenant = copy.deepcopy(TENANT)
    tenant["logAnalytics"]["tables"].pop("StorageBlobLogs")
    h = make_harness(tenant=tenant)
    status, body, _ = h.http("alerts", sample("16-sentinel-alert-sas-reads.json"))
    assert status == 200, body
    [result] = body["results"]
    assert result["status"] == "contained", result
    kinds = sorted(o["kind"] for o in result["outcomes"])
    assert kinds.count("storage.regenerate_key") == 2  # evidence unknown: rotate, as the policy says
    assert "storage.revoke_user_delegation_keys" in kinds
    [why] = [f for f in result["verdict"]["findings"] if "storage logs could not be read" in f]
    assert "Failed to resolve table or column expression named 'StorageBlobLogs'" in why
    assert "fallback" in why


# --- 4. a stale Sentinel etag answers 409 -----------------------------------------------------------


def test_labels_survive_a_stale_etag_409(make_harness) -> None:
    h = make_harness()
    h.sim.play_recorded(
        "PUT",
        rf"/incidents/{SAS_ALERT_INCIDENT}$",
        409,
        example("sentinel_arm_409_stale_etag_issue909.json"),
        count=1,
    )
    status, body, _ = h.http("alerts", sample("16-sentinel-alert-sas-reads.json"))
    assert status == 200, body
    puts = [r for r in h.sim.requests() if r["method"] == "PUT" and r["path"].endswith(SAS_ALERT_INCIDENT)]
    assert [r["status"] for r in puts] == [409, 200]
    names = {label["labelName"] for label in h.sim.state.labels(SAS_ALERT_INCIDENT)}
    assert {"synthetic-data-leak", "contained-by-responder"} <= names


# --- 9. keyCreationTime null on older accounts -----------------------------------------------------


def test_an_old_account_without_key_times_records_null_not_the_string_none(make_harness) -> None:
    h = make_harness(tenant=tenant_with("stsynthclaims02", keyCreationTime=None))
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)
    row = h.incident(event["id"])
    before = row["StateBefore"][account_id("stsynthclaims02").lower()]["keyCreationTime"]
    assert before == {"key1": None, "key2": None}
    rotations = [a for a in row["actions"] if a["Kind"] == "storage.regenerate_key"]
    assert [a["Before"]["keyCreationTime"] for a in rotations] == [None, None]
    assert row["Status"] == "contained"


# --- 5. a CloudApplication's appId is a Defender for Cloud Apps int32 ------------------------------


def test_a_cloud_application_entity_maps_to_no_service_principal() -> None:
    from responders.core.parse import parse_item

    spec = example("securityinsights_entitytypes_excerpt_2024_09_01.json")
    assert spec["CloudApplicationEntityProperties"]["properties"]["appId"]["format"] == "int32"
    incident = copy.deepcopy(sample("06-sentinel-incident.json"))
    entities = incident["object"]["properties"]["relatedEntities"]
    app = next(e for e in entities if e["kind"] == "CloudApplication")
    assert isinstance(app["properties"]["appId"], int)
    for value in (20893, "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"):  # even a GUID-looking one is not Entra's
        app["properties"]["appId"] = value
        signal = parse_item(incident, now="2026-11-25T08:00:00Z")
        assert signal.apps == ()
        [note] = signal.notes
        assert "cannot be mapped to a service principal by an immutable id" in note
    # the Account entity's aadUserId is an Entra object id: that one is acted on
    assert signal.principals == ("6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e",)


def test_the_sentinel_incident_reports_the_unmappable_app_and_disables_by_object_id(make_harness) -> None:
    h = make_harness()
    status, body, _ = h.http("alerts", sample("06-sentinel-incident.json"))
    assert status == 200, body
    [result] = body["results"]
    assert any("cannot be mapped to a service principal" in f for f in result["verdict"]["findings"])
    graph = [r["path"] for r in h.sim.requests() if r["path"].startswith("/v1.0/")]
    assert not any("appId=" in p for p in graph), graph  # no lookup by the Defender id
    assert h.sim.state.service_principal("6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e")["accountEnabled"] is False


# --- 6. entities arrive after the incident ----------------------------------------------------------

LAKE_INCIDENT = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"


def fresh_incident_without_entities() -> dict[str, Any]:
    """Sample 06 as Sentinel first delivers it: created just now, no entities attached yet."""
    from datetime import UTC, datetime

    incident = copy.deepcopy(sample("06-sentinel-incident.json"))
    props = incident["object"]["properties"]
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    props["createdTimeUtc"] = props["firstActivityTimeUtc"] = props["lastActivityTimeUtc"] = stamp
    props["relatedEntities"] = []
    props["alerts"] = []
    return incident


def tenant_with_incident_entities(entities: list[dict[str, Any]]) -> dict[str, Any]:
    tenant = copy.deepcopy(TENANT)
    seeded = next(i for i in tenant["sentinel"]["incidents"] if i["name"] == LAKE_INCIDENT)
    seeded["entities"] = entities
    return tenant


def test_entities_attached_after_the_incident_are_read_from_it(make_harness) -> None:
    later = sample("06-sentinel-incident.json")["object"]["properties"]["relatedEntities"]
    h = make_harness(tenant=tenant_with_incident_entities(later))
    status, body, _ = h.http("alerts", fresh_incident_without_entities())
    assert status == 200, body
    [result] = body["results"]
    assert result["status"] == "contained"
    assert any("stsynthlake09: synthetic data" in r for r in result["verdict"]["reasons"])
    assert "identity.disable_service_principal" in {o["kind"] for o in result["outcomes"]}
    [read] = [r for r in h.sim.requests() if r["path"].endswith(f"/incidents/{LAKE_INCIDENT}/entities")]
    assert read["method"] == "POST"


def test_a_young_incident_naming_nothing_asks_for_a_redelivery(make_harness) -> None:
    h = make_harness(tenant=tenant_with_incident_entities([]))
    incident = fresh_incident_without_entities()
    status, body, response = h.http("alerts", incident)
    assert status == 503, body
    assert response.headers.get("Retry-After")
    assert "names no entities yet" in body["error"]
    assert h.writes() == []
    # the entities arrive; the redelivery contains
    with h.sim.state.locked() as state:
        state.incidents[LAKE_INCIDENT]["entities"] = sample("06-sentinel-incident.json")["object"][
            "properties"
        ]["relatedEntities"]
    status, body, _ = h.http("alerts", incident)
    assert status == 200, body
    assert body["results"][0]["status"] == "contained"


def test_an_old_incident_naming_nothing_is_concluded_without_redelivery(make_harness) -> None:
    h = make_harness(tenant=tenant_with_incident_entities([]))
    incident = fresh_incident_without_entities()
    incident["object"]["properties"]["firstActivityTimeUtc"] = "2026-11-25T07:40:37Z"
    status, body, _ = h.http("alerts", incident)
    assert status == 200, body
    assert body["results"][0]["status"] == "ignored"


# --- 7. Graph enforces ownership and principal types ------------------------------------------------

APP_SP = "3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d"  # etl-synth-exporter, which lists keys in sample 03


def owned_by_policy() -> dict[str, Any]:
    import yaml

    from tests.harness import SAMPLES

    policy = yaml.safe_load((SAMPLES / "policy.yaml").read_text())
    policy.setdefault("responder", {})["graph_permission"] = "Application.ReadWrite.OwnedBy"
    return policy


def tenant_with_principal(**changes: Any) -> dict[str, Any]:
    tenant = copy.deepcopy(TENANT)
    tenant["responderIdentity"]["graphPermission"] = "Application.ReadWrite.OwnedBy"
    seed = next(sp for sp in tenant["servicePrincipals"] if sp["id"] == APP_SP)
    seed.update(changes)
    return tenant


def graph_writes(h: Any) -> list[dict[str, Any]]:
    return [r for r in h.sim.requests() if r["method"] == "PATCH" and r["path"].startswith("/v1.0/")]


def test_owned_by_may_not_patch_a_service_principal_it_does_not_own(make_harness) -> None:
    from tests.simulator_fixtures import session

    h = make_harness(tenant=tenant_with_principal(owners=[]))
    http = session(h.sim, "https://graph.microsoft.com")
    denied = http.patch(f"{h.sim.url}/v1.0/servicePrincipals/{APP_SP}", json={"accountEnabled": False})
    assert denied.status_code == 403
    recorded = example("graph_403_authorization_request_denied_issue2331.json")
    assert denied.json()["error"]["code"] == recorded["error"]["code"]
    assert set(recorded["error"]["innerError"]) <= set(denied.json()["error"]["innerError"])


def test_a_service_principal_the_responder_does_not_own_is_skipped_with_the_reason(make_harness) -> None:
    h = make_harness(policy=owned_by_policy(), tenant=tenant_with_principal(owners=[]))
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)
    row = h.incident(event["id"])
    assert row["Status"] == "contained", row
    assert "identity.disable_service_principal" not in [a["Kind"] for a in row["actions"]]
    [why] = [y for w, y in row["Skipped"] if w == APP_SP]
    assert "not among its owners" in why
    assert graph_writes(h) == []  # said before any call, not learnt from a 403
    assert h.sim.state.service_principal(APP_SP)["accountEnabled"] is True


def test_an_owned_service_principal_is_disabled_under_owned_by(make_harness) -> None:
    from tests.harness import RESPONDER_OID

    h = make_harness(policy=owned_by_policy(), tenant=tenant_with_principal(owners=[RESPONDER_OID]))
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)
    assert h.sim.state.service_principal(APP_SP)["accountEnabled"] is False


def test_managed_identity_and_first_party_principals_are_never_planned(make_harness) -> None:
    h = make_harness(
        policy=owned_by_policy(), tenant=tenant_with_principal(servicePrincipalType="ManagedIdentity")
    )
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)
    [why] = [y for w, y in h.incident(event["id"])["Skipped"] if w == APP_SP]
    assert "managed identity's service principal cannot have owners" in why

    first_party = copy.deepcopy(TENANT)
    seed = next(sp for sp in first_party["servicePrincipals"] if sp["id"] == APP_SP)
    seed["appOwnerOrganizationId"] = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
    h = make_harness(tenant=first_party)
    h.eventgrid(event)
    [why] = [y for w, y in h.incident(event["id"])["Skipped"] if w == APP_SP]
    assert "Microsoft first-party service principal cannot be disabled" in why
    assert graph_writes(h) == []


# --- 11. data-plane requests raise no Resource Manager event: a log search alert covers them -------


def test_the_storage_log_alert_in_infra_is_the_query_the_sample_carries() -> None:
    import re

    from tests.harness import ROOT

    module = (ROOT / "infra" / "modules" / "storage-log-alert.bicep").read_text()
    [query] = re.findall(r"^var query = '(.+)'$", module, re.MULTILINE)
    alert = sample("17-monitor-log-search-udk-and-container-acl.json")
    [criterion] = alert["data"]["alertContext"]["condition"]["allOf"]
    assert criterion["searchQuery"] == query
    assert '"GetUserDelegationKey", "SetContainerACL"' in query
    main = (ROOT / "infra" / "main.bicep").read_text()
    assert "module storageLogAlert 'modules/storage-log-alert.bicep'" in main
    assert "useCommonAlertSchema: true" in module


def test_the_log_search_alert_revokes_user_delegation_keys_the_logs_show(make_harness) -> None:
    h = make_harness()
    status, body, _ = h.http("alerts", sample("17-monitor-log-search-udk-and-container-acl.json"))
    assert status == 200, body
    [result] = body["results"]
    # the logs show OAuth: the network step that cuts issued tokens waits for approval, the rest is done
    assert result["status"] == "pending-approval"
    outcomes = {o["kind"]: o["status"] for o in result["outcomes"]}
    assert outcomes["storage.revoke_user_delegation_keys"] == "contained"
    assert outcomes["storage.restrict_network"] == "pending-approval"
    assert "storage.regenerate_key" not in outcomes  # the logs show OAuth only: keys stay
    assert h.sim.state.udk_revocations("stsynthsas03")
