"""storage.restrict_network and storage.disable_shared_key through the registered functions: planned for
approval, run when approved, verified on the account, recorded with the state before and after, restored to
exactly that state, written once however often the request or its echo comes back, and never written on
an exempt or out-of-scope account."""

from __future__ import annotations

import copy
import itertools
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from rehearsal.simulator.storage import account_view
from tests.harness import PREFIX, SAMPLES, SUB, TENANT, Harness

ACCOUNT = "stsynthsas03"
TARGET = PREFIX + ACCOUNT
ATTACKER_IP, TRUSTED_IP = "198.51.100.7", "203.0.113.0/24"
NET = f"/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks"
TRUSTED_SUBNET, OTHER_SUBNET = f"{NET}/vnet-pipeline/subnets/build", f"{NET}/vnet-guest/subnets/default"
SYNAPSE = f"/subscriptions/{SUB}/resourceGroups/rg-ml/providers/Microsoft.Synapse/workspaces/ws-guest"
TRUSTED_WORKSPACE = f"/subscriptions/{SUB}/resourceGroups/rg-ml/providers/Microsoft.Synapse/workspaces/*"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OPEN_ACLS = {
    "bypass": "Logging, Metrics",
    "defaultAction": "Allow",
    "ipRules": [{"value": ATTACKER_IP, "action": "Allow"}, {"value": TRUSTED_IP, "action": "Allow"}],
    "virtualNetworkRules": [{"id": OTHER_SUBNET, "action": "Allow", "state": "Succeeded"}],
    "resourceAccessRules": [{"tenantId": TENANT_ID, "resourceId": SYNAPSE}],
}


def tenant(**properties: Any) -> dict[str, Any]:
    """The sample tenant with the account's network and shared-key properties set as given."""
    made = copy.deepcopy(TENANT)
    for seed in made["storageAccounts"]:
        if seed["id"].endswith("/" + ACCOUNT):
            seed.update(copy.deepcopy(properties))
    return made


def policy(**changes: Any) -> dict[str, Any]:
    base = yaml.safe_load((SAMPLES / "policy.yaml").read_text())
    base["network"] = {
        "trusted": {
            "ip_rules": [TRUSTED_IP],
            "virtual_network_rules": [TRUSTED_SUBNET],
            "resource_access_rules": [{"tenant_id": TENANT_ID, "resource_id": TRUSTED_WORKSPACE}],
        }
    }
    base.update(changes)
    return base


def shown(h: Harness) -> dict[str, Any]:
    """The account's properties as Resource Manager shows them."""
    return account_view(h.sim.state.account(ACCOUNT))["properties"]


def request(h: Harness, kind: str, request_id: str) -> dict[str, Any]:
    body = {"resourceId": TARGET, "actions": [kind], "execute": True, "requestId": request_id}
    status, answer, _ = h.http("playbook", body)
    assert status == 200, answer
    [result] = answer["results"]
    return result


def approve(h: Harness, incident: str) -> dict[str, Any]:
    status, answer, _ = h.http("playbook", {"approve": incident, "execute": True})
    assert status == 200, answer
    return answer


def restore(h: Harness, incident: str) -> dict[str, Any]:
    status, answer, _ = h.http("playbook", {"restore": incident, "execute": True})
    assert status == 200, answer
    return answer


def rows(h: Harness, incident: str) -> list[dict[str, Any]]:
    row = h.rt.ledger.incident(incident)
    assert row is not None
    return row["actions"]


