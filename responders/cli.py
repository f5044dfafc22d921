"""Command line: replay captured events, run the simulated tenant, inspect and restore incidents.

python -m responders replay PATH... [--execute] [--format json] [--target URL]
python -m responders simulator --tenant samples/tenant.json
python -m responders ledger [INCIDENT]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from responders.standins import ROOT

WRITE_METHODS = ("PUT", "PATCH", "POST", "DELETE")
READ_POSTS = ("/query", "/alerts", "/entities")


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def iter_event_files(paths: Sequence[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file())
        elif path.is_file():
            yield path
        else:
            raise CliError(f"{raw}: no such file or directory")


def load_items(path: Path) -> tuple[list[Any], bytes]:
    """Items of a capture file; a file that is not JSON yields no items and its raw bytes."""
    from responders.core.model import BadInput
    from responders.core.parse import decode_json

    raw = path.read_bytes()
    try:
        decoded = decode_json(raw)
    except BadInput:
        return [], raw
    return (decoded if isinstance(decoded, list) else [decoded]), raw


def count_calls(requests: list[dict[str, Any]]) -> dict[str, int]:
    """Reads and writes the simulated tenant saw (token requests are neither)."""
    calls = {"read": 0, "write": 0}
    for r in requests:
        path = str(r.get("path", ""))
        if path.startswith("/msi/"):
            continue
        method = str(r.get("method", "")).upper()
        is_write = method in WRITE_METHODS and not (method == "POST" and path.endswith(READ_POSTS))
        calls["write" if is_write else "read"] += 1
    return calls


_ARM_ACCOUNT = re.compile(
    r"/subscriptions/[^/ ]+/resourcegroups/[^/ ]+/providers/microsoft\.storage/storageaccounts/",
    re.IGNORECASE,
)


def _short(text: str) -> str:
    """Account names instead of full ARM ids, for a table people read (the JSON keeps the ids)."""
    return _ARM_ACCOUNT.sub("", text)


def _table(results: list[dict[str, Any]], out: TextIO) -> None:
    for r in results:
        head = f"{r['file']}: {r.get('status', '?').upper()}"
        if r.get("error"):
            out.write(f"{head}  rejected: {r['error']}\n\n")
            continue
        v = r["verdict"]
        out.write(
            f"{head}  leak={'yes' if v['leak'] else 'no'} severity={v['severity']} incident={r['incident']}\n"
        )
        for reason in v["reasons"]:
            out.write(f"    why: {_short(reason)}\n")
        for finding in v["findings"]:
            out.write(f"    finding: {_short(finding)}\n")
        by_key = {(o["kind"], o["target"], json.dumps(o["params"], sort_keys=True)): o for o in r["outcomes"]}
        for action in r["plan"]:
            o = by_key.get(
                (action["kind"], action["target"], json.dumps(action["params"], sort_keys=True)), {}
            )
            target = action["target"].rsplit("/", 1)[-1]
            params = " ".join(f"{k}={v}" for k, v in action["params"].items())
            status = o.get("status", "planned")
            err = f" ({o['error']})" if o.get("error") else ""
            out.write(f"    {status:<18} {action['kind']:<38} {target} {params}{err}\n")
        for skip in r["skipped"]:
            out.write(f"    skipped            {skip['what'].rsplit('/', 1)[-1]}: {skip['why']}\n")
        out.write("\n")


def _summary(results: list[dict[str, Any]], calls: dict[str, int]) -> dict[str, Any]:
    actions: Counter[str] = Counter()
    for r in results:
        for o in r.get("outcomes", []):
            if o["status"] in ("contained", "dry-run", "already-contained", "pending-approval"):
                actions[o["kind"]] += 1
    return {
        "events": len(results),
        "leaks": sum(1 for r in results if r.get("verdict", {}).get("leak")),
        "rejected": sum(1 for r in results if r.get("error")),
        "actions": dict(sorted(actions.items())),
        "calls": calls,
    }


class Progress:
    """A one-line progress bar on stderr, for runs long enough to need one."""

    def __init__(self, total: int, stream: TextIO | None = None, every: int = 1000) -> None:
        self.total, self.done, self.every = total, 0, every
        self.stream = stream or sys.stderr
        self.enabled = total >= every or self.stream.isatty()

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.enabled and (self.done % self.every == 0 or self.done == self.total):
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} events")
            if self.done >= self.total:
                self.stream.write("\n")
            self.stream.flush()


def replay_offline(files: list[Path], args: argparse.Namespace, out: TextIO) -> list[dict[str, Any]]:
    """Dry-run classification with the facts of a tenant snapshot: no Azure, no stand-ins, no ledger."""
    from responders.core.model import BadInput, Outcome
    from responders.offline import OfflineClassifier
    from responders.service import incident_status, report, utc_now
    from responders.settings import ConfigError, load_policy_document

    tenant = json.loads(Path(args.tenant).read_text(encoding="utf-8"))
    try:
        policy = load_policy_document(Path(args.policy).read_text(encoding="utf-8"), args.policy)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    policy = policy.with_responder(tenant.get("responderIdentity", {}).get("principalId", ""))
    classifier = OfflineClassifier(tenant, policy)
    work: list[tuple[str, Any, bytes]] = []
    for path in files:
        items, raw = load_items(path)
        work += [(path.name, item, b"") for item in items] if items else [(path.name, None, raw)]
    progress = Progress(len(work) * args.repeat)
    now = utc_now()
    results: list[dict[str, Any]] = []
    for name, item, raw in work:
        for _ in range(args.repeat):
            try:
                plan = classifier.plan(raw if item is None else item, now=now)
            except BadInput as exc:
                results.append({"file": name, "status": "rejected", "error": str(exc)})
            else:
                outcomes = [Outcome(action=a, status="dry-run") for a in plan.actions]
                result = report(plan, outcomes, incident_status(plan, outcomes, True), True)
                result["file"] = name
                results.append(result)
            progress.step()
    return results


def cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    from responders.replay import Replayer

    files = list(iter_event_files(args.paths))
    if not files:
        raise CliError("no .json capture files found")
    if args.repeat < 1:
        raise CliError("--repeat must be at least 1")
    if args.offline:
        if args.execute or args.target:
            raise CliError("--offline classifies only: it cannot be combined with --execute or --target")
        results = replay_offline(files, args, out)
        _write_results(results, {"read": 0, "write": 0}, args, out)
        return 0
    with Replayer.start(
        execute=args.execute, target=args.target, policy_file=args.policy, tenant=args.tenant
    ) as replayer:
        write_replay(replayer, files, args, out)
    return 0


def write_replay(
    replayer: Any, files: list[Path], args: argparse.Namespace, out: TextIO
) -> list[dict[str, Any]]:
    """Deliver every file (`--repeat` times) and print the table or JSON lines and the summary."""
    results = []
    progress = Progress(len(files) * args.repeat, every=50)
    for path in files:
        for _ in range(args.repeat):
            results.extend(replayer.replay_file(path))
            progress.step()
    _write_results(results, replayer.calls(), args, out)
    if args.execute and args.format != "json":
        replayer.print_evidence(out)
    return results


def _write_results(
    results: list[dict[str, Any]], calls: dict[str, int], args: argparse.Namespace, out: TextIO
) -> None:
    summary = _summary(results, calls)
    if args.format == "json":
        for r in results:
            out.write(json.dumps(r, sort_keys=True) + "\n")
        out.write(json.dumps(summary, sort_keys=True) + "\n")
        return
    _table(results, out)
    mode = "EXECUTED" if args.execute else "DRY-RUN (nothing changed; add --execute)"
    out.write(
        f"{mode}: {summary['events']} events, {summary['leaks']} leaks, {summary['rejected']} rejected; "
        f"actions {summary['actions']}; tenant calls {calls}\n"
    )


def cmd_simulator(args: argparse.Namespace, out: TextIO) -> int:
    from responders.simulator.server import main as sim_main

    argv = ["--tenant", args.tenant, "--host", args.host, "--port", str(args.port)]
    if args.cert_dir:
        argv += ["--cert-dir", args.cert_dir]
    return sim_main(argv)


@contextmanager
def _runtime() -> Iterator[Any]:
    """A runtime from the app settings in the environment (the same ones the Functions app reads),
    closed when the command ends."""
    from responders.service import Runtime
    from responders.settings import ConfigError, Settings

    try:
        rt = Runtime.from_settings(Settings.from_env())
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    try:
        yield rt
    finally:
        rt.close()


def _operator() -> str:
    """Who ran the command, for the ledger (the OS user; no credential involved)."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def cmd_restore(args: argparse.Namespace, out: TextIO) -> int:
    from responders import manage
    from responders.core.model import BadInput

    try:
        with _runtime() as rt:
            result = manage.restore(rt, args.incident, execute=args.execute, by=_operator())
    except BadInput as exc:
        raise CliError(str(exc)) from exc
    _print_json(result, out)
    for refused in result["refused"]:
        sys.stderr.write(f"refused: {refused['kind']} on {refused['target']}: {refused['why']}\n")
    return 0


