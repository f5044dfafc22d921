"""The simulated tenant: Microsoft's published shapes, the real SDK clients against it, faults, records."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import requests

from rehearsal.simulator import Simulator
from rehearsal.simulator.kql import KqlError, run_query
from tests import simulator_fixtures
from tests.simulator_fixtures import (
    ARM_ACCOUNT,
    CLOSED_INCIDENT,
    INCIDENTS,
    LOG_WORKSPACE,
    OPEN_INCIDENT,
    RESPONDER,
    ROOT,
    SP_APP_ID,
    SP_ID,
    SUB,
    example,
    graph_client,
    make_tenant,
    session,
    token,
)

# the fixtures "sim" and "azure_env" (names from @pytest.fixture(name=...)), registered in this module
sim_fixture = simulator_fixtures.sim_fixture
azure_env_fixture = simulator_fixtures.azure_env_fixture
GRAPH_AUD, LOGS_AUD = "https://graph.microsoft.com", "https://api.loganalytics.io"
NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
TAGS = ("$.tags",)
API = "2025-06-01"  # served by both Microsoft.Storage and Microsoft.SecurityInsights


def assert_same_shape(expected: Any, actual: Any, where: str = "$", ignore: tuple[str, ...] = ()) -> None:
    """Every key of `expected` exists in `actual`, recursively; values and extra keys are ignored.

    For lists, the first element of a non-empty expected list of objects/lists describes the items."""
    if where in ignore:
        return
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {type(actual).__name__}"
        missing = sorted(set(expected) - set(actual))
        assert not missing, f"{where}: missing keys {missing}"
        for key, value in expected.items():
            assert_same_shape(value, actual[key], f"{where}.{key}", ignore)
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {type(actual).__name__}"
        if expected and isinstance(expected[0], dict | list):
            assert actual, f"{where}: expected items, got an empty list"
            for item in actual:
                assert_same_shape(expected[0], item, f"{where}[]", ignore)


def response_of(name: str, status: str = "200") -> Any:
    return example(name)["responses"][status].get("body")


# --- shapes: Microsoft's published examples --------------------------------------------------------


def test_account_get_has_published_shape(sim: Simulator) -> None:
    http = session(sim)
    reply = http.get(
        f"{sim.url}{ARM_ACCOUNT}/stgeo04",
        params={"api-version": "2023-05-01", "$expand": "geoReplicationStats"},
    )
    assert reply.status_code == 200
    # tags are user data: the example's tag names are not part of the shape
    assert_same_shape(
        response_of("arm_storage_account_get_properties_example.json"), reply.json(), ignore=TAGS
    )


def test_account_get_leaves_allow_blob_public_access_absent_unless_set(sim: Simulator) -> None:
    http = session(sim)
    absent = http.get(f"{sim.url}{ARM_ACCOUNT}/stdefault03", params={"api-version": "2023-05-01"}).json()
    assert "allowBlobPublicAccess" not in absent["properties"]
    assert absent["properties"]["keyCreationTime"] == {
        "key1": "2026-02-01T09:00:00Z",
        "key2": "2026-02-01T09:00:00Z",
    }
    locked = http.get(f"{sim.url}{ARM_ACCOUNT}/stlocked02", params={"api-version": API}).json()
    assert locked["properties"]["allowBlobPublicAccess"] is False


def test_account_patch_has_published_shape_and_merges(sim: Simulator) -> None:
    name = "arm_storage_account_update_disable_public_network_access_example.json"
    body = example(name)["parameters"]["parameters"]
    reply = session(sim).patch(
        f"{sim.url}{ARM_ACCOUNT}/stgeo04", params={"api-version": "2023-05-01"}, json=body
    )
    assert reply.status_code == 200
    assert_same_shape(response_of(name), reply.json(), ignore=TAGS)
    stored = sim.state.account("stgeo04")
    assert stored["properties"]["allowBlobPublicAccess"] is False
    assert stored["properties"]["publicNetworkAccess"] == "Disabled"


def test_list_keys_and_regenerate_key_have_published_shape(sim: Simulator) -> None:
    http = session(sim)
    url = f"{sim.url}{ARM_ACCOUNT}/stleaky01"
    listed = http.post(f"{url}/listKeys", params={"api-version": "2023-05-01"})
    assert listed.status_code == 200
    assert_same_shape(response_of("arm_storage_list_keys_example.json"), listed.json())
    body = example("arm_storage_regenerate_key_example.json")["parameters"]["regenerateKey"]
    regenerated = http.post(f"{url}/regenerateKey", params={"api-version": "2023-05-01"}, json=body)
    assert regenerated.status_code == 200
    assert_same_shape(response_of("arm_storage_regenerate_key_example.json"), regenerated.json())
    keys = {k["keyName"]: k["value"] for k in regenerated.json()["keys"]}
    before = {k["keyName"]: k["value"] for k in listed.json()["keys"]}
    assert keys["key1"] == before["key1"]
    assert keys["key2"] != before["key2"]
    assert keys["key2"] in sim.secrets()
    assert (
        http.post(f"{url}/regenerateKey", params={"api-version": API}, json={"keyName": "key3"}).status_code
        == 400
    )


def test_revoke_user_delegation_keys_answers_200_empty(sim: Simulator) -> None:
    reply = session(sim).post(
        f"{sim.url}{ARM_ACCOUNT}/stleaky01/revokeUserDelegationKeys", params={"api-version": "2023-05-01"}
    )
    assert reply.status_code == 200
    assert reply.content == b""
    assert example("arm_storage_revoke_user_delegation_keys_example.json")["responses"]["200"] == {}
    assert len(sim.state.udk_revocations("stleaky01")) == 1


def test_container_patch_has_published_shape(sim: Simulator) -> None:
    name = "arm_blob_container_patch_public_access_example.json"
    body = example(name)["parameters"]["blobContainer"]
    url = f"{sim.url}{ARM_ACCOUNT}/stgeo04/blobServices/default/containers/container6185"
    reply = session(sim).patch(url, params={"api-version": "2023-05-01"}, json=body)
    assert reply.status_code == 200
    assert_same_shape(response_of(name), reply.json())
    assert sim.state.container("stgeo04", "container6185")["properties"]["publicAccess"] == "Container"


def test_sentinel_incident_get_and_put_have_published_shape(sim: Simulator) -> None:
    http = session(sim)
    url = f"{sim.url}{INCIDENTS}/{CLOSED_INCIDENT}"
    got = http.get(url, params={"api-version": "2024-09-01"})
    assert got.status_code == 200
    assert_same_shape(response_of("sentinel_arm_get_incident_by_id_example.json"), got.json())
    body = example("sentinel_arm_create_or_update_incident_example.json")["parameters"]["incident"]
    stale = http.put(url, params={"api-version": "2024-09-01"}, json=body)
    # a stale etag is 409 Conflict with Sentinel's own words (Azure/Azure-Sentinel#909), not 412
    assert stale.status_code == 409
    assert_same_shape(example("sentinel_arm_409_stale_etag_issue909.json"), stale.json())
    assert "Data was not saved" in stale.json()["error"]["message"]
    put = http.put(url, params={"api-version": "2024-09-01"}, json={**body, "etag": got.json()["etag"]})
    assert put.status_code == 200
    assert_same_shape(response_of("sentinel_arm_create_or_update_incident_example.json"), put.json())
    assert put.json()["etag"] != got.json()["etag"]


def test_sentinel_comment_put_is_created_then_idempotent(sim: Simulator) -> None:
    name = "sentinel_arm_create_incident_comment_example.json"
    body = example(name)["parameters"]["incidentComment"]
    http = session(sim)
    url = f"{sim.url}{INCIDENTS}/{OPEN_INCIDENT}/comments/responder-1"
    first = http.put(url, params={"api-version": "2024-09-01"}, json=body)
    assert first.status_code == 201
    assert_same_shape(response_of(name, "201"), first.json())
    again = http.put(url, params={"api-version": "2024-09-01"}, json=body)
    assert again.status_code == 200
    assert_same_shape(response_of(name, "200"), again.json())
    listed = http.get(f"{sim.url}{INCIDENTS}/{OPEN_INCIDENT}/comments", params={"api-version": API}).json()
    assert [c["name"] for c in listed["value"]] == ["responder-1"]
    assert first.json()["properties"]["author"]["objectId"] == RESPONDER["principalId"]


def test_sentinel_alerts_and_entities_have_published_shape(sim: Simulator) -> None:
    http = session(sim)
    alerts = http.post(f"{sim.url}{INCIDENTS}/{OPEN_INCIDENT}/alerts", params={"api-version": "2024-09-01"})
    entities = http.post(
        f"{sim.url}{INCIDENTS}/{OPEN_INCIDENT}/entities", params={"api-version": "2024-09-01"}
    )
    assert (alerts.status_code, entities.status_code) == (200, 200)
    assert_same_shape(response_of("sentinel_arm_list_incident_alerts_example.json"), alerts.json())
    assert_same_shape(response_of("sentinel_arm_list_incident_entities_example.json"), entities.json())
    empty = http.post(f"{sim.url}{INCIDENTS}/{CLOSED_INCIDENT}/alerts", params={"api-version": API})
    assert empty.json() == {"value": []}


def test_graph_service_principal_get_and_patch_have_published_shape(sim: Simulator) -> None:
    http = session(sim, GRAPH_AUD)
    got = http.get(f"{sim.url}/v1.0/servicePrincipals/{SP_ID}")
    assert got.status_code == 200
    assert_same_shape(example("graph_serviceprincipal_get_response_docs.json"), got.json())
    assert got.json()["@odata.context"].endswith("#servicePrincipals/$entity")
    patched = http.patch(
        f"{sim.url}/v1.0/servicePrincipals(appId='{SP_APP_ID}')",
        json=example("graph_serviceprincipal_patch_request_docs.json"),
    )
    assert (patched.status_code, patched.content) == (204, b"")
    assert sim.state.service_principal(SP_ID)["appRoleAssignmentRequired"] is True
    missing = http.get(f"{sim.url}/v1.0/servicePrincipals/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "Request_ResourceNotFound"
    selected = http.get(f"{sim.url}/v1.0/servicePrincipals/{SP_ID}", params={"$select": "id,accountEnabled"})
    assert set(selected.json()) == {"@odata.context", "id", "accountEnabled"}


def test_log_analytics_query_has_published_shape(sim: Simulator) -> None:
    http = session(sim, LOGS_AUD)
    reply = http.post(
        f"{sim.url}/v1/workspaces/{LOG_WORKSPACE}/query",
        json={"query": "StorageBlobLogs | take 10", "timespan": "2026-11-25T00:00:00Z/P1D"},
    )
    assert reply.status_code == 200
    assert_same_shape(response_of("log_analytics_query_post_response_example.json"), reply.json())
    types = {c["name"]: c["type"] for c in reply.json()["tables"][0]["columns"]}
    assert types == {
        "TimeGenerated": "datetime",
        "AccountName": "string",
        "OperationName": "string",
        "AuthenticationType": "string",
        "CallerIpAddress": "string",
        "Uri": "string",
        "StatusCode": "long",
        "ResponseBodySize": "long",
        "DurationMs": "real",
        "IsSas": "bool",
    }
    bad = http.post(
        f"{sim.url}/v1/workspaces/{LOG_WORKSPACE}/query", json={"query": "StorageBlobLogs | join X"}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "BadArgumentError"


def test_graph_429_has_published_body_and_retry_after(sim: Simulator) -> None:
    sim.set_faults([{"method": "GET", "path": "servicePrincipals", "status": 429, "retry_after": 10}])
    reply = session(sim, GRAPH_AUD).get(f"{sim.url}/v1.0/servicePrincipals/{SP_ID}")
    assert reply.status_code == 429
    assert reply.headers["Retry-After"] == "10"
    assert_same_shape(example("graph_429_throttled_response_body_docs.json"), reply.json())


def test_events_have_published_event_grid_shape(sim: Simulator) -> None:
    http = session(sim)
    http.post(f"{sim.url}{ARM_ACCOUNT}/stleaky01/listKeys", params={"api-version": API})
    http.patch(
        f"{sim.url}{ARM_ACCOUNT}/stleaky01",
        params={"api-version": API},
        json={"properties": {"allowBlobPublicAccess": False}},
    )
    action, write = sim.events()
    assert_same_shape(
        example("eventgrid_resource_action_success_listkeys_eventhub_eventgridschema_docs.json")[0], action
    )
    # the published write sample was made by a user: its user-only claims do not apply to an app
    assert_same_shape(
        example("eventgrid_resource_write_success_storage_account_eventgridschema_docs.json")[0],
        write,
        ignore=("$.data.claims",),
    )
    assert action["data"]["operationName"] == "Microsoft.Storage/storageAccounts/listKeys/action"
    assert write["eventType"] == "Microsoft.Resources.ResourceWriteSuccess"
    assert write["subject"] == write["data"]["resourceUri"] == f"{ARM_ACCOUNT}/stleaky01"
    claims = write["data"]["claims"]
    assert claims["http://schemas.microsoft.com/identity/claims/objectidentifier"] == RESPONDER["principalId"]
    assert claims["appid"] == RESPONDER["clientId"]
    assert write["data"]["authorization"]["evidence"]["principalType"] == "ServicePrincipal"
    assert write["topic"] == f"/subscriptions/{SUB}"
    assert action["id"] != write["id"]


# --- the real SDK clients ----------------------------------------------------------------------------


def test_storage_sdk_flow_with_default_credential(azure_env: Simulator) -> None:
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.storage import StorageManagementClient
    from azure.mgmt.storage.models import (
        BlobContainer,
        StorageAccountRegenerateKeyParameters,
        StorageAccountUpdateParameters,
    )

    sim = azure_env
    client = StorageManagementClient(DefaultAzureCredential(), SUB, base_url=sim.url)
    before = client.storage_accounts.get_properties("rg-test", "stleaky01")
    assert before.allow_blob_public_access is True
    assert client.storage_accounts.get_properties("rg-test", "stdefault03").allow_blob_public_access is None
    after = client.storage_accounts.update(
        "rg-test", "stleaky01", StorageAccountUpdateParameters(allow_blob_public_access=False)
    )
    assert after.allow_blob_public_access is False
    old_key = sim.state.keys("stleaky01")["key1"]
    keys = client.storage_accounts.regenerate_key(
        "rg-test", "stleaky01", StorageAccountRegenerateKeyParameters(key_name="key1")
    )
    new_key = next(k.value for k in keys.keys_property if k.key_name == "key1")
    assert new_key != old_key
    assert new_key == sim.state.keys("stleaky01")["key1"]
    assert new_key in sim.secrets()
    times = client.storage_accounts.get_properties("rg-test", "stleaky01").key_creation_time
    assert times.key1 > before.key_creation_time.key1
    client.storage_accounts.revoke_user_delegation_keys("rg-test", "stleaky01")
    assert len(sim.state.udk_revocations("stleaky01")) == 1
    listed = {c.name: c.public_access for c in client.blob_containers.list("rg-test", "stleaky01")}
    assert listed == {"data-synth": "Container", "docs": "Blob"}
    updated = client.blob_containers.update(
        "rg-test", "stleaky01", "data-synth", BlobContainer(public_access="None")
    )
    assert updated.public_access == "None"
    assert sim.state.container("stleaky01", "data-synth")["properties"]["publicAccess"] == "None"
    operations = [e["data"]["operationName"] for e in sim.events()]
    assert operations == [
        "Microsoft.Storage/storageAccounts/write",
        "Microsoft.Storage/storageAccounts/regenerateKey/action",
        "Microsoft.Storage/storageAccounts/revokeUserDelegationKeys/action",
        "Microsoft.Storage/storageAccounts/blobServices/containers/write",
    ]
    recorded = json.dumps(sim.requests())
    assert not [s for s in sim.secrets() if s in recorded]


def test_storage_sdk_errors_carry_arm_codes(azure_env: Simulator) -> None:
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.storage import StorageManagementClient
    from azure.mgmt.storage.models import BlobContainer

    client = StorageManagementClient(DefaultAzureCredential(), SUB, base_url=azure_env.url)
    with pytest.raises(ResourceNotFoundError) as missing:
        client.storage_accounts.get_properties("rg-test", "nosuchaccount")
    assert missing.value.error.code == "ResourceNotFound"
    with pytest.raises(HttpResponseError) as refused:
        client.blob_containers.update(
            "rg-test", "stlocked02", "private", BlobContainer(public_access="Container")
        )
    assert refused.value.status_code == 409
    assert refused.value.error.code == "PublicAccessNotPermitted"


def test_graph_sdk_gets_and_disables_service_principal(azure_env: Simulator) -> None:
    from azure.identity import DefaultAzureCredential
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph.generated.models.service_principal import ServicePrincipal

    sim = azure_env
    credential = DefaultAzureCredential()

    async def scenario() -> tuple[Any, Any]:
        graph = graph_client(sim.url + "/v1.0", sim.ca_path, credential)
        found = await graph.service_principals.by_service_principal_id(SP_ID).get()
        await graph.service_principals.by_service_principal_id(SP_ID).patch(
            ServicePrincipal(account_enabled=False)
        )
        by_app = await graph.service_principals_with_app_id(SP_APP_ID).get()
        with pytest.raises(ODataError) as missing:
            await graph.service_principals.by_service_principal_id("does-not-exist").get()
        assert missing.value.response_status_code == 404
        return found, by_app

    found, by_app = asyncio.run(scenario())
    assert (found.display_name, found.account_enabled) == ("etl-synth-exporter", True)
    assert by_app.account_enabled is False
    assert sim.state.service_principal(SP_ID)["accountEnabled"] is False
    patch = next(r for r in sim.requests() if r["method"] == "PATCH")
    assert patch["body"] == {"@odata.type": "#microsoft.graph.servicePrincipal", "accountEnabled": False}
    assert patch["status"] == 204


def test_logs_sdk_query_with_where_and_timespan(azure_env: Simulator) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.identity import DefaultAzureCredential
    from azure.monitor.query import LogsQueryClient, LogsQueryStatus

    client = LogsQueryClient(DefaultAzureCredential(), endpoint=azure_env.url + "/v1", audience=LOGS_AUD)
    query = (
        'StorageBlobLogs | where AccountName == "stleaky01" and AuthenticationType in ("SAS", "Anonymous")'
        " | project TimeGenerated, CallerIpAddress, ResponseBodySize | order by TimeGenerated asc"
    )
    window = (datetime(2026, 11, 25, 7, 0, tzinfo=UTC), datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
    result = client.query_workspace(LOG_WORKSPACE, query, timespan=window)
    assert result.status == LogsQueryStatus.SUCCESS
    table = result.tables[0]
    assert table.columns == ["TimeGenerated", "CallerIpAddress", "ResponseBodySize"]
    assert [row["CallerIpAddress"] for row in table.rows] == [
        "198.51.100.23:40112",
        "198.51.100.23:40118",
        "203.0.113.45:51234",
    ]
    assert table.rows[0]["TimeGenerated"] == datetime(2026, 11, 25, 7, 40, 37, tzinfo=UTC)
    wider = client.query_workspace(LOG_WORKSPACE, query, timespan=(window[0] - timedelta(days=1), window[1]))
    assert len(wider.tables[0].rows) == 4
    with pytest.raises(HttpResponseError) as bad:
        client.query_workspace(LOG_WORKSPACE, "StorageBlobLogs | extend X = 1", timespan=None)
    assert bad.value.status_code == 400


def test_managed_identity_endpoint_checks_the_identity_header(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ManagedIdentityCredential

    for name, value in sim.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AZURE_TOKEN_CREDENTIALS")
    assert (
        ManagedIdentityCredential().get_token("https://management.azure.com/.default").token in sim.secrets()
    )
    monkeypatch.setenv("IDENTITY_HEADER", "wrong")
    with pytest.raises(ClientAuthenticationError):
        ManagedIdentityCredential().get_token("https://management.azure.com/.default")


def test_bearer_token_is_required_and_audience_checked(sim: Simulator) -> None:
    url = f"{sim.url}{ARM_ACCOUNT}/stleaky01"
    anonymous = requests.get(url, params={"api-version": API}, verify=str(sim.ca_path), timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "AuthenticationFailed"
    wrong_audience = session(sim, GRAPH_AUD).get(url, params={"api-version": API})
    assert wrong_audience.status_code == 401
    assert wrong_audience.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"


# --- faults --------------------------------------------------------------------------------------------


def test_sdk_retries_429_with_retry_after_and_succeeds(azure_env: Simulator) -> None:
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.storage import StorageManagementClient

    sim = azure_env
    sim.set_faults([{"method": "GET", "path": "stleaky01$", "status": 429, "retry_after": 0.1, "count": 2}])
    client = StorageManagementClient(DefaultAzureCredential(), SUB, base_url=sim.url)
    assert client.storage_accounts.get_properties("rg-test", "stleaky01").name == "stleaky01"
    statuses = [r["status"] for r in sim.requests() if r["path"].endswith("stleaky01")]
    assert statuses == [429, 429, 200]


def test_dropped_connection_gets_no_response_and_is_recorded(sim: Simulator) -> None:
    sim.set_faults([{"method": "*", "path": "/listKeys", "drop": True}])
    with pytest.raises(requests.ConnectionError):
        session(sim).post(f"{sim.url}{ARM_ACCOUNT}/stleaky01/listKeys", params={"api-version": API})
    assert sim.requests()[-1]["status"] == "dropped"
    assert sim.events() == []


def test_fault_rate_is_deterministic_for_a_seed(sim: Simulator) -> None:
    http = session(sim)
    url = f"{sim.url}{ARM_ACCOUNT}/stleaky01"

    def run() -> list[int]:
        sim.set_faults([{"method": "GET", "path": "stleaky01", "status": 503, "rate": 0.5}], seed=7)
        return [http.get(url, params={"api-version": API}).status_code for _ in range(16)]

    first, second = run(), run()
    assert first == second
    assert set(first) == {200, 503}


def test_faulted_write_leaves_state_unchanged(sim: Simulator) -> None:
    sim.set_faults([{"method": "PATCH", "path": "containers/data-synth", "status": 500, "count": 1}])
    url = f"{sim.url}{ARM_ACCOUNT}/stleaky01/blobServices/default/containers/data-synth"
    http = session(sim)
    failed = http.patch(url, params={"api-version": API}, json={"properties": {"publicAccess": "None"}})
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "InternalServerError"
    assert sim.state.container("stleaky01", "data-synth")["properties"]["publicAccess"] == "Container"
    assert sim.events() == []
    assert (
        http.patch(
            url, params={"api-version": API}, json={"properties": {"publicAccess": "None"}}
        ).status_code
        == 200
    )


def test_after_fault_applies_the_change_then_fails(sim: Simulator) -> None:
    sim.set_faults([{"method": "POST", "path": "regenerateKey", "status": 503, "after": True, "count": 1}])
    old = sim.state.keys("stleaky01")["key2"]
    reply = session(sim).post(
        f"{sim.url}{ARM_ACCOUNT}/stleaky01/regenerateKey",
        params={"api-version": API},
        json={"keyName": "key2"},
    )
    assert reply.status_code == 503
    assert sim.state.keys("stleaky01")["key2"] != old
    assert [e["data"]["operationName"] for e in sim.events()] == [
        "Microsoft.Storage/storageAccounts/regenerateKey/action"
    ]
    sim.set_faults([{"method": "POST", "path": "regenerateKey", "drop": True, "after": True}])
    with pytest.raises(requests.ConnectionError):
        session(sim).post(
            f"{sim.url}{ARM_ACCOUNT}/stleaky01/regenerateKey",
            params={"api-version": API},
            json={"keyName": "key1"},
        )
    assert len(sim.events()) == 2


def test_latency_applies_before_handling(sim: Simulator) -> None:
    http = session(sim)
    sim.set_faults([{"method": "GET", "path": "stleaky01", "latency_ms": 150}])
    started = time.monotonic()
    assert http.get(f"{sim.url}{ARM_ACCOUNT}/stleaky01", params={"api-version": API}).status_code == 200
    assert time.monotonic() - started >= 0.15


def test_bad_fault_rules_are_refused(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="unknown fault rule fields"):
        sim.set_faults([{"path": "x", "stauts": 500}])
    with pytest.raises(ValueError, match="rate"):
        sim.set_faults([{"path": "x", "status": 500, "rate": 2}])


# --- records, secrets, robustness ----------------------------------------------------------------------


def test_requests_are_recorded_on_loopback_without_secrets(sim: Simulator) -> None:
    http = session(sim)
    http.patch(
        f"{sim.url}{ARM_ACCOUNT}/stleaky01",
        params={"api-version": "2023-05-01"},
        json={"properties": {"allowBlobPublicAccess": False}},
    )
    http.post(f"{sim.url}{ARM_ACCOUNT}/stleaky01/listKeys", params={"api-version": "2023-05-01"})
    token_request, patch, list_keys = sim.requests()
    assert token_request["path"] == "/msi/token"
    assert patch == {
        **patch,
        "method": "PATCH",
        "path": f"{ARM_ACCOUNT}/stleaky01",
        "status": 200,
        "query": {"api-version": "2023-05-01"},
        "host": f"127.0.0.1:{sim.port}",
        "body": {"properties": {"allowBlobPublicAccess": False}},
        "caller": RESPONDER["principalId"],
    }
    assert {r["client"] for r in sim.requests()} == {"127.0.0.1"}
    assert isinstance(list_keys["time"], float)
    recorded = json.dumps(sim.requests())
    assert sim.state.keys("stleaky01")["key1"] in sim.secrets()
    assert not [s for s in sim.secrets() if s in recorded]
    sim.clear_requests()
    assert sim.requests() == []


def test_paths_are_case_insensitive_and_double_slashes_collapse(sim: Simulator) -> None:
    http = session(sim)
    shouted = ARM_ACCOUNT.upper().replace("/PROVIDERS/", "//providers//") + "/STLEAKY01"
    assert http.get(f"{sim.url}{shouted}", params={"api-version": API}).json()["name"] == "stleaky01"
    graph = session(sim, GRAPH_AUD)
    assert graph.get(f"{sim.url}/v1.0//servicePrincipals/{SP_ID}").status_code == 200


def test_bad_json_and_unknown_routes_get_error_bodies(sim: Simulator) -> None:
    http = session(sim)
    bad = http.patch(
        f"{sim.url}{ARM_ACCOUNT}/stleaky01",
        params={"api-version": API},
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    assert "error" in bad.json()
    assert http.get(f"{sim.url}/nowhere").status_code == 404
    assert http.delete(f"{sim.url}{ARM_ACCOUNT}/stleaky01").status_code == 405
    assert http.patch(f"{sim.url}{ARM_ACCOUNT}/stleaky01", json=[1]).status_code == 400


def test_keep_alive_and_concurrency(sim: Simulator) -> None:
    bearer = token(sim)
    context = ssl.create_default_context(cafile=str(sim.ca_path))
    with httpx.Client(verify=context, headers={"Authorization": f"Bearer {bearer}"}) as client:
        for _ in range(3):
            reply = client.get(f"{sim.url}{ARM_ACCOUNT}/stleaky01", params={"api-version": API})
            assert reply.status_code == 200
        assert client.patch(f"{sim.url}/v1.0/servicePrincipals/{SP_ID}", json={}).status_code == 401
    ports = {r["client_port"] for r in sim.requests()[1:]}
    assert len(ports) == 1
    http = session(sim)
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(
            pool.map(
                lambda _: http.get(f"{sim.url}{ARM_ACCOUNT}/stleaky01", params={"api-version": API}),
                range(48),
            )
        )
    assert [s.status_code for s in statuses] == [200] * 48


def test_admin_routes_for_out_of_process_use(sim: Simulator) -> None:
    http = session(sim)
    http.post(f"{sim.url}{ARM_ACCOUNT}/stleaky01/listKeys", params={"api-version": API})
    admin = requests.Session()
    admin.trust_env = False
    admin.verify = str(sim.ca_path)
    state = admin.get(f"{sim.url}/_sim/state").json()
    assert state["accounts"]["stleaky01"]["keys"]["key1"]["value"] == "<redacted>"
    assert not [s for s in sim.secrets() if s in json.dumps(state)]
    assert len(admin.get(f"{sim.url}/_sim/events").json()) == 1
    assert admin.get(f"{sim.url}/_sim/secrets").status_code == 404
    assert (
        admin.post(
            f"{sim.url}/_sim/faults", json={"rules": [{"path": "stleaky01", "status": 503}], "seed": 1}
        ).status_code
        == 204
    )
    assert http.get(f"{sim.url}{ARM_ACCOUNT}/stleaky01", params={"api-version": API}).status_code == 503
    assert admin.post(f"{sim.url}/_sim/faults", json={"rules": [{"bogus": 1}]}).status_code == 400
    recorded = admin.get(f"{sim.url}/_sim/requests").json()
    assert [r["path"].rsplit("/", 1)[-1] for r in recorded] == ["token", "listKeys", "stleaky01"]
    assert admin.delete(f"{sim.url}/_sim/requests").status_code == 204
    assert sim.requests() == []


def test_other_callers_appear_in_event_claims(sim: Simulator) -> None:
    attacker = sim.issue_token("aaaaaaaa-0000-4000-8000-000000000001", SP_APP_ID)
    requests.post(
        f"{sim.url}{ARM_ACCOUNT}/stleaky01/listKeys",
        params={"api-version": API},
        headers={"Authorization": f"Bearer {attacker}"},
        verify=str(sim.ca_path),
        timeout=10,
    ).raise_for_status()
    claims = sim.events()[0]["data"]["claims"]
    assert claims["appid"] == SP_APP_ID
    assert claims["http://schemas.microsoft.com/identity/claims/objectidentifier"].startswith("aaaaaaaa")


def test_sample_tenant_seeds_every_account(tmp_path: Any) -> None:
    tenant = json.loads((ROOT / "samples" / "tenant.json").read_text(encoding="utf-8"))
    with Simulator(tenant, cert_dir=tmp_path) as sim:
        http = session(sim)
        for account in tenant["storageAccounts"]:
            reply = http.get(f"{sim.url}{account['id']}", params={"api-version": API})
            assert reply.status_code == 200
            assert reply.json()["tags"] == account.get("tags", {})
    assert (tmp_path / "ca.pem").is_file()


def test_cli_prints_url_and_serves_until_sigterm(tmp_path: Any) -> None:
    tenant_file = tmp_path / "tenant.json"
    tenant_file.write_text(json.dumps(make_tenant()), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rehearsal.simulator",
            "--tenant",
            str(tenant_file),
            "--port",
            "0",
            "--cert-dir",
            str(tmp_path / "certs"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        line = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        assert line["url"].startswith("https://127.0.0.1:")
        state = requests.get(f"{line['url']}/_sim/state", verify=line["ca"], timeout=10)
        assert "stleaky01" in state.json()["accounts"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


# --- the KQL subset ------------------------------------------------------------------------------------


ROWS = make_tenant()["logAnalytics"]["tables"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('StorageBlobLogs | where AccountName == "stleaky01" | count', 4),
        ('StorageBlobLogs | where AccountName =~ "STLEAKY01" | count', 4),
        ('StorageBlobLogs | where AccountName != "stleaky01" | count', 1),
        ('StorageBlobLogs | where Uri has "file" | count', 5),
        ('StorageBlobLogs | where CallerIpAddress contains "51.100" | count', 3),
        ('StorageBlobLogs | where AuthenticationType in ("SAS", "OAuth") and StatusCode == 200 | count', 3),
        (
            "StorageBlobLogs | where TimeGenerated between "
            "(datetime(2026-11-25T07:00:00Z) .. datetime(2026-11-25T07:45:00Z)) | count",
            3,
        ),
        ("StorageBlobLogs | where ResponseBodySize > 1000000 or StatusCode >= 400 | count", 4),
        ("StorageBlobLogs | where IsSas == true | take 2 | count", 2),
        ("StorageBlobLogs | where TimeGenerated > ago(1h) | count", 4),
    ],
)
def test_kql_filters(query: str, expected: int) -> None:
    assert run_query(ROWS, query, None, None, NOW).rows == [{"Count": expected}]


def test_kql_project_order_limit_and_summarize() -> None:
    table = run_query(
        ROWS,
        "StorageBlobLogs | order by ResponseBodySize desc | limit 2 | project AccountName, ResponseBodySize",
        None,
        None,
        NOW,
    )
    assert table.columns == [("AccountName", "string"), ("ResponseBodySize", "long")]
    assert [r["ResponseBodySize"] for r in table.rows] == [104857600, 98566144]
    summary = run_query(
        ROWS, "StorageBlobLogs | summarize Reads = count() by AccountName | order by Reads", None, None, NOW
    )
    assert summary.rows == [
        {"AccountName": "stleaky01", "Reads": 4},
        {"AccountName": "stdefault03", "Reads": 1},
    ]
    window = run_query(ROWS, "StorageBlobLogs", NOW - timedelta(minutes=20), NOW, NOW)
    assert len(window.rows) == 3


@pytest.mark.parametrize(
    "query",
    [
        "NoSuchTable | take 1",
        "StorageBlobLogs | extend X = 1",
        "StorageBlobLogs | where Missing == 1",
        "StorageBlobLogs | project Missing",
        'StorageBlobLogs | where AccountName == "x" junk',
        "StorageBlobLogs | take -1",
        "let x = 1; StorageBlobLogs",
        "StorageBlobLogs | ",
    ],
)
def test_kql_rejects_what_it_does_not_support(query: str) -> None:
    with pytest.raises(KqlError):
        run_query(ROWS, query, None, None, NOW)
