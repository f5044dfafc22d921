"""Hostile and malformed input at every HTTP endpoint: a 400 with a reason, no action, a ledger row."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responders.core.model import BadInput
from responders.core.parse import parse_body, parse_item
from tests.harness import PREFIX, sample

MALFORMED = [
    (b"", "empty"),
    (b"{", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[]", "empty"),
    (b"null", "JSON object"),
    (b'"text"', "JSON object"),
    (b'{"eventType": "Microsoft.Resources.ResourceWriteSuccess", "id": "a"}', "subject"),
    (b'{"eventType": 5, "id": "a", "subject": "s"}', "must be a string"),
    (b'{"specversion": "1.0", "id": "a", "source": "s"}', "type"),
    (
        b'{"object": {"id": "/subscriptions/7d1f3c2a-5b9e-4c1d-9a8e-3f2b1c0d4e5a/resourceGroups/rg-secops'
        b"/providers/Microsoft.OperationalInsights/workspaces/law-secops/providers/Microsoft.SecurityInsights"
        b'/Incidents/1", "properties": {"relatedEntities": 7}}}',
        "entities must be a list",
    ),
    (
        b'{"object": {"id": "/x/providers/Microsoft.SecurityInsights/Incidents/1", "properties": {}}}',
        "object.id is not a Sentinel incident ARM id",
    ),
    (b'{"schemaId": "azureMonitorCommonAlertSchema", "data": {"essentials": {}}}', "alertId"),
    (b'{"SystemAlertId": "x", "Entities": "[{"}', "not JSON"),
]


@pytest.mark.parametrize(("body", "reason"), MALFORMED)
def test_malformed_alert_body_is_a_400_with_reason_and_no_action(
    make_harness, body: bytes, reason: str
) -> None:
    h = make_harness()
    status, payload, _ = h.http("alerts", body)
    assert status == 400
    assert reason in payload["error"]
    assert h.writes() == []
    rejected = [r for r in h.all_ledger_rows() if r["PartitionKey"] == "rejected"]
    assert [r["Reason"] for r in rejected] == [payload["error"]]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"resourceId": "not-an-id"}', "resourceId must be"),
        (b'{"resourceId": "' + PREFIX.encode() + b'stsynthsas03", "execute": "yes"}', "execute must be"),
        (b'{"resourceId": "' + PREFIX.encode() + b'stsynthsas03", "rm": true}', "unknown fields"),
        (b'{"resourceId": "' + PREFIX.encode() + b'stsynthsas03", "actions": "all"}', "actions must be"),
        (b"{}", "exactly one of"),
        (b'[{"resourceId": "x"}, {"resourceId": "y"}]', "one JSON object"),
    ],
)
def test_malformed_playbook_request_is_a_400(make_harness, body: bytes, reason: str) -> None:
    h = make_harness()
    status, payload, _ = h.http("playbook", body)
    assert status == 400
    assert reason in payload["error"]
    assert h.writes() == []


def test_a_batch_with_one_bad_item_acts_on_none(make_harness) -> None:
    h = make_harness()
    good = sample("02-account-public-access-enabled.json")[0]
    bad = {"eventType": "Microsoft.Resources.ResourceWriteSuccess", "id": "x"}
    status, payload, _ = h.http("alerts", [good, bad])
    assert status == 400
    assert payload["error"].startswith("item 1:")
    assert h.writes() == []
    assert h.incident(good["id"]) is None


def test_oversized_body_is_rejected(make_harness) -> None:
    h = make_harness()
    status, payload, _ = h.http("alerts", b"[" + b" " * 1_100_000 + b"]")
    assert status == 400
    assert "larger than" in payload["error"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=20) | st.integers(),
        "eventType": st.sampled_from(
            [
                "Microsoft.Resources.ResourceWriteSuccess",
                "Microsoft.Storage.BlobCreated",
                "Microsoft.Resources.ResourceActionSuccess",
                "x",
            ]
        )
        | st.integers(),
        "subject": st.text(max_size=80) | st.just(PREFIX + "stsynthpublic01"),
        "data": json_values,
        "specversion": st.sampled_from(["1.0", "0.3"]),
        "type": st.text(max_size=20),
        "source": st.text(max_size=20),
        "object": json_values,
        "SystemAlertId": st.text(max_size=10),
        "Entities": json_values | st.text(max_size=20),
        "schemaId": st.just("azureMonitorCommonAlertSchema"),
        "resourceId": st.text(max_size=40),
    },
)


@settings(max_examples=400, deadline=None)
@given(
    body=st.one_of(
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
        event_like.map(lambda v: json.dumps(v).encode()),
    )
)
def test_parser_never_raises_anything_but_bad_input(body: bytes) -> None:
    reason = ""
    try:
        for item in parse_body(body, now="2026-11-25T08:00:00Z"):
            parse_item(item, now="2026-11-25T08:00:00Z")
    except BadInput as exc:
        reason = str(exc) or "(empty)"
    assert reason != "(empty)", "a rejection always says why"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=100),
        event_like.map(lambda v: json.dumps(v).encode()),
        st.lists(event_like, max_size=3).map(lambda v: json.dumps(v).encode()),
    )
)
def test_endpoints_answer_hostile_bodies_with_4xx_or_a_harmless_2xx(make_harness, body: bytes) -> None:
    h = getattr(test_endpoints_answer_hostile_bodies_with_4xx_or_a_harmless_2xx, "harness", None)
    if h is None:
        h = make_harness(dry_run=True)
        test_endpoints_answer_hostile_bodies_with_4xx_or_a_harmless_2xx.harness = h  # type: ignore[attr-defined]
    for route in ("alerts", "playbook"):
        status, payload, _ = h.http(route, body)
        assert status in (200, 400), (route, status, payload)
        if status == 400:
            assert payload["error"]
    assert h.writes() == []


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(incident=st.text(max_size=80), fmt=st.text(max_size=6))
def test_evidence_route_answers_any_key_with_a_4xx_or_the_pack(make_harness, incident: str, fmt: str) -> None:
    import azure.functions as func

    h = getattr(test_evidence_route_answers_any_key_with_a_4xx_or_the_pack, "harness", None)
    if h is None:
        h = make_harness(dry_run=True)
        test_evidence_route_answers_any_key_with_a_4xx_or_the_pack.harness = h  # type: ignore[attr-defined]
    req = func.HttpRequest(
        method="GET",
        url="http://localhost/api/evidence/x",
        body=b"",
        route_params={"incident": incident},
        params={"format": fmt},
    )
    response = h.functions["evidence"](req)
    assert response.status_code in (400, 404)
    assert json.loads(response.get_body())["error"]
