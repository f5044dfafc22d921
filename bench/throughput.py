"""Replay throughput: how close offline classification (decode -> parse -> classify -> plan, no I/O)
gets to the cost of just decoding the same JSON with the standard library's json.loads. The responder
decodes with orjson (faster than the baseline) and remembers the plan of each signal shape; the
classifier starts cold in every timed run, so building those plans is part of the time. The stage
breakdown shows where each microsecond goes, with the unmemoised cost of a new shape for reference.

Events: a weighted mix of the captured shapes in samples/events (Event Grid, CloudEvents, BlobCreated,
Sentinel incident and alert, Azure Monitor alert, own echoes, a malformed event), each with a fresh
id and re-targeted at a random account (and container) of samples/tenant.json, plus a few accounts the
tenant does not have. Both timings run over the same list of serialized bytes.
"""

from __future__ import annotations

import contextlib
import gc
import json
import random
import re
import time
from collections import Counter
from typing import Any

from bench.common import policy, result, sample, say, tenant

TARGET = 0.5
NOW = "2026-11-25T09:00:00.000000Z"
# sample file -> (share of the mix, the id string to vary, does it name a container)
MIX: dict[str, tuple[int, str, bool]] = {
    "01-container-made-public.json": (20, "6c1e2f3a-0b1c-4d2e-9f3a-4b5c6d7e8f01", True),
    "02-account-public-access-enabled.json": (14, "7d2f3a4b-1c2d-4e3f-8a4b-5c6d7e8f9a02", False),
    "03-listkeys-by-app.json": (12, "8e3a4b5c-2d3e-4f4a-9b5c-6d7e8f9a0b03", False),
    "04-sas-listed.cloudevents.json": (8, "9f4b5c6d-3e4f-4a5b-8c6d-7e8f9a0b1c04", False),
    "05-blob-created-in-public-container.json": (15, "a05b6c7d-001e-0000-2a4b-5c6d7e8f9a05", True),
    "06-sentinel-incident.json": (3, "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", False),
    "07-monitor-common-alert.json": (3, "4b6d8f0a-2c4e-4f6a-8b0c-2e4f6a8b0c07", False),
    "08-sentinel-alert-out-of-scope.json": (3, "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a08", False),
    "09-exempt-account-made-public.json": (4, "b16c7d8e-5f6a-4b7c-9d8e-9f0a1b2c3d09", True),
    "10-non-synthetic-container-public.json": (9, "c27d8e9f-6a7b-4c8d-8e9f-0a1b2c3d4e10", True),
    "12-malformed-event.json": (1, "d38e9f0a-7b8c-4d9e-9f0a-1b2c3d4e5f12", False),
    "13-own-echo.json": (8, "e49f0a1b-8c9d-4eaf-8a1b-2c3d4e5f6a13", False),
}
_ACCOUNT_ID = re.compile(
    r"/subscriptions/[^/\"]+/resourcegroups/[^/\"]+/providers/microsoft\.storage/storageaccounts/[a-z0-9]+",
    re.IGNORECASE,
)
_CONTAINER = re.compile(r"/containers/[a-z0-9$-]+", re.IGNORECASE)
GHOST = (
    "/subscriptions/7d1f3c2a-5b9e-4c1d-9a8e-3f2b1c0d4e5a/resourceGroups/rg-synth-prod"
    "/providers/Microsoft.Storage/storageAccounts/stsynthghost99"
)


def _templates() -> list[tuple[str, bool]]:
    """Each sample serialized once, with placeholders where the account, container and id go."""
    out = []
    for name, (_, event_id, has_container) in MIX.items():
        text = json.dumps(sample(name)).replace(event_id, "{ID}")
        text = _ACCOUNT_ID.sub("{ACCOUNT}", text)
        if has_container:
            text = _CONTAINER.sub("/containers/{CONTAINER}", text)
        out.append((text, has_container))
    return out


def _guid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def generate(count: int, seed: int = 7) -> list[bytes]:
    """`count` serialized events; deterministic for a seed."""
    rng = random.Random(seed)
    accounts = [(a["id"], [c["name"] for c in a.get("containers", [])]) for a in tenant()["storageAccounts"]]
    accounts.append((GHOST, ["data"]))
    templates = _templates()
    picks = rng.choices(range(len(templates)), weights=[w for w, _, _ in MIX.values()], k=count)
    events = []
    for index in picks:
        text, has_container = templates[index]
        account, containers = accounts[rng.randrange(len(accounts))]
        text = text.replace("{ACCOUNT}", account).replace("{ID}", _guid(rng))
        if has_container:
            text = text.replace("{CONTAINER}", rng.choice(containers))
        events.append(text.encode())
    return events