def test_restrict_network_is_approved_verified_recorded_and_restored_exactly(make_harness) -> None:
    h = make_harness(tenant=tenant(networkAcls=OPEN_ACLS, publicNetworkAccess="Enabled"), policy=policy())
    before = copy.deepcopy(shown(h))
    result = request(h, "storage.restrict_network", "change-net-1")
    [planned] = result["plan"]
    assert (planned["kind"], planned["mode"]) == ("storage.restrict_network", "approval")
    assert f"ip {ATTACKER_IP}" in planned["reason"]
    assert f"subnet {OTHER_SUBNET}" in planned["reason"]
    assert f"resource {SYNAPSE}" in planned["reason"]
    assert [o["status"] for o in result["outcomes"]] == ["pending-approval"]
    assert h.writes() == [], "nothing is written before approval"

    approved = approve(h, result["incident"])
    assert [o["status"] for o in approved["outcomes"]] == ["contained"], approved["outcomes"]
    after = shown(h)
    assert after["networkAcls"] == {
        "bypass": "Logging, Metrics",  # the account's own bypass, not the default a PATCH would fall back to
        "defaultAction": "Deny",
        "ipRules": [{"value": TRUSTED_IP, "action": "Allow"}],
        "virtualNetworkRules": [{"id": TRUSTED_SUBNET, "action": "Allow", "state": "Succeeded"}],
        "resourceAccessRules": [{"tenantId": TENANT_ID, "resourceId": TRUSTED_WORKSPACE}],
    }
    assert after["publicNetworkAccess"] == "Enabled", "publicNetworkAccess is recorded, not changed"
    [row] = rows(h, result["incident"])
    assert row["Status"] == "contained"
    assert row["Before"] == {"networkAcls": before["networkAcls"], "publicNetworkAccess": "Enabled"}
    assert row["After"]["networkAcls"] == after["networkAcls"]
    assert (
        h.rt.ledger.incident(result["incident"])["StateBefore"][TARGET.lower()]["networkAcls"]
        == (before["networkAcls"])
    )
    writes = len(h.writes())

    # the same request again, and the echo of the write: nothing is written twice
    again = request(h, "storage.restrict_network", "change-net-1")
    assert [o["status"] for o in again["outcomes"]] == ["contained"]
    for echo in h.sim.events():
        h.eventgrid(echo)
        assert h.incident(echo["id"])["Status"] == "ignored"
    assert len(h.writes()) == writes

    restored = restore(h, result["incident"])
    assert [e["status"] for e in restored["restored"]] == ["restored"], restored
    now = shown(h)
    assert now["networkAcls"] == before["networkAcls"]
    assert now["publicNetworkAccess"] == before["publicNetworkAccess"]
    assert json.loads(rows(h, result["incident"])[0]["RestoredState"]) == {
        "networkAcls": before["networkAcls"],
        "publicNetworkAccess": "Enabled",
    }


def test_restrict_network_restores_an_account_that_never_had_rules(make_harness) -> None:
    h = make_harness(policy=policy())  # no networkAcls, no publicNetworkAccess: Azure's defaults
    before = copy.deepcopy(shown(h))
    result = request(h, "storage.restrict_network", "change-net-2")
    approve(h, result["incident"])
    assert shown(h)["networkAcls"]["defaultAction"] == "Deny"
    restore(h, result["incident"])
    assert shown(h)["networkAcls"] == before["networkAcls"]
    assert "publicNetworkAccess" not in shown(h)


def test_restrict_network_is_skipped_with_the_reason_where_nothing_would_change(make_harness) -> None:
    closed = {"defaultAction": "Deny", "ipRules": [{"value": TRUSTED_IP, "action": "Allow"}]}
    h = make_harness(tenant=tenant(networkAcls=closed), policy=policy())
    result = request(h, "storage.restrict_network", "change-net-3")
    assert result["plan"] == []
    assert any("already denies" in s["why"] for s in result["skipped"]), result["skipped"]
    h = make_harness(tenant=tenant(publicNetworkAccess="Disabled"), policy=policy())
    result = request(h, "storage.restrict_network", "change-net-4")
    assert result["plan"] == []
    assert any("public network access is disabled" in s["why"] for s in result["skipped"])
    assert h.writes() == []


