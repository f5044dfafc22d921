"""Command line: replay captured events, run the simulated tenant, inspect and restore incidents.

python -m responders replay PATH... [--execute] [--format json] [--target URL]
python -m responders simulator --tenant samples/tenant.json
python -m responders sweep [--execute] [--format table|json|md]
python -m responders ledger [INCIDENT]
python -m responders deadletters [--execute]
python -m responders review [--format md|json|html]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent

WRITE_METHODS = ("PUT", "PATCH", "POST", "DELETE")
READ_POSTS = ("/query", "/alerts", "/entities", "/microsoft.resourcegraph/resources")


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


LINE_SUFFIXES = (".jsonl", ".ndjson")  # one event per line
CAPTURE_SUFFIXES = (".json", *LINE_SUFFIXES)


def iter_event_files(paths: Sequence[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix in CAPTURE_SUFFIXES and p.is_file())
        elif path.is_file():
            yield path
        else:
            raise CliError(f"{raw}: no such file or directory")


def iter_items(
    path: Path, progress: Progress | None = None, repeat: int = 1
) -> Iterator[tuple[Any, bytes | None]]:
    """The events of a capture file as (item, None) pairs; what holds no event comes as (None, its raw
    bytes), to be rejected with the pipeline's reason. A .json file is one event or an array of them; a
    .jsonl or .ndjson file has one per line and is read a line at a time, so it replays in flat memory.
    `progress` learns how many events are coming (times `repeat`) as soon as that is known."""
    if path.suffix in LINE_SUFFIXES:
        if progress is not None:
            with path.open("rb") as lines:
                progress.total += sum(1 for line in lines if line.strip()) * repeat
        with path.open("rb") as lines:
            for line in lines:
                if line.strip():
                    yield from _decoded(line.rstrip(b"\r\n"), None)
    else:
        yield from _decoded(path.read_bytes(), progress, repeat)


def _decoded(raw: bytes, progress: Progress | None, repeat: int = 1) -> Iterator[tuple[Any, bytes | None]]:
    from responders.core.model import BadInput
    from responders.core.parse import decode_json

    try:
        decoded = decode_json(raw)
    except BadInput:
        decoded = []
    work = deque(decoded if isinstance(decoded, list) else [decoded])
    del decoded  # the deque holds the only references: each item is freed once handled
    if progress is not None:
        progress.total += max(len(work), 1) * repeat
    if not work:
        yield None, raw
    while work:
        yield work.popleft(), None


def count_calls(requests: list[dict[str, Any]]) -> dict[str, int]:
    """Reads and writes the simulated tenant saw (token requests are neither)."""
    calls = {"read": 0, "write": 0}
    for r in requests:
        path = str(r.get("path", ""))
        if path.startswith("/msi/"):
            continue
        method = str(r.get("method", "")).upper()
        is_write = method in WRITE_METHODS and not (method == "POST" and path.lower().endswith(READ_POSTS))
        calls["write" if is_write else "read"] += 1
    return calls


_ARM_ACCOUNT = re.compile(
    r"/subscriptions/[^/ ]+/resourcegroups/[^/ ]+/providers/microsoft\.storage/storageaccounts/",
    re.IGNORECASE,
)


def _short(text: str) -> str:
    """Account names instead of full ARM ids, for a table people read (the JSON keeps the ids)."""
    return _ARM_ACCOUNT.sub("", text)


def _console(out: TextIO) -> Any:
    """A rich console on `out`: colour and the terminal's width on a terminal, plain text 120 wide in a
    file or pipe. Nothing from a body is ever read as markup (cells are Text)."""
    from rich.console import Console

    tty = out.isatty()
    return Console(
        file=out, width=None if tty else 120, color_system="auto" if tty else None, highlight=False
    )


def _table_row(r: dict[str, Any], out: TextIO, console: Any = None) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    console = console or _console(out)
    head = Text(f"{r['file']}: {r.get('status', '?').upper()}", style="bold")
    if r.get("error"):
        console.print(head, Text(f"  rejected: {r['error']}", style="red"), sep="", soft_wrap=True)
        console.print()
        return
    v = r["verdict"]
    console.print(
        head,
        Text(f"  leak={'yes' if v['leak'] else 'no'} severity={v['severity']} incident={r['incident']}"),
        sep="",
        soft_wrap=True,
    )
    for reason in v["reasons"]:
        console.print(Text(f"    why: {_short(reason)}"), soft_wrap=True)
    for finding in v["findings"]:
        console.print(Text(f"    finding: {_short(finding)}"), soft_wrap=True)
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
    for column in ("status", "action", "target", "detail"):
        table.add_column(column, overflow="fold")
    by_key = {(o["kind"], o["target"], json.dumps(o["params"], sort_keys=True)): o for o in r["outcomes"]}
    for action in r["plan"]:
        o = by_key.get((action["kind"], action["target"], json.dumps(action["params"], sort_keys=True)), {})
        params = " ".join(f"{k}={v}" for k, v in action["params"].items())
        detail = f"{params} ({o['error']})" if o.get("error") else params
        status = o.get("status", "planned")
        style = "red" if status in ("failed", "refused") else None
        table.add_row(
            Text(status, style=style or ""),
            Text(action["kind"]),
            Text(action["target"].rsplit("/", 1)[-1]),
            Text(detail),
        )
    for skip in r["skipped"]:
        table.add_row(Text("skipped"), Text(""), Text(skip["what"].rsplit("/", 1)[-1]), Text(skip["why"]))
    if table.row_count:
        console.print(table)
    console.print()


class _Tally:
    """The summary line, counted as results stream past (a replay keeps no result once written). A
    delivery of an incident already reported in this run, or one the pipeline answered as a repeat, is
    a duplicate; an action counts once however many deliveries report it."""

    COUNTED = ("contained", "dry-run", "already-contained", "pending-approval")

    def __init__(self) -> None:
        self.events = self.leaks = self.rejected = self.duplicates = 0
        self.actions: Counter[str] = Counter()
        self._incidents: set[str] = set()
        self._acted: set[tuple[str, str, str, str]] = set()

    def add(self, r: dict[str, Any]) -> None:
        self.events += 1
        incident = str(r.get("incident") or "")
        seen = bool(incident) and incident in self._incidents
        self.duplicates += bool(r.get("duplicate")) or seen
        self._incidents.add(incident)
        self.leaks += bool(r.get("verdict", {}).get("leak")) and not seen
        self.rejected += bool(r.get("error"))
        for o in r.get("outcomes", []):
            key = (incident, o["kind"], o["target"], json.dumps(o.get("params", {}), sort_keys=True))
            if o["status"] in self.COUNTED and key not in self._acted and not r.get("duplicate"):
                self._acted.add(key)
                self.actions[o["kind"]] += 1

    def summary(self, calls: dict[str, int]) -> dict[str, Any]:
        return {
            "events": self.events,
            "duplicates": self.duplicates,
            "leaks": self.leaks,
            "rejected": self.rejected,
            "actions": dict(sorted(self.actions.items())),
            "calls": calls,
        }


class Progress:
    """Progress on stderr: a rich bar on a terminal; in a pipe or a log, a plain line at each quarter
    and one at the end (nothing for a run shorter than `every`). The total may grow as the run goes
    (a capture is decoded one file at a time)."""

    def __init__(
        self,
        total: int = 0,
        stream: TextIO | None = None,
        every: int = 1000,
        label: str = "events",
        live: bool | None = None,
    ) -> None:
        self.total, self.done, self.every, self.label = total, 0, every, label
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.note = ""
        self._bar: Any = None
        self._task: Any = None
        self._quarter = 1

    def step(self, n: int = 1, note: str = "") -> None:
        self.update(self.done + n, note)

    def update(self, done: int, note: str = "") -> None:
        """Set the count (and a short note such as a rate) and show it as the stream allows."""
        self.done, self.note = done, note or self.note
        if self.live:
            self._draw()
            return
        while self._quarter < 4 and self.total >= self.every and self.done * 4 >= self.total * self._quarter:
            self._quarter += 1
            self._line()

    def finish(self) -> None:
        """The final count: the bar completed on a terminal, a last plain line elsewhere."""
        if self._bar is not None:
            self._draw()
            self._bar.stop()
            self._bar = None
        elif not self.live and max(self.total, self.done) >= self.every:
            self._line()

    def _line(self) -> None:
        self.stream.write(f"{self.done}/{self.total} {self.label}{self.note}\n")
        self.stream.flush()

    def _draw(self) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(self.label + "{task.fields[note]}"),
                TimeElapsedColumn(),
                console=Console(file=self.stream, highlight=False),
            )
            self._task = self._bar.add_task("", total=self.total or None, note="")
            self._bar.start()
        self._bar.update(
            self._task, completed=self.done, total=max(self.total, self.done) or None, note=self.note
        )


def replay_offline(files: list[Path], args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Dry-run classification with the facts of a tenant snapshot: no Azure, no stand-ins, no ledger.
    Results are yielded one by one, so a large capture is never held twice in memory."""
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
    progress = Progress()
    now = utc_now()
    for path in files:  # one file at a time, each event let go once classified
        for item, raw in iter_items(path, progress, args.repeat):
            for _ in range(args.repeat):
                try:
                    plan = classifier.plan(item if raw is None else raw, now=now)
                except BadInput as exc:
                    yield {"file": path.name, "status": "rejected", "error": str(exc)}
                else:
                    outcomes = [Outcome(action=a, status="dry-run") for a in plan.actions]
                    result = report(plan, outcomes, incident_status(plan, outcomes, True), True)
                    result["file"] = path.name
                    yield result
                progress.step()
    progress.finish()


def cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    from responders.replay import Replayer

    files = list(iter_event_files(args.paths))
    if not files:
        raise CliError("no .json capture files found")
    if args.repeat < 1:
        raise CliError("--repeat must be at least 1")
    if args.topic:
        if args.execute or args.target or args.offline:
            raise CliError("--topic publishes only: the topic's subscribers decide; drop --execute/--target")
        return publish_to_topic(files, args, out)
    if args.offline:
        if args.execute or args.target:
            raise CliError("--offline classifies only: it cannot be combined with --execute or --target")
        _write_results(replay_offline(files, args), {"read": 0, "write": 0}, args, out)
        return 0
    from rehearsal.standins import StandInError

    try:
        with Replayer.start(
            execute=args.execute,
            target=args.target,
            policy_file=args.policy,
            tenant=args.tenant,
            persist=True,
        ) as replayer:
            write_replay(replayer, files, args, out)
    except StandInError as exc:
        raise CliError(str(exc)) from exc
    return 0


TOPIC_BATCH_BYTES = 1_000_000  # Event Grid takes at most 1 MB per publish request; room for framing


def _batches(events: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 2
    for event in events:
        n = len(json.dumps(event)) + 1
        if batch and size + n > TOPIC_BATCH_BYTES:
            yield batch
            batch, size = [], 2
        batch.append(event)
        size += n
    if batch:
        yield batch


def publish_to_topic(files: list[Path], args: argparse.Namespace, out: TextIO) -> int:
    """Publish the captured Event Grid and CloudEvents events to a custom topic with Event Grid's own
    client, in batches within its 1 MB limit; what is neither is listed as skipped. The key comes from
    EVENTGRID_TOPIC_KEY (for the local stack's simulated topic, from .run/local.env) and is never shown."""
    from urllib.parse import urlsplit

    from azure.core.credentials import AzureKeyCredential
    from azure.core.exceptions import AzureError
    from azure.eventgrid import EventGridPublisherClient

    from rehearsal.standins import running_stack_env, scoped_environ
    from responders.settings import is_loopback_url

    if urlsplit(args.topic).scheme != "https":
        raise CliError("--topic must be an https URL (the access key is never sent over http)")
    settings: dict[str, str] = {}
    if is_loopback_url(args.topic):
        settings = running_stack_env() or {}
    key = os.environ.get("EVENTGRID_TOPIC_KEY") or settings.get("EVENTGRID_TOPIC_KEY", "")
    if not key:
        raise CliError("set EVENTGRID_TOPIC_KEY to the topic's access key")
    grid: list[dict[str, Any]] = []
    cloud: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for path in files:
        for item, raw in iter_items(path):
            if raw is None and isinstance(item, dict) and "specversion" in item:
                cloud.append(item)
            elif raw is None and isinstance(item, dict) and {"eventType", "subject"} <= item.keys():
                grid.append(item)
            else:
                skipped.append({"file": path.name, "why": "not an Event Grid or CloudEvents event"})
    ca = settings.get("REQUESTS_CA_BUNDLE")
    client = EventGridPublisherClient(args.topic, AzureKeyCredential(key))
    trust = {"REQUESTS_CA_BUNDLE": ca} if ca else {}  # the local stack's test CA, read by requests
    batches = 0
    try:
        with scoped_environ(trust):
            for events in (grid, cloud):
                for batch in _batches(events):
                    client.send(batch)
                    batches += 1
    except AzureError as exc:
        status = getattr(exc, "status_code", None)
        raise CliError(
            f"the topic refused batch {batches + 1}: {type(exc).__name__}" + (f" {status}" if status else "")
        ) from exc
    finally:
        client.close()
    summary = {
        "published": len(grid) + len(cloud),
        "eventgrid": len(grid),
        "cloudevents": len(cloud),
        "batches": batches,
        "skipped": skipped,
        "topic": urlsplit(args.topic).hostname,
    }
    if args.format == "json":
        out.write(json.dumps(summary, sort_keys=True) + "\n")
    else:
        out.write(
            f"PUBLISHED to {summary['topic']}: {summary['published']} events ({len(grid)} Event Grid, "
            f"{len(cloud)} CloudEvents) in {batches} batches; {len(skipped)} skipped\n"
        )
        for skip in skipped:
            out.write(f"    skipped {skip['file']}: {skip['why']}\n")
    return 0


def cmd_stack(args: argparse.Namespace, out: TextIO) -> int:
    """The local stand-ins as a background service (`make up`, `make down`, `make reset`)."""
    from rehearsal import standins

    env_file = standins.run_dir() / standins.ENV_FILE
    try:
        if args.action == "serve":
            return standins.serve_stack(Path(args.tenant))
        if args.action == "up":
            standins.stack_up(Path(args.tenant))
            out.write(
                f"local stack up (pid {standins.stack_pid()}), data in {standins.data_dir()}; "
                f"its endpoints are in {env_file} (for `func start`: set -a; . {env_file}; set +a)\n"
            )
        elif args.action == "down":
            out.write("local stack stopped\n" if standins.stack_down() else "local stack was not up\n")
        elif args.action == "reset":
            standins.stack_reset()
            out.write(f"local stack data removed ({standins.data_dir()})\n")
        else:
            pid = standins.stack_pid()
            up = f"local stack up (pid {pid}), endpoints in {env_file}"
            out.write((up if pid else "local stack down") + "\n")
    except standins.StandInError as exc:
        raise CliError(str(exc)) from exc
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
    progress.finish()
    _write_results(results, replayer.calls(), args, out)
    if args.execute and args.format != "json":
        replayer.print_evidence(out)
    return results


def _write_results(
    results: Iterable[dict[str, Any]], calls: dict[str, int], args: argparse.Namespace, out: TextIO
) -> None:
    """Each result as it comes (a JSON line or a table block), then the summary."""
    tally = _Tally()
    console = _console(out) if args.format != "json" else None
    for r in results:
        tally.add(r)
        if args.format == "json":
            out.write(json.dumps(r, sort_keys=True) + "\n")
        else:
            _table_row(r, out, console)
    summary = tally.summary(calls)
    if args.format == "json":
        out.write(json.dumps(summary, sort_keys=True) + "\n")
        return
    mode = "EXECUTED" if args.execute else "DRY-RUN (nothing changed; add --execute)"
    out.write(
        f"{mode}: {summary['events']} events ({summary['duplicates']} duplicate deliveries), "
        f"{summary['leaks']} leaks, {summary['rejected']} rejected; "
        f"actions {summary['actions']}; tenant calls {calls}\n"
    )


def cmd_sweep(args: argparse.Namespace, out: TextIO) -> int:
    """One sweep over the policy's scope: against the app settings' endpoints when they are set, else
    the local stack (the simulated tenant seeded from --tenant, the policy --policy). Exit 3 when it is
    incomplete."""
    from rehearsal.standins import StandInError, endpoints_configured, local_stack
    from responders.sweep import run_sweep

    with ExitStack() as stack:
        if not endpoints_configured():
            extra = {"RESPONDER_POLICY_FILE": args.policy, "RESPONDER_DRY_RUN": "false"}
            try:  # --execute alone decides whether anything acts
                stack.enter_context(local_stack(Path(args.tenant), extra))
            except StandInError as exc:
                raise CliError(str(exc)) from exc
        rt = stack.enter_context(_settings_runtime())
        summary = run_sweep(rt, execute=args.execute).summary()
    if args.format == "json":
        _print_json(summary, out)
    elif args.format == "md":
        out.write(sweep_markdown(summary))
    else:
        _sweep_table(summary, out)
    return 0 if summary["status"] == "complete" else 3


def _sweep_lines(summary: dict[str, Any]) -> tuple[str, list[list[str]]]:
    """The headline and one row per exposure (account, open containers, status, incident)."""
    mode = "dry-run (nothing changed; add --execute)" if summary["dry_run"] else "executed"
    c = summary["counts"]
    head = (
        f"SWEEP {summary['status'].upper()} ({mode}): {c['accounts']} accounts in scope, "
        f"{c['candidates']} synthetic-data candidates, {c['exposures']} exposed; {c['contained']} contained, "
        f"{c['already_handled']} already handled, {c['not_a_leak']} judged no leak on reading, "
        f"{c['pending_approval']} awaiting approval, {c['failed']} failed; "
        f"{summary['pages']} Resource Graph pages"
    )
    by_subject = {str(r.get("subject", "")).lower(): r for r in summary["incidents"]}
    rows = []
    for e in summary["exposures"]:
        r = by_subject.get(e["account"].lower(), {})
        opened = ", ".join(f"{x['name']} ({x['publicAccess']})" for x in e["containers"]) or "-"
        status = str(r.get("status", "?")) + (" (repeat)" if r.get("duplicate") else "")
        rows.append([_short(e["account"]), opened, status, str(r.get("incident", ""))])
    return head, rows


def _sweep_table(summary: dict[str, Any], out: TextIO) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    console = _console(out)
    head, rows = _sweep_lines(summary)
    console.print(Text(head, style="bold"), soft_wrap=True)
    if rows:
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
        for column in ("account", "public containers", "status", "incident"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)
    for why in summary["incomplete"]:
        console.print(Text(f"    incomplete: {_short(why)}", style="red"), soft_wrap=True)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def sweep_markdown(summary: dict[str, Any]) -> str:
    head, rows = _sweep_lines(summary)
    lines = [f"# Sweep {summary['sweep']}", "", head, ""]
    if rows:
        lines += ["| account | public containers | status | incident |", "| --- | --- | --- | --- |"]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
        lines.append("")
    if summary["incomplete"]:
        lines += ["## Incomplete", ""] + [f"- {_md_cell(_short(w))}" for w in summary["incomplete"]] + [""]
    return "\n".join(lines)


def cmd_simulator(args: argparse.Namespace, out: TextIO) -> int:
    from rehearsal.simulator.server import main as sim_main

    argv = ["--tenant", args.tenant, "--host", args.host, "--port", str(args.port)]
    if args.cert_dir:
        argv += ["--cert-dir", args.cert_dir]
    return sim_main(argv)


@contextmanager
def _runtime() -> Iterator[Any]:
    """A runtime from the app settings in the environment (the same ones the Functions app reads),
    closed when the command ends. With no ledger configured, the local stack's: the one `make up`
    keeps running, or stand-ins started over the data in .run/ for this command only."""
    from rehearsal.standins import StandInError, endpoints_configured, local_stack

    if endpoints_configured():
        with _settings_runtime() as rt:
            yield rt
        return
    with ExitStack() as stack:
        try:  # each command's --execute decides whether anything acts
            stack.enter_context(local_stack(extra_env={"RESPONDER_DRY_RUN": "false"}))
        except StandInError as exc:
            raise CliError(str(exc)) from exc
        with _settings_runtime() as rt:
            yield rt


@contextmanager
def _settings_runtime() -> Iterator[Any]:
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
    """Who ran the command, for the ledger (the OS user; no credential involved). getpass reads LOGNAME
    and USER first, so the name is reduced to a plain account-name charset before it is recorded."""
    import getpass
    import re

    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        return "cli:unknown"
    return "cli:" + (re.sub(r"[^A-Za-z0-9._@-]", "_", name)[:64] or "unknown")


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


def cmd_deadletters(args: argparse.Namespace, out: TextIO) -> int:
    from responders.deadletters import replay_dead_letters

    with _runtime() as rt:
        report = replay_dead_letters(rt, execute=args.execute)
    _print_json(report.as_dict(), out)
    if report.error:
        sys.stderr.write(f"error: {report.error}\n")
        return 1
    return 0


def cmd_review(args: argparse.Namespace, out: TextIO) -> int:
    from responders import review

    if args.runs < 1:
        raise CliError("--runs must be at least 1")
    with _runtime() as rt:
        found = review.latest(rt, runs=args.runs)
    render = {"md": review.render_markdown, "json": review.render_json, "html": review.render_html}
    out.write(render[args.format](found))
    if args.format == "json":
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
        "--topic",
        help="publish to an Event Grid custom topic (https://.../api/events); key in EVENTGRID_TOPIC_KEY",
    )
    replay.add_argument(
        "--offline",
        action="store_true",
        help="classify with the facts of --tenant only: no Azure, stand-ins or ledger",
    )
    replay.set_defaults(func=cmd_replay)
    sweep = sub.add_parser("sweep", help="inventory the policy's scope and contain what is exposed")
    sweep.add_argument("--execute", action="store_true", help="act (default: dry-run, nothing changes)")
    sweep.add_argument("--format", choices=("table", "json", "md"), default="table")
    sweep.add_argument("--policy", default=str(ROOT / "samples" / "policy.yaml"), help="policy file")
    sweep.add_argument(
        "--tenant",
        default=str(ROOT / "samples" / "tenant.json"),
        help="tenant seed for the simulator started when no endpoints are set",
    )
    sweep.set_defaults(func=cmd_sweep)
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
    deadletters = sub.add_parser(
        "deadletters", help="replay the Event Grid dead-letter blobs the ledger has not handled yet"
    )
    deadletters.add_argument("--execute", action="store_true", help="act (default: dry-run)")
    deadletters.set_defaults(func=cmd_deadletters)
    review = sub.add_parser("review", help="the control review the sweeps wrote, with the trend")
    review.add_argument("--format", choices=("md", "json", "html"), default="md")
    review.add_argument("--runs", type=int, default=96, help="sweeps in the trend (default: 96)")
    review.set_defaults(func=cmd_review)
    stack = sub.add_parser("stack", help="the local stand-ins over the data in .run/ (make up/down/reset)")
    stack.add_argument("action", choices=("up", "down", "reset", "status", "serve"))
    stack.add_argument("--tenant", default=str(ROOT / "samples" / "tenant.json"), help="tenant seed")
    stack.set_defaults(func=cmd_stack)
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
