"""Containment latency: how close delivering one event gets to the slowest chain of Azure calls that
must happen one after another. With every API call slowed to 300 ms, network time dominates, so a
ratio near 1.0 means the pipeline adds little of its own and runs everything else concurrently.

How the required chain is counted (from the plan, with call counts read from the request log):

* facts: gather_facts reads every account and principal the signal names concurrently; reading one
  account is GET account then LIST containers (sequential), one principal is one GET. The facts
  chain is the longest of these readers.
* each action is read -> apply -> read back, sequential; its cost is the number of requests the
  simulator logs while a fresh copy of the tenant runs those three steps for it alone.
* actions wait only for the actions named in `after` (key2 after key1); the action chain is the
  longest path through that graph. Independent actions do not add up.
* required chain = facts chain + action chain; the denominator is that many calls x 300 ms.
* the managed-identity token route carries no latency (the fault rule's path regex excludes it) and
  the token is fetched by a dry-run warm-up delivery, as on a warm Functions instance; the ledger
  (Azurite) carries no latency either: its time is part of what the pipeline adds.

The observed chain is read from the timed run's request log: the longest sequence of requests each
arriving at least one latency after the previous one (so it could only be sent after the previous
answer). Observed > required means the pipeline serialised calls it did not need to.
"""

from __future__ import annotations

import statistics
import time
import uuid
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench.common import result, sample, say
from bench.stand import OutcomeClock, ago, api_calls, deliver, is_write, pipeline, simulator, within

TARGET = 1.2
LATENCY_MS = 300
# `path` is a regex searched in the request path: every API route except the managed-identity token.
RULE = {"method": "*", "path": r"^(?!/msi/)", "latency_ms": LATENCY_MS}
SAMPLE = "03-listkeys-by-app.json"
DEADLINE_S = 60.0


def event() -> dict[str, Any]:
    item = sample(SAMPLE)
    item.update(id=str(uuid.uuid4()), eventTime=ago(1))
    return item


def observed_chain(requests: list[dict[str, Any]], latency: float) -> list[float]:
    """Arrival times of the longest chain of requests each arriving >= 90% of a latency after the
    one before it (so it could only be sent once that one was answered)."""
    times = sorted(float(r["time"]) for r in requests)
    best: list[tuple[int, int]] = []  # (chain length ending here, predecessor index)
    for j, t in enumerate(times):
        prior = [(best[i][0], i) for i in range(j) if t - times[i] >= 0.9 * latency]
        length, pred = max(prior, default=(0, -1))
        best.append((length + 1, pred))
    if not best:
        return []
    j = max(range(len(best)), key=lambda k: best[k][0])
    chain = []
    while j >= 0:
        chain.append(times[j])
        j = best[j][1]
    return chain[::-1]


def breakdown(chain: list[float], start: float, outcome: float, latency: float) -> dict[str, Any]:
    """Where the time beyond the calls goes (ms): before the first call of the chain, between calls
    (an answer's arrival to the next request: client work and ledger writes), after the last answer."""
    if not chain:
        return {}
    return {
        "before_first_call": round((chain[0] - start) * 1000),
        "between_calls": [round((b - a - latency) * 1000) for a, b in pairwise(chain)],
        "after_last_answer": round((outcome - chain[-1] - latency) * 1000),
    }


def _counted(sim: Any, step: Any) -> int:
    sim.clear_requests()
    step()
    return len(api_calls(sim.requests()))


def required_chain(azurite: Any, cert_dir: Path) -> dict[str, Any]:
    """Count each reader's and each action's calls on a fresh tenant, then combine them as above."""
    from responders.actions import HANDLERS
    from responders.actions.identity import principals_for_app, read_principal
    from responders.actions.storage import read_account
    from responders.core.classify import CREDENTIAL_KINDS, classify
    from responders.core.parse import parse_item
    from responders.core.plan import plan as make_plan
    from responders.service import gather_facts

    with simulator(cert_dir) as sim, pipeline(sim, azurite, evidence=False) as rt:
        signal = parse_item(event(), now=ago(0))
        principals = list(signal.principals)
        if signal.caller.object_id and signal.kind in CREDENTIAL_KINDS:
            principals.append(signal.caller.object_id)
        rt.clients.credential.get_token("https://management.azure.com/.default")
        readers = {a: _counted(sim, lambda a=a: read_account(rt.clients, a)) for a in signal.accounts}
        readers |= {p: _counted(sim, lambda p=p: read_principal(rt.clients, p)) for p in principals}
        readers |= {x: _counted(sim, lambda x=x: principals_for_app(rt.clients, x)) for x in signal.apps}
        facts: Any = None

        def read_all() -> None:
            nonlocal facts
            facts = gather_facts(signal, rt)

        facts_total = _counted(sim, read_all)
        plan = make_plan(signal, facts, classify(signal, facts, rt.settings.policy), rt.settings.policy)
        cost: dict[str, int] = {}
        for action in plan.actions:  # plan order respects `after`
            handler = HANDLERS[action.kind]
            cost[action.key] = sum(
                _counted(sim, step)
                for step in (
                    lambda h=handler, a=action: h.read(rt.clients, a),
                    lambda h=handler, a=action: h.apply(rt.clients, a),
                    lambda h=handler, a=action: h.read(rt.clients, a),
                )
            )
    finish: dict[str, int] = {}
    for action in plan.actions:
        finish[action.key] = cost[action.key] + max((finish[d] for d in action.after), default=0)
    facts_chain = max(readers.values(), default=0)
    return {
        "facts_chain": facts_chain,
        "facts_calls": facts_total,
        "facts_readers_match": facts_total == sum(readers.values()),
        "action_calls": {f"{a.kind} {dict(a.params) or ''}".strip(): cost[a.key] for a in plan.actions},
        "action_chain": max(finish.values(), default=0),
        "chain_calls": facts_chain + max(finish.values(), default=0),
        "sequential_calls": facts_chain + sum(cost.values()),
        "total_calls": facts_total + sum(cost.values()),
    }


