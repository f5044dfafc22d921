"""Storm: thousands of events about one storage account within a minute, delivered concurrently.
Containment must still happen exactly once (writes = the actions of one plan), every event must be
accounted for in the ledger, and memory must stay flat while the storm lasts.

The events are ResourceWriteSuccess containers/write on stsynthpublic01 (samples/events/01) with
distinct ids and event times spread over 60 s, all before containment. They go through the
registered Event Grid function from a pool of threads, as the harness does; a TransientFailure is
redelivered (up to REDELIVERIES times, as Event Grid would). Writes are the PATCH/PUT/POST requests
the simulated tenant logged on ARM and Graph (the read-only POSTs excluded); the minimum is the
number of actions in a dry-run plan of the same event against the same tenant snapshot.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import policy, result, rss_kib, sample, say, tenant
from bench.stand import (
    Hung,
    api_calls,
    azurite,
    deliver,
    dump_stacks,
    functions,
    is_write,
    iso,
    pipeline,
    simulator,
)

TARGET = 1.0
SAMPLE = "01-container-made-public.json"
THREADS = 16
REDELIVERIES = 3
SAMPLE_EVERY_S = 0.5
STALL_S = 60.0


def events(count: int) -> list[dict[str, Any]]:
    """Distinct ids; event times spread over the minute that ends 15 s before now."""
    start = datetime.now(UTC) - timedelta(seconds=75)
    base = sample(SAMPLE)
    return [
        {**base, "id": str(uuid.uuid4()), "eventTime": iso(start + timedelta(seconds=60 * i / count))}
        for i in range(count)
    ]


def minimum_writes() -> tuple[int, list[str]]:
    """The actions one containment needs: a dry-run plan of the storm's event (no I/O)."""
    from responders.offline import OfflineClassifier

    plan = OfflineClassifier(tenant(), policy()).plan(sample(SAMPLE), now=iso(datetime.now(UTC)))
    return len(plan.actions), [f"{a.kind} {dict(a.params) or ''}".strip() for a in plan.actions]


def _write_label(request: dict[str, Any]) -> str:
    """Which containment step a write is: method and the path below the storage account."""
    path = str(request["path"])
    tail = path.split("/storageAccounts/", 1)[-1].split("/", 1)
    return f"{request['method']} {tail[1] if len(tail) > 1 else 'account ' + tail[0]}"


