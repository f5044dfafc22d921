"""The captured samples replayed through the CLI path exactly as `make demo` does, against expectations
kept beside them; and no secret the tenant issued appears anywhere we write."""

from __future__ import annotations

import argparse
import io
import json
import logging
from pathlib import Path

import pytest

from responders.cli import count_calls, iter_event_files, main, write_replay
from responders.replay import Replayer
from tests.harness import SAMPLES, sample


def expected(name: str) -> dict:
    return json.loads((SAMPLES / "expected" / f"{Path(name).stem}.json").read_text())


def replay_args(execute: bool, fmt: str = "json", repeat: int = 1) -> argparse.Namespace:
    return argparse.Namespace(execute=execute, format=fmt, repeat=repeat)


@pytest.fixture
def executed(caplog: pytest.LogCaptureFixture):
    """Replay every sample twice with --execute, keeping the tenant and ledger open for inspection."""
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    files = list(iter_event_files([str(SAMPLES / "events")]))
    with Replayer.start(
        execute=True,
        target=None,
        policy_file=str(SAMPLES / "policy.yaml"),
        tenant=str(SAMPLES / "tenant.json"),
    ) as replayer:
        results = write_replay(replayer, files, replay_args(True, repeat=2), out)
        table = io.StringIO()
        write_replay(replayer, files[:1], replay_args(True, fmt="table"), table)
        from responders.service import runtime

        rows = list(runtime().clients.table().list_entities())
        yield {
            "results": results,
            "stdout": out.getvalue() + table.getvalue(),
            "sim": replayer.standins.simulator,
            "snapshot": replayer.standins.simulator.state.snapshot(),
            "secrets": replayer.standins.simulator.secrets(),
            "requests": replayer.standins.simulator.requests(),
            "rows": rows,
            "logs": caplog.text,
        }


def test_every_sample_gets_its_expected_verdict_plan_and_status(executed) -> None:
    by_file: dict[str, list[dict]] = {}
    for result in executed["results"]:
        by_file.setdefault(result["file"], []).append(result)
    assert sorted(by_file) == sorted(p.name for p in (SAMPLES / "events").glob("*.json"))
    for name, (first, second) in by_file.items():
        want = expected(name)
        assert first["status"] == want["status"], name
        if want["status"] == "rejected":
            assert want["error"] in first["error"], name
            continue
        assert first["verdict"]["leak"] == want["leak"], name
        assert first["verdict"]["severity"] == want["severity"], name
        got = [{"kind": a["kind"], "target": a["target"], "params": a["params"]} for a in first["plan"]]
        assert got == want["actions"], name
        if "why" in want:
            assert any(want["why"] in r for r in first["verdict"]["reasons"]), name
        if "finding" in want:
            assert any(want["finding"] in f for f in first["verdict"]["findings"]), name
        if "finding" in want:
            assert any(want["finding"] in f for f in first["verdict"]["findings"]), name
        if "skipped" in want:
            assert any(want["skipped"] in s["why"] for s in first["skipped"]), name
        # the second delivery finds the first one's record and acts on nothing
        assert second["status"] == first["status"], name
        assert second["incident"] == first["incident"], name


def test_after_the_demo_the_tenant_is_contained(executed) -> None:
    snap = executed["snapshot"]
    for name in ("stsynthpublic01", "stsynthexport08", "stsynthdev06"):
        account = snap["accounts"][name]
        assert account["properties"]["allowBlobPublicAccess"] is False, name
        assert {c["properties"]["publicAccess"] for c in account["containers"].values()} == {"None"}, name
    for name in ("stsynthclaims02", "stsynthsas03", "stsynthlake09", "stsynthexport08"):
        keys = snap["accounts"][name]["keys"]
        assert all(k["creationTime"] > "2026-02-02" for k in keys.values()), name
    for sp in snap["servicePrincipals"].values():
        assert sp["accountEnabled"] is False
    # untouched: exempt, out of scope, not synthetic
    assert snap["accounts"]["stsynthshare05"]["properties"]["allowBlobPublicAccess"] is True
    assert snap["accounts"]["stsynthpartner07"]["properties"]["allowBlobPublicAccess"] is True
    assert (
        snap["accounts"]["stmarketingweb04"]["containers"]["web-assets"]["properties"]["publicAccess"]
        == "Blob"
    )


def test_each_write_happened_exactly_once_despite_double_delivery(executed) -> None:
    writes = [
        (r["method"], r["path"].lower(), json.dumps(r.get("body"), sort_keys=True))
        for r in executed["requests"]
        if r["method"] in ("PATCH", "POST", "PUT")
        and ("/microsoft.storage/" in r["path"].lower() or "/serviceprincipals" in r["path"].lower())
    ]
    assert len(writes) == len(set(writes)), "a write was repeated"
    regenerations = [w for w in writes if w[1].endswith("/regeneratekey")]
    assert len(regenerations) == 10  # 20 and 21 find keys rotated after their alerts by 04 and 06


def test_ledger_holds_one_incident_row_per_event_and_one_row_per_action(executed) -> None:
    rows = executed["rows"]
    incidents = [r for r in rows if r["RowKey"] == "incident"]
    actions = [r for r in rows if r["RowKey"].startswith("act-")]
    rejected = [r for r in rows if r["PartitionKey"] == "rejected"]
    assert len(incidents) == 21
    assert len(actions) == sum(
        len(expected(p.name).get("actions", [])) for p in (SAMPLES / "events").glob("*.json")
    )
    assert all(a["After"] for a in actions if a["Status"] != "pending-approval")
    assert all(a["Before"] for a in actions if a["Status"] == "contained")
    assert len(rejected) == 2
    assert all(r["Reason"] for r in rejected)


