"""Human follow-ups on recorded incidents: approve pending actions, restore reversible ones.

Both start from the ledger (the recorded plan and before-states), never from a new classification,
and both honour dry-run: without `execute` they only say what they would do.
"""

from __future__ import annotations

from typing import Any

from responders.actions import HANDLERS
from responders.core.catalogue import RESTORE_ORDER
from responders.core.classify import blocked_reason
from responders.core.model import Action, BadInput
from responders.core.timeutil import is_after
from responders.evidence_pack import IRREVERSIBLE
from responders.execute import describe
from responders.service import Runtime, _execute, ledger_report, plan_from_ledger


def _incident(rt: Runtime, incident: str) -> dict[str, Any]:
    if not isinstance(incident, str) or not incident.startswith("inc-") or len(incident) > 64:
        raise BadInput("incident must be an incident key such as inc-0123abcd...")
    row = rt.ledger.incident(incident)
    if row is None:
        raise BadInput(f"no incident {incident} in the ledger")
    return row


def pending(rt: Runtime, incident: str) -> list[dict[str, Any]]:
    """Actions of the incident that wait for approval."""
    return [a for a in _incident(rt, incident)["actions"] if a.get("Status") == "pending-approval"]


def approve(rt: Runtime, incident: str, keys: list[str] | None, *, execute: bool, by: str) -> dict[str, Any]:
    """Run the incident's pending actions (all, or those named); dry-run unless execute."""
    row = _incident(rt, incident)
    waiting = {a["RowKey"] for a in row["actions"] if a.get("Status") == "pending-approval"}
    chosen = waiting if not keys else set(keys)
    unknown = sorted(chosen - waiting)
    if unknown:
        raise BadInput(f"not pending approval in {incident}: {', '.join(unknown)}")
    if not chosen:
        raise BadInput(f"{incident} has no action pending approval")
    plan = plan_from_ledger(row)
    plan = plan._replace(
        actions=tuple(a._replace(mode="approved") if a.key in chosen else a for a in plan.actions)
    )
    # the policy and the resource may have changed since the plan was made: re-check before writing
    actions = {a.key: a for a in plan.actions}
    blocked = {key: why for key in sorted(chosen) if (why := still_forbidden(rt, actions[key]))}
    if not execute or rt.settings.dry_run:
        result = ledger_report(row)
        result["would_approve"] = sorted(chosen - set(blocked))
        result["would_skip"] = blocked
        result["dry_run"] = True
        return result
    for key in sorted(chosen):
        if key in blocked:
            why = f"not run: {blocked[key]} (re-checked when approved)"
            rt.ledger.update_action(incident, key, Status="skipped", Error=why, LeaseUntil="", SkippedBy=by)
        else:
            rt.ledger.update_action(incident, key, ApprovedBy=by, ApprovedAt=rt.clock())
    return _execute(plan, rt, dry_run=False)


def still_forbidden(rt: Runtime, action: Action) -> str:
    """Why the policy forbids this action now (exempt or out of scope, read afresh), or "". The scope is
    the pipeline's: a management group's subscriptions count, as when the plan was made."""
    from responders.actions.identity import read_principal
    from responders.actions.storage import read_account
    from responders.scope import effective_policy

    policy = effective_policy(rt)[0]
    if action.kind == "identity.disable_service_principal":
        if action.target in policy.responder_object_ids:
            return "the responder's own identity is never disabled"
        principal = read_principal(rt.clients, action.target)
        if not policy.principal_in_scope(action.target, principal.app_id):
            return "outside the policy's principal scope (principals.allow)"
        return ""
    if action.kind == "authorization.remove_role_assignments":
        principal = str(action.params.get("principal", "")).lower()
        if principal in policy.responder_object_ids or principal == rt.settings.identity_object_id.lower():
            return "the responder's own role assignments are never removed"
        found = read_principal(rt.clients, principal)
        if not found.found:
            return "not a service principal (only service principals' role assignments are removed)"
        if not policy.principal_in_scope(principal, found.app_id):
            return "outside the policy's principal scope (principals.allow)"
    account = read_account(rt.clients, action.target)
    if not account.found:
        return f"the account cannot be read: {account.error}"
    return blocked_reason(account, policy)


def present_conflict(rt: Runtime, incident: str, action: Action, record: dict[str, Any]) -> str:
    """Why restoring this step would undo more than this incident did, or "": a later incident wrote
    the same step, or the resource is no longer as this incident left it."""
    last = rt.ledger.last_write(action) or {}
    other = str(last.get("Incident") or "")
    if other and other != incident and is_after(last.get("WrittenAt"), record.get("ActedAt")):
        when = last.get("WrittenAt")
        return f"incident {other} acted on it later (at {when}); this restore would undo that"
    handler = HANDLERS[action.kind]
    state = handler.read(rt.clients, action)
    if record.get("Status") == "failed":  # a multi-write step that failed part way (`_partly_done`)
        if handler.left_partly(state, record.get("Before") or {}):  # type: ignore[attr-defined]
            return ""
        return f"the current state {state} is not what this incident left (part of {record.get('Before')})"
    after = record.get("After") or {}
    unchanged = getattr(handler, "unchanged", None)
    if not handler.done(state, action, "") or (unchanged is not None and not unchanged(state, after)):
        left = {k: v for k, v in after.items() if k in state}
        return f"the current state {state} is not what this incident left ({left})"
    return ""


