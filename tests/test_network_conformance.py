"""Network rules and shared-key access as Azure holds them: the simulator answers the recorded network-rule
writes of azure-cli and the published StorageAccountUpdate example with the recorded networkAcls (a PATCH
replaces the whole object; what it leaves out falls back to the defaults), refuses bad values, and the
adapter reads the recorded answers into the account's facts."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest

from rehearsal.simulator import Simulator
from tests.simulator_fixtures import RESPONDER, example, session

CLI_SUB = "/subscriptions/00000000-0000-0000-0000-000000000000"
CLI = f"{CLI_SUB}/resourceGroups/cli_test_storage_service_endpoints000001"
CLI_ACCOUNT = f"{CLI}/providers/Microsoft.Storage/storageAccounts/clitest000002"
SPEC_ACCOUNT = (
    "/subscriptions/9e3a1c55-4b7d-4f0e-8a61-2c3d4e5f6a7b/resourceGroups/res9407/providers/Microsoft.Storage"
    "/storageAccounts/sto8596"
)


def interactions() -> list[dict[str, Any]]:
    return example("azure_cli_recording_storage_network_rules_excerpt.json")["interactions"]


def tenant() -> dict[str, Any]:
    created = interactions()[0]  # the recorded create: the simulator has no PUT, so it is seeded
    return {
        "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "responderIdentity": dict(RESPONDER),
        "storageAccounts": [
            {
                "id": CLI_ACCOUNT,
                "location": "westus",
                "kind": "Storage",
                "sku": {"name": "Standard_RAGRS", "tier": "Standard"},
                "networkAcls": created["request"]["body"]["properties"]["networkAcls"],
                "containers": [],
            },
            {"id": SPEC_ACCOUNT, "location": "eastus2", "tags": {"key1": "value1"}, "containers": []},
        ],
    }


@pytest.fixture(name="sim")
def sim_fixture() -> Iterator[Simulator]:
    with Simulator(tenant()) as simulator:
        yield simulator


def same_rules(recorded: dict[str, Any], simulated: dict[str, Any]) -> None:
    """The recorded networkAcls, value for value; a list the recording's older api-version did not show
    (resourceAccessRules) may be there, empty."""
    assert {k: v for k, v in simulated.items() if k in recorded} == recorded
    assert all(simulated[k] == [] for k in set(simulated) - set(recorded)), simulated


def test_recorded_network_rule_writes_get_the_recorded_network_rules(sim: Simulator) -> None:
    http = session(sim)
    created, *writes = interactions()
    path, _, query = created["uri"].removeprefix("https://management.azure.com").partition("?")
    params = dict([query.split("=", 1)])
    shown = http.get(f"{sim.url}{path}", params=params).json()
    # created with bypass and defaultAction only: no rules, as Azure answered
    same_rules(created["response"]["body"]["properties"]["networkAcls"], shown["properties"]["networkAcls"])
    for interaction in writes:  # add an IP, add a subnet, remove an IP: each PATCH carries the whole object
        reply = http.patch(f"{sim.url}{path}", params=params, json=interaction["request"]["body"])
        assert reply.status_code == interaction["response"]["status"], reply.text
        recorded = interaction["response"]["body"]["properties"]["networkAcls"]
        same_rules(recorded, reply.json()["properties"]["networkAcls"])
        same_rules(recorded, http.get(f"{sim.url}{path}", params=params).json()["properties"]["networkAcls"])


def test_published_update_replaces_network_rules_and_keeps_shared_key_as_sent(sim: Simulator) -> None:
    http = session(sim)
    published = example("arm_storage_account_update_example.json")
    url, params = f"{sim.url}{SPEC_ACCOUNT}", {"api-version": published["parameters"]["api-version"]}
    # rules set before the update: the update's networkAcls names none of them, so they are gone
    before = {
        "defaultAction": "Deny",
        "bypass": "None",
        "ipRules": [{"value": "25.1.2.3", "action": "Allow"}],
    }
    assert http.patch(url, params=params, json={"properties": {"networkAcls": before}}).status_code == 200
    reply = http.patch(url, params=params, json=published["parameters"]["parameters"])
    assert reply.status_code == 200, reply.text
    answer = published["responses"]["200"]["body"]["properties"]
    assert reply.json()["properties"]["networkAcls"] == answer["networkAcls"]
    assert reply.json()["properties"]["allowSharedKeyAccess"] is answer["allowSharedKeyAccess"]
    assert (
        http.patch(url, params=params, json={"properties": {"allowSharedKeyAccess": False}}).json()[
            "properties"
        ]["allowSharedKeyAccess"]
        is False
    )
    shown = http.get(url, params=params).json()["properties"]
    assert shown["allowSharedKeyAccess"] is False
    assert shown["networkAcls"] == answer["networkAcls"], "a PATCH without networkAcls leaves them"
    assert "publicNetworkAccess" not in shown, "absent unless set, as in the published answer"


@pytest.mark.parametrize(
    "properties",
    [
        {"networkAcls": {"ipRules": []}},
        {"networkAcls": {"defaultAction": "Block"}},
        {"networkAcls": {"defaultAction": "Deny", "ipRules": "25.1.2.3"}},
        {"networkAcls": {"defaultAction": "Deny", "ipRules": [{"action": "Allow"}]}},
        {"networkAcls": {"defaultAction": "Deny", "bypass": "Everything"}},
        {"networkAcls": {"defaultAction": "Deny", "virtualNetworkRules": [{"id": 7}]}},
        {"networkAcls": {"defaultAction": "Deny", "resourceAccessRules": [{"tenantId": "t"}]}},
        {"networkAcls": "Deny"},
        {"publicNetworkAccess": "Open"},
        {"publicNetworkAccess": False},
        {"allowSharedKeyAccess": "false"},
    ],
)
def test_bad_network_and_shared_key_values_are_refused_and_change_nothing(
    sim: Simulator, properties: dict[str, Any]
) -> None:
    before = copy.deepcopy(sim.state.account("sto8596")["properties"])
    reply = session(sim).patch(
        f"{sim.url}{SPEC_ACCOUNT}", params={"api-version": "2023-05-01"}, json={"properties": properties}
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"]
    assert sim.state.account("sto8596")["properties"] == before


def test_public_network_access_is_stored_in_azures_spelling(sim: Simulator) -> None:
    reply = session(sim).patch(
        f"{sim.url}{SPEC_ACCOUNT}",
        params={"api-version": "2023-05-01"},
        json={"properties": {"publicNetworkAccess": "securedbyperimeter"}},
    )
    assert reply.json()["properties"]["publicNetworkAccess"] == "SecuredByPerimeter"


@pytest.fixture(name="recorded")
def recorded_fixture(make_harness: Any) -> Any:
    return make_harness(tenant=tenant())


def test_read_account_takes_the_recorded_network_rules_and_shared_key_setting(recorded: Any) -> None:
    from responders.actions.storage import DisableSharedKey, RestrictNetwork, read_account
    from responders.core.model import Action
    from responders.core.network import TrustedNetwork

    published = copy.deepcopy(example("arm_storage_account_update_example.json")["responses"]["200"]["body"])
    published["id"] = SPEC_ACCOUNT
    recorded.sim.play_recorded("GET", f"{re.escape(SPEC_ACCOUNT)}$", 200, published)
    facts = read_account(recorded.rt.clients, SPEC_ACCOUNT)
    assert facts.allow_shared_key_access is True
    assert facts.shared_key_allowed
    assert facts.public_network_access is None
    assert dict(facts.network_acls) == published["properties"]["networkAcls"]
    assert facts.network_default_action == "Allow"
    assert facts.public_endpoint_open
    assert facts.network_bypass == ("AzureServices",)
    assert facts.resource_access_rules == (
        (
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "/subscriptions/a7e99807-abbf-4642-bdec-2c809a96a8bc/resourceGroups/res9407/providers"
            "/Microsoft.Synapse/workspaces/testworkspace",
        ),
    )
    restrict = Action(
        "storage.restrict_network", SPEC_ACCOUNT, "k", "", {"trusted": TrustedNetwork().as_param()}
    )
    assert RestrictNetwork().read(recorded.rt.clients, restrict) == {
        "networkAcls": published["properties"]["networkAcls"],
        "publicNetworkAccess": None,
    }
    shared = Action("storage.disable_shared_key", SPEC_ACCOUNT, "k", "")
    assert DisableSharedKey().read(recorded.rt.clients, shared) == {"allowSharedKeyAccess": True}

    cli = interactions()[-1]["response"]["body"]
    recorded.sim.play_recorded("GET", f"{re.escape(CLI_ACCOUNT)}$", 200, cli)
    facts = read_account(recorded.rt.clients, CLI_ACCOUNT)
    assert facts.allow_shared_key_access is None
    assert facts.shared_key_allowed
    assert facts.network_default_action == "Deny"
    assert not facts.public_endpoint_open
    assert facts.ip_rules == ("25.2.0.0/24",)
    assert facts.network_bypass == ("Logging",)
    assert facts.virtual_network_rules == (
        f"{CLI}/providers/Microsoft.Network/virtualNetworks/vnet1/subnets/subnet1",
    )
