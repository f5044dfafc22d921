"""Containment latency: how close delivering one event gets to the minimal chain of Azure calls that
must happen one after another. With every API call slowed to 300 ms, network time dominates, so a
ratio near 1.0 means the pipeline adds little of its own and runs everything else concurrently.

How the minimal chain is counted (`required_chain`, printed with the result):

* facts: gather_facts reads every account and principal the signal names side by side; reading one
  account is GET account with LIST containers alongside: one call deep.
* each step is measured alone on a fresh tenant, its first read answered by those facts and its
  read-back by its write's own answer where Azure gives one (regenerateKey lists each key's
  creationTime, an account or container PATCH answers with the resource); Graph's PATCH answers 204,
  so disabling a principal is PATCH then GET.
* a step waits for the steps named in its `after` (key2 after key1), and the exclusive writes on one
  storage account wait for each other (Azure answers an overlapping one 409
  StorageAccountOperationInProgress); Graph and other accounts run in parallel.
* minimal chain = facts depth + the longest of those paths; the denominator is that many calls x 300 ms.
  For 03-listkeys-by-app: read the account, regenerate key1, regenerate key2, revoke user-delegation
  keys = 4 calls, with the principal's PATCH and GET alongside.
* the managed-identity token route carries no latency (the fault rule's path regex excludes it) and
  the token is fetched by a dry-run warm-up delivery, as on a warm Functions instance; the ledger
  (Azurite) carries no latency either: its time is part of what the pipeline adds.

The observed chain is read from the timed run's request log: the longest sequence of requests each
arriving at least one latency after the previous one (so it could only be sent after the previous
answer). Observed > minimal means the pipeline serialised calls it did not need to.
"""

from __future__ import annotations

import statistics
import time
import uuid
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench.common import result, sample, say
from bench.stand import (
    OutcomeClock,
    ago,
    api_calls,
    deliver,
    functions,
    is_write,
    pipeline,
    simulator,
    within,
)

TARGET = 1.25
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


PROBE_S = 0.1  # latency on every call while each reader and step is measured alone


def _measured(sim: Any, step: Any) -> tuple[int, int]:
    """(calls, depth) of `step` alone: depth is how many of its calls had to wait for another's
    answer, read from the request log under PROBE_S of latency on every call."""
    sim.clear_requests()
    step()
    calls = api_calls(sim.requests())
    return len(calls), len(observed_chain(calls, PROBE_S))


def _name(action: Any) -> str:
    words = {
        "storage.regenerate_key": f"regenerate {action.params.get('key_name', '')}",
        "storage.revoke_user_delegation_keys": "revoke user-delegation keys",
        "storage.disable_public_access": "disable public access",
        "storage.make_container_private": f"make {action.params.get('container', '')} private",
        "identity.disable_service_principal": "disable the service principal",
    }
    return words.get(action.kind, action.kind)


def required_chain(azurite: Any, cert_dir: Path) -> dict[str, Any]:
    """The minimal chain of dependent calls, from each reader and each step measured alone on a fresh
    tenant (their calls and depth), combined as the pipeline must run them: the facts readers side by
    side, then the steps, where a step waits for the steps in its `after` and the exclusive writes on
    one storage account wait for each other (Azure runs one at a time); everything else in parallel."""
    from responders.actions import HANDLERS, known_state
    from responders.actions.identity import principals_for_app, read_principal
    from responders.actions.storage import read_account
    from responders.core.arm import parse_storage_id
    from responders.core.classify import CREDENTIAL_KINDS, classify
    from responders.core.parse import parse_item
    from responders.core.plan import plan as make_plan
    from responders.execute import Known
    from responders.service import gather_facts

    with simulator(cert_dir) as sim, pipeline(sim, azurite, evidence=False) as rt:
        signal = parse_item(event(), now=ago(0))
        principals = list(signal.principals)
        if signal.caller.object_id and signal.kind in CREDENTIAL_KINDS:
            principals.append(signal.caller.object_id)
        rt.clients.credential.get_token("https://management.azure.com/.default")
        if principals:  # Graph's first entity parse imports ~1,200 modules: not a call's latency
            read_principal(rt.clients, principals[0])
        sim.set_faults([{"method": "*", "path": r"^(?!/msi/)", "latency_ms": int(PROBE_S * 1000)}])
        readers = {a: _measured(sim, lambda a=a: read_account(rt.clients, a)) for a in signal.accounts}
        readers |= {p: _measured(sim, lambda p=p: read_principal(rt.clients, p)) for p in principals}
        readers |= {x: _measured(sim, lambda x=x: principals_for_app(rt.clients, x)) for x in signal.apps}
        read_at = rt.clock()
        facts = gather_facts(signal, rt)
        plan = make_plan(signal, facts, classify(signal, facts, rt.settings.policy), rt.settings.policy)
        known = Known(known_state(facts), read_at)
        cost: dict[str, tuple[int, int]] = {}
        for i, action in enumerate(plan.actions):  # each step alone, its first read answered by the facts
            alone = plan._replace(incident=f"{plan.incident}-{i}", actions=(action._replace(after=()),))
            cost[action.key] = _measured(sim, lambda p=alone: rt.executor.run(p, dry_run=False, known=known))
    depth = {k: d for k, (_, d) in cost.items()}
    finish: dict[str, int] = {}
    lanes: dict[str, list[Any]] = {}
    for action in plan.actions:  # plan order respects `after`
        finish[action.key] = depth[action.key] + max((finish[d] for d in action.after), default=0)
        lane = action.target.lower() if getattr(HANDLERS[action.kind], "account_write", False) else action.key
        lanes.setdefault(lane, []).append(action)
    lane_depth = {lane: sum(depth[a.key] for a in steps) for lane, steps in lanes.items()}
    facts_chain = max((d for _, d in readers.values()), default=0)
    action_chain = max([*finish.values(), *lane_depth.values()], default=0)

    def lane_name(lane: str) -> str:
        ref = parse_storage_id(lane)
        return ref.account if ref else "Graph"

    ordered = sorted(lanes.items(), key=lambda item: -lane_depth[item[0]])
    steps = [
        f"{lane_name(lane)}: " + " -> ".join(f"{_name(a)} ({depth[a.key]})" for a in group)
        for lane, group in ordered
    ]
    minimal = (
        f"read the facts side by side ({facts_chain}: {sum(c for c, _ in readers.values())} reads), then "
        + steps[0]
        + ("; in parallel: " + "; ".join(steps[1:]) if steps[1:] else "")
        + f" = {facts_chain + action_chain} calls"
    )
    return {
        "minimal_chain": minimal,
        "facts_chain": facts_chain,
        "facts_calls": sum(c for c, _ in readers.values()),
        "action_calls": {f"{a.kind} {dict(a.params) or ''}".strip(): cost[a.key][0] for a in plan.actions},
        "action_depths": {f"{a.kind} {dict(a.params) or ''}".strip(): depth[a.key] for a in plan.actions},
        "action_chain": action_chain,
        "chain_calls": facts_chain + action_chain,
        "total_calls": sum(c for c, _ in readers.values()) + sum(c for c, _ in cost.values()),
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
        functions()  # the host has indexed the app (and imported azure.functions) before any delivery
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
        "containment latency (wall ÷ minimal call chain)",
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
