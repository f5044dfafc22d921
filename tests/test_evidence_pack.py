"""The evidence pack from recorded ledger incidents: pure, so every claim is checked without Azure."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from responders.core.timeutil import parse_time
from responders.evidence_pack import build_pack, render_json, render_markdown

DATA = json.loads((Path(__file__).parent / "data" / "ledger_incidents.json").read_text())
SENTINEL = "inc-cea0a0f0587e9db4f78e20d2"
KEYS_LISTED = "inc-d7a7d1a4ed347d8c6a471c60"
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
IRREVERSIBLE = ("storage.regenerate_key", "storage.revoke_user_delegation_keys")


def incident(key: str = SENTINEL) -> dict:
    return copy.deepcopy(DATA[key])


def with_evidence() -> dict:
    row = incident(KEYS_LISTED)
    row["Evidence"] = {
        "window": {"start": "2026-11-25T07:00:00Z", "end": "2026-11-25T09:00:00Z"},
        "before": {
            "rows": 5,
            "callers": [
                {
                    "ip": "203.0.113.45",
                    "auth": "Anonymous",
                    "operations": {"GetBlob": 3},
                    "bytes_out": 123,
                    "first": "2026-11-25T07:58:20Z",
                    "last": "2026-11-25T08:10:00Z",
                    "accounts": ["stsynthclaims02"],
                    "object_id": "",
                },
                {
                    "ip": "198.51.100.23",
                    "auth": "SAS",
                    "operations": {"GetBlob": 2},
                    "bytes_out": 456,
                    "first": "2026-11-25T08:00:00Z",
                    "last": "2026-11-25T08:30:00Z",
                    "accounts": ["stsynthclaims02"],
                    "object_id": "3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d",
                },
            ],
            "auth_types": {"SAS": 2, "Anonymous": 3},
            "bytes_out": 579,
            "error": "",
        },
        "after": {"rows": 0, "callers": [], "auth_types": {}, "bytes_out": 0, "error": ""},
        "audit": [
            {
                "time": "2026-11-25T07:58:13Z",
                "operation": "MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION",
                "result": "Success",
                "initiated_by": "3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d",
                "target": "stsynthclaims02",
            }
        ],
        "truncated": False,
    }
    return row


@pytest.mark.parametrize("key", [SENTINEL, KEYS_LISTED])
def test_timeline_is_chronological_with_detection_and_each_action(key: str) -> None:
    row = incident(key)

    pack = build_pack(row, NOW)

    times = [parse_time(e["time"]) for e in pack["timeline"]]
    assert all(times), "every entry of the recorded incidents has a time"
    assert times == sorted(times)
    whats = [e["what"] for e in pack["timeline"]]
    assert any(w.startswith("detected") for w in whats)
    assert any(w.startswith("first signal") for w in whats)
    for action in row["actions"]:
        acted = parse_time(action["ActedAt"])
        assert any(
            parse_time(e["time"]) == acted and e["what"].startswith(f"acted: {action['Kind']}")
            for e in pack["timeline"]
        )
        verified = parse_time(action["VerifiedAt"])
        assert any(
            parse_time(e["time"]) == verified and e["what"].startswith("verified: ") for e in pack["timeline"]
        )


def test_timeline_puts_untimed_entries_last_in_stable_order() -> None:
    row = incident()
    row["UpdatedAt"] = ""
    row["OccurredAt"] = ""

    whats = [e["what"] for e in build_pack(row, NOW)["timeline"]]

    assert whats[-2].startswith("first signal")
    assert whats[-1].startswith("last update")


def test_timeline_records_approval_restore_and_comment() -> None:
    row = incident()
    sp = row["actions"][3]
    sp.update(
        ApprovedBy="alice@contoso.example",
        ApprovedAt="2026-11-25T08:38:19.190000Z",
        Status="restored",
        RestoredAt="2026-11-25T12:00:00Z",
        RestoredBy="bob@contoso.example",
        RestoredState={"accountEnabled": True, "found": True},
    )
    row["Comment"] = {"id": "c-1", "time": "2026-11-25T08:38:20Z"}
    row["CommentStatus"] = "written"

    pack = build_pack(row, NOW)

    whats = " / ".join(e["what"] for e in pack["timeline"])
    assert "approved identity.disable_service_principal" in whats
    assert "alice@contoso.example" in whats
    assert "restored: identity.disable_service_principal" in whats
    assert "Sentinel incident comment written (written)" in whats
    assert pack["state"]["after"][sp["Target"]]["accountEnabled"] is True
    assert pack["actions"][3]["undo"].startswith("already restored")


def test_deadline_is_detection_plus_72_hours_and_expires_after_it() -> None:
    row = incident()
    detected = parse_time(row["DetectedAt"])
    deadline = detected + timedelta(hours=72)

    before = build_pack(row, deadline - timedelta(minutes=30))["regulatory_clock"]
    at = build_pack(row, deadline)["regulatory_clock"]
    after = build_pack(row, deadline + timedelta(seconds=1))["regulatory_clock"]

    assert before["applies"] is True
    assert parse_time(before["aware_at"]) == detected
    assert parse_time(before["deadline"]) == deadline
    assert before["deadline"] == "2026-11-28T08:38:19.056964Z"
    assert before["hours_left"] == pytest.approx(0.5)
    assert before["expired"] is False
    assert at["expired"] is False
    assert after["expired"] is True
    assert after["hours_left"] < 0
    assert "re-identification" in before["note"]


def test_non_leak_says_the_clock_does_not_apply() -> None:
    row = incident()
    row["Leak"] = False
    row["Severity"] = "none"

    pack = build_pack(row, NOW)

    assert pack["regulatory_clock"]["applies"] is False
    assert "not a leak" in pack["regulatory_clock"]["reason"]
    assert "deadline" not in pack["regulatory_clock"]
    assert "Does not apply" in render_markdown(pack)


def test_undo_refuses_irreversible_actions_and_names_restore_for_reversible_ones() -> None:
    pack = build_pack(incident(), NOW)

    kinds = {a["kind"] for a in pack["actions"]}
    assert set(IRREVERSIBLE) <= kinds
    for action in pack["actions"]:
        if action["kind"] in IRREVERSIBLE:
            assert action["undo"].startswith("cannot be undone")
            assert action["reversible"] is False
        else:
            assert f"python -m responders restore {SENTINEL} --execute" in action["undo"]
            assert json.dumps({"restore": SENTINEL, "execute": True}) in action["undo"]


def test_reversible_public_access_action_is_restorable() -> None:
    row = incident()
    account = row["actions"][0]["Target"]
    row["Plan"].append(
        {
            "after": [],
            "key": "act-public",
            "kind": "storage.make_container_private",
            "mode": "auto",
            "params": {"container": "ehr-synth"},
            "reason": "container was public",
            "reversible": True,
            "target": account,
        }
    )
    row["actions"].append(
        {
            "RowKey": "act-public",
            "Seq": 4,
            "Kind": "storage.make_container_private",
            "Target": account,
            "Params": {"container": "ehr-synth"},
            "Reversible": True,
            "Status": "contained",
            "Before": {"container": "ehr-synth", "publicAccess": "Blob"},
            "After": {"container": "ehr-synth", "publicAccess": "None", "actedAt": "2026-11-25T08:38:19.5Z"},
            "ActedAt": "2026-11-25T08:38:19.5Z",
        }
    )

    pack = build_pack(row, NOW)

    action = pack["actions"][-1]
    assert action["target_name"] == "stsynthlake09/ehr-synth"
    assert "restore" in action["undo"]
    assert "--execute" in action["undo"]
    assert pack["state"]["after"][account]["containers"] == {"ehr-synth": "None"}
    assert "publicAccess: Blob -> None" in render_markdown(pack)


def test_remaining_mentions_token_lifetime_of_disabled_service_principal() -> None:
    row = incident(KEYS_LISTED)
    acted = parse_time(row["actions"][3]["ActedAt"])

    remaining = build_pack(row, NOW)["remaining_for_humans"]

    token = next(r for r in remaining if "Tokens already issued" in r)
    assert "90 minutes" in token
    assert "etl-synth-exporter" in token
    assert (acted + timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M:%S") in token
    assert any("new keys" in r for r in remaining)


def test_remaining_asks_for_decisions_on_failed_and_pending_actions() -> None:
    row = incident()
    row["actions"][0].update(Status="failed", Error="HttpResponseError 403: AuthorizationFailed")
    row["actions"][3].update(Status="pending-approval", ActedAt="", VerifiedAt="")
    row["Findings"] = ["stsynthlake09: synthetic data landed in an account not classified for it"]

    remaining = build_pack(row, NOW)["remaining_for_humans"]

    assert any("failed" in r and "AuthorizationFailed" in r for r in remaining)
    assert any("waits for approval" in r and "act-04452a7f142404d4ccb0" in r for r in remaining)
    assert any("not classified for it" in r for r in remaining)
    assert not any("Tokens already issued" in r for r in remaining)


def test_markdown_holds_key_deadline_kinds_and_escapes_pipes() -> None:
    row = incident()
    row["actions"][0]["Reason"] = "keys listed | SAS issued"
    row["Skipped"] = [["/subscriptions/x/other", "exempt | by tag"]]

    pack = build_pack(row, NOW)
    markdown = render_markdown(pack)

    assert f"# Evidence pack: {SENTINEL}" in markdown
    assert pack["regulatory_clock"]["deadline"] in markdown
    assert "hours left" in markdown
    for action in row["actions"]:
        assert action["Kind"] in markdown
    assert "keys listed \\| SAS issued" in markdown
    assert "exempt \\| by tag" in markdown
    assert "keys listed | SAS" not in markdown


def test_markdown_says_expired_once_the_deadline_passed() -> None:
    later = parse_time(DATA[SENTINEL]["DetectedAt"]) + timedelta(hours=80)

    markdown = render_markdown(build_pack(incident(), later))

    assert "EXPIRED" in markdown


def test_evidence_renders_ips_and_auth_types_in_markdown_and_json() -> None:
    pack = build_pack(with_evidence(), NOW)

    markdown, text = render_markdown(pack), render_json(pack)

    for rendered in (markdown, text):
        assert "203.0.113.45" in rendered
        assert "198.51.100.23" in rendered
        assert "Anonymous" in rendered
        assert "SAS" in rendered
    assert "Anonymous 3" in markdown
    assert "SAS 2" in markdown
    assert json.loads(text)["evidence"]["before"]["auth_types"] == {"Anonymous": 3, "SAS": 2}
    assert any("203.0.113.45" in r for r in pack["remaining_for_humans"])


def test_missing_evidence_is_noted() -> None:
    pack = build_pack(incident(), NOW)

    assert pack["evidence"] == {"note": "no Log Analytics evidence recorded"}
    assert "no Log Analytics evidence recorded" in render_markdown(pack)


def test_json_is_sorted_stable_and_carries_the_summary_fields() -> None:
    pack = build_pack(incident(), NOW)

    text = render_json(pack)
    loaded = json.loads(text)

    assert text == json.dumps(loaded, sort_keys=True, indent=2, ensure_ascii=False)
    assert text == render_json(build_pack(incident(), NOW))
    assert loaded["generated_at"] == "2026-11-26T09:00:00.000000Z"
    assert loaded["incident"] == SENTINEL
    assert loaded["leak"] is True
    assert loaded["owners"] == ["health-analytics@contoso.example"]
    assert loaded["state"]["before"] == {**DATA[SENTINEL]["StateBefore"], **loaded["state"]["before"]}


def test_build_pack_leaves_the_input_unchanged() -> None:
    row = incident()
    original = copy.deepcopy(row)

    build_pack(row, NOW)

    assert row == original


def test_anything_shaped_like_a_secret_is_masked() -> None:
    row = incident()
    key = "A" * 86 + "=="
    row["actions"][0]["Error"] = f"AccountKey={key}; url?sv=2022&sig=abc%2Fdef"

    pack = build_pack(row, NOW)

    for rendered in (render_json(pack), render_markdown(pack)):
        assert key not in rendered
        assert "abc%2Fdef" not in rendered


def test_sparse_incident_renders_without_failing() -> None:
    pack = build_pack({"PartitionKey": "inc-0", "Leak": True, "DryRun": True}, NOW)

    markdown = render_markdown(pack)

    assert pack["regulatory_clock"]["deadline"] is None
    assert "inc-0" in markdown
    assert "Deadline unknown" in markdown
