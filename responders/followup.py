"""After containment: evidence from Log Analytics and the write-back to the Sentinel incident.

Neither may block or undo containment: each failure is recorded on the incident row and retried
on a redelivery, and the ledger already holds the outcome before either runs.
"""

from __future__ import annotations

import html
import logging
import re
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from responders.core.arm import IncidentRef, parse_incident_id
from responders.core.timeutil import parse_time
from responders.execute import TransientFailure, describe, is_transient

if TYPE_CHECKING:
    from responders.core.model import Facts, Outcome, Plan
    from responders.service import Runtime

log = logging.getLogger("responders.followup")
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="evidence")


def start_evidence(plan: Plan, rt: Runtime) -> Future[Any] | None:
    """Query the logs as they stand before acting, concurrently with containment."""
    workspace = rt.settings.log_analytics_workspace_id
    if not workspace or not (plan.verdict.leak or plan.signal.incident_id):
        return None
    from responders import evidence

    return _pool.submit(evidence.collect_storage, rt.clients, workspace, plan, rt.clock())


def finish_evidence(
    plan: Plan, rt: Runtime, before: Future[Any] | None, dry_run: bool, acted_from: str = ""
) -> dict[str, Any] | None:
    """Summaries before and after containment on the incident row; whole rows in their own rows."""
    if before is None:
        return None
    from responders import evidence

    workspace = rt.settings.log_analytics_workspace_id
    start, end = evidence.window(plan, rt.clock())
    record: dict[str, Any] = {"window": {"start": start.isoformat(), "end": end.isoformat()}}
    try:
        record["before"], rows_before = before.result(timeout=120)
        rt.ledger.store_document(plan.incident, "evidence-before", rows_before)
        if plan.actions and not dry_run:
            record["after"], rows_after = evidence.collect_storage(
                rt.clients, workspace, plan, rt.clock(), since=acted_from
            )
            record["after"]["since"] = acted_from
            rt.ledger.store_document(plan.incident, "evidence-after", rows_after)
        record["audit"] = evidence.collect_audit(rt.clients, workspace, plan, rt.clock())
    except Exception as exc:
        log.warning("incident %s: evidence query failed: %s", plan.incident, describe(exc))
        record["error"] = describe(exc)
    rt.ledger.set_incident_status(plan.incident, None, rt.clock(), Evidence=record)
    return record


# Line breaks and other control characters in a value: flattened, so no value starts a line.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _inline(value: object, limit: int = 2000) -> str:
    """A recorded value as one line of inert text: titles, names and reasons come from alerts, so none
    may add a line ("Actions: ... contained") or markup (Sentinel renders HTML in comments)."""
    return html.escape(_BREAKS.sub(" ", str(value))[:limit], quote=False)


def paths_left_open(
    plan: Plan, outcomes: list[Outcome], rt: Runtime, before: Facts | None = None
) -> list[dict[str, str]] | None:
    """The access paths still open after containment, recorded on the incident row. The state after is
    the facts read just before acting with what each step observed of its target put over them (no
    read more: a storm's incidents stay within Resource Manager's read budget); a plan rebuilt from
    the ledger (an approval, a resumed delivery) has no such facts, so its accounts and principals are
    read again. None when that read fails (the reason is recorded; containment stands)."""
    from responders.core.model import Signal, SignalKind
    from responders.core.open_paths import after_facts, as_rows, left_open
    from responders.service import gather_facts

    accounts = [a for a in plan.verdict.synthetic_accounts if a not in plan.verdict.blocked]
    accounts += [a.target.lower() for a in plan.actions if a.target.startswith("/subscriptions/")]
    principals = [a.target.lower() for a in plan.actions if a.kind == "identity.disable_service_principal"]
    principals += [*plan.signal.principals, plan.signal.caller.object_id]
    principals += [a.params.get("principal", "") for a in plan.actions]
    accounts, principals = list(dict.fromkeys(accounts)), [p for p in dict.fromkeys(principals) if p]
    if not accounts:
        return []
    # a manual-kind read: the accounts, their role assignments and the principals, no log query
    read = Signal(
        id=plan.signal.id,
        source="open-paths",
        kind=SignalKind.MANUAL,
        event_type="",
        accounts=tuple(accounts),
        principals=tuple(principals),
    )
    try:
        after = after_facts(before, outcomes) if before is not None else gather_facts(read, rt)
    except Exception as exc:
        why = f"the state after containment could not be read: {describe(exc)}"
        log.warning("incident %s: paths left open not computed: %s", plan.incident, why)
        rt.ledger.set_incident_status(plan.incident, None, rt.clock(), OpenPathsError=why)
        return None
    # what this run and every earlier one of the incident (before an approval, say) ended contained
    finished = ("contained", "already-contained")
    done = [(o.action.kind, o.action.target) for o in outcomes if o.status in finished]
    row = rt.ledger.incident(plan.incident) or {}
    done += [
        (str(a.get("Kind")), str(a.get("Target")))
        for a in row.get("actions", [])
        if a.get("Status") in finished
    ]
    rows = as_rows(
        left_open(
            after,
            since=plan.signal.occurred_at,
            principals=principals,
            done=done,
            responder=rt.settings.policy.responder_object_ids,
        )
    )
    rt.ledger.set_incident_status(plan.incident, None, rt.clock(), OpenPaths=rows)
    return rows


