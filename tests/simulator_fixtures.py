"""Simulator fixtures and client recipes shared by tests: a small tenant in samples/tenant.json format,
a running simulator, the env that points DefaultAzureCredential and the SDKs at it, and a Graph client."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from rehearsal.simulator import Simulator

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = Path(__file__).resolve().parent / "data" / "azure"
SUB = "11111111-2222-4333-8444-555555555555"
RG = "rg-test"
ARM_ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts"
SENTINEL_RG, WORKSPACE = "rg-secops", "law-test"
INCIDENTS = (
    f"/subscriptions/{SUB}/resourceGroups/{SENTINEL_RG}/providers/Microsoft.OperationalInsights"
    f"/workspaces/{WORKSPACE}/providers/Microsoft.SecurityInsights/incidents"
)
LOG_WORKSPACE = "b2c4d6e8-f0a1-4b3c-8d5e-6f7a8b9c0d1e"
SP_ID, SP_APP_ID = "3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d", "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"
OPEN_INCIDENT, CLOSED_INCIDENT = (
    "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    "73e01a99-5cd7-4139-a149-9f2736ff2ab5",
)
RESPONDER = {
    "principalId": "0f6a2c1e-9d3b-4e55-8a61-5c2b7e9d1a00",
    "clientId": "5b1e7c9a-2f4d-4a8e-b6c3-91d0e2f3a4b5",
}


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def _log(stamp: str, account: str, auth: str, ip: str, size: int, status: int = 200) -> dict[str, Any]:
    return {
        "TimeGenerated": stamp,
        "AccountName": account,
        "OperationName": "GetBlob",
        "AuthenticationType": auth,
        "CallerIpAddress": ip,
        "Uri": f"https://{account}.blob.core.windows.net/data/file.csv",
        "StatusCode": status,
        "ResponseBodySize": size,
        "DurationMs": 12.5,
        "IsSas": auth == "SAS",
    }


def make_tenant() -> dict[str, Any]:
    """A tenant covering each case the tests need; same format as samples/tenant.json."""
    alert = example("sentinel_arm_list_incident_alerts_example.json")["responses"]["200"]["body"]["value"][0]
    entity = example("sentinel_arm_list_incident_entities_example.json")["responses"]["200"]["body"][
        "entities"
    ][0]
    return {
        "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "responderIdentity": dict(RESPONDER),
        "storageAccounts": [
            {
                "id": f"{ARM_ACCOUNT}/stleaky01",
                "location": "westeurope",
                "kind": "StorageV2",
                "tags": {"data-classification": "synthetic"},
                "allowBlobPublicAccess": True,
                "containers": [
                    {
                        "name": "data-synth",
                        "publicAccess": "Container",
                        "metadata": {"data_classification": "synthetic"},
                    },
                    {"name": "docs", "publicAccess": "Blob", "metadata": {}},
                ],
            },
            {
                "id": f"{ARM_ACCOUNT}/stlocked02",
                "location": "westeurope",
                "kind": "StorageV2",
                "allowBlobPublicAccess": False,
                "containers": [{"name": "private", "publicAccess": "None", "metadata": {}}],
            },
            {
                "id": f"{ARM_ACCOUNT}/stdefault03",
                "location": "westeurope",
                "kind": "StorageV2",
                "keyCreationTime": {"key1": "2026-02-01T09:00:00Z", "key2": "2026-02-01T09:00:00Z"},
                "containers": [],
            },
            {
                "id": f"{ARM_ACCOUNT}/stgeo04",
                "location": "eastus2",
                "kind": "StorageV2",
                "sku": {"name": "Standard_GRS", "tier": "Standard"},
                "routingPreference": {
                    "routingChoice": "MicrosoftRouting",
                    "publishMicrosoftEndpoints": True,
                    "publishInternetEndpoints": True,
                },
                "networkAcls": {
                    "bypass": "AzureServices",
                    "defaultAction": "Allow",
                    "ipRules": [],
                    "virtualNetworkRules": [],
                    "resourceAccessRules": [
                        {
                            "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                            "resourceId": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers"
                            "/Microsoft.Synapse/workspaces/ws1",
                        }
                    ],
                },
                "containers": [{"name": "container6185", "publicAccess": "None", "metadata": {}}],
            },
        ],
        "servicePrincipals": [
            {
                "id": SP_ID,
                "appId": SP_APP_ID,
                "displayName": "etl-synth-exporter",
                "servicePrincipalType": "Application",
                "accountEnabled": True,
                "tags": [],
            },
        ],
        "logAnalytics": {
            "workspaceId": LOG_WORKSPACE,
            "tables": {
                "StorageBlobLogs": [
                    _log("2026-11-25T07:40:37Z", "stleaky01", "SAS", "198.51.100.23:40112", 104857600),
                    _log("2026-11-25T07:41:09Z", "stleaky01", "SAS", "198.51.100.23:40118", 98566144),
                    _log("2026-11-25T07:58:11Z", "stleaky01", "Anonymous", "203.0.113.45:51234", 48211968),
                    _log("2026-11-25T07:30:00Z", "stdefault03", "OAuth", "192.0.2.10:443", 20480, 403),
                    _log("2026-11-24T07:30:00Z", "stleaky01", "SAS", "198.51.100.23:40000", 1000),
                ]
            },
        },
        "sentinel": {
            "subscriptionId": SUB,
            "resourceGroup": SENTINEL_RG,
            "workspaceName": WORKSPACE,
            "incidents": [
                {
                    "name": OPEN_INCIDENT,
                    "alerts": [alert],
                    "entities": [entity],
                    "properties": {
                        "title": "Mass download with SAS",
                        "severity": "High",
                        "status": "New",
                        "incidentNumber": 4711,
                        "createdTimeUtc": "2026-11-25T07:45:00Z",
                        "firstActivityTimeUtc": "2026-11-25T07:40:37Z",
                        "lastActivityTimeUtc": "2026-11-25T07:41:09Z",
                    },
                },
                {
                    "name": CLOSED_INCIDENT,
                    "properties": {
                        "title": "My incident",
                        "description": "This is a demo incident",
                        "severity": "High",
                        "status": "Closed",
                        "classification": "FalsePositive",
                        "classificationComment": "Not a malicious activity",
                        "classificationReason": "InaccurateData",
                        "incidentNumber": 3177,
                        "owner": {
                            "objectId": "2046feea-040d-4a46-9e2b-91c2941bfa70",
                            "email": "john.doe@contoso.com",
                            "userPrincipalName": "john@contoso.com",
                            "assignedTo": "john doe",
                        },
                        "relatedAnalyticRuleIds": ["/subscriptions/x/alertRules/y"],
                        "createdTimeUtc": "2019-01-01T13:15:30Z",
                        "firstActivityTimeUtc": "2019-01-01T13:00:30Z",
                        "lastActivityTimeUtc": "2019-01-01T13:05:30Z",
                    },
                },
            ],
        },
    }


@pytest.fixture(name="sim")
def sim_fixture() -> Iterator[Simulator]:
    """A fresh simulator per test, so state never leaks between tests."""
    with Simulator(make_tenant()) as simulator:
        yield simulator


@pytest.fixture(name="azure_env")
def azure_env_fixture(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    """Env that makes an unchanged DefaultAzureCredential get tokens from the simulator and trust its CA."""
    for name, value in sim.env().items():
        monkeypatch.setenv(name, value)
    return sim


def token(sim: Simulator, audience: str = "https://management.azure.com") -> str:
    """A responder token, fetched the way App Service managed identity hands it out."""
    reply = requests.get(
        f"{sim.url}/msi/token",
        params={"api-version": "2019-08-01", "resource": audience},
        headers={"X-IDENTITY-HEADER": sim.identity_header},
        verify=str(sim.ca_path),
        timeout=10,
    )
    reply.raise_for_status()
    return reply.json()["access_token"]


def session(sim: Simulator, audience: str = "https://management.azure.com") -> requests.Session:
    """A requests session carrying a responder token and trusting the test CA."""
    http = requests.Session()
    http.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides session.verify
    http.verify = str(sim.ca_path)
    http.headers["Authorization"] = f"Bearer {token(sim, audience)}"
    return http


def graph_client(base_url: str, ca_path: Path | str, credential: Any) -> Any:
    """GraphServiceClient against a custom base URL (e.g. sim.url + "/v1.0") that trusts a test CA.

    Build it inside the coroutine that uses it: the httpx client binds to the running event loop.
    allowed_hosts must name the host or kiota sends no Authorization header; scopes must be given
    or kiota derives the scope from the host ("https://127.0.0.1/.default")."""
    from urllib.parse import urlparse

    import httpx
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.graph_request_adapter import options as graph_options
    from msgraph_core import GraphClientFactory

    auth = AzureIdentityAuthenticationProvider(
        credential,
        scopes=["https://graph.microsoft.com/.default"],
        allowed_hosts=[urlparse(base_url).hostname or ""],
    )
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(
            base_url=base_url, verify=ssl.create_default_context(cafile=str(ca_path)), timeout=30
        ),
        options=graph_options,
    )
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = base_url
    return GraphServiceClient(request_adapter=adapter)
