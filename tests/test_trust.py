"""Trust boundaries: a body never chooses where a token goes, who the caller is, or what a write-up says."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rehearsal.simulator.tls import load_or_create_ca, server_context
from tests.harness import PREFIX, SUB, sample

WORKSPACE = (
    f"/subscriptions/{SUB}/resourceGroups/rg-secops/providers/Microsoft.OperationalInsights/workspaces/law-secops"
)
INCIDENTS = WORKSPACE + "/providers/Microsoft.SecurityInsights/incidents/"
INCIDENT = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"


class _Capture(BaseHTTPRequestHandler):
    """Records every request; answers 200 with an empty incident so a client would carry on."""

    seen: list[dict[str, Any]]

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "authorization": self.headers.get("Authorization", ""),
                "body": self.rfile.read(length).decode("utf-8", "replace") if length else "",
            }
        )
        body = json.dumps({"etag": "1", "properties": {"labels": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _record

    def log_message(self, *args: Any) -> None:  # quiet
        pass


@contextmanager
def capturing_server(cert_dir: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTPS server on loopback with a certificate of the simulator's test CA, so the SDK would
    trust it and hand it a bearer token; yields its host:port and the requests it saw."""
    seen: list[dict[str, Any]] = []
    handler = type("Capture", (_Capture,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = server_context(load_or_create_ca(cert_dir), ("127.0.0.1", "localhost"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _sentinel_writes(h: Any) -> list[dict[str, Any]]:
    return [r for r in h.sim.requests() if "securityinsights" in r["path"].lower()]


def _hostile_ids(host: str) -> list[str]:
    guid = "e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a81"
    return [
        f"https://{host}{INCIDENTS}{guid}",
        f"//{host}{INCIDENTS}{guid}",
        f"https://{host}/providers/Microsoft.SecurityInsights/incidents/{guid}",
        f"{INCIDENTS}../../../../../../../resourceGroups/rg-synth-prod/providers/Microsoft.SecurityInsights/incidents/{guid}",
        f"{WORKSPACE}/../law-other/providers/Microsoft.SecurityInsights/incidents/{guid}",
        f"{INCIDENTS}%2e%2e%2f%2e%2e%2f{guid}",
        f"{INCIDENTS}{guid}?x=https://{host}/",
        f"{INCIDENTS}{guid}\n",
    ]


def test_no_token_goes_to_a_host_named_by_a_sentinel_body(make_harness) -> None:
    h = make_harness()
    with capturing_server(h.sim.cert_dir) as (host, seen):
        for hostile in _hostile_ids(host):
            incident = copy.deepcopy(sample("06-sentinel-incident.json"))
            incident["object"]["id"] = hostile
            alert = copy.deepcopy(sample("16-sentinel-alert-sas-reads.json"))
            alert["IncidentArmId"] = hostile
            for body in (incident, alert):
                status, answer, _ = h.http("alerts", body)
                assert status == 400, (hostile, answer)
                assert "Sentinel incident" in answer["error"], answer
                rejected = h.rt.clients.table().get_entity("rejected", answer["rejected"])
                assert rejected["Reason"] == answer["error"]
    assert seen == [], "a body's incident id made the responder call a host of its choosing"
    assert _sentinel_writes(h) == []
    assert h.writes() == [], "a body with a forged incident id changes nothing"


def test_an_incident_in_another_workspace_is_contained_but_not_written_back(make_harness) -> None:
    h = make_harness()
    other = INCIDENTS.replace("law-secops", "law-elsewhere") + INCIDENT
    incident = copy.deepcopy(sample("06-sentinel-incident.json"))
    incident["object"]["id"] = other
    status, answer, _ = h.http("alerts", incident)
    assert status == 200, answer
    [result] = answer["results"]
    assert result["status"] == "contained"
    assert _sentinel_writes(h) == [], "no comment or label goes to a workspace the responder was not given"
    row = h.rt.ledger.incident(result["incident"])
    assert row["CommentStatus"].startswith("refused:"), row["CommentStatus"]
    assert "RESPONDER_SENTINEL_WORKSPACE_ID" in row["CommentStatus"]


def test_the_write_back_goes_to_the_rebuilt_incident_id(make_harness) -> None:
    h = make_harness()
    incident = copy.deepcopy(sample("06-sentinel-incident.json"))
    # the case Sentinel happens to send is not what the request is built from
    incident["object"]["id"] = INCIDENTS.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/") + INCIDENT
    status, answer, _ = h.http("alerts", incident)
    assert status == 200, answer
    paths = {r["path"].split("?")[0] for r in _sentinel_writes(h)}
    assert paths, "the comment was written"
    assert all(p.startswith(INCIDENTS + INCIDENT) for p in paths), paths


@pytest.mark.parametrize(
    "resource",
    [
        "/subscriptions/not-a-guid/resourceGroups/rg-synth-prod/providers/Microsoft.Storage/storageAccounts/stsynthsas03",
        f"/subscriptions/{SUB}/resourceGroups/../providers/Microsoft.Storage/storageAccounts/stsynthsas03",
        f"/subscriptions/{SUB}/resourceGroups/rg%2f..%2fx/providers/Microsoft.Storage/storageAccounts/stsynthsas03",
        f"https://127.0.0.1:1/subscriptions/{SUB}/resourceGroups/rg-synth-prod/providers/Microsoft.Storage/storageAccounts/stsynthsas03",
    ],
)
def test_storage_ids_from_input_are_validated_part_by_part(make_harness, resource: str) -> None:
    h = make_harness()
    status, answer, _ = h.http("playbook", {"resourceId": resource, "execute": True})
    assert status == 400, answer
    assert h.sim.requests() == [] or all(r["path"].startswith("/msi/") for r in h.sim.requests())


# caller identity ---------------------------------------------------------------------------------
ALLOWED = "11111111-2222-4333-8444-555555555555"


def test_the_caller_header_counts_only_when_app_service_authentication_is_on(make_harness) -> None:
    h = make_harness(env={"RESPONDER_PLAYBOOK_CALLERS": ALLOWED})
    request = {"resourceId": PREFIX + "stsynthsas03", "execute": True}
    # without App Service authentication anyone holding the key can write this header
    status, body, _ = h.http("playbook", request, {"x-ms-client-principal-id": ALLOWED})
    assert status == 401, body
    assert "WEBSITE_AUTH_ENABLED" in body["error"]
    assert h.writes() == []


def test_without_platform_authentication_the_ledger_records_the_function_key(make_harness) -> None:
    h = make_harness()
    [event] = sample("02-account-public-access-enabled.json")
    h.eventgrid(event)
    incident = h.incident(event["id"])["PartitionKey"]
    forged = {"x-ms-client-principal-id": "Mallory\n- Restored by the security team"}
    status, body, _ = h.http("playbook", {"restore": incident, "execute": True}, forged)
    assert status == 200, body
    row = h.rt.ledger.incident(incident)
    assert row["RestoredBy"] == "function key"
    assert {a.get("RestoredBy") for a in row["actions"] if a.get("RestoredBy")} == {"function key"}
    status, body, _ = h.http("playbook", {"resourceId": PREFIX + "stsynthsas03", "execute": True}, forged)
    assert status == 200, body
    assert h.rt.ledger.incident(body["results"][0]["incident"])["RequestedBy"] == "function key"


def test_with_platform_authentication_identities_are_recorded_as_guids(make_harness) -> None:
    h = make_harness(env={"WEBSITE_AUTH_ENABLED": "True"})
    request = {"resourceId": PREFIX + "stsynthsas03", "execute": True}
    status, body, _ = h.http("playbook", request, {"x-ms-client-principal-id": "not-a-guid\nx"})
    assert status == 401, body
    assert h.writes() == []
    status, body, _ = h.http("playbook", request, {"x-ms-client-principal-id": ALLOWED.upper()})
    assert status == 200, body
    incident = body["results"][0]["incident"]
    assert h.rt.ledger.incident(incident)["RequestedBy"] == ALLOWED
    restore = {"restore": incident, "execute": True}
    status, body, _ = h.http("playbook", restore, {"x-ms-client-principal-id": ALLOWED})
    assert status == 200, body
    assert h.rt.ledger.incident(incident)["RestoredBy"] == ALLOWED


def test_a_caller_allow_list_that_is_not_guids_is_a_configuration_error() -> None:
    from responders.settings import ConfigError, Settings

    env = {"RESPONDER_LEDGER_CONNECTION_STRING": "x", "RESPONDER_PLAYBOOK_CALLERS": "alice"}
    with pytest.raises(ConfigError, match="RESPONDER_PLAYBOOK_CALLERS"):
        Settings.from_env(env)


# hostile shapes ----------------------------------------------------------------------------------
def _nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def _nested_text(depth: int) -> str:
    return '{"a": ' * depth + '"x"' + "}" * depth


def _deep_bodies() -> list[tuple[str, bytes]]:
    event = copy.deepcopy(sample("02-account-public-access-enabled.json")[0])
    event["data"]["claims"] = "DEEP"
    deep_claims = json.dumps(event).replace('"DEEP"', _nested_text(1000))
    alert = sample("16-sentinel-alert-sas-reads.json")
    deep_entities = dict(alert, Entities="[" * 5000 + "]" * 5000)
    deep_extended = dict(alert, ExtendedProperties=_nested_text(5000))
    incident = copy.deepcopy(sample("06-sentinel-incident.json"))
    incident["object"]["properties"]["alerts"] = [{"properties": {"entities": f"[{_nested_text(900)}]"}}]
    return [
        ("object nested 1,000 deep", deep_claims.encode()),
        ("array nested 1,000 deep", b"[" * 1000 + b"]" * 1000),
        ("Entities string nested 5,000 deep", json.dumps(deep_entities).encode()),
        ("ExtendedProperties string nested 5,000 deep", json.dumps(deep_extended).encode()),
        ("incident alert entities nested 900 deep", json.dumps(incident).encode()),
    ]


@pytest.mark.parametrize(("what", "body"), _deep_bodies(), ids=[w for w, _ in _deep_bodies()])
def test_deeply_nested_bodies_are_a_400_kept_under_rejected(make_harness, what: str, body: bytes) -> None:
    h = make_harness()
    status, answer, _ = h.http("alerts", body)
    assert status == 400, (what, answer)
    assert "nested" in answer["error"], answer
    rejected = h.rt.clients.table().get_entity("rejected", answer["rejected"])
    assert rejected["Reason"] == answer["error"]
    assert rejected["Size"] == len(body)
    assert h.writes() == []


def test_a_deeply_nested_event_grid_event_is_rejected_not_retried_for_a_day(make_harness) -> None:
    h = make_harness()
    event = copy.deepcopy(sample("02-account-public-access-enabled.json")[0])
    event["data"]["claims"] = _nested(1000)
    h.eventgrid(event)  # returns: raising would make Event Grid redeliver a poison event for 24 hours
    rejected = [r for r in h.all_ledger_rows() if r["PartitionKey"] == "rejected"]
    assert len(rejected) == 1
    assert "nested" in rejected[0]["Reason"]
    assert h.writes() == []


ACCOUNT = (PREFIX + "stsynthsas03").encode()


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("playbook", b'{"resourceId": "' + ACCOUNT + b'", "execute": false, "execute": true}'),
        ("playbook", b'{"resourceId": "' + ACCOUNT + b'", "resourceId": "x", "execute": true}'),
        ("alerts", b'{"SystemAlertId": "a", "SystemAlertId": "b", "AlertType": "x"}'),
        ("alerts", b'[{"id": "e", "eventType": "x", "subject": "s", "data": {"b": {"k": 1, "k" : 2}}}]'),
        # an escaped colon elsewhere must not hide the duplicate
        ("alerts", b'{"SystemAlertId": "a\\u003a", "AlertType": "x", "AlertType": "y"}'),
    ],
)
def test_a_body_with_a_duplicate_key_is_refused(make_harness, route: str, body: bytes) -> None:
    h = make_harness()
    status, answer, _ = h.http(route, body)
    assert status == 400, answer
    assert "duplicate key" in answer["error"], answer
    assert h.writes() == []


def test_bodies_without_duplicates_decode_as_before() -> None:
    from responders.core.parse import decode_json

    for raw in (
        b'{"a": "x:y", "b": {"c": ":::"}}',
        b'{"a" : 1, "b"\n:\t2}',
        b'{"a\\u003a": 1, "b": "\\u003a"}',
        b'{"a": "\\"k\\": 1", "k": 2}',
        json.dumps(sample("06-sentinel-incident.json")).encode(),
    ):
        assert decode_json(raw) == json.loads(raw)


# Objects are lists of (key, value) pairs, so a key can be given twice; strings use an alphabet of
# the characters the duplicate filter counts or that change when encoded again.
_CHARS = st.sampled_from(list('ab:"\\ ,{}\u00e9\u2603\n'))
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(_CHARS, max_size=5))
_TREES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(_CHARS, max_size=3), inner, max_size=4).map(lambda d: ("obj", [*d.items()])),
    ),
    max_leaves=12,
)
# (item separator, key separator, ensure_ascii, escape every colon inside strings as backslash-u003a)
_FORMATS = st.tuples(
    st.sampled_from([",", ", ", ",\n  "]), st.sampled_from([":", ": ", " :\t"]), st.booleans(), st.booleans()
)


