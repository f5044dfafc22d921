"""Acceptance: one test per access path. Each replays a signal through the registered functions against
the simulated tenant and checks the plan, the tenant's state after execution and the evidence pack's
"paths left open" (computed from the state read after containment), plus the Sentinel comment's count."""

from __future__ import annotations

import copy
import json
from typing import Any

import azure.functions as func
import pytest

from responders.core.model import AccountFacts, ContainerFacts, Facts, PrincipalFacts, RoleAssignmentFacts
from responders.core.open_paths import account_findings, left_open
from tests.harness import SUB, TENANT, account_id, sample
from tests.test_defender import DEVOPS_SP, workflow

ETL_SP = "3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d"
ROLE_DEFS = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions"
BLOB_READER = f"{ROLE_DEFS}/2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
SITE, VAULT, SAS03 = account_id("stsynthsite12"), account_id("stsynthvault11"), account_id("stsynthsas03")
INCIDENT = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
INCIDENT_ARM = (
    f"/subscriptions/{SUB}/resourceGroups/rg-secops/providers/Microsoft.OperationalInsights/workspaces/"
    f"law-secops/providers/Microsoft.SecurityInsights/Incidents/{INCIDENT}"
)


def tenant() -> dict[str, Any]:
    """The sample tenant, with a static website account (private endpoint too) and role assignments on
    the vault account: the offending principal's and another principal's."""
    t = copy.deepcopy(TENANT)
    t["storageAccounts"].append(
        {
            "id": SITE,
            "tags": {"data-classification": "synthetic"},
            "allowBlobPublicAccess": True,
            "containers": [
                {"name": "$web", "publicAccess": "None", "metadata": {}},
                {"name": "exports", "publicAccess": "None", "metadata": {"data_classification": "synthetic"}},
            ],
            "privateEndpointConnections": [
                {
                    "name": "pe-site",
                    "privateEndpoint": f"/subscriptions/{SUB}/resourceGroups/rg-net/providers/"
                    "Microsoft.Network/privateEndpoints/pe-site",
                    "status": "Approved",
                }
            ],
        }
    )
    t["roleAssignments"] = [
        {
            "name": "c1111111-1111-4111-8111-111111111111",
            "scope": VAULT,
            "roleDefinitionId": BLOB_READER,
            "principalId": DEVOPS_SP,
        },
        {
            "name": "c2222222-2222-4222-8222-222222222222",
            "scope": VAULT,
            "roleDefinitionId": BLOB_READER,
            "principalId": ETL_SP,
        },
    ]
    return t


def pack(h, incident: str) -> dict:
    req = func.HttpRequest(
        method="GET",
        url=f"http://localhost/api/evidence/{incident}",
        body=b"",
        route_params={"incident": incident},
        params={"format": "json"},
    )
    response = h.functions["evidence"](req)
    assert response.status_code == 200, response.get_body()
    return json.loads(response.get_body())


def markdown(h, incident: str) -> str:
    req = func.HttpRequest(
        method="GET",
        url=f"http://localhost/api/evidence/{incident}",
        body=b"",
        route_params={"incident": incident},
        params={"format": "md"},
    )
    return h.functions["evidence"](req).get_body().decode()


def open_on(p: dict, account: str) -> dict[str, list[str]]:
    """Path -> its reasons, for one account of the pack's paths left open."""
    out: dict[str, list[str]] = {}
    for row in p["paths_left_open"]["paths"]:
        if row["account"] == account.lower():
            out.setdefault(row["path"], []).append(row["why"])
    return out


def run(h, body: dict) -> dict:
    status, answer, _ = h.http("alerts", body)
    assert status == 200, answer
    [result] = answer["results"]
    return result


def kinds(result: dict) -> list[str]:
    return [a["kind"] for a in result["plan"]]


def test_anonymous_reads(make_harness) -> None:
    h = make_harness(tenant=tenant())
    result = run(h, sample("18-defender-anonymous-access.sentinel-alert.json"))
    assert kinds(result) == ["storage.disable_public_access", "storage.make_container_private"]
    account = h.sim.state.snapshot()["accounts"]["stsynthcohort10"]
    assert account["properties"]["allowBlobPublicAccess"] is False
    assert account["containers"]["cohorts"]["properties"]["publicAccess"] == "None"
    left = open_on(pack(h, result["incident"]), account_id("stsynthcohort10"))
    assert "anonymous" not in left
    # the alert stated anonymous reads: the keys were kept, and the pack says they still work
    assert "shared-key" in left
    assert pack(h, result["incident"])["paths_left_open"]["count"] == len(result["paths_left_open"])