def time_json(events: list[bytes]) -> float:
    loads = json.loads
    start = time.perf_counter()
    for raw in events:
        loads(raw)
    return time.perf_counter() - start


def time_classify(
    events: list[bytes], pol: Any, counts: Counter[str] | None = None, progress: bool = True
) -> float:
    """Seconds to classify every event, with a progress line on stderr; `counts` gets the outcomes.
    The classifier starts cold, as a replay does: building its facts and plans is part of the time."""
    from responders.core.model import BadInput
    from responders.offline import OfflineClassifier

    snap, total, step = tenant(), len(events), max(1, len(events) // 50)
    outcome: Counter[str] = Counter()
    start = time.perf_counter()
    classify_event = OfflineClassifier(snap, pol).plan
    from responders.cli import Progress

    bar = Progress(total, label="classified", every=1) if progress else None
    for done in range(0, total, step):
        for raw in events[done : done + step]:
            try:
                plan = classify_event(raw, now=NOW)
            except BadInput:
                outcome["rejected"] += 1
                continue
            outcome["leak" if plan.verdict.leak else "no-leak"] += 1
            outcome["actions"] += len(plan.actions)
        if bar is not None:
            bar.update(min(done + step, total))
    elapsed = time.perf_counter() - start
    if bar is not None:
        bar.finish()
    if counts is not None:
        counts.update(outcome)
    return elapsed


def run(count: int = 100_000, rounds: int = 2) -> dict[str, Any]:
    say(f"[throughput] generating {count} events")
    events = generate(count)
    pol = policy()
    time_classify(events[:2000], pol, progress=False)  # warm the snapshot's facts and the caches
    json_s, classify_s, outcome = [], [], Counter[str]()
    for i in range(rounds):  # interleaved, best of each: both see the same machine noise
        json_s.append(time_json(events))
        classify_s.append(time_classify(events, pol, outcome if i == 0 else None))
    per_json, per_classify = count / min(json_s), count / min(classify_s)
    return result(
        "replay throughput (classified/s ÷ json.loads/s)",
        per_classify / per_json,
        TARGET,
        ">=",
        events=count,
        bytes=sum(map(len, events)),
        classified_per_s=round(per_classify),
        json_loads_per_s=round(per_json),
        us_per_event_classify=round(1e6 / per_classify, 2),
        us_per_event_json=round(1e6 / per_json, 2),
        outcomes=dict(outcome),
        stages_us=stages(events[:20_000], pol),
    )


def stages(events: list[bytes], pol: Any) -> dict[str, float]:
    """Microseconds per event spent in each step, each timed over the same events on its own. The
    collector is paused meanwhile: the intermediate results kept for the next step would otherwise
    make every step pay for traversing them (the headline loop keeps nothing alive)."""
    gc.collect()
    gc.disable()
    try:
        return _stages(events, pol)
    finally:
        gc.enable()


def _stages(events: list[bytes], pol: Any) -> dict[str, float]:
    from responders.core.classify import classify
    from responders.core.model import BadInput, Facts, SignalKind
    from responders.core.parse import decode_json, parse_item
    from responders.core.plan import plan
    from responders.offline import OfflineClassifier

    offline, n, out = OfflineClassifier(tenant(), pol), len(events), {}
    start = time.perf_counter()
    for raw in events:
        json.loads(raw)
    out["json.loads (the baseline)"] = time.perf_counter() - start
    start = time.perf_counter()
    items = []
    for raw in events:
        with contextlib.suppress(BadInput):
            items.append(decode_json(raw))
    out["decode (orjson)"] = time.perf_counter() - start
    start = time.perf_counter()
    signals = []
    for item in items:
        with contextlib.suppress(BadInput):
            signals.append(parse_item(item, now=NOW))
    out["parse"] = time.perf_counter() - start
    start = time.perf_counter()
    for s in signals:
        offline.plan_signal(s)
    out["classify + plan (memoised by shape)"] = time.perf_counter() - start
    # the same work without the memo, for reference: what each shape costs the first time
    start = time.perf_counter()
    own = pol.responder_object_ids
    facts = [
        offline.facts(s) if s.kind is not SignalKind.OTHER and s.caller.object_id not in own else Facts()
        for s in signals
    ]
    out["unmemoised: facts (offline)"] = time.perf_counter() - start
    start = time.perf_counter()
    verdicts = [classify(s, f, pol) for s, f in zip(signals, facts, strict=True)]
    out["unmemoised: classify"] = time.perf_counter() - start
    start = time.perf_counter()
    for s, f, v in zip(signals, facts, verdicts, strict=True):
        plan(s, f, v, pol)
    out["unmemoised: plan"] = time.perf_counter() - start
    return {k: round(v / n * 1e6, 2) for k, v in out.items()}