def _emit(value: Any, fmt: tuple[str, str, bool, bool]) -> str:
    items, colon, ascii_only, escape_colons = fmt
    if isinstance(value, tuple):
        pairs = (_emit(k, fmt) + colon + _emit(v, fmt) for k, v in value[1])
        return "{" + items.join(pairs) + "}"
    if isinstance(value, list):
        return "[" + items.join(_emit(v, fmt) for v in value) + "]"
    text = json.dumps(value, ensure_ascii=ascii_only)
    return text.replace(":", "\\u003a") if escape_colons and isinstance(value, str) else text


def _objects(value: Any) -> list[list[tuple[str, Any]]]:
    if isinstance(value, tuple):
        return [value[1], *(o for _, v in value[1] for o in _objects(v))]
    if isinstance(value, list):
        return [o for v in value for o in _objects(v)]
    return []


@settings(max_examples=400, deadline=None)
@given(tree=_TREES, fmt=_FORMATS, duplicate=st.booleans(), as_bytes=st.booleans(), data=st.data())
def test_a_body_is_refused_exactly_when_an_object_repeats_a_key(
    tree: Any, fmt: tuple[str, str, bool, bool], duplicate: bool, as_bytes: bool, data: st.DataObject
) -> None:
    from responders.core.model import BadInput
    from responders.core.parse import decode_json

    tree = ("obj", [("k", copy.deepcopy(tree))])
    if duplicate:
        pairs = data.draw(st.sampled_from([o for o in _objects(tree) if o]))
        key, _ = data.draw(st.sampled_from(pairs))
        pairs.insert(data.draw(st.integers(0, len(pairs))), (key, data.draw(_SCALARS)))
    text = _emit(tree, fmt)
    raw = text.encode() if as_bytes else text
    if duplicate:
        with pytest.raises(BadInput, match="duplicate key"):
            decode_json(raw)
    else:
        assert decode_json(raw) == json.loads(text)


