"""The local stack persists under the run directory: the commands a replay prints work afterwards, each
in a new process with no settings, and no command leaves a stand-in running unless `stack up` started it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
# the endpoint settings a new shell does not have
CONFIG_PREFIXES = ("RESPONDER_", "IDENTITY_", "AZURE_", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "MSI_")


def run_cli(
    run_dir: Path, *args: str, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m responders ARGS` as a new process with a clean environment (as a new shell has)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIG_PREFIXES)}
    env.update({"RESPONDER_RUN_DIR": str(run_dir), **(extra or {})})
    return subprocess.run(
        [sys.executable, "-m", "responders", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def processes_using(run_dir: Path) -> list[str]:
    """Processes whose command line or environment names the run directory (stand-ins, stack servers)."""
    needle = str(run_dir).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and (needle in cmdline or needle in environ):
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def approval_policy(tmp_path: Path) -> Path:
    """The sample policy with disabling a service principal waiting for approval."""
    text = (SAMPLES / "policy.yaml").read_text(encoding="utf-8")
    changed = text.replace(
        "identity.disable_service_principal: auto", "identity.disable_service_principal: approval"
    )
    assert changed != text
    path = tmp_path / "policy.yaml"
    path.write_text(changed, encoding="utf-8")
    return path


def test_commands_after_a_replay_find_what_it_recorded_each_in_a_new_process(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    policy = approval_policy(tmp_path)
    settings = {"RESPONDER_POLICY_FILE": str(policy)}
    replay = run_cli(
        run_dir, "replay", str(SAMPLES / "events"), "--execute", "--format", "json", "--policy", str(policy)
    )
    assert replay.returncode == 0, replay.stderr
    assert processes_using(run_dir) == []
    results = [json.loads(line) for line in replay.stdout.splitlines()[:-1]]
    by_file = {r["file"]: r for r in results}
    public = by_file["01-container-made-public.json"]["incident"]
    by_app = by_file["03-listkeys-by-app.json"]
    assert ("identity.disable_service_principal", "pending-approval") in {
        (o["kind"], o["status"]) for o in by_app["outcomes"]
    }

    ledger = run_cli(run_dir, "ledger", extra=settings)
    assert ledger.returncode == 0, ledger.stderr
    assert json.loads(ledger.stdout)["incidents"] == len(
        {r["incident"] for r in results if r.get("incident")}
    )

    evidence = run_cli(run_dir, "evidence", public, extra=settings)
    assert evidence.returncode == 0, evidence.stderr
    assert f"# Evidence pack: {public}" in evidence.stdout

    restore = run_cli(run_dir, "restore", public, "--execute", extra=settings)
    assert restore.returncode == 0, restore.stderr
    restored = json.loads(restore.stdout)
    assert restored["dry_run"] is False
    assert {r["status"] for r in restored["restored"]} == {"restored"}
    # the tenant kept the restore: the account allows public access again when the next command starts
    state = json.loads((run_dir / "local" / "tenant-state.json").read_text(encoding="utf-8"))
    assert state["accounts"]["stsynthpublic01"]["properties"]["allowBlobPublicAccess"] is True

    approve = run_cli(run_dir, "approve", by_app["incident"], "--execute", extra=settings)
    assert approve.returncode == 0, approve.stderr
    assert "identity.disable_service_principal" in approve.stdout
    after = run_cli(run_dir, "ledger", by_app["incident"], extra=settings)
    assert after.returncode == 0, after.stderr
    statuses = {o["kind"]: o["status"] for o in json.loads(after.stdout)["outcomes"]}
    assert statuses["identity.disable_service_principal"] != "pending-approval"

    assert processes_using(run_dir) == [], "a command left a stand-in running"


def test_a_replay_starts_where_the_last_one_stopped_until_reset(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    capture = str(SAMPLES / "events" / "01-container-made-public.json")
    first = run_cli(run_dir, "replay", capture, "--execute", "--format", "json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.splitlines()[-1])["calls"]["write"] > 0
    again = run_cli(run_dir, "replay", capture, "--execute", "--format", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["calls"]["write"] == 0, "the ledger remembered the run"
    reset = run_cli(run_dir, "stack", "reset")
    assert reset.returncode == 0, reset.stderr
    assert not (run_dir / "local").exists()
    fresh = run_cli(run_dir, "replay", capture, "--execute", "--format", "json")
    assert json.loads(fresh.stdout.splitlines()[-1])["calls"]["write"] > 0
    assert processes_using(run_dir) == []


@pytest.mark.parametrize("garbage", ["{not json", '{"accounts": 3}'])
def test_a_damaged_saved_tenant_is_a_one_line_error(tmp_path: Path, garbage: str) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "local").mkdir(parents=True)
    (run_dir / "local" / "tenant-state.json").write_text(garbage, encoding="utf-8")
    result = run_cli(run_dir, "ledger")
    assert result.returncode != 0
    assert result.stderr.startswith("error: ")
    assert "make reset" in result.stderr
    assert "Traceback" not in result.stderr
    assert processes_using(run_dir) == []


def test_the_summary_of_a_triple_delivery_counts_one_action_and_two_duplicates(capsys) -> None:
    from responders.cli import main

    capture = str(SAMPLES / "events" / "02-account-public-access-enabled.json")
    assert main(["replay", capture, "--execute", "--repeat", "3", "--format", "json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    results, summary = [json.loads(line) for line in lines[:-1]], json.loads(lines[-1])
    assert len(results) == summary["events"] == 3
    assert len({r["incident"] for r in results}) == 1
    assert summary["duplicates"] == 2
    assert summary["leaks"] == 1
    assert summary["actions"] == {"storage.disable_public_access": 1, "storage.make_container_private": 1}
    # the next run's deliveries of the same event are repeats the ledger answers: no action counted again
    assert main(["replay", capture, "--execute", "--format", "json"]) == 0
    again = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert again["duplicates"] == 1
    assert again["actions"] == {}
    assert again["calls"]["write"] == 0


def test_stack_up_serves_commands_and_keeps_the_ledger_across_down_and_up(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    capture = str(SAMPLES / "events" / "01-container-made-public.json")
    try:
        up = run_cli(run_dir, "stack", "up")
        assert up.returncode == 0, up.stderr
        env_file = run_dir / "local.env"
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"
        assert "RESPONDER_LEDGER_CONNECTION_STRING=" in env_file.read_text(encoding="utf-8")
        assert len(processes_using(run_dir)) >= 2, "the stack server and its Azurite run in the background"
        replay = run_cli(run_dir, "replay", capture, "--execute", "--format", "json")
        assert replay.returncode == 0, replay.stderr
        summary = json.loads(replay.stdout.splitlines()[-1])
        assert summary["calls"]["write"] > 0, "the replay acted on the running stack's tenant"
        incident = json.loads(replay.stdout.splitlines()[0])["incident"]
        down = run_cli(run_dir, "stack", "down")
        assert down.returncode == 0, down.stderr
        assert processes_using(run_dir) == []
        assert not env_file.exists()
        assert run_cli(run_dir, "stack", "up").returncode == 0
        ledger = run_cli(run_dir, "ledger", incident)
        assert ledger.returncode == 0, ledger.stderr
        assert json.loads(ledger.stdout)["status"] == "contained"
    finally:
        run_cli(run_dir, "stack", "down")
    assert processes_using(run_dir) == []


def test_a_replay_through_the_simulated_topic_reaches_the_functions_and_records_the_leaks(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    try:
        up = run_cli(run_dir, "stack", "up", extra={"RESPONDER_DRY_RUN": "false"})
        assert up.returncode == 0, up.stderr
        from rehearsal.standins import read_env_file

        topic = read_env_file(run_dir / "local.env")["EVENTGRID_TOPIC_ENDPOINT"]
        refused = run_cli(
            run_dir, "replay", str(SAMPLES / "events"), "--topic", topic, extra={"EVENTGRID_TOPIC_KEY": "x"}
        )
        assert refused.returncode == 2
        assert refused.stderr.startswith("error: the topic refused batch 1: ClientAuthenticationError 401")
        published = run_cli(run_dir, "replay", str(SAMPLES / "events"), "--topic", topic, "--format", "json")
        assert published.returncode == 0, published.stderr
        summary = json.loads(published.stdout)
        assert summary["eventgrid"] > 0
        assert summary["cloudevents"] > 0
        assert summary["published"] == summary["eventgrid"] + summary["cloudevents"]
        assert "EVENTGRID_TOPIC_KEY" not in published.stdout + published.stderr
        # the sample leaks that travel through Event Grid, contained by the functions the topic invoked
        for name in (
            "01-container-made-public",
            "02-account-public-access-enabled",
            "04-sas-listed.cloudevents",
        ):
            expected = json.loads((SAMPLES / "expected" / f"{name}.json").read_text(encoding="utf-8"))
            assert expected["leak"] is True
            event = json.loads((SAMPLES / "events" / f"{name}.json").read_text(encoding="utf-8"))
            event = event[0] if isinstance(event, list) else event
            from responders.core.parse import incident_key

            ledger = run_cli(run_dir, "ledger", incident_key(event["id"]))
            assert ledger.returncode == 0, (name, ledger.stderr)
            row = json.loads(ledger.stdout)
            assert row["verdict"]["leak"] is True, name
            assert row["status"] == "contained", name
    finally:
        run_cli(run_dir, "stack", "down")
    assert processes_using(run_dir) == []


def test_topic_batches_stay_within_one_megabyte() -> None:
    from responders.cli import TOPIC_BATCH_BYTES, _batches

    events = [{"id": str(i), "data": {"pad": "x" * 300_000}} for i in range(7)]
    batches = list(_batches(events))
    assert [e for b in batches for e in b] == events
    assert all(len(json.dumps(b)) <= TOPIC_BATCH_BYTES for b in batches)
    assert len(batches) == 3


def test_the_stack_keeps_dead_letters_and_what_became_of_them_across_down_and_up(tmp_path: Path) -> None:
    from azure.storage.blob import ContainerClient

    from rehearsal.standins import read_env_file

    run_dir = tmp_path / "run"
    [event] = json.loads((SAMPLES / "events" / "01-container-made-public.json").read_text(encoding="utf-8"))
    record = {**event, "deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 30}
    try:
        assert run_cli(run_dir, "stack", "up").returncode == 0
        env = read_env_file(run_dir / "local.env")
        with ContainerClient.from_connection_string(
            env["RESPONDER_DEADLETTER_CONNECTION_STRING"], env["RESPONDER_DEADLETTER_CONTAINER"]
        ) as container:
            container.upload_blob("RISKY-STORAGE-CHANGES/2026/11/25/7/0b7c.json", json.dumps([record]))
        first = run_cli(run_dir, "deadletters", "--execute")
        assert first.returncode == 0, first.stderr
        assert [b["status"] for b in json.loads(first.stdout)["blobs"]] == ["replayed"]
        assert run_cli(run_dir, "stack", "down").returncode == 0
        assert run_cli(run_dir, "stack", "up").returncode == 0
        again = run_cli(run_dir, "deadletters", "--execute")
        assert again.returncode == 0, again.stderr
        assert (json.loads(again.stdout)["listed"], json.loads(again.stdout)["skipped"]) == (1, 1)
    finally:
        run_cli(run_dir, "stack", "down")
    assert processes_using(run_dir) == []