def test_account_sas(make_harness) -> None:
    h = make_harness(tenant=tenant())
    result = run(h, sample("04-sas-listed.cloudevents.json"))
    assert kinds(result)[:2] == ["storage.regenerate_key", "storage.regenerate_key"]
    assert all("(cuts account-sas" in a["reason"] for a in result["plan"][:2])
    keys = h.sim.state.snapshot()["accounts"]["stsynthsas03"]["keys"]
    assert all(k["creationTime"] > "2026-11-25" for k in keys.values())
    left = open_on(pack(h, result["incident"]), SAS03)
    assert "shared-key" not in left
    assert "user-delegation-sas" not in left  # revoked too: whoever lists SAS may get user-delegation keys


def test_service_sas(make_harness) -> None:
    h = make_harness(tenant=tenant())
    event = copy.deepcopy(sample("03-listkeys-by-app.json"))
    item = event[0] if isinstance(event, list) else event
    item["id"] = "0a0b0c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
    item["data"]["operationName"] = "Microsoft.Storage/storageAccounts/listServiceSas/action"
    result = run(h, item)
    assert kinds(result)[:2] == ["storage.regenerate_key", "storage.regenerate_key"]
    assert all("(cuts service-sas" in a["reason"] for a in result["plan"][:2])
    account = result["plan"][0]["target"]
    name = account.rsplit("/", 1)[-1]
    keys = h.sim.state.snapshot()["accounts"][name]["keys"]
    assert all(k["creationTime"] > "2026-11-25" for k in keys.values())
    assert "shared-key" not in open_on(pack(h, result["incident"]), account)


def test_user_delegation_sas(make_harness) -> None:
    h = make_harness(tenant=tenant())
    status, body, _ = h.http("alerts", sample("17-monitor-log-search-udk-and-container-acl.json"))
    assert status == 200, body
    [result] = body["results"]
    assert "storage.revoke_user_delegation_keys" in kinds(result)
    assert h.sim.state.udk_revocations("stsynthsas03")
    left = open_on(pack(h, result["incident"]), SAS03)
    assert "user-delegation-sas" not in left
    # the logs showed OAuth: the network step waits for approval, so issued tokens still reach it
    assert result["status"] == "pending-approval"
    assert "shared-key" in left  # OAuth and a user-delegation key: the keys were not rotated


def _oauth_alert() -> dict:
    body = workflow("Storage.Blob_SuspiciousIp", "stsynthvault11", "OAuth")
    body["properties"]["entities"].append({"$id": "3", "aadUserId": DEVOPS_SP, "type": "account"})
    body["properties"]["extendedProperties"]["Container"] = "scenarios"
    return body


def test_an_entra_token_of_the_offending_principal(make_harness) -> None:
    h = make_harness(tenant=tenant())
    result = run(h, _oauth_alert())
    assert kinds(result) == [
        "storage.restrict_network",
        "identity.disable_service_principal",
        "authorization.remove_role_assignments",
    ]
    assert {a["kind"]: a["mode"] for a in result["plan"]} == {
        "storage.restrict_network": "approval",
        "identity.disable_service_principal": "auto",
        "authorization.remove_role_assignments": "approval",
    }
    assert h.sim.state.snapshot()["servicePrincipals"][DEVOPS_SP]["accountEnabled"] is False
    tokens = open_on(pack(h, result["incident"]), VAULT)["entra-token"]
    # disabled, but the network step waits for approval: issued tokens and its role still reach the data
    assert any(f"{DEVOPS_SP} is disabled, but tokens issued before" in w for w in tokens)
    assert any(f"the implicated principal {DEVOPS_SP} holds Storage Blob Data Reader" in w for w in tokens)

    status, answer, _ = h.http("playbook", {"approve": result["incident"], "execute": True})
    assert status == 200, answer
    snap = h.sim.state.snapshot()
    assert snap["accounts"]["stsynthvault11"]["properties"]["networkAcls"]["defaultAction"] == "Deny"
    assert DEVOPS_SP not in {a["properties"]["principalId"] for a in h.sim.state.role_assignment_list()}
    tokens = open_on(pack(h, result["incident"]), VAULT).get("entra-token", [])
    assert not any(DEVOPS_SP in w for w in tokens), tokens


