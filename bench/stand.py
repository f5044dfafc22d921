"""The local stand-ins the end-to-end benchmarks run against, wired like tests/harness.py: the real
registered functions and SDK clients, a fresh simulated tenant per run, Azurite for the ledger.

Everything listens on 127.0.0.1; `guard_loopback` makes any other connection fail loudly.
"""

from __future__ import annotations

import faulthandler
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import RESULTS, SAMPLES, tenant

# Writes the tenant saw: PATCH/PUT/POST on ARM and Graph, except the POSTs that only read.
WRITE_METHODS = ("PATCH", "PUT", "POST")
READ_POSTS = ("/query", "/alerts", "/entities", "/microsoft.resourcegraph/resources")


def guard_loopback() -> None:
    """Refuse connections and name lookups that would leave the machine (as the test harness does)."""
    from responders.settings import is_loopback_url

    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo
    if getattr(real_connect, "bench_guard", False):
        return

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and not is_loopback_url(f"https://{address[0]}"):
            raise ConnectionRefusedError(f"benchmark tried to reach non-loopback address {address[0]}")
        return real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and str(host) != "" and not is_loopback_url(f"https://{host}"):
            raise socket.gaierror(f"benchmark tried to resolve non-loopback host {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    connect.bench_guard = True  # type: ignore[attr-defined]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ago(seconds: float) -> str:
    """An event time relative to this machine's clock, so `since` checks hold whatever the date."""
    return iso(datetime.now(UTC) - timedelta(seconds=seconds))


def is_write(request: dict[str, Any]) -> bool:
    path, method = str(request.get("path", "")), str(request.get("method", "")).upper()
    if path.startswith("/msi/") or method not in WRITE_METHODS:
        return False
    return not (method == "POST" and path.lower().endswith(READ_POSTS))


def api_calls(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ARM and Graph requests (managed-identity token requests left out)."""
    return [r for r in requests if not str(r.get("path", "")).startswith("/msi/")]


def functions() -> dict[str, Callable[..., Any]]:
    """The app's registered functions by name, indexed once as the Functions host does."""
    from responders.replay import _functions

    return _functions()


def deliver(item: dict[str, Any]) -> None:
    """Event Grid delivery through the registered function (returns once the ledger holds the outcome)."""
    from responders.replay import to_eventgrid_event

    functions()["eventgrid_trigger"](to_eventgrid_event(item))


class Hung(RuntimeError):
    """A delivery did not return in time; every thread's stack was written to HANG_FILE."""


HANG_FILE = RESULTS / "hang-stacks.txt"


def dump_stacks() -> Path:
    """Every thread's stack to HANG_FILE: what a hang in the code under test is waiting on."""
    HANG_FILE.parent.mkdir(parents=True, exist_ok=True)
    with HANG_FILE.open("w", encoding="utf-8") as out:
        faulthandler.dump_traceback(out, all_threads=True)
    return HANG_FILE


def within(seconds: float, work: Callable[[], Any]) -> Any:
    """Run `work` in a daemon thread and wait at most `seconds`: a deadlock in the code under test must
    fail the benchmark with the stacks that show it, not hang `make bench`."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="bench-delivery", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise Hung(f"no answer within {seconds:.0f} s; thread stacks in {dump_stacks()}")
    if "error" in box:
        raise box["error"]
    return box.get("value")


class OutcomeClock:
    """When the ledger first held each incident's outcome: wraps this runtime's Ledger.set_incident_status
    (the call that records it), since the function itself returns only after the follow-up work."""

    SETTLING = ("planned", "dry-run")

    def __init__(self, ledger: Any) -> None:
        self.at: dict[str, tuple[str, float, float]] = {}
        self._real = ledger.set_incident_status
        self._lock = threading.Lock()
        ledger.set_incident_status = self._spy

    def _spy(self, incident: str, status: str, now: str, **extra: Any) -> None:
        self._real(incident, status, now, **extra)
        if status not in self.SETTLING:
            with self._lock:
                self.at.setdefault(incident, (status, time.perf_counter(), time.time()))


@contextmanager
def simulator(cert_dir: Path) -> Iterator[Any]:
    """A fresh simulated tenant from samples/tenant.json; the CA in cert_dir is made once and reused."""
    from rehearsal.simulator import Simulator

    sim = Simulator(tenant(), cert_dir=cert_dir).start()
    try:
        yield sim
    finally:
        sim.stop()


@contextmanager
def azurite() -> Iterator[Any]:
    from rehearsal.standins import Azurite

    server = Azurite().start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def pipeline(
    sim: Any,
    table_server: Any,
    *,
    workers: int | None = None,
    evidence: bool = True,
    seeded: dict[str, Any] | None = None,
    policy: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """Point the environment at `sim` and a fresh ledger table, install a Runtime (with an executor of
    `workers` threads when given) as the process runtime, and undo it all afterwards. `evidence`
    False leaves the Log Analytics workspace unset, which turns the evidence follow-up off. `seeded` is
    the tenant `sim` was started with (the samples' by default); `policy`, given, replaces the samples'
    policy file."""
    from rehearsal.standins import local_env
    from responders.execute import Executor
    from responders.service import Runtime, set_runtime
    from responders.settings import Settings

    snap = seeded if seeded is not None else tenant()
    extra = {
        "RESPONDER_IDENTITY_OBJECT_ID": snap["responderIdentity"]["principalId"],
        "RESPONDER_LEDGER_TABLE": "bench" + uuid.uuid4().hex[:16],
        "RESPONDER_DRY_RUN": "false",
        "RESPONDER_LOG_ANALYTICS_WORKSPACE_ID": snap["logAnalytics"]["workspaceId"] if evidence else "",
    }
    if policy is None:
        extra["RESPONDER_POLICY_FILE"] = str(SAMPLES / "policy.yaml")
    else:
        extra["RESPONDER_POLICY"] = json.dumps(policy)
    env = local_env(sim.url, str(sim.ca_path), sim.identity_header, table_server.connection_string, extra)
    saved = {k: os.environ.get(k) for k in [*env, "RESPONDER_POLICY_FILE"]}
    os.environ.update(env)
    if policy is not None:
        os.environ.pop("RESPONDER_POLICY_FILE", None)
    try:
        rt = Runtime.from_settings(Settings.from_env())
        if workers is not None:
            rt = replace(rt, executor=Executor(rt.clients, rt.ledger, rt.clock, workers=workers))
        set_runtime(rt)
        yield rt
    finally:
        set_runtime(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