def containment_calls(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Storage (ARM) and Graph requests: what reading and containing touch (not evidence queries)."""
    return [
        r
        for r in api_calls(requests)
        if "/providers/microsoft.storage/" in str(r["path"]).lower() or str(r["path"]).startswith("/v1.0/")
    ]


def timed_delivery(azurite: Any, cert_dir: Path, workers: int | None, evidence: bool) -> dict[str, Any]:
    """One delivery on a fresh tenant and ledger, after a dry-run warm-up of the same event shape.
    Timed from the call to the moment the ledger first holds the outcome (OutcomeClock)."""
    from responders.core.parse import incident_key
    from responders.service import process

    with simulator(cert_dir) as sim, pipeline(sim, azurite, workers=workers, evidence=evidence) as rt:
        within(DEADLINE_S, lambda: process(event(), rt, execute=False))  # imports, tokens, connections
        sim.set_faults([RULE])
        sim.clear_requests()
        item = event()
        clock = OutcomeClock(rt.ledger)
        start_epoch, start = time.time(), time.perf_counter()
        within(DEADLINE_S, lambda: deliver(item))
        returned = time.perf_counter() - start
        status, at, at_epoch = clock.at.get(incident_key(item["id"]), ("none", start + returned, time.time()))
        calls = containment_calls(sim.requests())
        before_outcome = [r for r in calls if float(r["time"]) <= at_epoch]
    chain = observed_chain(before_outcome, LATENCY_MS / 1000)
    return {
        "wall_s": at - start,
        "returned_s": returned,
        "status": status,
        "calls": len(before_outcome),
        "writes": sum(map(is_write, before_outcome)),
        "observed_chain": len(chain),
        "breakdown_ms": breakdown(chain, start_epoch, at_epoch, LATENCY_MS / 1000),
    }


def run(azurite: Any, cert_dir: Path, repeats: int = 3, evidence: bool = True) -> dict[str, Any]:
    say(f"[latency] {SAMPLE} with {LATENCY_MS} ms on every API call, {repeats} runs each way")
    chain = required_chain(azurite, cert_dir)
    runs: dict[str, list[dict[str, Any]]] = {"concurrent": [], "sequential": []}
    for _ in range(repeats):  # interleaved, so drift affects both alike
        runs["concurrent"].append(timed_delivery(azurite, cert_dir, None, evidence))
        runs["sequential"].append(timed_delivery(azurite, cert_dir, 1, evidence))
    chain_s = chain["chain_calls"] * LATENCY_MS / 1000

    def summary(items: list[dict[str, Any]]) -> dict[str, Any]:
        wall = statistics.median(r["wall_s"] for r in items)
        return {
            "wall_s": round(wall, 3),
            "ratio": round(wall / chain_s, 3),
            "overhead_ms": round((wall - chain_s) * 1000),
            "returned_s": round(statistics.median(r["returned_s"] for r in items), 3),
            "observed_chain": sorted({r["observed_chain"] for r in items}),
            "calls": sorted({r["calls"] for r in items}),
            "writes": sorted({r["writes"] for r in items}),
            "statuses": sorted({str(r["status"]) for r in items}),
            "walls_s": [round(r["wall_s"], 3) for r in items],
            "breakdown_ms": items[0]["breakdown_ms"],
        }

    concurrent, sequential = summary(runs["concurrent"]), summary(runs["sequential"])
    problems = [
        f"{way} delivery ended {status}, not contained"
        for way, s in (("concurrent", concurrent), ("sequential", sequential))
        for status in s["statuses"]
        if status != "contained"
    ]
    return result(
        "containment latency (wall ÷ required call chain)",
        concurrent["ratio"],
        TARGET,
        "<=",
        problems,
        event=SAMPLE,
        latency_ms=LATENCY_MS,
        chain=chain,
        chain_s=chain_s,
        concurrent=concurrent,
        sequential_baseline=sequential,
        evidence=evidence,
    )