def test_a_token_of_another_principal_holding_a_data_role(make_harness) -> None:
    h = make_harness(tenant=tenant())
    result = run(h, _oauth_alert())
    assert "authorization.remove_role_assignments" in kinds(result)
    assert all(a["params"].get("principal", DEVOPS_SP) == DEVOPS_SP for a in result["plan"])
    assert h.http("playbook", {"approve": result["incident"], "execute": True})[0] == 200
    # the other principal's assignment is not the incident's to remove: it stays, and the pack says so
    assert ETL_SP in {a["properties"]["principalId"] for a in h.sim.state.role_assignment_list()}
    tokens = open_on(pack(h, result["incident"]), VAULT)["entra-token"]
    [other] = [w for w in tokens if ETL_SP in w]
    assert other.startswith(f"another principal {ETL_SP} holds Storage Blob Data Reader at")
    assert other.endswith("from the networks the firewall lets in")  # the network is now restricted


def test_a_static_website(make_harness) -> None:
    h = make_harness(tenant=tenant())
    body = workflow("Storage.Blob_AnonymousAccessAnomaly", "stsynthsite12", "Anonymous", Container="$web")
    result = run(h, body)
    assert kinds(result) == ["storage.disable_public_access"]
    assert any("container $web exists" in f for f in result["verdict"]["findings"])
    assert any("private endpoint connections pe-site" in f for f in result["verdict"]["findings"])
    assert h.sim.state.snapshot()["accounts"]["stsynthsite12"]["properties"]["allowBlobPublicAccess"] is False
    p = pack(h, result["incident"])
    left = open_on(p, SITE)
    assert "anonymous" not in left
    [why] = left["static-website"]
    assert why.startswith("container $web is served anonymously at the static website endpoint")
    assert f"## Paths left open: {p['paths_left_open']['count']}" in markdown(h, result["incident"])


def test_the_sentinel_comment_counts_the_paths_left_open(make_harness) -> None:
    h = make_harness(tenant=tenant())
    alert = dict(sample("18-defender-anonymous-access.sentinel-alert.json"), IncidentArmId=INCIDENT_ARM)
    result = run(h, alert)
    [comment] = list(h.sim.state.comments(INCIDENT).values())
    message = comment["properties"]["message"]
    assert f"Paths left open: {len(result['paths_left_open'])}" in message
    assert "- shared-key on stsynthcohort10: Shared Key is allowed" in message


# the pure function, on facts alone --------------------------------------------------------------------
ACCOUNT = account_id("stsynthx01").lower()


def facts(**account: Any) -> Facts:
    base = AccountFacts(
        id=ACCOUNT, key_creation_time={"key1": "2026-11-26T00:00:00Z", "key2": "2026-11-26T00:00:00Z"}
    )
    return Facts(accounts={ACCOUNT: AccountFacts(**{**base.__dict__, **account})})


@pytest.mark.parametrize(
    ("account", "done", "paths"),
    [
        ({}, [("storage.revoke_user_delegation_keys", ACCOUNT)], set()),
        ({}, [], {"user-delegation-sas"}),
        (
            {"key_creation_time": {"key1": "2026-11-24T00:00:00Z", "key2": "2026-11-26T00:00:00Z"}},
            [],
            {"shared-key", "user-delegation-sas"},
        ),
        (
            {"key_creation_time": {"key1": "2026-11-24T00:00:00Z"}, "allow_shared_key_access": False},
            [],
            {"user-delegation-sas"},
        ),
        (
            {"containers": (ContainerFacts("data", "Blob"),)},
            [("storage.revoke_user_delegation_keys", ACCOUNT)],
            {"anonymous"},
        ),
        (
            {"containers": (ContainerFacts("data", "Blob"),), "allow_blob_public_access": False},
            [("storage.revoke_user_delegation_keys", ACCOUNT)],
            set(),
        ),
        (
            {
                "network_acls": {
                    "defaultAction": "Deny",
                    "bypass": "AzureServices",
                    "resourceAccessRules": [{"tenantId": "t", "resourceId": "/x"}],
                },
                "private_endpoints": (("pe1", "Approved"), ("pe2", "Rejected")),
            },
            [("storage.revoke_user_delegation_keys", ACCOUNT)],
            {"private-endpoint", "trusted-services", "resource-instances"},
        ),
    ],
)
def test_left_open_is_computed_from_the_state(account: dict, done: list, paths: set) -> None:
    found = left_open(facts(**account), since="2026-11-25T00:00:00Z", principals=(), done=done)
    assert {p.path for p in found} == paths


