"""The simulated Authorization provider answers role-assignment requests like Azure: the recorded
examples (tests/data/azure/arm_role_assignments_*, sources in its SOURCES.md) sent to the simulator get
answers of the recorded shape, inheritance follows the documented filters, and the SDK the responder
uses (azure-mgmt-authorization 4.0.0) talks to it at the version it pins."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rehearsal.simulator import Simulator, apiversions
from tests.simulator_fixtures import RESPONDER, example, session
from tests.test_conformance import assert_shape

SUB = "a925f2f7-5c63-4b7b-8799-25a5f97bc3b2"  # the examples' subscription
RG = "testrg"
ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/stroles01"
ROLES = "/providers/Microsoft.Authorization/roleAssignments"
READER = "/providers/Microsoft.Authorization/roleDefinitions/0b5fe924-9a61-425c-96af-cfe6e287ca2d"
BLOB_READER = f"/subscriptions/{SUB}{READER.rsplit('/', 1)[0]}/2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
USER = "ce2ce14e-85d7-4629-bdbc-454d0519d987"  # the examples' principal
SP = "3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d"
AT_SUB, AT_RG, AT_ACCOUNT, AT_CONTAINER, OTHER = (
    "b0f43c54-e787-4862-89b1-a653fa9cf747",  # the examples' assignment, at the subscription
    "1b6a3c1e-0d2f-4e5a-9b7c-8d9e0f1a2b3c",
    "2c7b4d2f-1e3a-4f6b-8c9d-9e0f1a2b3c4d",
    "3d8c5e3a-2f4b-4a7c-9d0e-0f1a2b3c4d5e",
    "4e9d6f4b-3a5c-4b8d-8e1f-1a2b3c4d5e6f",
)
API = {"api-version": "2022-04-01"}


def assignment(name: str, scope: str, role: str = BLOB_READER, **more: str) -> dict[str, Any]:
    """A flat role assignment seed of the service principal SP."""
    return {"name": name, "scope": scope, "roleDefinitionId": role, "principalId": SP, **more}


def tenant() -> dict[str, Any]:
    listed = example("arm_role_assignments_list_for_scope_example.json")["responses"]["200"]["body"]["value"]
    return {
        "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "responderIdentity": dict(RESPONDER),
        "storageAccounts": [{"id": ACCOUNT, "containers": [{"name": "data", "publicAccess": "None"}]}],
        "roleAssignments": [
            listed[0],  # seeded as the example lists it: an ARM body
            assignment(AT_RG, f"/subscriptions/{SUB}/resourceGroups/{RG}"),
            assignment(
                AT_ACCOUNT,
                ACCOUNT,
                condition="@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] "
                "StringEquals 'data'",
                conditionVersion="2.0",
                description="pipeline reads data",
            ),
            assignment(AT_CONTAINER, f"{ACCOUNT}/blobServices/default/containers/data"),
            assignment(OTHER, f"/subscriptions/{SUB}/resourceGroups/other-rg", READER),
        ],
    }


@pytest.fixture(name="sim")
def sim_fixture() -> Iterator[Simulator]:
    with Simulator(tenant()) as simulator:
        yield simulator


def names(reply: Any) -> list[str]:
    assert reply.status_code == 200, reply.text
    return sorted(a["name"] for a in reply.json()["value"])


def test_list_for_scope_answers_the_recorded_shape_and_the_documented_inheritance(sim: Simulator) -> None:
    http = session(sim)
    recorded = example("arm_role_assignments_list_for_scope_example.json")
    reply = http.get(f"{sim.url}/{recorded['parameters']['scope']}{ROLES}", params=API)
    assert_shape(recorded["responses"]["200"]["body"], reply.json())
    assert_shape(example("arm_role_assignments_list_at_scope_assigned_to_docs.json"), reply.json())
    # without a filter: every assignment that applies at, above or below the scope
    assert names(reply) == sorted([AT_SUB, AT_RG, AT_ACCOUNT, AT_CONTAINER, OTHER])
    assert names(http.get(f"{sim.url}{ACCOUNT}{ROLES}", params=API)) == sorted(
        [AT_SUB, AT_RG, AT_ACCOUNT, AT_CONTAINER]
    )
    # atScope(): at or above, not below
    at = {**API, "$filter": "atScope()"}
    assert names(http.get(f"{sim.url}{ACCOUNT}{ROLES}", params=at)) == sorted([AT_SUB, AT_RG, AT_ACCOUNT])
    # principalId eq '{id}': that principal's, at, above or below
    mine = {**API, "$filter": f"principalId eq '{SP}'"}
    assert names(http.get(f"{sim.url}{ACCOUNT}{ROLES}", params=mine)) == sorted(
        [AT_RG, AT_ACCOUNT, AT_CONTAINER]
    )
    assigned = {**API, "$filter": f"atScope() and assignedTo('{SP.upper()}')"}
    assert names(http.get(f"{sim.url}{ACCOUNT}{ROLES}", params=assigned)) == sorted([AT_RG, AT_ACCOUNT])
    body = next(
        a
        for a in http.get(f"{sim.url}{ACCOUNT}{ROLES}", params=API).json()["value"]
        if a["name"] == AT_ACCOUNT
    )
    assert body["id"] == f"{ACCOUNT}{ROLES}/{AT_ACCOUNT}"
    assert body["properties"]["conditionVersion"] == "2.0"


def test_a_filter_azure_does_not_support_is_refused_as_azure_refuses_it(sim: Simulator) -> None:
    recorded = example("arm_role_assignments_400_unsupported_filter_steampipe.json")
    reply = session(sim).get(f"{sim.url}{ACCOUNT}{ROLES}", params={**API, "$filter": "principalId"})
    assert reply.status_code == 400
    assert reply.json() == recorded
    unquoted = session(sim).get(
        f"{sim.url}{ACCOUNT}{ROLES}", params={**API, "$filter": f"principalId eq {SP}"}
    )
    assert unquoted.json()["error"]["code"] == "UnsupportedQuery"


def test_get_create_and_delete_answer_the_recorded_statuses_and_shapes(sim: Simulator) -> None:
    http = session(sim)
    got = example("arm_role_assignments_get_example.json")
    scope = got["parameters"]["scope"]
    reply = http.get(f"{sim.url}/{scope}{ROLES}/{got['parameters']['roleAssignmentName']}", params=API)
    assert reply.status_code == 200
    assert_shape(got["responses"]["200"]["body"], reply.json())
    assert reply.json()["properties"]["roleDefinitionId"] == READER

    created = example("arm_role_assignments_create_for_resource_example.json")
    params = created["parameters"]
    url = f"{sim.url}/{params['scope']}{ROLES}/{params['roleAssignmentName']}"
    first = http.put(url, params=API, json=params["parameters"])
    assert first.status_code == 201
    assert_shape(created["responses"]["201"]["body"], first.json())
    assert first.json()["id"] == created["responses"]["201"]["body"]["id"]
    assert first.json()["properties"]["scope"] == created["responses"]["201"]["body"]["properties"]["scope"]
    assert first.json()["properties"]["createdBy"] == RESPONDER["principalId"]
    again = http.put(url, params=API, json=params["parameters"])
    assert again.status_code == 200
    assert_shape(created["responses"]["200"]["body"], again.json())
    # names are GUIDs, unique across scopes, and an assignment's properties never change
    changed = {"properties": {**params["parameters"]["properties"], "principalId": SP}}
    refused = http.put(url, params=API, json=changed)
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "RoleAssignmentUpdateNotPermitted")
    elsewhere = http.put(
        f"{sim.url}{ACCOUNT}{ROLES}/{params['roleAssignmentName']}", params=API, json=params["parameters"]
    )
    assert elsewhere.json()["error"]["code"] == "RoleAssignmentUpdateNotPermitted"
    duplicate = http.put(
        f"{sim.url}/{params['scope']}{ROLES}/{OTHER[:-4]}beef", params=API, json=params["parameters"]
    )
    assert (duplicate.status_code, duplicate.json()["error"]["code"]) == (409, "RoleAssignmentExists")
    not_a_guid = http.put(f"{sim.url}{ACCOUNT}{ROLES}/not-a-guid", params=API, json=params["parameters"])
    assert not_a_guid.json()["error"]["code"] == "InvalidRoleAssignmentId"

    deleted = example("arm_role_assignments_delete_example.json")
    dp = deleted["parameters"]
    gone = http.delete(f"{sim.url}/{dp['scope']}{ROLES}/{dp['roleAssignmentName']}", params=API)
    assert gone.status_code == 200
    assert_shape(deleted["responses"]["200"]["body"], gone.json())
    assert gone.json()["name"] == dp["roleAssignmentName"]
    twice = http.delete(f"{sim.url}/{dp['scope']}{ROLES}/{dp['roleAssignmentName']}", params=API)
    assert (twice.status_code, twice.content) == (204, b"")
    missing = http.get(f"{sim.url}/{dp['scope']}{ROLES}/{dp['roleAssignmentName']}", params=API)
    assert missing.status_code == 404
    assert AT_SUB not in {a["name"] for a in sim.state.role_assignment_list()}


def test_role_assignments_refuse_api_versions_the_specifications_do_not_list(sim: Simulator) -> None:
    listed = example("arm_api_versions_from_specs.json")
    assert list(apiversions.ROLE_ASSIGNMENTS) == listed["Microsoft.Authorization/roleAssignments"]
    wrong = session(sim).get(f"{sim.url}{ACCOUNT}{ROLES}", params={"api-version": "2023-05-01"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (400, "NoRegisteredProviderFound")


def test_the_pinned_authorization_client_lists_deletes_and_creates_against_the_simulator(
    azure_env_roles: Simulator,
) -> None:
    """azure-mgmt-authorization 4.0.0's default version for role_assignments is one Azure serves, and
    its models read the simulator's bodies."""
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

    sim = azure_env_roles
    client = AuthorizationManagementClient(DefaultAzureCredential(), SUB, base_url=sim.url)
    assert client._get_api_version("role_assignments") in apiversions.ROLE_ASSIGNMENTS
    listed = list(client.role_assignments.list_for_scope(ACCOUNT, filter=f"principalId eq '{SP}'"))
    assert sorted(a.name for a in listed) == sorted([AT_RG, AT_ACCOUNT, AT_CONTAINER])
    on_account = next(a for a in listed if a.name == AT_ACCOUNT)
    assert (on_account.scope, on_account.principal_type, on_account.condition_version) == (
        ACCOUNT,
        "ServicePrincipal",
        "2.0",
    )
    removed = client.role_assignments.delete(ACCOUNT, AT_ACCOUNT)
    assert removed is not None
    assert removed.name == AT_ACCOUNT
    assert client.role_assignments.delete(ACCOUNT, AT_ACCOUNT) is None  # 204: already gone
    again = client.role_assignments.create(
        ACCOUNT,
        AT_ACCOUNT,
        RoleAssignmentCreateParameters(
            role_definition_id=on_account.role_definition_id,
            principal_id=SP,
            principal_type="ServicePrincipal",
            condition=on_account.condition,
            condition_version="2.0",
            description=on_account.description,
        ),
    )
    assert (again.name, again.condition, again.description) == (
        AT_ACCOUNT,
        on_account.condition,
        "pipeline reads data",
    )


@pytest.fixture(name="azure_env_roles")
def azure_env_roles_fixture(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    for name, value in sim.env().items():
        monkeypatch.setenv(name, value)
    return sim


def test_seeded_assignments_survive_the_persisted_tenant(sim: Simulator) -> None:
    saved = sim.state.persisted()
    session(sim).delete(f"{sim.url}{ACCOUNT}{ROLES}/{AT_ACCOUNT}", params=API)
    assert AT_ACCOUNT not in {a["name"] for a in sim.state.role_assignment_list()}
    sim.state.restore(saved)
    assert AT_ACCOUNT in {a["name"] for a in sim.state.role_assignment_list()}
