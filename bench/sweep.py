"""Sweep: a simulated estate of 5,000 storage accounts in 20 subscriptions, 2% of them exposed (public
since before the responder, no event), swept once through the registered timer function.

Every exposure must be contained once (one incident each, its writes those of one plan), and the
Resource Manager + Resource Graph reads the tenant sees must stay within 1.1 x what the sweep cannot
do without: the Resource Graph pages the inventory needs plus one container list per synthetic-data
account. The ratio printed is reads / that minimum. A second sweep must find nothing and write
nothing, and so must a third; memory is flat when the third ends within 5% of the RSS the second
ended at (the in-process simulator's request log is cleared between them). Wall time is reported.

The estate: `synthetic_share` of the accounts are tagged synthetic (the rest are untagged, public
access off, so not candidates); the exposed ones allow public blob access and have a public container;
the other synthetic accounts have public access off and two private containers.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import result, rss_kib, say, tenant
from bench.stand import api_calls, azurite, functions, is_write, pipeline

TARGET = 1.1
SUBSCRIPTION_PREFIX = "5e1f0a2b-3c4d-4e5f-8a9b-"


def subscriptions(count: int) -> list[str]:
    return [f"{SUBSCRIPTION_PREFIX}{i:012d}" for i in range(count)]


def estate(accounts: int, subs: int, exposed_share: float, synthetic_share: float) -> dict[str, Any]:
    """The tenant seed: accounts spread over `subs` subscriptions, exposures spread over the estate."""
    seeded = copy.deepcopy(tenant())
    synthetic_cut = round(accounts * synthetic_share)
    exposures = round(accounts * exposed_share)
    step = max(1, synthetic_cut // max(exposures, 1))
    rows = []
    for i in range(accounts):
        sub = subscriptions(subs)[i % subs]
        seed: dict[str, Any] = {
            "id": f"/subscriptions/{sub}/resourceGroups/rg-data-{i % 7}/providers/Microsoft.Storage"
            f"/storageAccounts/stbench{i:05d}",
            "allowBlobPublicAccess": False,
            "containers": [],
        }
        synthetic = i < synthetic_cut
        if synthetic:
            seed["tags"] = {"data-classification": "synthetic", "owner": f"team-{i % 13}@contoso.example"}
            seed["containers"] = [
                {"name": "train-synth", "publicAccess": "None"},
                {"name": "eval-synth", "publicAccess": "None"},
            ]
            if i % step == 0 and i // step < exposures:
                seed["allowBlobPublicAccess"] = True
                seed["containers"][0]["publicAccess"] = "Container"
        rows.append(seed)
    seeded["storageAccounts"] = rows
    return seeded


def run(
    cert_dir: Path,
    accounts: int = 5000,
    subs: int = 20,
    exposed_share: float = 0.02,
    synthetic_share: float = 0.8,
    evidence: bool = True,
) -> dict[str, Any]:
    from azure.functions.timer import TimerRequest

    from rehearsal.simulator import Simulator

    say(f"[sweep] {accounts} accounts in {subs} subscriptions, {exposed_share:.0%} exposed")
    seeded = estate(accounts, subs, exposed_share, synthetic_share)
    synthetic = sum(1 for a in seeded["storageAccounts"] if a.get("tags"))
    exposed = sum(1 for a in seeded["storageAccounts"] if a["allowBlobPublicAccess"])
    policy = {"scope": {"allow": [f"/subscriptions/{s}" for s in subscriptions(subs)]}}
    with (
        azurite() as table_server,
        Simulator(seeded, cert_dir=cert_dir) as sim,
        pipeline(sim, table_server, evidence=evidence, seeded=seeded, policy=policy) as rt,
    ):
        sweep = functions()["sweep_timer"]
        rss = [rss_kib()]
        started = time.perf_counter()
        sweep(TimerRequest())
        seconds = time.perf_counter() - started
        first = rt.ledger.sweeps()[-1]
        logged = [{"method": r["method"], "path": r["path"]} for r in sim.requests()]
        sim.clear_requests()
        rss.append(rss_kib())
        started = time.perf_counter()
        sweep(TimerRequest())
        repeat_seconds = time.perf_counter() - started
        rss.append(rss_kib())
        second = rt.ledger.sweeps()[-1]
        repeat_logged = [{"method": r["method"], "path": r["path"]} for r in sim.requests()]
        sim.clear_requests()
        sweep(TimerRequest())  # a third, to see whether repeating sweeps holds on to memory
        rss.append(rss_kib())
        third = rt.ledger.sweeps()[-1]
        incidents = list(rt.ledger.incidents())
    calls = [r for r in api_calls(logged) if not str(r["path"]).startswith("/v1/")]  # Log Analytics apart
    reads = [r for r in calls if not is_write(r)]
    writes = [r for r in calls if is_write(r)]
    graph = [r for r in reads if "microsoft.resourcegraph" in str(r["path"]).lower()]
    lists = [r for r in reads if str(r["path"]).lower().endswith("/blobservices/default/containers")]
    pages = math.ceil(accounts / 1000)
    minimum = pages + synthetic
    repeat_writes = [r for r in api_calls(repeat_logged) if is_write(r)]
    statuses = Counter(str(i.get("Status")) for i in incidents)
    targets = Counter(str(i.get("Subject")) for i in incidents)
    problems = []
    if first["Status"] != "complete":
        problems.append(f"first sweep {first['Status']}: {first['Incomplete'][:3]}")
    if first["Counts"]["contained"] != exposed or statuses.get("contained") != exposed:
        problems.append(f"{first['Counts']['contained']} of {exposed} exposures contained")
    if any(n > 1 for n in targets.values()):
        problems.append("an account has more than one incident")
    if len(writes) != 2 * exposed:
        problems.append(f"{len(writes)} writes for {exposed} exposures x 2 actions")
    if second["Counts"]["exposures"] or repeat_writes:
        problems.append(
            f"the repeated sweep found {second['Counts']['exposures']} and wrote {len(repeat_writes)}"
        )
    if third["Counts"]["exposures"] or third["Status"] != "complete":
        problems.append(f"the third sweep: {third['Status']}, {third['Counts']['exposures']} exposures")
    # flat: a sweep leaves nothing behind, so the third ends where the second did (within 5%)
    memory = {
        "rss_before_mib": round(rss[0] / 1024, 1),
        "rss_after_first_mib": round(rss[1] / 1024, 1),
        "rss_after_second_mib": round(rss[2] / 1024, 1),
        "rss_after_third_mib": round(rss[3] / 1024, 1),
        "process_peak_mib": round(rss_kib("VmHWM") / 1024, 1),
        "flat": rss[3] <= rss[2] * 1.05,
    }
    if not memory["flat"]:
        problems.append("memory grew from the second sweep to the third")
    return result(
        "sweep reads (ARM+Resource Graph reads ÷ (pages + one list per synthetic account))",
        len(reads) / minimum,
        TARGET,
        "<=",
        problems,
        accounts=accounts,
        subscriptions=subs,
        synthetic_accounts=synthetic,
        exposed=exposed,
        pages=len(graph),
        minimum_reads=minimum,
        reads=len(reads),
        container_lists=len(lists),
        reads_by_kind=dict(Counter(_kind(r) for r in reads)),
        reads_per_exposure=round((len(reads) - len(graph) - synthetic) / max(exposed, 1), 2),
        writes=len(writes),
        log_analytics_queries=sum(1 for r in api_calls(logged) if str(r["path"]).startswith("/v1/")),
        seconds=round(seconds, 1),
        repeat_seconds=round(repeat_seconds, 1),
        repeat_reads=sum(1 for r in api_calls(repeat_logged) if not is_write(r)),
        incident_statuses=dict(statuses),
        memory=memory,
    )


def _kind(request: dict[str, Any]) -> str:
    path = str(request["path"]).lower()
    if "microsoft.resourcegraph" in path:
        return "resource graph page"
    if path.endswith("/containers"):
        return "container list"
    if "/containers/" in path:
        return "container get"
    if path.endswith(tuple("0123456789")) or "/storageaccounts/" in path:
        return "account get"
    return path.split("/providers/")[-1][:60]