# write-ups ---------------------------------------------------------------------------------------
FORGED = (
    "SAS reads\nActions:\n- identity.disable_service_principal on etl-synth-exporter: contained\r\n"
    "<img src=x onerror=alert(1)> [sign in](https://evil.example/login) www.evil.example"
)


def test_a_forged_alert_title_adds_no_line_or_markup_to_the_sentinel_comment(make_harness) -> None:
    h = make_harness()
    alert = dict(sample("16-sentinel-alert-sas-reads.json"), AlertDisplayName=FORGED)
    status, body, _ = h.http("alerts", alert)
    assert status == 200, body
    [comment] = h.sim.state.comments("d4e5f6a7-b8c9-4d0e-9f1a-3b4c5d6e7f80").values()
    lines = comment["properties"]["message"].splitlines()
    assert [line for line in lines if line.startswith("Actions")] == ["Actions:"]
    assert not [line for line in lines if line.startswith("- identity.")], "a forged action line"
    message = "\n".join(lines)
    assert "<img" not in message
    assert "&lt;img src=x onerror=alert(1)&gt;" in message, "the title is shown, as text"


def test_a_forged_alert_title_is_inert_in_the_evidence_pack(make_harness) -> None:
    from tests.test_sentinel import evidence_pack

    h = make_harness()
    alert = dict(sample("16-sentinel-alert-sas-reads.json"), AlertDisplayName=FORGED)
    status, body, _ = h.http("alerts", alert)
    assert status == 200, body
    status, markdown = evidence_pack(h, body["results"][0]["incident"], "md")
    assert status == 200
    lines = markdown.splitlines()
    assert not [line for line in lines if line.startswith(("Actions", "- identity.", "<"))], "forged lines"
    assert "<img" not in markdown
    assert "](https://evil" not in markdown, "no Markdown link"
    assert "`https://evil.example/login)`" in markdown, "a bare URL is shown as code, which does not link"
    assert "`www.evil.example`" in markdown
    assert "\\[sign in\\]" in markdown


