"""Guardrails before any write: approval gates, restore of reversible actions, playbook callers."""

from __future__ import annotations

from tests.harness import PREFIX, sample

APPROVAL = {
    "scope": {"allow": ["/subscriptions/7d1f3c2a-5b9e-4c1d-9a8e-3f2b1c0d4e5a"]},
    "responder": {"object_ids": []},
    "principals": {"allow": ["3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d"]},
    "approval": {"storage.regenerate_key": "approval", "identity.disable_service_principal": "approval"},
}
ETL_SP = "3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d"


def test_actions_awaiting_approval_wait_and_run_when_approved(make_harness) -> None:
    h = make_harness(policy=APPROVAL)
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)
    row = h.incident(event["id"])
    assert row["Status"] == "pending-approval"
    statuses = {(a["Kind"], a["Params"].get("key_name")): a["Status"] for a in row["actions"]}
    assert statuses == {
        ("storage.regenerate_key", "key1"): "pending-approval",
        ("storage.regenerate_key", "key2"): "pending-approval",
        ("storage.revoke_user_delegation_keys", None): "contained",
        ("identity.disable_service_principal", None): "pending-approval",
    }
    assert [w["path"].rsplit("/", 1)[-1] for w in h.writes()] == ["revokeUserDelegationKeys"]

    status, body, _ = h.http("playbook", {"approve": row["PartitionKey"]})
    assert status == 200
    assert body["dry_run"] is True
    assert len(body["would_approve"]) == 3
    assert len(h.writes()) == 1

    status, body, _ = h.http("playbook", {"approve": row["PartitionKey"], "execute": True})
    assert status == 200, body
    assert body["status"] == "contained"
    assert h.sim.state.snapshot()["servicePrincipals"][ETL_SP]["accountEnabled"] is False
    assert len([w for w in h.writes() if w["path"].endswith("regenerateKey")]) == 2
    # a redelivery of the original event now reports the finished incident and acts on nothing
    writes = len(h.writes())
    h.eventgrid(event)
    assert len(h.writes()) == writes


def test_approving_an_unknown_or_finished_action_is_refused(make_harness) -> None:
    h = make_harness()
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)
    incident = h.incident(event["id"])["PartitionKey"]
    status, body, _ = h.http("playbook", {"approve": incident, "execute": True})
    assert status == 400
    assert "no action pending approval" in body["error"]
    status, body, _ = h.http("playbook", {"approve": "inc-doesnotexist", "execute": True})
    assert status == 400
    assert "no incident" in body["error"]


def test_restore_puts_back_reversible_actions_and_refuses_key_rotation(make_harness) -> None:
    h = make_harness()
    for name in ("01-container-made-public.json", "03-listkeys-by-app.json"):
        [event] = sample(name)
        h.eventgrid(event)
    public = h.incident(sample("01-container-made-public.json")[0]["id"])["PartitionKey"]
    keys = h.incident(sample("03-listkeys-by-app.json")[0]["id"])["PartitionKey"]

    status, body, _ = h.http("playbook", {"restore": public})
    assert status == 200
    assert body["dry_run"] is True
    assert {r["status"] for r in body["restored"]} == {"would-restore"}
    writes = len(h.writes())

    status, body, _ = h.http("playbook", {"restore": public, "execute": True})
    assert status == 200, body
    assert [r["status"] for r in body["restored"]] == ["restored"] * 3
    account = h.sim.state.snapshot()["accounts"]["stsynthpublic01"]
    assert account["properties"]["allowBlobPublicAccess"] is True
    assert account["containers"]["patients-synth"]["properties"]["publicAccess"] == "Container"
    assert account["containers"]["reports"]["properties"]["publicAccess"] == "Blob"
    assert len(h.writes()) == writes + 3
    row = h.incident(sample("01-container-made-public.json")[0]["id"])
    assert row["Status"] == "restored"
    assert {a["Status"] for a in row["actions"]} == {"restored"}

    status, body, _ = h.http("playbook", {"restore": keys, "execute": True})
    assert status == 200
    assert [r["kind"] for r in body["refused"]] == [
        "storage.regenerate_key",
        "storage.regenerate_key",
        "storage.revoke_user_delegation_keys",
    ]
    assert all("cannot be undone" in r["why"] for r in body["refused"])
    assert [r["kind"] for r in body["restored"]] == ["identity.disable_service_principal"]
    assert h.sim.state.snapshot()["servicePrincipals"][ETL_SP]["accountEnabled"] is True


def test_playbook_caller_allow_list(make_harness) -> None:
    allowed = "11111111-2222-4333-8444-555555555555"
    h = make_harness(env={"RESPONDER_PLAYBOOK_CALLERS": allowed, "WEBSITE_AUTH_ENABLED": "true"})
    request = {"resourceId": PREFIX + "stsynthsas03", "execute": True}
    status, body, _ = h.http("playbook", request)
    assert status == 401
    assert "caller identity required" in body["error"]
    status, body, _ = h.http(
        "playbook", request, {"x-ms-client-principal-id": "99999999-2222-4333-8444-555555555555"}
    )
    assert status == 403
    assert h.writes() == []
    status, body, _ = h.http("playbook", request, {"x-ms-client-principal-id": allowed.upper()})
    assert status == 200, body
    assert body["results"][0]["status"] == "contained"


def test_cli_restore_and_ledger_commands_use_the_configured_settings(make_harness, capsys) -> None:
    import json

    from responders.cli import main

    h = make_harness()
    [event] = sample("02-account-public-access-enabled.json")
    h.eventgrid(event)
    incident = h.incident(event["id"])["PartitionKey"]
    assert main(["ledger"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["by_status"] == {"contained": 1}
    assert main(["ledger", incident]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "contained"
    assert main(["restore", incident]) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] is True
    assert main(["restore", incident, "--execute"]) == 0
    assert [r["status"] for r in json.loads(capsys.readouterr().out)["restored"]] == ["restored", "restored"]
    assert main(["restore", "inc-nope"]) == 2
    assert "no incident" in capsys.readouterr().err
