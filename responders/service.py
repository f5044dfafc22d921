"""The pipeline every trigger shares: parse -> facts -> classify -> plan -> execute -> ledger -> report."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from responders.clients import Clients
from responders.core.classify import classify, tags_decide
from responders.core.model import Action, Facts, Outcome, Plan, Signal, SignalKind, Verdict
from responders.core.parse import incident_key, parse_item
from responders.core.plan import plan as make_plan
from responders.core.plan import shape_key
from responders.core.timeutil import is_after, parse_time
from responders.execute import Executor, Known, TransientFailure, describe, is_transient
from responders.ledger import Ledger
from responders.settings import Settings

log = logging.getLogger("responders")
DONE = ("contained", "already-contained")
# An incident in one of these states is finished: a redelivery reports it and acts on nothing.
SETTLED = ("contained", "ignored", "nothing-to-do", "partial", "failed", "pending-approval", "folded")
# changes a storm repeats: one incident contains them, the rest of the storm is folded into it
FOLDABLE = (
    SignalKind.PUBLIC_ACCESS_CHANGED,
    SignalKind.BLOB_CREATED,
    SignalKind.KEYS_LISTED,
    SignalKind.SAS_LISTED,
    SignalKind.USER_DELEGATION_KEY,
)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Runtime:
    """Everything a trigger needs, built once per process from settings."""

    settings: Settings
    clients: Clients
    ledger: Ledger
    executor: Executor
    clock: Callable[[], str] = utc_now

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], str] = utc_now) -> Runtime:
        clients = Clients(settings)
        ledger = Ledger(clients.table())
        return cls(settings, clients, ledger, Executor(clients, ledger, clock), clock)

    def close(self) -> None:
        self.clients.close()


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """The process-wide runtime, built on first use (not at import: cold start)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime.from_settings(Settings.from_env())
        return _runtime


def set_runtime(value: Runtime | None) -> None:
    """Install (or clear) the runtime; used by the CLI and tests to point at local stand-ins."""
    global _runtime
    with _runtime_lock:
        if _runtime is not None and value is not _runtime:
            _runtime.close()
        _runtime = value


def recorded_echo(signal: Signal, rt: Runtime) -> str:
    """Why the signal is the echo of a write the ledger recorded as the responder's own, or "" when it
    is not: the correlation id, the resource, the operation and the caller must all match."""
    if not signal.correlation_id or signal.kind is SignalKind.OTHER:
        return ""
    if signal.caller.object_id not in rt.settings.policy.responder_object_ids:
        return ""
    row = rt.ledger.own_write(signal.correlation_id) or {}
    if (row.get("Resource"), row.get("Operation")) != (signal.subject.lower(), signal.operation):
        return ""
    return (
        f"echo of the responder's own write in incident {row.get('Incident')} "
        f"({signal.operation}, correlation id {signal.correlation_id}, written {row.get('WrittenAt')})"
    )


def resolve_search(signal: Signal, rt: Runtime) -> Signal:
    """A log-search alert embeds no results: run its query to learn which resources it is about."""
    if not signal.search_query or signal.accounts or not rt.settings.log_analytics_workspace_id:
        return signal
    from responders.evidence import resources_from_search

    found = resources_from_search(
        rt.clients, rt.settings.log_analytics_workspace_id, signal.search_query, *signal.search_window
    )
    return signal._replace(accounts=tuple(found))


# Sentinel attaches entities minutes after it creates an incident (6-10 in Azure/Azure-Sentinel#4661):
# until this long after the incident's first activity, an incident naming nothing is asked again.
ENTITY_WAIT_SECONDS = 30 * 60


class EntitiesPending(TransientFailure):
    """The incident names nothing to contain yet; a redelivery reads its entities again."""