def _partly_done(record: dict[str, Any]) -> bool:
    """A step of several writes (one per role assignment) that failed after some of them landed: its
    recorded before-state says what to put back, so restore covers it like a contained one."""
    handler = HANDLERS.get(str(record.get("Kind", "")))
    return (
        record.get("Status") == "failed"
        and bool(getattr(handler, "restores_partly", False))
        and isinstance(record.get("Before"), dict)
        and bool(record["Before"])
    )


def restore(rt: Runtime, incident: str, *, execute: bool, by: str) -> dict[str, Any]:
    """Put back the recorded before-state of reversible actions; refuse what cannot be undone."""
    row = _incident(rt, incident)
    plan = {a.key: a for a in plan_from_ledger(row).actions}
    undoable = [a for a in row["actions"] if a.get("Status") == "contained" or _partly_done(a)]
    done = [a for a in undoable if a["RowKey"] in plan]
    refused = [
        {
            "kind": a["Kind"],
            "target": a["Target"],
            "params": a.get("Params") or {},
            "why": IRREVERSIBLE.get(a["Kind"], "cannot be undone: the action is recorded as irreversible"),
        }
        for a in done
        if not plan[a["RowKey"]].reversible
    ]
    todo = sorted((a for a in done if plan[a["RowKey"]].reversible), key=lambda a: RESTORE_ORDER[a["Kind"]])
    result: dict[str, Any] = {
        "incident": incident,
        "refused": refused,
        "restored": [],
        "dry_run": not execute or rt.settings.dry_run,
    }
    if not todo and not refused:
        result["note"] = "nothing was contained by this incident, so there is nothing to restore"
    # a restore is a write like any other: never where the policy, as it stands now, forbids one
    forbidden = [
        {"kind": a["Kind"], "target": a["Target"], "params": a.get("Params") or {}, "why": why}
        for a in todo
        if (why := still_forbidden(rt, plan[a["RowKey"]]))
    ]
    conflicts = forbidden or [
        {"kind": a["Kind"], "target": a["Target"], "params": a.get("Params") or {}, "why": why}
        for a in todo
        if (why := present_conflict(rt, incident, plan[a["RowKey"]], a))
    ]
    if conflicts:  # all or nothing: a half-restored resource helps nobody
        result["refused"] += conflicts
        result["note"] = (
            "nothing restored: the policy forbids writing there now"
            if forbidden
            else "nothing restored: the resource is not as this incident left it"
        )
        return result
    for record in todo:
        action = plan[record["RowKey"]]
        entry: dict[str, Any] = {
            "kind": action.kind,
            "target": action.target,
            "params": dict(action.params),
            "to": record.get("Before") or {},
        }
        if result["dry_run"]:
            entry["status"] = "would-restore"
            result["restored"].append(entry)
            continue
        handler = HANDLERS[action.kind]
        try:
            with rt.executor.account_write(handler, action):  # one write per account, as in containment
                written = handler.restore(rt.clients, action, record.get("Before") or {})  # type: ignore[attr-defined]
            rt.ledger.record_writes(written, incident, action.key, rt.clock())
            after = handler.read(rt.clients, action)
            entry.update(status="restored", after=after)
            rt.ledger.update_action(
                incident,
                action.key,
                Status="restored",
                RestoredAt=rt.clock(),
                RestoredBy=by,
                RestoredState=after,
            )
        except Exception as exc:
            entry.update(status="failed", error=describe(exc))
            rt.ledger.update_action(incident, action.key, RestoreError=describe(exc))
        result["restored"].append(entry)
    if not result["dry_run"] and result["restored"]:
        ok = all(e["status"] == "restored" for e in result["restored"])
        rt.ledger.set_incident_status(
            incident, "restored" if ok else "restore-failed", rt.clock(), RestoredBy=by
        )
    return result


def summary(rt: Runtime) -> dict[str, Any]:
    """Counts by status for every incident in the ledger: every delivered event is accounted for."""
    by_status: dict[str, int] = {}
    deliveries = 0
    for row in rt.ledger.incidents():
        by_status[row.get("Status", "")] = by_status.get(row.get("Status", ""), 0) + 1
        deliveries += int(row.get("Deliveries") or 1)
    return {
        "incidents": sum(by_status.values()),
        "deliveries": deliveries,
        "by_status": dict(sorted(by_status.items())),
    }