class Sampler:
    """RSS of this process every SAMPLE_EVERY_S seconds, from /proc/self/status."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self.high_water = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        start = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - start, rss_kib()))
            self._stop.wait(SAMPLE_EVERY_S)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((self.samples[-1][0] + SAMPLE_EVERY_S if self.samples else 0.0, rss_kib()))
        self.high_water = rss_kib("VmHWM")

    def summary(self) -> dict[str, Any]:
        values = [kib for _, kib in self.samples]
        mid = len(values) // 2
        second_half_growth = (max(values[mid:]) - values[mid]) / values[mid] if values else 0.0
        return {
            "rss_start_mib": round(values[0] / 1024, 1),
            "rss_peak_mib": round(max(values) / 1024, 1),
            "rss_end_mib": round(values[-1] / 1024, 1),
            "process_peak_during_storm_mib": round(self.high_water / 1024, 1),
            "process_peak_mib": round(rss_kib("VmHWM") / 1024, 1),
            "second_half_growth_pct": round(100 * second_half_growth, 1),
            "flat": second_half_growth < 0.10,
            "samples": len(values),
        }


def _deliver_all(items: list[dict[str, Any]], threads: int, deadline_s: float) -> dict[str, Any]:
    """Deliver from `threads` daemon threads; stop feeding at the deadline (a hang must not hang us)."""
    from responders.execute import TransientFailure

    functions()  # index the app once, up front: replay._functions is not safe to race on
    work: queue.Queue[dict[str, Any]] = queue.Queue()
    for item in items:
        work.put(item)
    errors: Counter[str] = Counter()
    first_trace: dict[str, str] = {}
    redelivered = Counter[str]()
    done = [0]
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                item = work.get_nowait()
            except queue.Empty:
                return
            for attempt in range(1, REDELIVERIES + 1):
                try:
                    deliver(item)
                    break
                except TransientFailure:
                    with lock:
                        redelivered["transient" if attempt < REDELIVERIES else "gave-up"] += 1
                except Exception as exc:
                    with lock:
                        errors[type(exc).__name__] += 1
                        first_trace.setdefault(type(exc).__name__, traceback.format_exc(limit=12))
                    break
            with lock:
                done[0] += 1

    pool = [threading.Thread(target=worker, name=f"storm-{i}", daemon=True) for i in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    last, last_change = 0, start
    while any(t.is_alive() for t in pool):
        time.sleep(1.0)
        now = time.perf_counter()
        say_progress(done[0], len(items), now - start)
        if done[0] != last:
            last, last_change = done[0], now
        stalled = now - last_change > STALL_S
        if stalled or now - start > deadline_s:
            while not work.empty():  # drain: the rest is reported as not delivered
                work.get_nowait()
            if stalled:
                raise Hung(
                    f"storm: no delivery finished for {STALL_S:.0f} s; thread stacks in {dump_stacks()}"
                )
            say(f"\n  storm: deadline of {deadline_s:.0f} s reached; the rest is not delivered")
            break
    for t in pool:
        t.join(timeout=60)
    say_progress(done[0], len(items), time.perf_counter() - start, end=True)
    return {
        "seconds": time.perf_counter() - start,
        "delivered": done[0],
        "errors": dict(errors),
        "first_traceback": first_trace,
        "redeliveries": dict(redelivered),
        "hung_threads": sum(t.is_alive() for t in pool),
    }


_PROGRESS: dict[int, Any] = {}


def say_progress(done: int, total: int, elapsed: float, end: bool = False) -> None:
    """A bar on a terminal, a few plain lines in a log (responders.cli.Progress)."""
    from responders.cli import Progress

    progress = _PROGRESS.setdefault(total, Progress(total, label="delivered", every=1))
    rate = done / elapsed if elapsed else 0.0
    progress.update(done, f", {rate:6.1f}/s, rss {rss_kib() / 1024:6.1f} MiB")
    if end:
        progress.finish()
        _PROGRESS.pop(total, None)


def run(
    cert_dir: Path,
    count: int = 10_000,
    threads: int = THREADS,
    deadline_s: float = 420,
    evidence: bool = True,
) -> dict[str, Any]:
    say(f"[storm] {count} events on one account from {threads} threads, fresh tenant and Azurite")
    minimum, planned = minimum_writes()
    items = events(count)
    with azurite() as table_server, simulator(cert_dir) as sim:
        with pipeline(sim, table_server, evidence=evidence) as rt:
            with Sampler() as sampler:
                delivery = _deliver_all(items, threads, deadline_s)
            rows = list(rt.ledger.incidents())
        logged = sim.requests()
    requests = api_calls(logged)
    writes = [r for r in requests if is_write(r)]
    by_step = Counter(_write_label(r) for r in writes)
    status_of = {str(r.get("EventId", "")): str(r.get("Status", "")) for r in rows}
    missing = sum(1 for item in items if item["id"] not in status_of)
    problems = [f"{missing} events have no incident row"] if missing else []
    problems += [f"{n} deliveries raised {kind}" for kind, n in delivery["errors"].items()]
    if delivery["redeliveries"].get("gave-up"):
        problems.append(f"{delivery['redeliveries']['gave-up']} events still transient after redeliveries")
    return result(
        "storm writes (ARM+Graph writes ÷ one plan's actions)",
        len(writes) / minimum,
        TARGET,
        "<=",
        problems,
        events=count,
        threads=threads,
        seconds=round(delivery["seconds"], 1),
        events_per_s=round(delivery["delivered"] / delivery["seconds"], 1),
        delivery=delivery,
        minimum_writes=minimum,
        planned_actions=planned,
        writes=len(writes),
        writes_by_step=dict(by_step),
        duplicate_writes=sum(n - 1 for n in by_step.values() if n > 1),
        requests=len(requests),
        ledger_incidents=len(rows),
        events_without_incident_row=missing,
        status_counts=dict(Counter(status_of.get(item["id"], "(missing)") for item in items)),
        memory={**sampler.summary(), "simulator_request_log_mib": round(deep_size(logged) / 2**20, 1)},
    )


def deep_size(entries: list[Any], probe: int = 500) -> float:
    """Rough bytes held by the simulator's request log (it lives in this process and grows by one
    entry per request): the deep size of a sample of entries, scaled to all of them."""

    def size(obj: Any) -> int:
        if isinstance(obj, dict):
            return sys.getsizeof(obj) + sum(size(k) + size(v) for k, v in obj.items())
        if isinstance(obj, (list, tuple)):
            return sys.getsizeof(obj) + sum(size(v) for v in obj)
        return sys.getsizeof(obj)

    sample_ = entries[:: max(1, len(entries) // probe)]
    return sys.getsizeof(entries) + sum(map(size, sample_)) * len(entries) / max(1, len(sample_))
