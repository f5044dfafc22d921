"""Each registered function end to end: real SDK clients -> simulated tenant, ledger -> Azurite."""

from __future__ import annotations

import copy

from tests.harness import PREFIX, RESPONDER_OID, account_id, sample


def test_container_made_public_is_contained_and_recorded(make_harness) -> None:
    h = make_harness()
    [event] = sample("01-container-made-public.json")
    h.eventgrid(event)

    account = h.sim.state.snapshot()["accounts"]["stsynthpublic01"]
    assert account["properties"]["allowBlobPublicAccess"] is False
    assert {n: c["properties"]["publicAccess"] for n, c in account["containers"].items()} == {
        "patients-synth": "None",
        "reports": "None",
        "models": "None",
    }
    row = h.incident(event["id"])
    assert row["Status"] == "contained"
    assert row["Leak"] is True
    assert [a["Kind"] for a in row["actions"]] == [
        "storage.disable_public_access",
        "storage.make_container_private",
        "storage.make_container_private",
    ]
    first = row["actions"][0]
    assert first["Before"] == {"allowBlobPublicAccess": True}
    assert first["After"]["allowBlobPublicAccess"] is False
    assert first["Status"] == "contained"
    assert row["actions"][1]["Before"]["publicAccess"] == "Container"
    assert (
        row["StateBefore"][account_id("stsynthpublic01").lower()]["containers"]["patients-synth"]
        == "Container"
    )


def test_keys_listed_by_an_app_rotates_both_keys_and_disables_the_app(make_harness) -> None:
    h = make_harness()

    def key_times() -> dict[str, str]:
        keys = h.sim.state.snapshot()["accounts"]["stsynthclaims02"]["keys"]
        return {name: key["creationTime"] for name, key in keys.items()}

    before = key_times()
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)

    snap = h.sim.state.snapshot()
    after = key_times()
    assert after["key1"] != before["key1"]
    assert after["key2"] != before["key2"]
    assert after["key1"] <= after["key2"], "key1 is rotated before key2"
    assert snap["servicePrincipals"]["3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d"]["accountEnabled"] is False
    assert snap["accounts"]["stsynthclaims02"]["userDelegationKeysRevokedAt"]
    row = h.incident(event["id"])
    assert row["Status"] == "contained"
    statuses = {(a["Kind"], a["Params"].get("key_name")): a["Status"] for a in row["actions"]}
    assert set(statuses.values()) == {"contained"}
    assert len(statuses) == 4


def test_same_event_twice_contains_once(make_harness) -> None:
    h = make_harness()
    [event] = sample("03-listkeys-by-app.json")
    h.eventgrid(event)
    first_writes = len(h.writes())
    h.eventgrid(copy.deepcopy(event))
    assert len(h.writes()) == first_writes
    regenerations = [r for r in h.sim.requests() if r["path"].lower().endswith("/regeneratekey")]
    assert len(regenerations) == 2
    assert h.incident(event["id"])["Deliveries"] == 2


def test_dry_run_makes_no_write_but_records_the_plan(make_harness) -> None:
    h = make_harness(dry_run=True)
    for name in ("01-container-made-public.json", "03-listkeys-by-app.json"):
        [event] = sample(name)
        h.eventgrid(event)
        row = h.incident(event["id"])
        assert row["Status"] == "dry-run"
        assert row["Plan"], "the plan is recorded so a human can review it"
        assert row["actions"] == []
    assert h.writes() == []


def test_non_synthetic_event_changes_nothing_and_says_why(make_harness) -> None:
    h = make_harness()
    [event] = sample("10-non-synthetic-container-public.json")
    h.eventgrid(event)
    row = h.incident(event["id"])
    assert row["Status"] == "ignored"
    assert any("no synthetic-data marker" in f for f in row["Findings"])
    assert h.writes() == []


def test_a_write_with_our_identity_but_not_recorded_as_ours_is_judged_and_flagged(make_harness) -> None:
    h = make_harness()
    [event] = sample("13-own-echo.json")
    assert (
        event["data"]["claims"]["http://schemas.microsoft.com/identity/claims/objectidentifier"]
        == RESPONDER_OID
    )
    h.eventgrid(event)
    row = h.incident(event["id"])
    assert row["Status"] == "contained"
    assert any("matching no write it recorded" in f for f in row["Findings"])


def test_simulator_echo_of_our_own_containment_is_ignored(make_harness) -> None:
    h = make_harness()
    [event] = sample("02-account-public-access-enabled.json")
    h.eventgrid(event)
    echoes = h.sim.events()
    assert echoes, "the simulator emits an event for each write we made"
    writes_before = len(h.writes())
    for echo in echoes:
        h.eventgrid(echo)
        assert h.incident(echo["id"])["Status"] == "ignored"
    assert len(h.writes()) == writes_before