def cmd_approve(args: argparse.Namespace, out: TextIO) -> int:
    from responders import manage
    from responders.core.model import BadInput

    try:
        with _runtime() as rt:
            result = manage.approve(
                rt, args.incident, args.action or None, execute=args.execute, by=_operator()
            )
    except BadInput as exc:
        raise CliError(str(exc)) from exc
    _print_json(result, out)
    return 0


def cmd_ledger(args: argparse.Namespace, out: TextIO) -> int:
    from responders import manage
    from responders.service import ledger_report

    with _runtime() as rt:
        if args.incident:
            row = rt.ledger.incident(args.incident)
            if row is None:
                raise CliError(f"no incident {args.incident} in the ledger")
            _print_json(ledger_report(row), out)
        else:
            _print_json(manage.summary(rt), out)
    return 0


def cmd_evidence(args: argparse.Namespace, out: TextIO) -> int:
    from datetime import UTC, datetime

    from responders.evidence_pack import build_pack, render_json, render_markdown

    with _runtime() as rt:
        row = rt.ledger.incident(args.incident)
        if row is None:
            raise CliError(f"no incident {args.incident} in the ledger")
        row["Evidence"] = row.get("Evidence") or {}
        pack = build_pack(row, datetime.now(UTC))
    out.write(render_markdown(pack) if args.format == "md" else render_json(pack))
    out.write("\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m responders", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    replay = sub.add_parser("replay", help="run captured events through the registered functions")
    replay.add_argument("paths", nargs="+", help="capture files or folders of .json files")
    replay.add_argument("--execute", action="store_true", help="act (default: dry-run, nothing changes)")
    replay.add_argument("--format", choices=("table", "json"), default="table")
    replay.add_argument("--target", help="post to a running Functions host, e.g. http://localhost:7071")
    replay.add_argument("--policy", default=str(ROOT / "samples" / "policy.yaml"), help="policy file")
    replay.add_argument(
        "--tenant",
        default=str(ROOT / "samples" / "tenant.json"),
        help="tenant seed for the simulator started when no endpoints are set",
    )
    replay.add_argument("--repeat", type=int, default=1, help="deliver each event N times (at-least-once)")
    replay.add_argument(
        "--offline",
        action="store_true",
        help="classify with the facts of --tenant only: no Azure, stand-ins or ledger",
    )
    replay.set_defaults(func=cmd_replay)
    sim = sub.add_parser("simulator", help="serve the simulated tenant over HTTPS on loopback")
    sim.add_argument("--tenant", default=str(ROOT / "samples" / "tenant.json"))
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8443)
    sim.add_argument("--cert-dir", default="")
    sim.set_defaults(func=cmd_simulator)
    restore = sub.add_parser("restore", help="put back the before-state of an incident's reversible actions")
    restore.add_argument("incident")
    restore.add_argument("--execute", action="store_true", help="act (default: show what would be restored)")
    restore.set_defaults(func=cmd_restore)
    approve = sub.add_parser("approve", help="run an incident's actions that wait for approval")
    approve.add_argument("incident")
    approve.add_argument("--action", action="append", help="an action key (default: all pending)")
    approve.add_argument("--execute", action="store_true")
    approve.set_defaults(func=cmd_approve)
    ledger = sub.add_parser("ledger", help="summary of the ledger, or one incident with its actions")
    ledger.add_argument("incident", nargs="?")
    ledger.set_defaults(func=cmd_ledger)
    evidence = sub.add_parser("evidence", help="the audit evidence pack of an incident")
    evidence.add_argument("incident")
    evidence.add_argument("--format", choices=("md", "json"), default="md")
    evidence.set_defaults(func=cmd_evidence)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, out))
    except CliError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except Exception as exc:  # a clear message, never a traceback
        from responders.execute import describe

        sys.stderr.write(f"error: {describe(exc)}\n")
        if os.environ.get("RESPONDER_DEBUG"):
            raise
        return 1