def test_no_secret_reaches_output_logs_ledger_or_responses(executed) -> None:
    secrets = executed["secrets"]
    assert len(secrets) > 20, "keys and tokens were issued"
    haystacks = {
        "stdout": executed["stdout"],
        "logs": executed["logs"],
        "ledger": json.dumps(executed["rows"], default=str),
        "responses": json.dumps(executed["results"]),
    }
    for where, text in haystacks.items():
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{len(leaked)} secret(s) found in {where}"
    assert "AccountKey=" not in executed["stdout"] + executed["logs"]


def test_summary_line_counts_events_leaks_actions_and_calls(capsys) -> None:
    code = main(["replay", str(SAMPLES / "events"), "--format", "json"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["events"] == 23
    # 13-own-echo matches no write this fresh ledger recorded: judged like anyone's change, a leak here
    assert summary["leaks"] == 18
    assert summary["rejected"] == 2
    assert summary["actions"]["storage.regenerate_key"] == 16
    assert summary["calls"]["write"] == 0, "dry-run writes nothing"
    assert summary["calls"]["read"] > 0
    assert all(json.loads(line)["file"] for line in lines[:-1])


def test_cli_errors_are_one_line_messages(capsys) -> None:
    assert main(["replay", "/no/such/path"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "Traceback" not in err


def test_count_calls_separates_reads_from_writes() -> None:
    calls = count_calls(
        [
            {"method": "GET", "path": "/subscriptions/x"},
            {"method": "POST", "path": "/v1/workspaces/w/query"},
            {"method": "POST", "path": "/subscriptions/x/regenerateKey"},
            {"method": "PATCH", "path": "/v1.0/servicePrincipals/y"},
            {"method": "GET", "path": "/msi/token"},
        ]
    )
    assert calls == {"read": 2, "write": 2}


def test_offline_replay_matches_a_live_dry_run(capsys) -> None:
    assert main(["replay", str(SAMPLES / "events"), "--format", "json"]) == 0
    live = [json.loads(line) for line in capsys.readouterr().out.splitlines()[:-1]]
    assert main(["replay", str(SAMPLES / "events"), "--format", "json", "--offline"]) == 0
    lines = capsys.readouterr().out.splitlines()
    offline = [json.loads(line) for line in lines[:-1]]
    assert json.loads(lines[-1])["calls"] == {"read": 0, "write": 0}
    assert [r["file"] for r in offline] == [r["file"] for r in live]
    for a, b in zip(live, offline, strict=True):
        if a["file"].startswith(("15-", "17-")):
            continue  # a log-search alert names its resources only through the live query API
        assert a["status"] == b["status"], a["file"]
        if a["status"] != "rejected":
            assert a["verdict"] == b["verdict"], a["file"]
            assert a["plan"] == b["plan"], a["file"]


def test_offline_cannot_execute(capsys) -> None:
    assert main(["replay", str(SAMPLES / "events"), "--offline", "--execute"]) == 2
    assert "--offline" in capsys.readouterr().err


def test_offline_replay_of_a_large_capture_streams_with_a_progress_bar(tmp_path: Path, capsys) -> None:
    event = sample("03-listkeys-by-app.json")[0]
    capture = []
    for i in range(2500):
        copy = json.loads(json.dumps(event))
        copy["id"] = f"00000000-0000-4000-8000-{i:012d}"
        capture.append(copy)
    (tmp_path / "big.json").write_text(json.dumps(capture))
    # one event per line, read a line at a time; a broken line is rejected on its own, blank ones skipped
    lines = [json.dumps(e) for e in capture[:9]]
    (tmp_path / "lines.jsonl").write_text("\n".join([*lines[:4], "", '{"id": broken', *lines[4:]]) + "\n")
    assert main(["replay", str(tmp_path), "--format", "json", "--offline"]) == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    results, summary = [json.loads(line) for line in out[:-1]], json.loads(out[-1])
    assert len(results) == summary["events"] == 2510
    assert summary["duplicates"] == 9  # lines.jsonl repeats 9 events of big.json
    assert summary["leaks"] == 2500
    assert summary["rejected"] == 1
    assert [r["file"] for r in results] == ["big.json"] * 2500 + ["lines.jsonl"] * 10
    assert "not valid JSON" in results[2504]["error"]
    assert len({r.get("incident") for r in results}) == 2501  # lines.jsonl repeats 9 ids of big.json
    assert summary["actions"]["storage.regenerate_key"] == 2 * 2500
    # stderr is no terminal here: a few plain lines, no carriage-return redraws
    assert "\r" not in captured.err
    progress = captured.err.splitlines()
    assert 2 <= len(progress) <= 5
    assert progress[-1] == "2510/2510 events"


def test_live_replay_reads_line_captures_too(tmp_path: Path, capsys) -> None:
    event = sample("01-container-made-public.json")[0]
    lines = [json.dumps({**event, "id": f"00000000-0000-4000-8000-00000000000{i}"}) for i in range(2)]
    (tmp_path / "capture.ndjson").write_text("\n".join([lines[0], "not json", "", lines[1]]) + "\n")
    assert main(["replay", str(tmp_path), "--format", "json"]) == 0
    out = capsys.readouterr().out.splitlines()
    results, summary = [json.loads(line) for line in out[:-1]], json.loads(out[-1])
    assert [r["status"] for r in results] == ["dry-run", "rejected", "dry-run"]
    assert "not valid JSON" in results[1]["error"]
    assert summary["events"] == 3
    assert summary["calls"]["write"] == 0
