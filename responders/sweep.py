"""The sweep: inventory the storage accounts in the policy's scope through Resource Graph, list the
containers of the synthetic-data candidates, and run each exposure found as a `sweep` signal through
the same pipeline as any event (dry-run, approvals, scope, exemptions, exactly-once all apply).

It finds what no event reported: an account public before the responder was deployed, an event lost
after Event Grid's retries, a container made public through the data plane (no Resource Manager
event). A page Resource Graph could not answer, a truncated answer or an unreadable row makes the
sweep "incomplete" (recorded in the ledger, the timer retried): it is never read as "nothing exposed".

Each sweep also replays the Event Grid dead letters (responders/deadletters.py) and writes the control
review of what it found (responders/review.py) before its own ledger row.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from responders.core.model import ContainerFacts
from responders.core.parse import incident_key
from responders.core.sweep import (
    INVENTORY_QUERY,
    PAGE_SIZE,
    Exposure,
    SweepResult,
    exposure_of,
    is_candidate,
    moves_on,
    parse_rows,
    query_scope,
    signal_for,
    subscription_batches,
)
from responders.execute import TransientFailure, describe, is_transient
from responders.service import Runtime, process_signal

log = logging.getLogger("responders.sweep")
PAGE_ATTEMPTS = 3  # per page, on top of azure-core's own retries of 429/5xx/connection errors
BACKOFF_SECONDS = 1.0
QUOTA_WAIT_CAP = 30.0  # never wait longer than this for Resource Graph's quota to reset
LIST_WORKERS = 8
CONTAIN_WORKERS = 8  # exposures are of different accounts: their incidents run side by side
MAX_GENERATIONS = 1000
# The storage resource provider allows 800 management reads per 5 minutes per subscription and region
# (tests/data/azure/arm_request_limits_docs.md); a container list is one. Per sweep, at most this many
# lists per subscription and region, leaving room for the incidents' own reads. Accounts that allow
# public blob access are listed first and always (they can be exposed); beyond the budget the others
# are left unlisted (noted in the result: they cannot be read anonymously whatever their containers).
LIST_BUDGET = 700
_HHMMSS = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)(?:\.\d+)?$")


class BadPage(Exception):
    """An answer that is not a usable page (wrong shape, counts that disagree)."""


def quota_wait(headers: Any) -> float:
    """Seconds to wait before the next query: the time to the quota's reset when none is left
    (x-ms-user-quota-remaining 0), else 0. Unreadable headers count as quota left."""
    remaining = str(headers.get("x-ms-user-quota-remaining", "") or "").strip()
    resets = _HHMMSS.match(str(headers.get("x-ms-user-quota-resets-after", "") or "").strip())
    if not remaining.isdigit() or int(remaining) > 0 or resets is None:
        return 0.0
    hours, minutes, seconds = (int(g) for g in resets.groups())
    return min(float(hours * 3600 + minutes * 60 + seconds), QUOTA_WAIT_CAP)


def _query_page(rt: Runtime, subscriptions: tuple[str, ...], token: str | None) -> tuple[Any, Any]:
    """One Resource Graph call: (the QueryResponse, the answer's headers)."""
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    request = QueryRequest(
        subscriptions=list(subscriptions) or None,
        query=INVENTORY_QUERY,
        options=QueryRequestOptions(top=PAGE_SIZE, skip_token=token, result_format="objectArray"),
    )
    return rt.clients.resource_graph().resources(
        request, cls=lambda response, body, _: (body, response.http_response.headers)
    )


def _check(body: Any) -> list[Any]:
    """The page's rows once its shape holds; BadPage otherwise (a retry may get a good one)."""
    data = getattr(body, "data", None)
    if not isinstance(data, list):
        raise BadPage(f"data is not an object array ({type(data).__name__})")
    if body.count is not None and body.count != len(data):
        raise BadPage(f"count {body.count} but {len(data)} rows")
    if body.total_records is None:
        raise BadPage("no totalRecords")
    return data


def _read_page(
    rt: Runtime,
    subscriptions: tuple[str, ...],
    token: str | None,
    label: str,
    result: SweepResult,
    sleep: Callable[[float], None],
) -> tuple[Any, list[Any] | None]:
    """One page, tried up to PAGE_ATTEMPTS times: (body, rows or None when unread). Each
    failed attempt is noted in `result.retries`; the last one's reason in `result.incomplete`."""
    from azure.core.exceptions import DecodeError, DeserializationError, HttpResponseError

    why = ""
    for attempt in range(1, PAGE_ATTEMPTS + 1):
        final = attempt == PAGE_ATTEMPTS
        wait = BACKOFF_SECONDS * attempt
        try:
            body, headers = _query_page(rt, subscriptions, token)
            data = _check(body)
        except (BadPage, DecodeError, DeserializationError) as exc:
            why = f"malformed answer: {exc}"
        except HttpResponseError as exc:
            why = describe(exc)
            response = getattr(exc, "response", None)
            if response is not None:  # a 429 after azure-core's retries: wait for the quota's reset
                wait = max(wait, quota_wait(response.headers), _retry_after(response.headers))
            final = final or not is_transient(exc)  # a 4xx answers the same again
        except Exception as exc:  # a connection torn down after azure-core's retries
            if not is_transient(exc):
                raise
            why = describe(exc)
        else:
            sleep(quota_wait(headers))
            return body, data
        if final:
            break
        result.retries.append(f"{label}, attempt {attempt}: {why}")
        log.warning("resource graph %s failed (attempt %d): %s", label, attempt, why)
        sleep(wait)
    result.incomplete.append(f"{label} unread after {attempt} attempts: {why}")
    return None, None


def _retry_after(headers: Any) -> float:
    raw = str(headers.get("Retry-After", "") or "").strip()
    try:
        return min(max(float(raw), 0.0), QUOTA_WAIT_CAP)
    except ValueError:
        return 0.0


def read_inventory(
    rt: Runtime, subscriptions: tuple[str, ...], result: SweepResult, sleep: Callable[[float], None]
) -> None:
    """Page the inventory query over one batch of subscriptions into `result`, pacing by Resource
    Graph's quota headers and retrying a failed or malformed page; what stays unread is recorded."""
    token: str | None = None
    seen: set[str] = set()
    read = 0
    total: int | None = None
    label = f"{len(subscriptions)} subscriptions" if subscriptions else "the tenant"
    while True:
        page = result.pages + 1
        body, data = _read_page(rt, subscriptions, token, f"page {page} of {label}", result, sleep)
        if data is None:
            return
        result.pages += 1
        if total is None:
            total = int(body.total_records)
            result.total_records = (result.total_records or 0) + total
        rows, problems = parse_rows(data)
        result.inventory.extend(rows)
        result.incomplete.extend(f"page {page}: {p}" for p in problems)
        read += len(data)
        if str(body.result_truncated).lower() == "true":
            result.incomplete.append(
                f"page {page} of {label}: Resource Graph truncated the answer ({read} of {total} rows)"
            )
            return
        token = body.skip_token or None
        if not token:
            if read < total:
                result.incomplete.append(f"{label}: {read} of {total} rows answered, and no $skipToken")
            return
        if token in seen or read >= total or not data:
            # a token again, or more pages than rows: an answer that would page for ever
            result.incomplete.append(f"page {page} of {label}: a $skipToken after {read} of {total} rows")
            return
        seen.add(token)


def _list_all(
    rt: Runtime, accounts: list[str], result: SweepResult
) -> dict[str, tuple[ContainerFacts, ...] | None]:
    """The containers of each candidate, listed concurrently; None where the list failed (recorded)."""
    from responders.actions.storage import list_containers

    def one(account: str) -> tuple[ContainerFacts, ...] | None:
        try:
            return list_containers(rt.clients, account)
        except Exception as exc:
            result.incomplete.append(f"containers of {account} not listed: {describe(exc)}")
            return None

    if not accounts:
        return {}
    with ThreadPoolExecutor(max_workers=min(LIST_WORKERS, len(accounts)), thread_name_prefix="sweep") as pool:
        return dict(zip(accounts, pool.map(one, accounts), strict=True))


def _signal_id_for(rt: Runtime, exposure: Exposure, run_at: str) -> Any:
    """The signal of an exposure at the generation that has not closed it yet."""
    for generation in range(MAX_GENERATIONS):
        signal = signal_for(exposure, run_at, generation)
        if not moves_on(rt.ledger.head(incident_key(signal.id)), exposure):
            return signal
    return signal_for(exposure, run_at, MAX_GENERATIONS)


def contain(rt: Runtime, exposure: Exposure, result: SweepResult, execute: bool | None) -> None:
    """One exposure through the pipeline; a failure is recorded and makes the sweep incomplete."""
    now = rt.clock()
    try:
        signal = _signal_id_for(rt, exposure, result.started_at)
        report = process_signal(signal, rt, now=now, execute=execute)
    except TransientFailure as exc:
        result.incomplete.append(f"{exposure.account_id}: {exc}")
        result.incidents.append({"subject": exposure.account_id, "status": "retrying", "error": str(exc)})
        return
    except Exception as exc:
        if not is_transient(exc):
            log.exception("sweep: %s failed", exposure.account_id)
        result.incomplete.append(f"{exposure.account_id}: {describe(exc)}")
        result.incidents.append({"subject": exposure.account_id, "status": "failed", "error": describe(exc)})
        return
    result.incidents.append(report)


def _to_list(candidates: list[Any], budget: int, result: SweepResult) -> list[str]:
    """The candidates whose containers this sweep lists, within `budget` per subscription and region."""
    from collections import Counter

    spent: Counter[tuple[str, str]] = Counter()
    chosen = []
    for row in sorted(candidates, key=lambda r: not r.public_allowed):  # stable: id order within each
        where = (row.subscription, str(row.raw.get("location") or "").lower())
        if not row.public_allowed and spent[where] >= budget:
            result.unlisted.append(row.id)
            continue
        spent[where] += 1
        chosen.append(row.id)
    return chosen


def replay_dead_letters_into(rt: Runtime, result: SweepResult, execute: bool | None) -> None:
    """The Event Grid dead letters through the pipeline too; a container not read or a blob to read
    again makes the sweep incomplete (so the timer retries), never "nothing was dead-lettered"."""
    from responders.deadletters import replay_dead_letters

    if rt.clients.deadletters() is None:
        result.dead_letters = {"configured": False}
        return
    try:
        report = replay_dead_letters(rt, execute=execute)
    except Exception as exc:  # the ledger or the container failed mid-way: recorded, retried
        result.incomplete.append(f"dead letters not replayed: {describe(exc)}")
        return
    summary = report.as_dict()
    result.dead_letters = {k: summary[k] for k in ("container", "listed", "skipped", "counts", "error")}
    if report.error:
        result.incomplete.append(f"dead letters: {report.error}")
    for blob in report.outcomes:
        if blob.status in ("retrying", "failed"):
            result.incomplete.append(f"dead-letter blob {blob.name}: {blob.reason}")


def review_into(rt: Runtime, result: SweepResult) -> None:
    """The control review of this sweep, written to the ledger before the sweep's own row; a failure
    to write it makes the sweep incomplete."""
    from responders import review

    try:
        folded = review.record(rt, result)
    except Exception as exc:
        log.error("sweep %s: the control review was not written: %s", result.run_id, describe(exc))
        result.incomplete.append(f"control review not written: {describe(exc)}")
        return
    result.review = folded.run.as_dict()


def run_sweep(
    rt: Runtime,
    *,
    execute: bool | None = None,
    sleep: Callable[[float], None] = time.sleep,
    list_budget: int = LIST_BUDGET,
) -> SweepResult:
    """Inventory, candidates, containers, exposures, containment; the result is recorded in the ledger
    (complete or incomplete, with why) before it is returned."""
    from responders.scope import effective_policy

    dry_run = rt.settings.dry_run if execute is None else not execute
    started = rt.clock()
    policy, unknown = effective_policy(rt, fresh=True)
    subscriptions, tenant_wide = query_scope(policy)
    scope = ("*",) if tenant_wide else subscriptions
    result = SweepResult(f"{started}-{uuid.uuid4().hex[:8]}", started, dry_run, scope)
    if unknown:
        result.incomplete.append(unknown)
    if scope:
        for batch in subscription_batches(subscriptions) if subscriptions else [()]:
            read_inventory(rt, batch, result, sleep)
    # in scope only (e.g. not another resource group), each account once even if two pages repeat it
    unique = {r.id.lower(): r for r in reversed(result.inventory) if policy.in_scope(r.id)}
    result.inventory = sorted(unique.values(), key=lambda r: r.id.lower())
    candidates = [r for r in result.inventory if is_candidate(r, policy)]
    result.candidates = [r.id for r in candidates]
    listed = _list_all(rt, _to_list(candidates, list_budget, result), result)
    result.containers = {k: v for k, v in listed.items() if v is not None}
    for row in candidates:
        exposure = exposure_of(row, listed.get(row.id), policy)
        if exposure is not None:
            result.exposures.append(exposure)
    if result.exposures:
        workers = min(CONTAIN_WORKERS, len(result.exposures))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep-contain") as pool:
            list(pool.map(lambda e: contain(rt, e, result, execute), result.exposures))
        order = {e.account_id: i for i, e in enumerate(result.exposures)}
        result.incidents.sort(key=lambda r: order.get(str(r.get("subject", "")), len(order)))
    replay_dead_letters_into(rt, result, execute)
    result.finished_at = rt.clock()
    review_into(rt, result)
    rt.ledger.record_sweep(result.summary())
    log.info(
        "sweep %s %s: %s",
        result.run_id,
        result.status,
        result.counts(),
    )
    return result
