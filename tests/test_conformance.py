"""The simulated tenant answers like Azure: each recorded request (tests/data/azure, sources in its
SOURCES.md) sent to the simulator gets a response of the recorded shape (status, keys, JSON types and
the headers clients read), and each adapter parses each recorded response, fed to it unchanged."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from rehearsal.simulator import Simulator, apiversions
from tests.simulator_fixtures import EXAMPLES, RESPONDER, example, session

CLI_SUB, CLI_RG, CLI_ACCOUNT = "00000000-0000-0000-0000-000000000000", "clitest.rg000001", "clitest000002"
SPEC_SUB, SPEC_RG, SPEC_ACCOUNT = "9e3a1c55-4b7d-4f0e-8a61-2c3d4e5f6a7b", "res9290", "sto1590"
SENTINEL_SUB, SENTINEL_RG, SENTINEL_WS = (
    "a4b7e24a-0000-4d84-0000-89e99b336784",
    "demoassets",
    "AzureSentinelDemo",
)
INCIDENT = "e5a310d8-a920-428c-ba13-e04300c1d50c"
INCIDENTS = (
    f"/subscriptions/{SENTINEL_SUB}/resourceGroups/{SENTINEL_RG}/providers/Microsoft.OperationalInsights"
    f"/workspaces/{SENTINEL_WS}/providers/Microsoft.SecurityInsights/incidents"
)
WINDOW = (datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC) + timedelta(days=1))
SEVEN_DIGITS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")


def arm_account(sub: str, group: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Storage/storageAccounts/{name}"


def cassette() -> list[dict[str, Any]]:
    return json.loads(
        (EXAMPLES / "cloud_custodian_cassette_storage_blob_public_access_filter.json").read_text()
    )["interactions"]


def recording() -> list[dict[str, Any]]:
    text = (EXAMPLES / "azure_cli_recording_test_renew_account_key.yaml").read_text()
    return yaml.safe_load(text)["interactions"]


def soar(name: str) -> Any:
    return example("sentinel_soar_recorded_responses.json")[name]


def old_account_seed() -> dict[str, Any]:
    """The account cloud-custodian recorded, seeded as it was: no allowBlobPublicAccess, no key times."""
    recorded = cassette()[0]["response"]["body"]["data"]["value"][0]
    props = recorded["properties"]
    return {
        "id": recorded["id"],
        "location": recorded["location"],
        "kind": recorded["kind"],
        "sku": recorded["sku"],
        "tags": recorded["tags"],
        "creationTime": props["creationTime"],
        "networkAcls": props["networkAcls"],
        "keyCreationTime": None,
        "containers": [],
    }


def tenant() -> dict[str, Any]:
    return {
        "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "responderIdentity": dict(RESPONDER),
        "storageAccounts": [
            {
                "id": f"/subscriptions/{CLI_SUB}/resourceGroups/{CLI_RG}/providers/Microsoft.Storage"
                f"/storageAccounts/{CLI_ACCOUNT}",
                "keyCreationTime": {
                    "key1": "2022-02-23T03:19:24.9727913Z",
                    "key2": "2022-02-23T03:19:24.9727913Z",
                },
                "containers": [],
            },
            old_account_seed(),
            {
                "id": f"/subscriptions/{SPEC_SUB}/resourceGroups/{SPEC_RG}/providers/Microsoft.Storage"
                f"/storageAccounts/{SPEC_ACCOUNT}",
                "allowBlobPublicAccess": True,
                "containers": [
                    {
                        "name": "container1644",
                        "publicAccess": "Container",
                        "metadata": {"data_classification": "synthetic"},
                    },
                    {"name": "container4052", "publicAccess": "None", "metadata": {}},
                    {"name": "container5103", "publicAccess": "Blob", "metadata": {"owner": "ml"}},
                ],
            },
        ],
        "sentinel": {
            "subscriptionId": SENTINEL_SUB,
            "resourceGroup": SENTINEL_RG,
            "workspaceName": SENTINEL_WS,
            "incidents": [
                {
                    "name": INCIDENT,
                    "alerts": soar("get_incident_alerts_results")["value"],
                    "properties": {
                        k: v
                        for k, v in soar("update_incident_results")["properties"].items()
                        if k
                        in ("title", "description", "severity", "status", "incidentNumber", "createdTimeUtc")
                    },
                }
            ],
        },
    }


@pytest.fixture(name="sim")
def sim_fixture() -> Iterator[Simulator]:
    with Simulator(tenant()) as simulator:
        yield simulator


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def assert_shape(recorded: Any, simulated: Any, where: str = "$") -> None:
    """Every key of the recorded body is in the simulated one, with the same JSON type (null in the
    recording stands for "may be null"); list items are checked against the recording's item at the
    same place (or its first)."""
    if recorded is None:
        return
    assert kind(simulated) == kind(recorded), (
        f"{where}: recorded {kind(recorded)}, simulated {kind(simulated)}"
    )
    if isinstance(recorded, dict):
        missing = sorted(set(recorded) - set(simulated))
        assert not missing, f"{where}: the simulator leaves out {missing}"
        for key, value in recorded.items():
            assert_shape(value, simulated[key], f"{where}.{key}")
    elif isinstance(recorded, list) and recorded and isinstance(recorded[0], dict | list):
        assert simulated, f"{where}: recorded items, simulated none"
        for i, item in enumerate(simulated):  # items may differ in kind: compare like with like
            assert_shape(recorded[i] if i < len(recorded) else recorded[0], item, f"{where}[{i}]")


# --- recorded requests, answered by the simulator ---------------------------------------------------


def test_recorded_list_keys_and_regenerate_key_get_the_recorded_answers(sim: Simulator) -> None:
    http = session(sim)
    for interaction in recording():
        request, response = interaction["request"], interaction["response"]
        path, _, query = request["uri"].removeprefix("https://management.azure.com").partition("?")
        params = dict(p.split("=", 1) for p in query.split("&"))
        body = json.loads(request["body"]) if request["body"] else None
        reply = http.request(request["method"], f"{sim.url}{path}", params=params, json=body)
        recorded = json.loads(response["body"]["string"])
        assert reply.status_code == response["status"]["code"]
        assert_shape(recorded, reply.json())
        wanted = {h for h in response["headers"] if h.startswith("x-ms-ratelimit-remaining")}
        assert wanted <= {h.lower() for h in reply.headers}, f"{path}: rate-limit headers {wanted}"
        for key in reply.json()["keys"]:
            assert SEVEN_DIGITS.match(key["creationTime"]), key["creationTime"]
        for key in recorded["keys"]:
            assert SEVEN_DIGITS.match(key["creationTime"])
    # as recorded: regenerating key1 moves only key1's creationTime, then key2 moves too
    times = sim.state.key_creation_times(CLI_ACCOUNT)
    assert times["key1"] != "2022-02-23T03:19:24.9727913Z"
    assert times["key2"] != times["key1"]


def test_recorded_old_account_listing_lacks_public_access_and_key_times(sim: Simulator) -> None:
    request = cassette()[0]["request"]
    recorded = cassette()[0]["response"]["body"]["data"]
    path, _, query = request["uri"].removeprefix("https://management.azure.com").partition("?")
    reply = session(sim).get(f"{sim.url}{path}", params=dict([query.split("=", 1)]))
    assert reply.status_code == 200
    assert_shape(recorded, reply.json())
    listed = reply.json()["value"][0]["properties"]
    assert "allowBlobPublicAccess" not in listed
    assert listed["keyCreationTime"] == {"key1": None, "key2": None}


def test_container_list_carries_no_metadata_and_pages_with_next_link(sim: Simulator) -> None:
    http = session(sim)
    recorded = example("arm_blob_containers_list_example.json")
    params = {"api-version": recorded["parameters"]["api-version"], "$maxpagesize": "2"}
    url = f"{sim.url}{arm_account(SPEC_SUB, SPEC_RG, SPEC_ACCOUNT)}/blobServices/default/containers"
    first = http.get(url, params=params)
    assert first.status_code == 200
    assert_shape(recorded["responses"]["200"]["body"], first.json())
    assert all("metadata" not in item["properties"] for item in first.json()["value"])
    rest = http.get(first.json()["nextLink"])
    assert [c["name"] for c in first.json()["value"] + rest.json()["value"]] == [
        "container1644",
        "container4052",
        "container5103",
    ]
    assert "nextLink" not in rest.json()
    one = http.get(f"{url}/container1644", params={"api-version": params["api-version"]}).json()
    assert one["properties"]["metadata"] == {"data_classification": "synthetic"}


def test_recorded_sentinel_responses_have_the_simulated_shape(sim: Simulator) -> None:
    http = session(sim)
    version = {"api-version": "2023-11-01"}
    comment = http.put(
        f"{sim.url}{INCIDENTS}/{INCIDENT}/comments/253d7028-c522-11ee-98a9-fa89897771d7",
        params=version,
        json={"properties": {"message": "From the responder"}},
    )
    assert comment.status_code in (200, 201)
    assert_shape(soar("create_comment_results"), comment.json())
    assert comment.json()["etag"].startswith('"')
    assert soar("create_comment_results")["etag"].startswith('"')
    listed = http.get(f"{sim.url}{INCIDENTS}/{INCIDENT}/comments", params=version).json()
    # our comments are an app's (email and UPN null, as recorded for the app); a user's has more
    assert_shape({"value": [soar("create_comment_results")]}, listed)
    user_keys = set(soar("get_incident_comments_results")["value"][0]["properties"]["author"])
    assert user_keys <= set(listed["value"][0]["properties"]["author"])
    incident = http.get(f"{sim.url}{INCIDENTS}/{INCIDENT}", params=version).json()
    assert_shape(soar("update_incident_results"), incident)
    alerts = http.post(f"{sim.url}{INCIDENTS}/{INCIDENT}/alerts", params=version).json()
    assert_shape(soar("get_incident_alerts_results"), alerts)


def test_a_query_on_a_missing_table_answers_the_recorded_400(sim: Simulator) -> None:
    reply = session(sim, "https://api.loganalytics.io").post(
        f"{sim.url}/v1/workspaces/{sim.state.workspace_id}/query",
        json={"query": "StorageBlobLogs | where AccountName == 'x'"},
    )
    assert reply.status_code == 400
    recorded = example("log_analytics_400_missing_table_issue11773.json")
    assert_shape(recorded, reply.json())
    inner = reply.json()["error"]["innererror"]
    assert (inner["code"], inner["innererror"]["code"]) == ("SemanticError", "SEM0100")
    assert inner["innererror"]["message"] == (
        "'where' operator: Failed to resolve table or column expression named 'StorageBlobLogs'"
    )


def test_resource_manager_refuses_api_versions_the_specifications_do_not_list(sim: Simulator) -> None:
    listed = example("arm_api_versions_from_specs.json")
    assert list(apiversions.STORAGE) == listed["Microsoft.Storage"]
    assert list(apiversions.SECURITY_INSIGHTS) == listed["Microsoft.SecurityInsights"]
    http = session(sim)
    account = f"{sim.url}{arm_account(CLI_SUB, CLI_RG, CLI_ACCOUNT)}"
    assert http.get(account, params={"api-version": "2023-05-01"}).status_code == 200
    wrong = http.get(account, params={"api-version": "2024-09-01"})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "NoRegisteredProviderFound"
    assert http.get(account).json()["error"]["code"] == "MissingApiVersionParameter"
    incident = f"{sim.url}{INCIDENTS}/{INCIDENT}"
    assert http.get(incident, params={"api-version": "2023-05-01"}).status_code == 400


def test_the_pinned_clients_send_api_versions_azure_serves() -> None:
    """A pin Azure does not serve would fail every test that goes through the simulator; this names it."""
    from azure.core.credentials import AccessToken
    from azure.mgmt.storage import StorageManagementClient

    from responders.actions.sentinel import API_VERSION

    class Never:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            raise AssertionError("no token is needed to read the pin")

    client = StorageManagementClient(Never(), CLI_SUB)  # type: ignore[arg-type]
    assert client._config.api_version.lower() in apiversions.STORAGE
    assert API_VERSION in apiversions.SECURITY_INSIGHTS


# --- each adapter parses each recorded response, fed to it unchanged -------------------------------


@pytest.fixture(name="recorded")
def recorded_fixture(make_harness: Any) -> Any:
    """A harness whose simulator serves the conformance tenant; tests then play recorded replies."""
    return make_harness(tenant=tenant())


def test_read_account_parses_the_recorded_old_account_and_container_list(recorded: Any) -> None:
    from responders.actions.storage import RegenerateKey, account_state, read_account
    from responders.core.model import Action

    old = cassette()[0]["response"]["body"]["data"]["value"][0]
    recorded.sim.play_recorded("GET", f"{re.escape(old['id'])}$", 200, old)
    facts = read_account(recorded.rt.clients, old["id"])
    assert facts.allow_blob_public_access is None  # absent means allowed
    assert facts.key_creation_time == {}
    assert account_state(facts)["keyCreationTime"] == {}
    key = RegenerateKey().read(
        recorded.rt.clients, Action("storage.regenerate_key", old["id"], "k", "", {"key_name": "key1"})
    )
    assert key["keyCreationTime"] is None

    spec = arm_account(SPEC_SUB, SPEC_RG, SPEC_ACCOUNT)
    body = example("arm_blob_containers_list_example.json")["responses"]["200"]["body"]
    body = {"value": body["value"]}  # its nextLink names a host of the example's, not ours
    recorded.sim.play_recorded("GET", f"{re.escape(spec)}/blobServices/default/containers$", 200, body)
    facts = read_account(recorded.rt.clients, spec, tags_decide=lambda tags: False)
    assert {c.name: c.public_access for c in facts.containers} == {
        "container1644": "Container",
        "container4052": "None",
    }
    assert dict(facts.containers[0].metadata) == {"data_classification": "synthetic"}


def test_regenerate_key_takes_the_recorded_answer_and_drops_it(recorded: Any) -> None:
    from responders.actions.storage import RegenerateKey
    from responders.core.model import Action

    account = arm_account(CLI_SUB, CLI_RG, CLI_ACCOUNT)
    interaction = recording()[1]
    body = json.loads(interaction["response"]["body"]["string"])
    headers = {k: v[0] for k, v in interaction["response"]["headers"].items() if k.startswith("x-ms-")}
    recorded.sim.play_recorded("POST", "/regenerateKey$", 200, body, headers)
    action = Action("storage.regenerate_key", account, "k", "", {"key_name": "key1"})
    written = RegenerateKey().apply(recorded.rt.clients, action)
    # only the write's correlation id, resource and operation come back: the keys are dropped
    assert [w.operation for w in written] == ["microsoft.storage/storageaccounts/regeneratekey/action"]
    assert not any(key["value"] in repr(written) for key in body["keys"])


def test_sentinel_adapter_parses_the_recorded_comment_incident_and_comments(recorded: Any) -> None:
    from responders.actions import sentinel
    from responders.core.arm import parse_incident_id

    incident_id = parse_incident_id(f"{INCIDENTS}/{INCIDENT}")
    assert incident_id is not None
    recorded.sim.play_recorded("PUT", "/comments/[^/]+$", 201, soar("create_comment_results"))
    assert sentinel.write_comment(
        recorded.rt.clients, incident_id, "inc-1", "contained"
    ) == sentinel.comment_id("inc-1")
    recorded.sim.play_recorded("GET", "/comments$", 200, soar("get_incident_comments_results"))
    assert [c["properties"]["message"] for c in sentinel.comments(recorded.rt.clients, incident_id)] == [
        "bye"
    ]
    recorded.sim.play_recorded("GET", f"/incidents/{INCIDENT}$", 200, soar("update_incident_results"))
    recorded.sim.play_recorded("PUT", f"/incidents/{INCIDENT}$", 200, soar("update_incident_results"))
    assert sentinel.add_labels(recorded.rt.clients, incident_id) == list(sentinel.LABELS)
    put = [r for r in recorded.sim.requests() if r["method"] == "PUT" and r["path"].endswith(INCIDENT)][-1]
    assert put["body"]["etag"] == soar("update_incident_results")["etag"]


def test_evidence_adapter_parses_the_recorded_query_answer_and_error(recorded: Any) -> None:
    from azure.core.exceptions import HttpResponseError

    from responders.evidence import query_error, run_query

    workspace = recorded.sim.state.workspace_id
    answer = example("log_analytics_query_post_response_example.json")["responses"]["200"]["body"]
    recorded.sim.play_recorded("POST", "/query$", 200, answer, count=1)
    rows = run_query(recorded.rt.clients, workspace, "AzureActivity | take 10", *WINDOW)
    columns = [c["name"] for c in answer["tables"][0]["columns"]]
    assert len(rows) == len(answer["tables"][0]["rows"])
    assert set(rows[0]) == set(columns)
    recorded.sim.play_recorded(
        "POST", "/query$", 400, example("log_analytics_400_missing_table_issue11773.json")
    )
    with pytest.raises(HttpResponseError) as failed:
        run_query(recorded.rt.clients, workspace, "AzureDiagnostics | take 1", *WINDOW)
    assert failed.value.status_code == 400
    assert "Failed to resolve table or column expression named 'AzureDiagnostics'" in query_error(
        failed.value
    )


def test_identity_adapter_parses_the_recorded_principal_and_the_403(recorded: Any) -> None:
    from responders.actions.identity import DisableServicePrincipal, read_principal
    from responders.core.model import Action

    sp = example("graph_serviceprincipal_get_response_docs.json")
    recorded.sim.play_recorded("GET", "/servicePrincipals/", 200, sp)
    facts = read_principal(recorded.rt.clients, sp["id"])
    assert (facts.found, facts.app_id, facts.account_enabled) == (
        True,
        sp["appId"].lower(),
        sp["accountEnabled"],
    )
    denied = example("graph_403_authorization_request_denied_issue2331.json")
    recorded.sim.play_recorded("PATCH", "/servicePrincipals/", 403, denied)
    action = Action("identity.disable_service_principal", sp["id"], "k", "")
    from kiota_abstractions.api_error import APIError

    with pytest.raises(APIError) as failed:
        DisableServicePrincipal().apply(recorded.rt.clients, action)
    assert getattr(failed.value, "response_status_code", None) == 403


def test_incident_entities_adapter_parses_the_published_entities_answer(recorded: Any) -> None:
    from responders.actions.sentinel import incident_entities
    from responders.core.arm import parse_incident_id
    from responders.core.parse import entity_targets

    answer = example("sentinel_arm_list_incident_entities_example.json")["responses"]["200"]["body"]
    recorded.sim.play_recorded("POST", f"/incidents/{INCIDENT}/entities$", 200, answer)
    incident = parse_incident_id(f"{INCIDENTS}/{INCIDENT}")
    assert incident is not None
    entities = incident_entities(recorded.rt.clients, incident)
    assert [e["kind"] for e in entities] == [e["kind"] for e in answer["entities"]]
    assert set(entity_targets(entities)) >= {"accounts", "principals", "apps", "notes"}
