"""Sentinel-grade response: incident write-back, Log Analytics evidence and the evidence pack."""

from __future__ import annotations

import json

import azure.functions as func

from tests.harness import sample

INCIDENT = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
NOTHING = "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"
OUT_OF_SCOPE = "c3d4e5f6-a7b8-4c9d-8e0f-2a3b4c5d6e7f"


def comments(h, incident: str) -> list[dict]:
    return list(h.sim.state.comments(incident).values())


def evidence_pack(h, incident: str, fmt: str = "json") -> tuple[int, str]:
    req = func.HttpRequest(
        method="GET",
        url=f"http://localhost/api/evidence/{incident}",
        body=b"",
        route_params={"incident": incident},
        params={"format": fmt},
    )
    response = h.functions["evidence"](req)
    return response.status_code, response.get_body().decode()


def test_sentinel_incident_is_contained_commented_once_and_labelled(make_harness) -> None:
    h = make_harness()
    for _ in range(2):
        status, body, _ = h.http("alerts", sample("06-sentinel-incident.json"))
        assert status == 200, body
    [comment] = comments(h, INCIDENT)
    message = comment["properties"]["message"]
    assert "status contained" in message
    assert "storage.regenerate_key on stsynthlake09 key_name=key2: contained" in message
    assert "198.51.100.23 SAS" in message, "the evidence names the caller seen in the logs"
    assert "90 minutes" in message, "what remains for a human"
    labels = {label["labelName"] for label in h.sim.state.labels(INCIDENT)}
    assert labels == {"synthetic-data-leak", "contained-by-responder"}


def test_evidence_pack_names_the_callers_and_ips_in_the_logs(make_harness) -> None:
    h = make_harness()
    status, body, _ = h.http("alerts", sample("06-sentinel-incident.json"))
    incident = body["results"][0]["incident"]
    status, text = evidence_pack(h, incident)
    assert status == 200
    pack = json.loads(text)
    callers = pack["evidence"]["before"]["callers"]
    assert [(c["ip"], c["auth"]) for c in callers] == [("198.51.100.23", "SAS")]
    assert callers[0]["bytes_out"] == 104857600 + 98566144
    assert pack["regulatory_clock"]["applies"] is True
    status, markdown = evidence_pack(h, incident, "md")
    assert status == 200
    assert "198.51.100.23" in markdown
    assert "72" in markdown
    rows = h.rt.ledger.document(incident, "evidence-before")
    assert {r["CallerIpAddress"] for r in rows} == {"198.51.100.23:40112", "198.51.100.23:40118"}
    queries = [r for r in h.sim.requests() if r["path"].endswith("/query")]
    assert queries, "evidence came from the Log Analytics query API"


def test_incident_naming_nothing_containable_gets_a_comment_and_no_action(make_harness) -> None:
    h = make_harness()
    status, body, _ = h.http("alerts", sample("14-sentinel-incident-nothing-containable.json"))
    assert status == 200
    assert body["results"][0]["plan"] == []
    [comment] = comments(h, NOTHING)
    assert "Nothing named by this incident could be contained" in comment["properties"]["message"]
    assert h.sim.state.labels(NOTHING) == []
    assert all("SecurityInsights" in w["path"] for w in h.writes())


def test_alert_pointing_outside_scope_gets_a_comment_saying_so(make_harness) -> None:
    h = make_harness()
    status, _body, _ = h.http("alerts", sample("08-sentinel-alert-out-of-scope.json"))
    assert status == 200
    [comment] = comments(h, OUT_OF_SCOPE)
    assert "outside the allowed scopes of the policy" in comment["properties"]["message"]
    assert not [w for w in h.writes() if "SecurityInsights" not in w["path"]]


def test_log_search_alert_is_followed_through_the_query_api(make_harness) -> None:
    h = make_harness()
    status, body, _ = h.http("alerts", sample("15-monitor-log-search-alert.json"))
    assert status == 200, body
    [result] = body["results"]
    assert result["status"] == "contained"
    assert {o["target"].rsplit("/", 1)[-1] for o in result["outcomes"]} == {"stsynthpublic01"}
    first_query = next(r for r in h.sim.requests() if r["path"].endswith("/query"))
    assert 'AuthenticationType == "Anonymous"' in first_query["body"]["query"]


def test_dry_run_writes_nothing_to_sentinel(make_harness) -> None:
    h = make_harness(dry_run=True)
    status, _, _ = h.http("alerts", sample("06-sentinel-incident.json"))
    assert status == 200
    assert comments(h, INCIDENT) == []
    assert h.writes() == []


def test_evidence_route_rejects_bad_keys(make_harness) -> None:
    h = make_harness()
    assert evidence_pack(h, "nope")[0] == 400
    assert evidence_pack(h, "inc-0000")[0] == 404


def test_sentinel_alert_linked_to_an_incident_is_contained_and_commented(make_harness) -> None:
    h = make_harness()
    status, body, _ = h.http("alerts", sample("16-sentinel-alert-sas-reads.json"))
    assert status == 200, body
    [result] = body["results"]
    assert result["status"] == "contained"
    kinds = sorted(o["kind"] for o in result["outcomes"])
    assert kinds.count("storage.regenerate_key") == 2
    assert "storage.revoke_user_delegation_keys" in kinds
    [comment] = comments(h, "d4e5f6a7-b8c9-4d0e-9f1a-3b4c5d6e7f80")
    assert "192.0.2.200 SAS" in comment["properties"]["message"]
