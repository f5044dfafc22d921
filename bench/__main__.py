"""`python -m bench` (`make bench`): run the benchmarks, print each ratio against its target, then a
summary table and a markdown table for the README, and keep the numbers in bench/results/latest.json.

Order matters: cold start first (a quiet machine for the subprocesses), the storm and the sweep before
the throughput run (its memory readings must not start from the throughput run's 100,000 events).
Exit status 1 when any target is missed or a benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, headline, say
from bench.stand import Hung, azurite, guard_loopback

ORDER = ("coldstart", "latency", "storm", "sweep", "throughput")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(ORDER), help=f"comma-separated subset of {ORDER}")
    parser.add_argument("--storm-events", type=int, default=10_000)
    parser.add_argument("--throughput-events", type=int, default=100_000)
    parser.add_argument("--latency-runs", type=int, default=3)
    parser.add_argument("--sweep-accounts", type=int, default=5000)
    parser.add_argument("--coldstart-runs", type=int, default=12)
    parser.add_argument(
        "--no-evidence",
        action="store_true",
        help="leave the Log Analytics workspace unset, which turns the evidence follow-up off",
    )
    parser.add_argument(
        "--sim-nodelay",
        action="store_true",
        help="TCP_NODELAY on the simulator's connections (its replies are two writes: without it each "
        "reply can wait ~40 ms for a delayed ACK)",
    )
    return parser.parse_args(argv)


def _runners(args: argparse.Namespace, workdir: Path) -> dict[str, Callable[[], dict[str, Any]]]:
    from bench import coldstart, latency, storm, sweep, throughput

    certs = workdir / "certs"
    evidence = not args.no_evidence

    def run_latency() -> dict[str, Any]:
        with azurite() as server:
            return latency.run(server, certs, repeats=args.latency_runs, evidence=evidence)

    return {
        "coldstart": lambda: coldstart.run(args.coldstart_runs),
        "latency": run_latency,
        "storm": lambda: storm.run(certs, count=args.storm_events, evidence=evidence),
        "sweep": lambda: sweep.run(certs, accounts=args.sweep_accounts, evidence=evidence),
        "throughput": lambda: throughput.run(args.throughput_events),
    }


def note(key: str, res: dict[str, Any]) -> str:
    """One line of what the ratio is made of, for the tables; problems first."""
    if "error" in res:
        return f"did not run: {res['error']}"
    problems = "; ".join(res.get("problems") or [])
    return f"{problems}; {_made_of(key, res)}" if problems else _made_of(key, res)


def _made_of(key: str, res: dict[str, Any]) -> str:
    if key == "latency":
        c, s = res["concurrent"], res["sequential_baseline"]
        return (
            f"{c['wall_s']:.2f} s to the ledger outcome vs a minimal chain of {res['chain']['chain_calls']} "
            f"calls x {res['latency_ms']} ms = {res['chain_s']:.2f} s ({res['chain']['minimal_chain']}; "
            f"observed chain {c['observed_chain']}); the function returns at {c['returned_s']:.2f} s; "
            f"sequential (1 worker): {s['wall_s']:.2f} s = {s['ratio']:.2f}x"
        )
    if key == "coldstart":
        text = f"{res['function_app_ms']} ms vs {res['azure_functions_ms']} ms (median of {res['runs']})"
        if not res["pass"]:
            heavy = ", ".join(
                f"{m['module']} {m['cumulative_us'] / 1000:.0f} ms" for m in res["extra_modules"][:5]
            )
            text += f"; function_app also imports: {heavy}"
        return text
    if key == "throughput":
        split = ", ".join(f"{k} {v}" for k, v in res["stages_us"].items())
        return (
            f"{res['classified_per_s']:,} classified/s vs {res['json_loads_per_s']:,} json.loads/s "
            f"({res['events']:,} events); µs/event: {split}"
        )
    if key == "storm":
        m = res["memory"]
        return (
            f"{res['writes']} writes for {res['minimum_writes']} actions; {res['events']:,} events in "
            f"{res['seconds']} s ({res['events_per_s']}/s); {res['events_without_incident_row']} without a "
            f"ledger row; RSS {m['rss_start_mib']}->{m['rss_peak_mib']}->{m['rss_end_mib']} MiB "
            f"({'flat' if m['flat'] else 'growing'})"
        )
    if key == "sweep":
        m = res["memory"]
        return (
            f"{res['reads']} reads ({res['pages']} Resource Graph pages, {res['container_lists']} container "
            f"lists, {res['reads_by_kind'].get('account get', 0)} account reads) vs {res['minimum_reads']} "
            f"({res['pages']} pages + {res['synthetic_accounts']} synthetic accounts); {res['accounts']:,} "
            f"accounts in {res['subscriptions']} subscriptions, {res['exposed']} exposed: "
            f"{res['incident_statuses'].get('contained', 0)} contained once with {res['writes']} writes in "
            f"{res['seconds']} s; a repeat finds nothing in {res['repeat_seconds']} s; RSS "
            f"{m['rss_after_second_mib']}->{m['rss_after_third_mib']} MiB over a third sweep "
            f"({'flat' if m['flat'] else 'growing'})"
        )
    return ""


def _mark(res: dict[str, Any]) -> str:
    return "ERROR" if "error" in res else ("PASS" if res["pass"] else "FAIL")


def _measured(res: dict[str, Any]) -> str:
    return "-" if "error" in res else f"{res['ratio']:.3f}"


def tables(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        (r["name"], _measured(r), f"{r['op']} {r['target']}", _mark(r), note(k, r))
        for k, r in results.items()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    plain = ["", "Summary"]
    for row in rows:
        plain.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    markdown = [
        "",
        "| benchmark | measured | target | result | what it is made of |",
        "| --- | --- | --- | --- | --- |",
    ]
    markdown += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(plain + markdown)


def _meta(args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "total_seconds": round(seconds, 1),
        "commit": commit,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "options": vars(args),
    }


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    guard_loopback()
    # a SIGTERM (timeout, CI cancel) unwinds like Ctrl-C, so Azurite and the simulator are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.sim_nodelay:
        from rehearsal.simulator import transport

        transport._Handler.disable_nagle_algorithm = True
    chosen = [k for k in ORDER if k in {x.strip() for x in args.only.split(",")}]
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    hung = False
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        runners = _runners(args, Path(workdir))
        for key in chosen:
            began = time.perf_counter()
            try:
                res = runners[key]()
            except Exception as exc:
                hung = hung or isinstance(exc, Hung)
                traceback.print_exc()
                res = {
                    "name": key,
                    "target": "",
                    "op": "",
                    "pass": False,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            res["seconds_total"] = round(time.perf_counter() - began, 1)
            results[key] = res
            print(headline(res) if "error" not in res else f"{key}: ERROR {res['error']}", flush=True)
    total = time.perf_counter() - started
    print(tables(results))
    print(f"\nTotal runtime: {total:.0f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "latest.json"
    out.write_text(json.dumps({"meta": _meta(args, total), "results": results}, indent=2, default=str) + "\n")
    say(f"results written to {out.relative_to(ROOT)}")
    code = 0 if all(r.get("pass") for r in results.values()) else 1
    if hung:  # threads stuck in the code under test would keep the interpreter from exiting
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