def comment_text(result: dict[str, Any], evidence: dict[str, Any] | None, remaining: list[str]) -> str:
    """What the responder did, in words a Sentinel analyst reads: verdict, actions, what remains. Every
    value goes through _inline; only the lines built here are lines."""
    v = result["verdict"]
    lines = [
        f"Synthetic-data leak responder: incident {_inline(result['incident'])}, "
        f"status {_inline(result['status'])}"
        + (" (dry-run: nothing was changed)" if result.get("dry_run") else ""),
        f"Verdict: {'LEAK' if v['leak'] else 'no containable leak'}, severity {_inline(v['severity'])}, "
        f"confidence {_inline(v['confidence'])}",
        "Why:",
        *(f"- {_inline(r)}" for r in v["reasons"]),
    ]
    if v.get("findings"):
        lines += ["Findings (not acted on):", *(f"- {_inline(f)}" for f in v["findings"])]
    if result["outcomes"]:
        lines.append("Actions:")
        for o in result["outcomes"]:
            params = " ".join(f"{_inline(k)}={_inline(val)}" for k, val in o["params"].items())
            err = f" ({_inline(o['error'])})" if o.get("error") else ""
            target = _inline(o["target"].rsplit("/", 1)[-1])
            lines.append(f"- {_inline(o['kind'])} on {target} {params}: {_inline(o['status'])}{err}")
    else:
        lines.append("Actions: none. Nothing named by this incident could be contained.")
    if result["skipped"]:
        skipped = (f"- {_inline(s['what'])}: {_inline(s['why'])}" for s in result["skipped"])
        lines += ["Not acted on:", *skipped]
    if evidence and evidence.get("before", {}).get("callers"):
        lines.append("Evidence (StorageBlobLogs):")
        for caller in evidence["before"]["callers"][:20]:
            ops = ", ".join(f"{_inline(k)} x{_inline(n)}" for k, n in caller["operations"].items())
            lines.append(
                f"- {_inline(caller['ip'])} {_inline(caller['auth'])}: {ops}; "
                f"{_inline(caller['bytes_out'])} bytes out ({_inline(', '.join(caller['accounts']))})"
            )
    open_paths = result.get("paths_left_open")
    if open_paths is not None:
        lines.append(f"Paths left open: {len(open_paths)}")
        for p in open_paths:
            account = _inline(str(p["account"]).rsplit("/", 1)[-1])
            lines.append(f"- {_inline(p['path'])} on {account}: {_inline(p['why'])}")
    if remaining:
        lines += ["Remaining for a human:", *(f"- {_inline(r)}" for r in remaining)]
    lines.append(f"Evidence pack: python -m responders evidence {_inline(result['incident'])}")
    return "\n".join(lines)


def incident_to_write(incident_id: str, rt: Runtime) -> tuple[IncidentRef | None, str]:
    """The incident to comment on, only when it is a valid incident id inside the configured Sentinel
    workspace; otherwise None and the reason (the id came from a body: it must not pick the target)."""
    ref = parse_incident_id(incident_id)
    if ref is None:
        return None, "the incident id is not a Sentinel incident ARM id"
    workspace = rt.settings.sentinel_workspace
    if workspace is None:
        return None, "RESPONDER_SENTINEL_WORKSPACE_ID is not set, so no workspace may be written to"
    if not ref.workspace.same_as(workspace):
        return None, (
            f"the incident is in workspace {ref.workspace.arm_id}, not the configured "
            "RESPONDER_SENTINEL_WORKSPACE_ID"
        )
    return IncidentRef(workspace, ref.name), ""  # the configured workspace, the body's validated name


def write_back(plan: Plan, rt: Runtime, result: dict[str, Any], evidence: dict[str, Any] | None) -> None:
    """Comment (deterministic id) and labels on the Sentinel incident the signal came from."""
    if not plan.signal.incident_id:
        return
    incident_ref, refusal = incident_to_write(plan.signal.incident_id, rt)
    if incident_ref is None:
        log.warning("incident %s: no Sentinel write-back: %s", plan.incident, refusal)
        rt.ledger.set_incident_status(plan.incident, None, rt.clock(), CommentStatus=f"refused: {refusal}")
        return
    # the same list the evidence pack gives an auditor, built from the ledger the outcome is in
    from datetime import UTC, datetime

    from responders.evidence_pack import build_pack

    head = rt.ledger.incident(plan.incident) or {}
    if (
        head.get("CommentStatus") == "written"
        and (head.get("Comment") or {}).get("status") == result["status"]
    ):
        return  # this delivery adds nothing the incident was not told already
    from responders.actions import sentinel

    pack = build_pack(head, parse_time(rt.clock()) or datetime.now(UTC)) if head else {}
    remaining = [str(r) for r in pack.get("remaining_for_humans", [])]
    try:
        cid = sentinel.write_comment(
            rt.clients, incident_ref, plan.incident, comment_text(result, evidence, remaining)
        )
        wanted = ("synthetic-data-leak",) if result["verdict"]["leak"] else ()
        if result["status"] == "contained":
            wanted += ("contained-by-responder",)
        labels = sentinel.add_labels(rt.clients, incident_ref, wanted) if wanted else []
        rt.ledger.set_incident_status(
            plan.incident,
            result["status"],
            rt.clock(),
            CommentStatus="written",
            Comment={"id": cid, "at": rt.clock(), "labels_added": labels, "status": result["status"]},
        )
    except Exception as exc:
        log.warning("incident %s: Sentinel write-back failed: %s", plan.incident, describe(exc))
        rt.ledger.set_incident_status(
            plan.incident, result["status"], rt.clock(), CommentStatus=f"failed: {describe(exc)}"
        )
        if is_transient(exc):
            # containment is recorded; the redelivery this asks for only retries the comment
            raise TransientFailure(f"incident {plan.incident}: Sentinel write-back failed") from exc