def test_disable_shared_key_warns_is_approved_verified_and_restored(make_harness) -> None:
    tags = {
        **next(a for a in TENANT["storageAccounts"] if a["id"] == TARGET)["tags"],
        "uses-shared-key": "true",
    }
    h = make_harness(tenant=tenant(allowSharedKeyAccess=True, tags=tags), policy=policy())
    result = request(h, "storage.disable_shared_key", "change-key-1")
    [planned] = result["plan"]
    assert (planned["kind"], planned["mode"]) == ("storage.disable_shared_key", "approval")
    assert "warning" in planned["reason"]
    assert "uses-shared-key=true" in planned["reason"]
    assert h.writes() == []
    from responders.evidence_pack import build_pack, render_markdown

    pack = build_pack(h.rt.ledger.incident(result["incident"]), datetime.now(UTC))
    [entry] = pack["actions"]
    assert "uses-shared-key=true" in entry["reason"]
    assert "uses-shared-key=true" in render_markdown(pack), "the pack shows the warning"

    approved = approve(h, result["incident"])
    assert [o["status"] for o in approved["outcomes"]] == ["contained"], approved["outcomes"]
    assert shown(h)["allowSharedKeyAccess"] is False
    [row] = rows(h, result["incident"])
    assert row["Before"] == {"allowSharedKeyAccess": True}
    assert row["After"]["allowSharedKeyAccess"] is False
    writes = len(h.writes())
    again = request(h, "storage.disable_shared_key", "change-key-1")
    assert [o["status"] for o in again["outcomes"]] == ["contained"]
    for echo in h.sim.events():
        h.eventgrid(echo)
        assert h.incident(echo["id"])["Status"] == "ignored"
    assert len(h.writes()) == writes

    restore(h, result["incident"])
    assert shown(h)["allowSharedKeyAccess"] is True
    assert json.loads(rows(h, result["incident"])[0]["RestoredState"]) == {"allowSharedKeyAccess": True}


def test_disable_shared_key_warns_when_the_logs_show_key_or_sas_use(make_harness) -> None:
    from responders.core.model import AccountFacts
    from responders.core.plan import shared_key_warnings

    facts = AccountFacts(id=TARGET)
    assert shared_key_warnings(facts, {"OAuth": 4}) == []
    [warning] = shared_key_warnings(facts, {"AccountKey": 3, "SAS": 2, "OAuth": 1})
    assert "3 AccountKey and 2 SAS requests" in warning
    assert "not known" in shared_key_warnings(facts, None)[0]

    made = tenant()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    logs = made["logAnalytics"]["tables"]["StorageBlobLogs"]
    template = next(r for r in logs if r["AccountName"] == ACCOUNT)
    logs += [{**template, "TimeGenerated": now, "AuthenticationType": "AccountKey"} for _ in range(3)]
    h = make_harness(tenant=made, policy=policy())
    [planned] = request(h, "storage.disable_shared_key", "change-key-2")["plan"]
    assert "the storage logs show 3 AccountKey requests" in planned["reason"], planned["reason"]
    # absent means allowed: the step is planned, and restore writes the allowing value explicitly
    approve(h, request(h, "storage.disable_shared_key", "change-key-4")["incident"])
    assert shown(h)["allowSharedKeyAccess"] is False
    restore(h, request(h, "storage.disable_shared_key", "change-key-4")["incident"])
    assert shown(h)["allowSharedKeyAccess"] is True
    h = make_harness(tenant=tenant(allowSharedKeyAccess=False), policy=policy())
    result = request(h, "storage.disable_shared_key", "change-key-3")
    assert result["plan"] == []
    assert any("already off" in s["why"] for s in result["skipped"])