@pytest.mark.parametrize(
    "query",
    [
        'adx("https://127.0.0.1:1/db").StorageBlobLogs | project _ResourceId',
        'StorageBlobLogs | union workspace("law-elsewhere").StorageBlobLogs | project _ResourceId',
        'externaldata(_ResourceId: string) ["https://127.0.0.1:1/x.csv"]',
        'StorageBlobLogs | evaluate http_request("https://127.0.0.1:1/")',
    ],
)
def test_a_log_search_alert_query_that_reaches_beyond_the_workspace_is_not_run(make_harness, query) -> None:
    h = make_harness()
    alert = copy.deepcopy(sample("15-monitor-log-search-alert.json"))
    alert["data"]["alertContext"]["condition"]["allOf"][0]["searchQuery"] = query
    status, body, _ = h.http("alerts", alert)
    assert status == 400, body
    assert "beyond its workspace" in body["error"]
    assert not [r for r in h.sim.requests() if r["path"].endswith("/query")], "the query was not run"


def test_the_cli_operator_is_recorded_in_a_plain_charset(monkeypatch: pytest.MonkeyPatch) -> None:
    from responders.cli import _operator

    monkeypatch.setenv("LOGNAME", "mallory\n- Restored by <b>security</b>")
    assert _operator() == "cli:mallory_-_Restored_by__b_security__b_"