def resolve_entities(signal: Signal, rt: Runtime) -> Signal:
    """An incident trigger that names no target: read the entities from the incident itself (its id
    validated, inside the configured workspace). Still none while the incident is young: ask for a
    redelivery rather than conclude there is nothing to contain."""
    if signal.source != "sentinel-incident" or signal.accounts or signal.principals or signal.apps:
        return signal
    from responders.actions.sentinel import incident_entities
    from responders.core.parse import entity_targets
    from responders.followup import incident_to_write

    incident, why = incident_to_write(signal.incident_id, rt)
    if incident is None:
        log.info("incident entities not read: %s", why)
        return signal
    found = entity_targets(incident_entities(rt.clients, incident))
    merged = {k: tuple(dict.fromkeys((*getattr(signal, k), *v))) for k, v in found.items()}
    signal = signal._replace(**merged)
    if signal.accounts or signal.principals or signal.apps:
        return signal
    started, now = parse_time(signal.occurred_at), parse_time(rt.clock())
    if started is not None and now is not None and (now - started).total_seconds() < ENTITY_WAIT_SECONDS:
        raise EntitiesPending(
            f"incident {incident.name} names no entities yet (Sentinel attaches them minutes later): "
            "asking for a redelivery"
        )
    return signal


def gather_facts(signal: Signal, rt: Runtime) -> Facts:
    """Read every resource the signal names, concurrently; read-only."""
    from responders.actions.authorization import read_account_roles
    from responders.actions.identity import principals_for_app, read_principal
    from responders.actions.storage import read_account

    principals = list(signal.principals)
    if signal.caller.object_id and signal.kind in (
        SignalKind.KEYS_LISTED,
        SignalKind.SAS_LISTED,
        SignalKind.USER_DELEGATION_KEY,
    ):
        principals.append(signal.caller.object_id)
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="facts") as pool:
        access = None
        # the storage logs' authentication types decide an alert's credential steps (policy "evidence"),
        # and tell whether turning shared key off would refuse callers that sign with keys or SAS; an alert
        # that states its authentication itself (Defender for Storage) waits for no query
        wants_logs = (
            signal.kind is SignalKind.ALERT
            and not signal.access
            and rt.settings.policy.alert_credentials == "evidence"
        )
        wants_logs = wants_logs or "storage.disable_shared_key" in signal.requested_actions
        if wants_logs and signal.accounts and rt.settings.log_analytics_workspace_id:
            from responders.evidence import access_by_account

            access = pool.submit(
                access_by_account,
                rt.clients,
                rt.settings.log_analytics_workspace_id,
                list(signal.accounts),
                signal.occurred_at,
                rt.clock(),
            )
        decide = tags_decide(rt.settings.policy)
        accounts = {
            a: pool.submit(
                read_account,
                rt.clients,
                a,
                tags_decide=decide,
                containers=tuple(c for n, c in signal.containers if n == a),
            )
            for a in signal.accounts
        }
        owners = rt.settings.policy.graph_permission == "Application.ReadWrite.OwnedBy"
        sps = {
            p: pool.submit(read_principal, rt.clients, p, owners=owners) for p in dict.fromkeys(principals)
        }
        apps = [pool.submit(principals_for_app, rt.clients, app, owners=owners) for app in signal.apps]
        # who holds which role on each account: read only when a principal is implicated
        roles = (
            {a: pool.submit(read_account_roles, rt.clients, a) for a in signal.accounts}
            if principals or signal.apps
            else {}
        )
        principal_facts = {k: f.result() for k, f in sps.items()}
        for future in apps:
            for sp in future.result():
                principal_facts.setdefault(sp.object_id, sp)
        seen, unknown = _access(access)
        assignments, unread = _role_assignments(roles)
        return Facts(
            accounts={k: f.result() for k, f in accounts.items()},
            principals=principal_facts,
            access=seen,
            evidence_error=unknown,
            role_assignments=assignments,
            role_assignments_error=unread,
        )