@pytest.mark.parametrize("kind", ["storage.restrict_network", "storage.disable_shared_key"])
def test_an_exempt_or_out_of_scope_account_or_dry_run_is_not_written(make_harness, kind: str) -> None:
    exempt_tags = {"data-classification": "synthetic", "leak-responder-exempt": "true"}
    other_group = policy(scope={"allow": [f"/subscriptions/{SUB}/resourceGroups/rg-other"]})
    cases = [
        (tenant(networkAcls=OPEN_ACLS, tags=exempt_tags), policy(), "exempt"),
        (tenant(networkAcls=OPEN_ACLS), other_group, "outside the allowed scopes"),
    ]
    for seeded, rules, why in cases:  # one harness at a time: the runtime is the app's, global
        h = make_harness(tenant=seeded, policy=rules)
        result = request(h, kind, f"change-{why}")
        assert result["plan"] == [], result
        assert any(why in s["why"] for s in result["skipped"]), result["skipped"]
        assert h.writes() == []
    h = make_harness(tenant=tenant(networkAcls=OPEN_ACLS), policy=policy(), dry_run=True)
    result = request(h, kind, "change-dry")
    assert [p["kind"] for p in result["plan"]] == [kind]
    assert {o["status"] for o in result["outcomes"]} == {"dry-run"}
    assert h.writes() == []


def test_the_account_patches_of_one_incident_never_overlap(make_harness) -> None:
    approval = {k: "approval" for k in ("storage.disable_public_access", "storage.restrict_network")}
    h = make_harness(
        tenant=tenant(networkAcls=OPEN_ACLS),
        policy=policy(approval={**approval, "storage.disable_shared_key": "approval"}),
    )
    h.sim.set_faults([{"method": "PATCH", "path": f"/storageAccounts/{ACCOUNT}$", "latency_ms": 300}])
    kinds = ["storage.disable_public_access", "storage.restrict_network", "storage.disable_shared_key"]
    status, answer, _ = h.http(
        "playbook", {"resourceId": TARGET, "actions": kinds, "execute": True, "requestId": "change-all"}
    )
    assert status == 200, answer
    approved = approve(h, answer["results"][0]["incident"])
    assert sorted(o["status"] for o in approved["outcomes"]) == ["contained"] * 3, approved["outcomes"]
    patches = sorted(
        (r for r in h.sim.requests() if r["method"] == "PATCH" and r["path"].endswith("/" + ACCOUNT)),
        key=lambda r: r["time"],
    )
    assert len(patches) == 3
    assert {p["status"] for p in patches} == {200}, "no write was refused as overlapping"
    assert all(b["time"] >= a["answered"] for a, b in itertools.pairwise(patches))
    props = shown(h)
    assert props["allowBlobPublicAccess"] is False
    assert props["allowSharedKeyAccess"] is False
    assert props["networkAcls"]["defaultAction"] == "Deny"


def test_a_write_refused_as_overlapping_is_retried_after_reading_again(make_harness) -> None:
    from tests.simulator_fixtures import example

    h = make_harness(tenant=tenant(networkAcls=OPEN_ACLS), policy=policy())
    busy = example("arm_storage_account_operation_in_progress_409_issue.json")
    h.sim.play_recorded("PATCH", f"/storageAccounts/{ACCOUNT}$", 409, busy, count=1)
    result = request(h, "storage.restrict_network", "change-busy")
    approved = approve(h, result["incident"])
    assert [o["status"] for o in approved["outcomes"]] == ["contained"], approved["outcomes"]
    patches = [r for r in h.sim.requests() if r["method"] == "PATCH" and r["path"].endswith("/" + ACCOUNT)]
    assert [p["status"] for p in patches] == [409, 200]
    assert shown(h)["networkAcls"]["defaultAction"] == "Deny"