def test_exempt_and_out_of_scope_accounts_are_not_touched(make_harness) -> None:
    h = make_harness()
    [exempt] = sample("09-exempt-account-made-public.json")
    h.eventgrid(exempt)
    status, body, _ = h.http("alerts", sample("08-sentinel-alert-out-of-scope.json"))
    assert status == 200
    [result] = body["results"]
    assert result["skipped"][0]["why"] == "outside the allowed scopes of the policy"
    assert "exempt by tag" in h.incident(exempt["id"])["Skipped"][0][1]
    # the only writes tell the Sentinel incident why nothing was done (a comment and a label)
    writes = h.writes()
    assert all("Microsoft.SecurityInsights" in w["path"] for w in writes)
    [comment] = [w for w in writes if "/comments/" in w["path"]]
    assert "outside the allowed scopes" in comment["body"]["properties"]["message"]


def test_sentinel_incident_contains_account_and_disables_the_app_by_its_entra_object_id(make_harness) -> None:
    h = make_harness()
    status, body, _ = h.http("alerts", sample("06-sentinel-incident.json"))
    assert status == 200, body
    [result] = body["results"]
    assert result["status"] == "contained"
    kinds = sorted(o["kind"] for o in result["outcomes"])
    assert kinds == [
        "identity.disable_service_principal",
        "storage.regenerate_key",
        "storage.regenerate_key",
        "storage.revoke_user_delegation_keys",
    ]
    assert (
        h.sim.state.snapshot()["servicePrincipals"]["6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e"]["accountEnabled"]
        is False
    )


def test_cloudevents_batch_and_monitor_alert_over_http(make_harness) -> None:
    h = make_harness()
    status, body, _ = h.http("alerts", sample("04-sas-listed.cloudevents.json"))
    assert status == 200, body
    assert body["results"][0]["status"] == "contained"
    status, body, _ = h.http("alerts", sample("07-monitor-common-alert.json"))
    assert status == 200, body
    assert [o["kind"] for o in body["results"][0]["outcomes"]] == [
        "storage.regenerate_key",
        "storage.regenerate_key",
        "storage.revoke_user_delegation_keys",
    ]


def test_subscription_validation_and_cloudevents_handshake(make_harness) -> None:
    import json
    from pathlib import Path

    h = make_harness()
    examples = Path(__file__).resolve().parent / "data" / "azure"
    validation = json.loads((examples / "eventgrid_subscription_validation_event_docs.json").read_text())
    expected = json.loads((examples / "eventgrid_subscription_validation_response_docs.json").read_text())
    status, body, _ = h.http("alerts", validation, {"aeg-event-type": "SubscriptionValidation"})
    assert (status, body) == (200, expected)
    status, _, response = h.http(
        "alerts", b"", {"WebHook-Request-Origin": "eventgrid.azure.net"}, method="OPTIONS"
    )
    assert status == 200
    assert response.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert h.sim.requests() == []


def test_playbook_is_dry_run_unless_asked_to_execute(make_harness) -> None:
    h = make_harness()
    target = PREFIX + "stsynthsas03"
    status, body, _ = h.http("playbook", {"resourceId": target})
    assert status == 200, body
    [result] = body["results"]
    assert result["dry_run"] is True
    assert {o["status"] for o in result["outcomes"]} == {"dry-run"}
    assert h.writes() == []
    status, body, _ = h.http("playbook", {"resourceId": target, "execute": True, "requestId": "change-4711"})
    assert status == 200, body
    assert body["results"][0]["status"] == "contained"
    assert h.writes()


def test_playbook_disables_a_service_principal_by_object_id(make_harness) -> None:
    h = make_harness()
    oid = "6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e"
    status, body, _ = h.http("playbook", {"resourceId": oid, "execute": True, "reason": "ticket SEC-12"})
    assert status == 200, body
    [outcome] = body["results"][0]["outcomes"]
    assert outcome["status"] == "contained"
    assert outcome["before"]["accountEnabled"] is True
    assert outcome["after"]["accountEnabled"] is False


def test_global_dry_run_wins_over_a_playbook_execute(make_harness) -> None:
    h = make_harness(dry_run=True)
    status, body, _ = h.http("playbook", {"resourceId": PREFIX + "stsynthsas03", "execute": True})
    assert status == 200
    assert "RESPONDER_DRY_RUN" in body["note"]
    assert h.writes() == []