def _role_assignments(futures: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Each account's role assignments, or why they could not be read for good (a 403: the step is
    then planned and records the failure itself). A transient failure raises: the delivery retries."""
    found: dict[str, Any] = {}
    unread: dict[str, str] = {}
    for account, future in futures.items():
        try:
            found[account] = future.result()
        except Exception as exc:
            if is_transient(exc):
                raise
            unread[account] = describe(exc)
            log.warning("role assignments of %s unreadable: %s", account, describe(exc))
    return found, unread


def _access(future: Any) -> tuple[dict[str, Any], str]:
    """The storage logs' access per account, or ({}, why) when they cannot be read for good (no such
    table in the workspace, a partial result): missing evidence is "unknown", so the policy's
    fallback decides. A transient failure raises, so the delivery is retried."""
    if future is None:
        return {}, ""
    try:
        return future.result(), ""
    except Exception as exc:
        if is_transient(exc):
            raise
        from responders.evidence import query_error

        why, inner = describe(exc), query_error(exc)
        why = f"{why}: {inner}" if inner and inner not in why else why
        log.warning("storage logs unreadable, evidence unknown: %s", why)
        return {}, why


def incident_status(plan: Plan, outcomes: list[Outcome], dry_run: bool) -> str:
    if not plan.verdict.leak:
        return "ignored"
    if not plan.actions:
        return "nothing-to-do"
    if dry_run:
        return "dry-run"
    statuses = {o.status for o in outcomes}
    if statuses <= set(DONE):
        return "contained"
    if statuses & {"retrying", "in-progress"}:
        return "retrying"
    if "pending-approval" in statuses and statuses <= {*DONE, "pending-approval"}:
        return "pending-approval"
    if statuses & set(DONE):
        return "partial"
    return "failed"


def report(plan: Plan, outcomes: list[Outcome], status: str, dry_run: bool) -> dict[str, Any]:
    """The JSON shape returned by the HTTP endpoints and printed by replay."""
    v = plan.verdict
    return {
        "incident": plan.incident,
        "event": plan.signal.id,
        "source": plan.signal.source,
        "kind": str(plan.signal.kind),
        "subject": plan.signal.subject,
        "status": status,
        "dry_run": dry_run,
        "verdict": {
            "leak": v.leak,
            "severity": v.severity,
            "confidence": v.confidence,
            "reasons": list(v.reasons),
            "findings": list(v.findings),
            "blocked": dict(v.blocked),
        },
        "plan": [
            {"kind": a.kind, "target": a.target, "params": dict(a.params), "mode": a.mode, "reason": a.reason}
            for a in plan.actions
        ],
        "skipped": [{"what": w, "why": y} for w, y in plan.skipped],
        "outcomes": [
            {
                "kind": o.action.kind,
                "target": o.action.target,
                "params": dict(o.action.params),
                "status": o.status,
                "error": o.error,
                "before": dict(o.before),
                "after": dict(o.after),
            }
            for o in outcomes
        ],
    }


def owners_of(facts: Facts) -> list[str]:
    """Owners named in the tags of the accounts concerned, for the evidence pack."""
    found = []
    for account in facts.accounts.values():
        for key, value in account.tags.items():
            if key.lower() in ("owner", "owners", "contact") and value:
                found.append(str(value))
    return sorted(set(found))


# a manual request happens when it is asked: its requestId, not its time, says which it is; a sweep
# finding is the same exposure whichever sweep sees it: its id, not the sweep's time, says which it is
TIMELESS = (SignalKind.MANUAL, SignalKind.SWEEP)


def _identity(signal: Signal) -> tuple[str, ...]:
    when = "" if signal.kind in TIMELESS else signal.occurred_at
    return (signal.event_type, signal.subject[:1024], when, signal.operation)


def same_event(signal: Signal, row: dict[str, Any]) -> bool:
    """Is the recorded incident this event, or another body that happens to carry the same id? A
    redelivery repeats the whole event; what is recorded of it is compared."""
    when = "" if signal.kind in TIMELESS else row.get("OccurredAt")
    recorded = (row.get("EventType"), row.get("Subject"), when, row.get("Operation"))
    mine = _identity(signal)
    # the Functions host hands the trigger eventTime as a datetime (microseconds), while a dead-letter
    # blob or a capture keeps Azure's seven digits: the same moment, written two ways
    moment, recorded_moment = parse_time(mine[2]), parse_time(when)
    if moment is not None and moment == recorded_moment:
        recorded, mine = (*recorded[:2], "", recorded[3]), (*mine[:2], "", mine[3])
    return tuple(str(v or "").lower() for v in recorded) == tuple(v.lower() for v in mine)


def event_digest(signal: Signal) -> str:
    return hashlib.sha256("\n".join(_identity(signal)).lower().encode()).hexdigest()[:16]


def process(item: Any, rt: Runtime, *, execute: bool | None = None) -> dict[str, Any]:
    """Run one parsed-JSON item through the pipeline. BadInput propagates; transient failures raise
    TransientFailure only after the ledger holds what happened."""
    now = rt.clock()
    return process_signal(parse_item(item, now=now), rt, now=now, execute=execute)


def process_signal(signal: Signal, rt: Runtime, *, now: str, execute: bool | None = None) -> dict[str, Any]:
    """Run one signal (parsed from an event, or made by the sweep) through the rest of the pipeline,
    with the same exactly-once, folding, dry-run and approval rules for every source."""
    dry_run = rt.settings.dry_run if execute is None else not execute
    earlier = rt.ledger.head(incident_key(signal.id))
    if earlier is not None and not same_event(signal, earlier):
        # the id was seen with another body (another resource, time or operation): a new event
        signal = signal._replace(id=f"{signal.id}|{event_digest(signal)}")
        earlier = rt.ledger.head(incident_key(signal.id))
    if earlier and (earlier.get("Status") in SETTLED or (earlier.get("Status") == "dry-run" and dry_run)):
        rt.ledger.note_delivery(earlier["PartitionKey"], int(earlier.get("Deliveries") or 1) + 1, now)
        row = rt.ledger.incident(earlier["PartitionKey"]) or earlier
        recorded = ledger_report(row)
        recorded["duplicate"] = True
        if str(earlier.get("CommentStatus", "")).startswith("failed") and not dry_run:
            from responders import followup

            followup.write_back(plan_from_ledger(row), rt, recorded, row.get("Evidence"))
        log.info("incident %s: repeated delivery, already %s", earlier["PartitionKey"], earlier.get("Status"))
        return recorded
    if earlier and earlier.get("Leak") and not dry_run and earlier.get("Status") in RESUMABLE:
        # a redelivery resumes the recorded plan: re-classifying a half-contained resource would
        # rewrite the verdict the first delivery proved
        row = rt.ledger.incident(earlier["PartitionKey"]) or earlier
        rt.ledger.note_delivery(earlier["PartitionKey"], int(earlier.get("Deliveries") or 1) + 1, now)
        return _execute(plan_from_ledger(row), rt, dry_run=False)
    if earlier is None and not dry_run:
        folded = _fold(signal, rt, now)
        if folded is not None:
            return folded
    return _classify_and_execute(signal, rt, now, dry_run, earlier)


def _fold(signal: Signal, rt: Runtime, now: str) -> dict[str, Any] | None:
    """A storm repeats one change: an event of the same shape as a change an incident contained, that
    happened before that containment began writing and arrives within the policy's window, is
    recorded as folded into that incident, with no call to Azure (the containment's writes set the
    state after it). An event from any later moment is handled in full: it may be a new exposure
    (public access switched on again, keys listed again), even one made while containment ran."""
    window = rt.settings.policy.dedupe_window_seconds
    occurred = parse_time(signal.occurred_at)
    if not window or signal.kind not in FOLDABLE or occurred is None:
        return None
    row = rt.ledger.contained_shape(shape_key(signal))
    began, current = parse_time((row or {}).get("ActedFrom")), parse_time(now)
    if row is None or began is None or current is None or not occurred < began:
        return None
    if (current - began).total_seconds() > window:
        return None
    first = str(row["Incident"])
    why = (
        f"the same change as incident {first}, which contained it (writing from {row['ActedFrom']}); "
        f"this event happened before that, at {signal.occurred_at}"
    )
    verdict = Verdict(True, str(row.get("Severity") or "medium"), float(row.get("Confidence") or 0.9), (why,))
    plan = Plan(incident_key(signal.id), signal, verdict, ())
    rt.ledger.record_incident(
        plan,
        status="folded",
        now=now,
        responder=rt.settings.identity_object_id,
        dry_run=False,
        earlier=None,
        extra={"FoldedInto": first},
    )
    log.info("incident %s: folded into %s (same change, before its containment)", plan.incident, first)
    result = report(plan, [], "folded", False)
    result["folded_into"] = first
    return result


RESUMABLE = ("planned", "retrying")


def _classify_and_execute(
    signal: Signal, rt: Runtime, now: str, dry_run: bool, earlier: dict[str, Any] | None
) -> dict[str, Any]:
    from responders.actions import known_state
    from responders.actions.storage import account_state
    from responders.scope import effective_policy

    policy = effective_policy(rt)[0]  # with the subscriptions of its management groups
    responder = rt.settings.identity_object_id
    echo = ""
    try:
        echo = recorded_echo(signal, rt)
        needs_facts = signal.kind is not SignalKind.OTHER and not echo
        if needs_facts:
            signal = resolve_entities(resolve_search(signal, rt), rt)
        read_at = rt.clock()
        facts = gather_facts(signal, rt) if needs_facts else Facts()
    except Exception as exc:
        empty = make_plan(signal, Facts(), classify(signal, Facts(), policy, echo=echo), policy)
        transient = is_transient(exc) or isinstance(exc, EntitiesPending)
        status = "facts-failed" if transient else "failed"
        rt.ledger.record_incident(
            empty, status=status, now=now, responder=responder, dry_run=dry_run, earlier=earlier
        )
        rt.ledger.set_incident_status(empty.incident, status, rt.clock(), Error=describe(exc))
        if transient:
            raise TransientFailure(f"reading current state failed: {describe(exc)}") from exc
        log.error("incident %s: reading current state failed for good: %s", empty.incident, describe(exc))
        result = report(empty, [], status, dry_run)
        result["error"] = describe(exc)
        return result
    verdict = classify(signal, facts, policy, echo=echo)
    plan = make_plan(signal, facts, verdict, policy)
    state_before = {a: account_state(f) for a, f in facts.accounts.items() if f.found}
    first_status = "ignored" if not verdict.leak else ("dry-run" if dry_run else "planned")
    rt.ledger.record_incident(
        plan,
        status=first_status,
        now=now,
        responder=responder,
        dry_run=dry_run,
        earlier=earlier,
        state_before=state_before,
        owners=owners_of(facts),
    )
    known = Known(known_state(facts), read_at)
    return _execute(plan, rt, dry_run=dry_run, foldable=signal.kind in FOLDABLE, known=known, facts=facts)


def _execute(
    plan: Plan,
    rt: Runtime,
    *,
    dry_run: bool,
    foldable: bool = False,
    known: Known | None = None,
    facts: Facts | None = None,
) -> dict[str, Any]:
    """Run the plan, record the outcome, follow up. `foldable`: the plan was made from the signal
    itself (not rebuilt from the ledger), so a storm of the same change may be folded into it.
    `known`: the facts just read, which answer each step's first read; `facts`: those facts, from
    which the state after containment is derived for the paths left open."""
    from responders import followup

    evidence_before = followup.start_evidence(plan, rt)
    acted_from = rt.clock()
    outcomes = rt.executor.run(plan, dry_run=dry_run, known=known) if plan.verdict.leak else []
    status = incident_status(plan, outcomes, dry_run)
    rt.ledger.set_incident_status(plan.incident, status, rt.clock())
    if foldable and status == "contained":
        rt.ledger.remember_contained(shape_key(plan.signal), plan, covered_until(acted_from, outcomes))
    log.info(
        "incident %s source=%s kind=%s leak=%s status=%s actions=%d",
        plan.incident,
        plan.signal.source,
        plan.signal.kind,
        plan.verdict.leak,
        status,
        len(plan.actions),
    )
    result = report(plan, outcomes, status, dry_run)
    if status == "retrying":
        if evidence_before is not None:
            evidence_before.cancel()
        raise TransientFailure(f"incident {plan.incident}: some actions must be retried")
    evidence = followup.finish_evidence(plan, rt, evidence_before, dry_run, acted_from)
    if not dry_run and plan.verdict.leak:
        result["paths_left_open"] = followup.paths_left_open(plan, outcomes, rt, facts)
    if not dry_run:
        followup.write_back(plan, rt, result, evidence)
    return result


def covered_until(acted_from: str, outcomes: list[Outcome]) -> str:
    """The folding cut-off of a containment: it covers changes from before it began writing, and a step
    found already done covers only changes from before the time its state shows (a key created at T
    does not cover keys listed after T)."""
    cut = acted_from
    for outcome in outcomes:
        done_at = str(outcome.after.get("doneAt") or "") if outcome.status == "already-contained" else ""
        if done_at and is_after(cut, done_at):
            cut = done_at
    return cut


def plan_from_ledger(row: dict[str, Any]) -> Plan:
    """Rebuild the recorded plan (for redelivery, approval and restore): the ledger is the truth."""
    signal = Signal(
        id=row.get("EventId", ""),
        source=row.get("Source", ""),
        kind=SignalKind(row.get("SignalKind") or "other"),
        event_type=row.get("EventType", ""),
        operation=row.get("Operation", ""),
        occurred_at=row.get("OccurredAt", "") or row.get("DetectedAt", ""),
        subject=row.get("Subject", ""),
        incident_id=row.get("IncidentArmId", ""),
        title=row.get("Title", ""),
    )
    verdict = Verdict(
        leak=bool(row.get("Leak")),
        severity=row.get("Severity", "none"),
        confidence=float(row.get("Confidence") or 0.0),
        reasons=tuple(row.get("Reasons") or ()),
        findings=tuple(row.get("Findings") or ()),
        blocked=dict(row.get("Blocked") or {}),
    )
    actions = tuple(
        Action(
            kind=a["kind"],
            target=a["target"],
            key=a["key"],
            reason=a.get("reason", ""),
            params=dict(a.get("params") or {}),
            after=tuple(a.get("after") or ()),
            mode=a.get("mode", "auto"),
            reversible=bool(a.get("reversible", True)),
        )
        for a in row.get("Plan") or []
    )
    skipped = tuple((w, y) for w, y in row.get("Skipped") or [])
    return Plan(row["PartitionKey"], signal, verdict, actions, skipped)


def ledger_report(row: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the report from the ledger alone: what replay prints is what the ledger proves."""
    actions = {a["RowKey"]: a for a in row.get("actions", [])}
    plan = row.get("Plan") or []
    outcomes = []
    for item in plan:
        rec = actions.get(item["key"])
        status = rec.get("Status", "") if rec else ("dry-run" if row.get("DryRun") else "not-started")
        outcomes.append(
            {
                "kind": item["kind"],
                "target": item["target"],
                "params": item.get("params", {}),
                "status": status,
                "error": rec.get("Error", "") if rec else "",
                "before": rec.get("Before", {}) if rec else {},
                "after": rec.get("After", {}) if rec else {},
            }
        )
    return {
        "incident": row["PartitionKey"],
        "event": row.get("EventId", ""),
        "source": row.get("Source", ""),
        "kind": row.get("SignalKind", ""),
        "subject": row.get("Subject", ""),
        "status": row.get("Status", ""),
        "dry_run": bool(row.get("DryRun")),
        "verdict": {
            "leak": bool(row.get("Leak")),
            "severity": row.get("Severity", ""),
            "confidence": row.get("Confidence", 0.0),
            "reasons": row.get("Reasons") or [],
            "findings": row.get("Findings") or [],
            "blocked": row.get("Blocked") or {},
        },
        "plan": [{k: item.get(k) for k in ("kind", "target", "params", "mode", "reason")} for item in plan],
        "skipped": [{"what": w, "why": y} for w, y in (row.get("Skipped") or [])],
        "outcomes": outcomes,
        **({"paths_left_open": row["OpenPaths"]} if isinstance(row.get("OpenPaths"), list) else {}),
    }