def test_principals_and_roles_left_open() -> None:
    me, sp, other = "0f6a2c1e-9d3b-4e55-8a61-5c2b7e9d1a00", DEVOPS_SP, ETL_SP
    roles = tuple(
        RoleAssignmentFacts(name=n, scope=s, role_definition_id=BLOB_READER, principal_id=p)
        for n, s, p in (("r1", ACCOUNT, other), ("r2", f"/subscriptions/{SUB}", sp), ("r3", ACCOUNT, me))
    )
    base = facts()
    after = Facts(
        accounts=base.accounts,
        principals={sp: PrincipalFacts(sp, account_enabled=False)},
        role_assignments={ACCOUNT: roles},
    )
    found = left_open(
        after,
        since="2026-11-25T00:00:00Z",
        principals=[sp],
        done=[("storage.revoke_user_delegation_keys", ACCOUNT)],
        responder=[me],
    )
    whys = [p.why for p in found]
    assert any("is disabled, but tokens issued before stay valid" in w for w in whys)
    assert any(
        f"the implicated principal {sp} holds Storage Blob Data Reader inherited from" in w for w in whys
    )
    assert any(f"another principal {other} holds Storage Blob Data Reader at" in w for w in whys)
    assert not any(me in w for w in whys), "the responder's own role is not a path"


def test_findings_name_what_no_step_closes() -> None:
    account = facts(
        containers=(ContainerFacts("$web", "None"),), private_endpoints=(("pe1", "Approved"),)
    ).accounts[ACCOUNT]
    found = account_findings(account)
    assert any(f.startswith("container $web exists") for f in found)
    assert any("approved private endpoint connections pe1" in f for f in found)


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_the_simulator_lists_private_endpoint_connections_as_resource_manager_does(tmp_path) -> None:
    from rehearsal.simulator import Simulator, apiversions
    from tests.simulator_fixtures import example, session

    recorded = example("arm_storage_list_private_endpoint_connections_example.json")["responses"]["200"][
        "body"
    ]
    sim = Simulator(tenant(), cert_dir=tmp_path).start()
    try:
        version = {"api-version": apiversions.STORAGE[-1]}
        listed = session(sim).get(f"{sim.url}{SITE}/privateEndpointConnections", params=version)
        account = session(sim).get(f"{sim.url}{SITE}", params=version).json()
    finally:
        sim.stop()
    assert listed.status_code == 200
    body = listed.json()
    assert _shape(body) == _shape(recorded)
    [connection] = body["value"]
    assert connection["id"] == f"{SITE}/privateEndpointConnections/pe-site"
    assert connection["properties"]["privateLinkServiceConnectionState"]["status"] == "Approved"
    # the account's own body carries the same connections
    assert account["properties"]["privateEndpointConnections"] == body["value"]


def test_the_pack_escapes_the_paths_it_renders() -> None:
    from datetime import UTC, datetime

    from responders.evidence_pack import build_pack, render_markdown

    hostile = "pe|x\n## Actions: contained <img src=x> [link](https://evil.example)"
    row = {
        "PartitionKey": "inc-0123",
        "Leak": True,
        "OpenPaths": [{"account": ACCOUNT, "path": "private-endpoint", "why": hostile}],
    }
    p = build_pack(row, datetime(2026, 11, 25, tzinfo=UTC))
    assert p["paths_left_open"]["count"] == 1
    text = render_markdown(p)
    section = text.split("## Paths left open: 1", 1)[1].split("\n## ", 1)[0]
    [line] = [ln for ln in section.splitlines() if "private-endpoint" in ln]
    assert line.count(" | ") == 2, line  # the value's pipe cannot add a column
    assert "<img" not in line
    assert "\n## Actions: contained" not in section
    assert "](https://evil.example)" not in line