@pytest.mark.parametrize(
    ("trusted", "why"),
    [
        ({"ip_rules": ["10.1.2.0/24"]}, "RFC 1918"),
        ({"ip_rules": ["203.0.113.9/32"]}, "single address"),
        ({"ip_rules": ["0.0.0.0/0"]}, "/8 or narrower"),
        ({"ip_rules": ["2001:db8::/32"]}, "IPv4"),
        ({"ip_rules": "203.0.113.9"}, "must be lists"),
        ({"virtual_network_rules": [f"{NET}/vnet-pipeline"]}, "not a subnet id"),
        ({"resource_access_rules": [{"tenant_id": "x", "resource_id": SYNAPSE}]}, "tenant_id"),
        ({"resource_access_rules": [{"tenant_id": TENANT_ID, "resource_id": "https://evil"}]}, "tenant_id"),
        ({"ip_range": []}, "unknown keys"),
    ],
)
def test_the_trusted_network_rules_are_validated(trusted: dict[str, Any], why: str) -> None:
    from responders.core.model import BadInput
    from responders.core.policy import Policy

    with pytest.raises(BadInput, match=re.escape(why)):
        Policy.from_dict({"network": {"trusted": trusted}})
    with pytest.raises(BadInput, match="network may only hold trusted"):
        Policy.from_dict({"network": {"trusted": {}, "bypass": "None"}})
    assert Policy.from_dict({}).network_trusted == Policy.from_dict({"network": {}}).network_trusted


def test_the_restricting_write_keeps_the_bypass_and_only_trusted_rules() -> None:
    from responders.core.network import TrustedNetwork, is_restricted, restricted_acls, untrusted_rules

    trusted = TrustedNetwork((TRUSTED_IP,), (TRUSTED_SUBNET,), ((TENANT_ID, SYNAPSE),))
    assert TrustedNetwork.from_param(trusted.as_param()) == trusted
    acls = {**OPEN_ACLS, "ipv6Rules": [{"value": "2001:db8::/48", "action": "Allow"}]}
    written = restricted_acls(acls, trusted)
    assert written["bypass"] == "Logging, Metrics"
    assert written["defaultAction"] == "Deny"
    assert "ipv6Rules" not in written, "left out, so the PATCH removes them"
    assert is_restricted(written, None, trusted)
    assert untrusted_rules(acls, trusted) == [
        f"ip {ATTACKER_IP}",
        "ipv6 2001:db8::/48",
        f"subnet {OTHER_SUBNET}",
    ]
    assert not is_restricted({**written, "defaultAction": "Allow"}, "Enabled", trusted)
    assert is_restricted({"defaultAction": "Allow"}, "Disabled", trusted), (
        "nothing reaches the public endpoint"
    )
    assert restricted_acls({}, TrustedNetwork())["bypass"] == "AzureServices", "Azure's default, written out"


def test_restore_without_a_recorded_state_writes_nothing(make_harness) -> None:
    from responders.actions.storage import DisableSharedKey, RestrictNetwork
    from responders.core.model import Action

    h = make_harness()
    for handler in (RestrictNetwork(), DisableSharedKey()):
        action = Action(handler.kind, TARGET, "k", "", {"trusted": "{}"})
        with pytest.raises(ValueError, match="no recorded"):
            handler.restore(h.rt.clients, action, {})
    assert h.writes() == []


def test_restore_refuses_when_a_rule_was_added_after_the_restriction(make_harness) -> None:
    h = make_harness(tenant=tenant(networkAcls=OPEN_ACLS), policy=policy())
    result = request(h, "storage.restrict_network", "change-net-5")
    approve(h, result["incident"])
    with h.sim.state.locked() as state:  # someone lets an address in by hand since
        acls = state.accounts[ACCOUNT]["properties"]["networkAcls"]
        acls["ipRules"].append({"value": ATTACKER_IP, "action": "Allow"})
    kept = copy.deepcopy(shown(h)["networkAcls"])
    writes = len(h.writes())
    restored = restore(h, result["incident"])
    assert restored["restored"] == []
    assert any("not what this incident left" in r["why"] for r in restored["refused"]), restored["refused"]
    assert len(h.writes()) == writes
    assert shown(h)["networkAcls"] == kept
