"""Audit evidence pack: what the ledger proves about one incident, for auditors and regulators.

Pure: it takes the decoded ledger incident (`Ledger.incident(key)`) and the current time, and
returns plain data, Markdown or JSON. No I/O and no clock of its own, so the same ledger record
and the same `now` always give the same pack, and the pack can be rebuilt later to prove what it
said. Every key of the incident is treated as optional: an incomplete record renders what it has
rather than failing when an auditor needs it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from responders.core.catalogue import CATALOGUE
from responders.core.timeutil import parse_time

NOTIFY_WITHIN = timedelta(hours=72)
TOKEN_LIFETIME = timedelta(minutes=90)
NO_EVIDENCE = "no Log Analytics evidence recorded"

# what a human does to undo each action, from its catalogue entry
IRREVERSIBLE = {k: f"cannot be undone: {s.undo}" for k, s in CATALOGUE.items() if not s.reversible}
RESTORE_WHAT = {k: s.undo for k, s in CATALOGUE.items() if s.reversible}
CHANGED = ("contained", "restored")
GDPR_NOTE = (
    "Synthetic data derived from personal data may itself be personal data where re-identification "
    "is possible (GDPR Recital 26), so the clock is shown for every leak verdict. Whether the breach "
    "must be notified (it need not be when it is unlikely to result in a risk to people) is a legal "
    "decision this pack does not make."
)
NOT_A_LEAK = (
    "the verdict is not a leak of synthetic data, so no personal data breach was established by "
    "this record and the 72-hour clock does not start from it"
)
COMMENT_TIME_KEYS = ("time", "writtenAt", "WrittenAt", "createdAt", "createdTimeUtc", "at", "WrittenTime")

# Defence in depth: the ledger never holds secrets, but a pack is handed outside the team, so
# anything shaped like a storage key, SAS signature, connection-string key or bearer token is
# masked before it can leave.
SECRET_PATTERNS = (
    (re.compile(r"(?i)(sig=)[^&\s\"']+"), r"\1[redacted]"),
    (re.compile(r"(?i)(AccountKey=|SharedAccessSignature=|password=)[^;\s\"']+"), r"\1[redacted]"),
    (re.compile(r"\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*"), "[redacted token]"),
    (re.compile(r"(?<![\w+/])[A-Za-z0-9+/]{86}=="), "[redacted key]"),
)


# ---------------------------------------------------------------------------------------------
# building the pack
# ---------------------------------------------------------------------------------------------
def build_pack(incident: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The evidence pack of one ledger incident as JSON-serialisable data, computed against `now`."""
    now = _utc(now)
    key = str(incident.get("PartitionKey") or "")
    actions = _actions(incident, key)
    pack: dict[str, Any] = {
        "incident": key,
        "title": str(incident.get("Title") or ""),
        "source": str(incident.get("Source") or ""),
        "event": str(incident.get("EventId") or ""),
        "event_type": str(incident.get("EventType") or ""),
        "signal_kind": str(incident.get("SignalKind") or ""),
        "operation": str(incident.get("Operation") or ""),
        "subject": str(incident.get("Subject") or ""),
        "sentinel_incident": str(incident.get("IncidentArmId") or ""),
        "caller": {k: v for k, v in _dict(incident.get("Caller")).items() if v},
        "occurred_at": str(incident.get("OccurredAt") or ""),
        "detected_at": str(incident.get("DetectedAt") or ""),
        "updated_at": str(incident.get("UpdatedAt") or ""),
        "deliveries": incident.get("Deliveries"),
        "responder": str(incident.get("Responder") or ""),
        "status": str(incident.get("Status") or ""),
        "folded_into": str(incident.get("FoldedInto") or ""),
        "dry_run": bool(incident.get("DryRun")),
        "severity": str(incident.get("Severity") or ""),
        "confidence": incident.get("Confidence"),
        "leak": bool(incident.get("Leak")),
        "reasons": [str(r) for r in _list(incident.get("Reasons"))],
        "findings": [str(f) for f in _list(incident.get("Findings"))],
        "blocked": {str(k): str(v) for k, v in _dict(incident.get("Blocked")).items()},
        "skipped": _skipped(incident.get("Skipped")),
        "owners": [str(o) for o in _list(incident.get("Owners"))],
        "restored_by": str(incident.get("RestoredBy") or ""),
        "requested_by": str(incident.get("RequestedBy") or ""),
        "sentinel_comment": _comment(incident),
        "timeline": _timeline(incident, actions),
        "actions": actions,
        "state": _state(incident, actions),
        "evidence": _evidence(incident.get("Evidence")),
        "paths_left_open": _open_paths(incident),
        "regulatory_clock": _clock(incident, now),
        "generated_at": _iso(now),
    }
    pack["remaining_for_humans"] = _remaining(pack)
    return _scrub(_plain(pack))


def _open_paths(incident: Mapping[str, Any]) -> dict[str, Any]:
    """The access paths the state read after containment left open (core.open_paths), or why they
    are not known (a dry run, or the state could not be read)."""
    rows = [
        {
            "account": str(r.get("account") or ""),
            "path": str(r.get("path") or ""),
            "why": str(r.get("why") or ""),
        }
        for r in _list(incident.get("OpenPaths"))
        if isinstance(r, Mapping)
    ]
    if isinstance(incident.get("OpenPaths"), list):
        return {"count": len(rows), "paths": rows}
    note = str(incident.get("OpenPathsError") or "") or (
        "dry run: nothing was changed" if incident.get("DryRun") else "not computed for this incident"
    )
    return {"count": None, "paths": [], "note": note}


def _actions(incident: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """One entry per planned action joined with its ledger row; rows without a plan item follow."""
    rows = {str(r.get("RowKey")): r for r in _list(incident.get("actions")) if isinstance(r, Mapping)}
    plan = [p for p in _list(incident.get("Plan")) if isinstance(p, Mapping)]
    planned = {str(p.get("key")) for p in plan}
    out = []
    for item in plan:
        row = rows.get(str(item.get("key")))
        out.append(_action(item, row, incident, key))
    extra = [r for k, r in rows.items() if k not in planned]
    for row in sorted(extra, key=lambda r: (_int(r.get("Seq")), str(r.get("RowKey")))):
        out.append(_action({}, row, incident, key))
    return out


def _action(
    item: Mapping[str, Any], row: Mapping[str, Any] | None, incident: Mapping[str, Any], key: str
) -> dict[str, Any]:
    row = row or {}
    kind = str(row.get("Kind") or item.get("kind") or "")
    target = str(row.get("Target") or item.get("target") or "")
    params = _dict(row.get("Params")) or _dict(item.get("params"))
    reversible = row.get("Reversible", item.get("reversible"))
    unrecorded = "dry-run" if incident.get("DryRun") else "not-started"
    status = str(row.get("Status") or "") if row else unrecorded
    before, after = _dict(row.get("Before")), _dict(row.get("After"))
    entry: dict[str, Any] = {
        "key": str(row.get("RowKey") or item.get("key") or ""),
        "kind": kind,
        "target": target,
        "target_name": _short(target, params, before, after),
        "params": params,
        "mode": str(row.get("Mode") or item.get("mode") or ""),
        "reason": str(row.get("Reason") or item.get("reason") or ""),
        "status": status,
        "reversible": bool(reversible) and kind not in IRREVERSIBLE,
        "before": before,
        "after": after,
        "error": str(row.get("Error") or ""),
        "attempts": row.get("Attempts"),
        "planned_at": str(row.get("PlannedAt") or ""),
        "acted_at": str(row.get("ActedAt") or after.get("actedAt") or ""),
        "verified_at": str(row.get("VerifiedAt") or ""),
        "finished_at": str(row.get("FinishedAt") or ""),
    }
    for field, name in (
        ("ApprovedBy", "approved_by"),
        ("ApprovedAt", "approved_at"),
        ("RestoredBy", "restored_by"),
        ("RestoredAt", "restored_at"),
        ("RestoreError", "restore_error"),
    ):
        if row.get(field):
            entry[name] = str(row[field])
    if "RestoredState" in row:
        entry["restored_state"] = _dict(row.get("RestoredState"))
    entry["undo"] = _undo(entry, key)
    return entry


def _undo(action: Mapping[str, Any], key: str) -> str:
    """What a human does to undo the action, or why it cannot be undone."""
    kind, status = action["kind"], action["status"]
    if kind in IRREVERSIBLE:
        text = IRREVERSIBLE[kind]
        return text if status in CHANGED else f"nothing changed yet ({status}); once executed it {text}"
    if status == "restored":
        by = f" by {action['restored_by']}" if action.get("restored_by") else ""
        at = f" at {action['restored_at']}" if action.get("restored_at") else ""
        return f"already restored{at}{by}"
    if not action["reversible"]:
        return "cannot be undone: the action is recorded as irreversible"
    how = (
        f"{RESTORE_WHAT.get(kind, 'restore the recorded before-state')}: "
        f"`python -m responders restore {key} --execute` or the playbook "
        f"`{json.dumps({'restore': key, 'execute': True})}`"
    )
    if status == "contained":
        return how
    if status == "already-contained":
        return "nothing to undo: the state was already contained and this incident changed nothing"
    if status == "failed":
        return (
            f"check the current state first (the action failed, it may not have changed it); to undo, {how}"
        )
    return f"nothing changed yet ({status}); once contained, {how}"


def _timeline(incident: Mapping[str, Any], actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chronological entries; entries whose time is missing or unreadable keep their order, last."""
    entries: list[tuple[str, str]] = []
    event = str(incident.get("EventType") or incident.get("SignalKind") or "signal")
    source = str(incident.get("Source") or "")
    signal = f"first signal: {event}" + (f" from {source}" if source else "")
    if incident.get("Operation"):
        signal += f" ({incident['Operation']})"
    if incident.get("Title"):
        signal += f": {incident['Title']}"
    entries.append((str(incident.get("OccurredAt") or ""), signal))

    if incident.get("Leak"):
        verdict = f"leak of synthetic data, severity {incident.get('Severity') or 'unknown'}"
    else:
        verdict = "not a leak of synthetic data"
    entries.append((str(incident.get("DetectedAt") or ""), f"detected by the responder: {verdict}"))

    planned = sorted((p for a in actions if (p := a["planned_at"]) and parse_time(p)), key=_sort_time)
    plan_time = planned[0] if planned else str(incident.get("DetectedAt") or "")
    waiting = sum(1 for a in actions if a["status"] == "pending-approval")
    what = f"plan: {len(actions)} action(s)"
    if waiting:
        what += f", {waiting} waiting for approval"
    if incident.get("DryRun"):
        what += " (dry-run: nothing executed)"
    entries.append((plan_time, what))

    for a in actions:
        label = f"{a['kind']} on {a['target_name']}"
        if a.get("approved_at"):
            entries.append((a["approved_at"], f"approved {label} by {a.get('approved_by') or 'unknown'}"))
        if a["acted_at"]:
            entries.append((a["acted_at"], f"acted: {label}: {a['status']}"))
        if a["verified_at"]:
            entries.append((a["verified_at"], f"verified: {label}: {a['status']}"))
        if not a["acted_at"] and not a["verified_at"] and a["status"] not in ("dry-run", "not-started"):
            when = a["finished_at"] or a["planned_at"]
            detail = f": {a['error']}" if a["error"] else ""
            entries.append((when, f"{label}: {a['status']}{detail}"))
        if a.get("restored_at"):
            by = f" by {a['restored_by']}" if a.get("restored_by") else ""
            entries.append((a["restored_at"], f"restored: {label}{by}"))

    comment = _dict(incident.get("Comment"))
    comment_time = next((str(comment[k]) for k in COMMENT_TIME_KEYS if comment.get(k)), "")
    if comment_time:
        status = f" ({incident['CommentStatus']})" if incident.get("CommentStatus") else ""
        entries.append((comment_time, f"Sentinel incident comment written{status}"))
    if incident.get("LastDeliveryAt"):
        entries.append(
            (str(incident["LastDeliveryAt"]), f"repeated delivery ({incident.get('Deliveries')} in all)")
        )
    entries.append(
        (str(incident.get("UpdatedAt") or ""), f"last update: status {incident.get('Status') or ''}")
    )

    timed = sorted((e for e in entries if parse_time(e[0])), key=lambda e: _sort_time(e[0]))
    untimed = [e for e in entries if not parse_time(e[0])]
    return [{"time": _norm(t), "what": w} for t, w in timed + untimed]


ROLES = "authorization.remove_role_assignments"


def _principal(action: Mapping[str, Any], observed: Mapping[str, Any]) -> str:
    return str(observed.get("principal") or action["params"].get("principal") or "")


def _roles(observed: Mapping[str, Any]) -> dict[str, Any]:
    """A principal's role assignments on an account: at or under it, and inherited from above."""
    return {
        "assignments": list(observed.get("assignments") or []),
        "inherited": list(observed.get("inherited") or []),
    }


def _state(incident: Mapping[str, Any], actions: list[dict[str, Any]]) -> dict[str, Any]:
    """Before: the recorded StateBefore (and principals' before-state); after: from action read-backs."""
    before: dict[str, Any] = {str(k): v for k, v in _dict(incident.get("StateBefore")).items()}
    after: dict[str, dict[str, Any]] = {}
    for a in actions:
        kind, target = a["kind"], a["target"]
        if kind == "identity.disable_service_principal" and a["before"] and target not in before:
            before[target] = _without_acted(a["before"])
        if kind == ROLES and a["before"]:
            held = dict(_dict(_dict(before.get(target)).get("roleAssignments")))
            held[_principal(a, a["before"])] = _roles(a["before"])
            before[target] = {**_dict(before.get(target)), "roleAssignments": held}
        observed = a.get("restored_state") if a["status"] == "restored" else a["after"]
        if not observed:
            continue
        observed = _without_acted(observed)
        state = after.setdefault(target, {})
        if kind == "storage.make_container_private":
            name = str(observed.get("container") or a["params"].get("container") or "")
            state.setdefault("containers", {})[name] = observed.get("publicAccess")
        elif kind == "storage.regenerate_key":
            name = str(observed.get("key") or a["params"].get("key_name") or "")
            state.setdefault("keyCreationTime", {})[name] = observed.get("keyCreationTime")
        elif kind == ROLES:
            state.setdefault("roleAssignments", {})[_principal(a, observed)] = _roles(observed)
        elif kind == "storage.revoke_user_delegation_keys":
            if a["status"] in CHANGED:
                state["userDelegationKeys"] = f"revoked at {a['acted_at'] or 'unknown time'}"
            else:
                state["userDelegationKeys"] = str(observed.get("revocation") or a["status"])
        else:
            state.update(observed)
    return {"before": before, "after": after}


def _evidence(value: Any) -> dict[str, Any]:
    evidence = _dict(value)
    return dict(evidence) if evidence else {"note": NO_EVIDENCE}


def _clock(incident: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """GDPR Art. 33(1): notify within 72 hours of becoming aware; the responder's detection is that moment."""
    base = {"article": "GDPR Art. 33(1)", "within_hours": 72}
    if incident.get("FoldedInto"):
        return {
            **base,
            "applies": False,
            "reason": f"the clock runs on {incident['FoldedInto']}, the same change",
        }
    if not incident.get("Leak"):
        return {**base, "applies": False, "reason": NOT_A_LEAK}
    aware = parse_time(incident.get("DetectedAt"))
    if aware is None:
        return {
            **base,
            "applies": True,
            "aware_at": None,
            "deadline": None,
            "hours_left": None,
            "expired": None,
            "note": GDPR_NOTE + " The detection time is not recorded: establish when awareness began.",
        }
    deadline = aware + NOTIFY_WITHIN
    note = GDPR_NOTE
    signal = parse_time(incident.get("OccurredAt"))
    if signal and signal < aware:
        note += (
            f" The signal itself dates from {_iso(signal)}: if the organisation was aware from then "
            "(an alert seen by a person), the deadline is correspondingly earlier."
        )
    return {
        **base,
        "applies": True,
        "aware_at": _iso(aware),
        "deadline": _iso(deadline),
        "hours_left": (deadline - now).total_seconds() / 3600,
        "expired": now > deadline,
        "note": note,
    }


def _remaining(pack: Mapping[str, Any]) -> list[str]:
    """What the responder could not finish: each entry is a decision or task for a named human role."""
    out: list[str] = []
    key = pack["incident"]
    if pack["folded_into"]:
        return [
            f"Folded into {pack['folded_into']}: the same change, contained there. Its evidence pack "
            "holds the decisions (notification, owners); nothing is left to do here."
        ]
    if pack["dry_run"] and pack["actions"]:
        out.append("Dry-run: nothing was changed. Execute the plan or contain the exposure by hand.")
    # each contained step's note for a human, from its catalogue entry: one per kind and target (the
    # two regenerated keys of an account are one note), in the order the steps ran
    notes: dict[tuple[str, str], dict[str, Any]] = {}
    for a in pack["actions"]:
        label = f"{a['kind']} on {a['target_name']}"
        status = a["status"]
        spec = CATALOGUE.get(a["kind"])
        if spec is not None and spec.remaining and status == "contained":
            note = notes.setdefault(
                (a["kind"], a["target_name"]), {"text": spec.remaining, "keys": [], "at": None}
            )
            note["keys"].append(str(a["params"].get("key_name") or "key"))
            note["at"] = note["at"] or parse_time(a["acted_at"])
        if status == "failed":
            error = f" ({a['error']})" if a["error"] else ""
            out.append(f"{label} failed{error}: decide whether to retry or contain by hand.")
        elif status == "pending-approval":
            out.append(
                f"{label} waits for approval: approve it (`python -m responders approve {key} "
                f"--action {a['key']} --execute`) or record why not."
            )
        elif status == "retrying":
            out.append(f"{label} is still being retried: confirm it completes.")
        elif status == "skipped":
            out.append(f"{label} was skipped: decide whether it needs manual containment.")
        if a.get("restore_error"):
            out.append(f"Restoring {label} failed ({a['restore_error']}): restore it by hand.")
    for (_, name), note in notes.items():
        until = f" (until {_iso(note['at'] + TOKEN_LIFETIME)})" if note["at"] else ""
        out.append(note["text"].format(target=name, until=until, keys=", ".join(note["keys"])))
    for finding in pack["findings"]:
        out.append(f"Finding not fixed automatically: {finding}")
    for skip in pack["skipped"]:
        out.append(f"Skipped {skip['what']} ({skip['why']}): decide whether it needs manual containment.")
    evidence = pack["evidence"]
    if "note" in evidence and len(evidence) == 1:
        out.append("No Log Analytics evidence was recorded: collect the access logs for the exposure window.")
    else:
        read = _dict(evidence.get("before"))
        ips = sorted({str(c.get("ip")) for c in _callers(read) if c.get("ip")})
        if ips:
            out.append(
                f"Data read before containment cannot be recalled: assess what {', '.join(ips)} obtained."
            )
        late = _dict(evidence.get("after"))
        if _callers(late) or _int(late.get("rows")):
            out.append(
                f"{_int(late.get('rows'))} request(s) were logged after containment: check whether they "
                "were refused or still succeeded (other credentials, cached data)."
            )
        for window in ("before", "after"):
            if _dict(evidence.get(window)).get("error"):
                out.append(f"The {window}-containment log query failed: collect those logs by hand.")
        if evidence.get("truncated"):
            out.append("The recorded evidence was truncated: query the full logs for the exposure window.")
    clock = pack["regulatory_clock"]
    if clock.get("applies") and clock.get("expired"):
        out.append(
            f"The 72-hour deadline passed at {clock['deadline']}: if notification is due, notify the "
            "supervisory authority now with the reasons for the delay (GDPR Art. 33(1)), and decide "
            "whether the people concerned must be told (Art. 34)."
        )
    elif clock.get("applies"):
        deadline = clock.get("deadline") or "72 hours after becoming aware"
        out.append(
            f"Decide on notifying the supervisory authority (GDPR Art. 33) before {deadline}, "
            "and whether the people concerned must be told (Art. 34)."
        )
    if pack["leak"]:
        if pack["owners"]:
            out.append(f"Inform the data owners: {', '.join(pack['owners'])}.")
        else:
            out.append("No data owner is recorded: find and inform the owner of the dataset.")
    if pack["status"] == "restore-failed":
        out.append("The last restore did not complete: check the state of every reversible action.")
    return out


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------
def render_json(pack: Mapping[str, Any]) -> str:
    """The pack as stable JSON (sorted keys), so two renderings of one record compare equal."""
    return json.dumps(pack, sort_keys=True, indent=2, ensure_ascii=False)


def render_markdown(pack: Mapping[str, Any]) -> str:
    """A report an auditor can read top to bottom: summary, clock, timeline, actions, evidence."""
    lines: list[str] = [f"# Evidence pack: {pack.get('incident', '')}", ""]
    if pack.get("title"):
        lines += [f"**{_text(pack['title'])}**", ""]
    lines += _summary_md(pack)
    lines += _clock_md(_dict(pack.get("regulatory_clock")))
    lines += ["## Timeline (UTC)", ""]
    lines += _table(["time", "what"], [[e.get("time"), e.get("what")] for e in _list(pack.get("timeline"))])
    lines += _actions_md(pack)
    lines += _state_md(_dict(pack.get("state")))
    lines += _evidence_md(_dict(pack.get("evidence")))
    lines += _open_paths_md(_dict(pack.get("paths_left_open")))
    lines += ["## Verdict reasons", "", *_bullets(pack.get("reasons"), "none recorded")]
    lines += ["## Findings", "", *_bullets(pack.get("findings"), "none")]
    lines += ["## Skipped targets", ""]
    skipped = _list(pack.get("skipped"))
    lines += (
        _table(["what", "why"], [[s.get("what"), s.get("why")] for s in skipped]) if skipped else ["none", ""]
    )
    lines += ["## What remains for humans", ""]
    remaining = _list(pack.get("remaining_for_humans"))
    lines += [f"- [ ] {_text(r)}" for r in remaining] or ["nothing recorded"]
    lines += ["", f"_Generated at {pack.get('generated_at', '')} from the audit ledger._", ""]
    return _scrub_text("\n".join(lines))


def _open_paths_md(open_paths: Mapping[str, Any]) -> list[str]:
    count = open_paths.get("count")
    if count is None:
        return ["## Paths left open: not known", "", _text(open_paths.get("note") or ""), ""]
    rows = [
        [str(p.get("account")).rsplit("/", 1)[-1], p.get("path"), p.get("why")]
        for p in _list(open_paths.get("paths"))
    ]
    return [
        f"## Paths left open: {count}",
        "",
        *(_table(["account", "path", "why"], rows) if rows else ["none", ""]),
    ]


def _summary_md(pack: Mapping[str, Any]) -> list[str]:
    confidence = pack.get("confidence")
    severity = str(pack.get("severity") or "")
    if isinstance(confidence, (int, float)):
        severity += f" (confidence {confidence:.2f})"
    caller = _dict(pack.get("caller"))
    rows = [
        ["Status", pack.get("status")],
        ["Folded into", pack.get("folded_into")],
        ["Leak", "yes" if pack.get("leak") else "no"],
        ["Severity", severity],
        ["Dry run", "yes (nothing was changed)" if pack.get("dry_run") else "no"],
        ["Owners", ", ".join(_list(pack.get("owners"))) or "none recorded"],
        ["Source", " / ".join(str(x) for x in (pack.get("source"), pack.get("event_type")) if x)],
        ["Event", pack.get("event")],
        ["Subject", pack.get("subject")],
        ["Caller", ", ".join(f"{k}={v}" for k, v in sorted(caller.items())) or "not recorded"],
        ["Occurred", pack.get("occurred_at")],
        ["Detected", pack.get("detected_at")],
        ["Deliveries", pack.get("deliveries")],
        ["Responder identity", pack.get("responder")],
    ]
    if pack.get("sentinel_incident"):
        rows.append(["Sentinel incident", pack["sentinel_incident"]])
    comment = _dict(pack.get("sentinel_comment"))
    if comment:
        rows.append(["Sentinel comment", ", ".join(f"{k}={v}" for k, v in sorted(comment.items()))])
    if pack.get("restored_by"):
        rows.append(["Restored by", pack["restored_by"]])
    if pack.get("requested_by"):
        rows.append(["Requested by", pack["requested_by"]])
    return ["## Summary", "", *_table(["field", "value"], [r for r in rows if r[1] not in (None, "")])]


def _clock_md(clock: Mapping[str, Any]) -> list[str]:
    lines = ["## Regulatory clock: GDPR Art. 33 (72 hours)", ""]
    if not clock.get("applies"):
        return [*lines, f"**Does not apply:** {_text(clock.get('reason', ''))}", ""]
    if clock.get("deadline") is None:
        lines.append("**Deadline unknown:** the detection time is not recorded.")
    elif clock.get("expired"):
        lines.append(
            f"**EXPIRED:** the deadline was {_readable(clock['deadline'])} ({clock['deadline']}), "
            f"{abs(float(clock['hours_left'])):.2f} hours ago."
        )
    else:
        lines.append(
            f"**Notify the supervisory authority by {_readable(clock['deadline'])} ({clock['deadline']}): "
            f"{float(clock['hours_left']):.2f} hours left.**"
        )
    if clock.get("aware_at"):
        lines.append(f"Aware since {clock['aware_at']} (detection by the responder).")
    return [*lines, "", f"> {_text(clock.get('note', ''))}", ""]


def _actions_md(pack: Mapping[str, Any]) -> list[str]:
    actions = _list(pack.get("actions"))
    lines = ["## Actions", ""]
    if not actions:
        return [*lines, "none planned", ""]
    rows = []
    for i, a in enumerate(actions, 1):
        target = str(a.get("target_name") or "")
        params = _dict(a.get("params"))
        if params:
            target += " (" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"
        status = str(a.get("status") or "")
        if a.get("error"):
            status += f": {a['error']}"
        rows.append(
            [
                i,
                a.get("kind"),
                target,
                a.get("reason"),
                status,
                _change(_dict(a.get("before")), _dict(a.get("after"))),
                a.get("undo"),
            ]
        )
    lines += _table(["#", "kind", "target", "why", "status", "before -> after", "undo"], rows)
    lines += ["Full targets:", ""]
    lines += [f"{i}. {_text(a.get('target', ''))}" for i, a in enumerate(actions, 1)]
    return [*lines, ""]


def _state_md(state: Mapping[str, Any]) -> list[str]:
    before, after = _dict(state.get("before")), _dict(state.get("after"))
    targets = list(dict.fromkeys([*before, *after]))
    if not targets:
        return []
    rows = [[t, _compact(before.get(t)), _compact(after.get(t))] for t in targets]
    caption = "Before: as read before acting. After: as read back by each action (only what it touched)."
    return ["## State before and after", "", caption, "", *_table(["target", "before", "after"], rows)]


def _evidence_md(evidence: Mapping[str, Any]) -> list[str]:
    lines = ["## Evidence (Log Analytics)", ""]
    if "note" in evidence and len(evidence) == 1:
        return [*lines, _text(evidence["note"]), ""]
    window = _dict(evidence.get("window"))
    if window:
        lines += [f"Window: {window.get('start', '?')} to {window.get('end', '?')}", ""]
    if evidence.get("truncated"):
        lines += ["**Truncated:** the recorded evidence does not hold every row.", ""]
    for name, label in (("before", "Before containment"), ("after", "After containment")):
        if name in evidence:
            lines += _window_md(label, _dict(evidence.get(name)))
    audit = [e for e in _list(evidence.get("audit")) if isinstance(e, Mapping)]
    if audit:
        lines += ["### Control-plane audit", ""]
        lines += _table(
            ["time", "operation", "result", "initiated by", "target"],
            [[e.get(k) for k in ("time", "operation", "result", "initiated_by", "target")] for e in audit],
        )
    known = {"window", "before", "after", "audit", "truncated"}
    for k in sorted(set(evidence) - known):
        lines += [f"- {_text(k)}: {_text(_compact(evidence[k]))}"]
    return [*lines, ""]


def _window_md(label: str, window: Mapping[str, Any]) -> list[str]:
    lines = [f"### {label}", ""]
    auth = _dict(window.get("auth_types"))
    facts = [
        f"rows: {window.get('rows', 'not recorded')}",
        f"bytes out: {window.get('bytes_out', 'not recorded')}",
        "auth types: " + (", ".join(f"{k} {v}" for k, v in sorted(auth.items())) or "none"),
    ]
    lines += [f"- {_text(f)}" for f in facts]
    if window.get("error"):
        lines.append(f"- query error: {_text(window['error'])}")
    lines.append("")
    callers = _callers(window)
    if callers:
        rows = [
            [
                c.get("ip"),
                c.get("auth"),
                ", ".join(f"{k} {v}" for k, v in sorted(_dict(c.get("operations")).items())),
                c.get("bytes_out"),
                c.get("first"),
                c.get("last"),
                ", ".join(str(x) for x in _list(c.get("accounts"))),
                c.get("object_id"),
            ]
            for c in callers
        ]
        lines += _table(
            ["caller IP", "auth", "operations", "bytes out", "first", "last", "accounts", "object id"], rows
        )
    else:
        lines += ["no callers recorded", ""]
    return lines


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    head = "| " + " | ".join(_cell(h) for h in header) + " |"
    rule = "| " + " | ".join("---" for _ in header) + " |"
    return [head, rule, *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows), ""]


def _cell(value: Any) -> str:
    """A table cell: escaped like any text (`|` included), so a value cannot break the table."""
    text = "" if value is None else (_compact(value) if isinstance(value, (dict, list, bool)) else str(value))
    return _text(text)


# Line breaks and other control characters: a value flattened to one line cannot start a line of its
# own (a forged heading, list item or "Actions: ... contained").
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Markdown's inline syntax: emphasis, code, links and images, tables, strike-through, escapes (an
# underscore inside a word, as in storage.regenerate_key, emphasises nothing and stays as it is).
_MD_SPECIAL = re.compile(r"([\\`*\[\]!|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
# What GitHub-flavoured Markdown links without any syntax; shown as code, where nothing links.
_BARE_LINK = re.compile(r"(?i)(?:\b[a-z][a-z0-9+.-]*:/{1,}|\bwww\.)\S*")


def _text(value: Any) -> str:
    """Any recorded value as inert Markdown on one line: no raw HTML, no links, no markup of its own
    (titles, entity and blob names and reasons come from alerts and must read as what they are)."""
    text = _BREAKS.sub(" ", str(value))
    out, last = [], 0
    for m in _BARE_LINK.finditer(text):
        out += [_escaped(text[last : m.start()]), _code(m.group())]
        last = m.end()
    out.append(_escaped(text[last:]))
    joined = "".join(out)
    # a value that may stand at the start of a line opens no heading, quote or list
    return "\\" + joined if joined[:1] in ("#", ">", "+", "-", "=") else joined


def _escaped(text: str) -> str:
    # `<` opens every tag and autolink (a lone `>` only quotes at a line start, handled in _text)
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _code(text: str) -> str:
    """A code span: its content is shown as is, so a link in it is only text (backticks are dropped
    from it, and `|` escaped as GitHub tables need even inside code)."""
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def _bullets(items: Any, empty: str) -> list[str]:
    values = _list(items)
    return [*(f"- {_text(v)}" for v in values), ""] if values else [empty, ""]


def _change(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """Only what changed (`key: old -> new`); unchanged values are shown once when nothing changed."""
    before, after = _without_acted(before), _without_acted(after)
    keys = list(dict.fromkeys([*before, *after]))
    changed = [
        f"{k}: {_compact(before.get(k))} -> {_compact(after.get(k))}"
        for k in keys
        if before.get(k) != after.get(k)
    ]
    if changed:
        return "; ".join(changed)
    if keys:
        return "unchanged: " + "; ".join(f"{k}: {_compact(after.get(k, before.get(k)))}" for k in keys)
    return "not recorded"


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)


def _callers(window: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in _list(window.get("callers")) if isinstance(c, Mapping)]


def _skipped(value: Any) -> list[dict[str, str]]:
    out = []
    for item in _list(value):
        if isinstance(item, Mapping):
            out.append({"what": str(item.get("what", "")), "why": str(item.get("why", ""))})
        elif isinstance(item, (list, tuple)):
            what = str(item[0]) if item else ""
            why = str(item[1]) if len(item) > 1 else ""
            out.append({"what": what, "why": why})
        else:
            out.append({"what": str(item), "why": ""})
    return out


def _comment(incident: Mapping[str, Any]) -> dict[str, Any]:
    comment = _dict(incident.get("Comment"))
    out: dict[str, Any] = {}
    if incident.get("CommentStatus"):
        out["status"] = str(incident["CommentStatus"])
    for k in ("id", "name", *COMMENT_TIME_KEYS):
        if comment.get(k):
            out[k] = str(comment[k])
    return out


def _short(
    target: str, params: Mapping[str, Any], before: Mapping[str, Any], after: Mapping[str, Any]
) -> str:
    """A name a human recognises: the account (and container), or the principal's display name."""
    if target.startswith("/"):
        name = target.rstrip("/").rsplit("/", 1)[-1]
        return f"{name}/{params['container']}" if params.get("container") else name
    display = after.get("displayName") or before.get("displayName")
    return f"{display} ({target})" if display else target


def _without_acted(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "actedAt"}


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _scrub_text(text: str) -> str:
    for pattern, replacement in SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _plain(value: Any) -> Any:
    """Only JSON types: a ledger value of another type becomes its text rather than breaking the pack."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, datetime):
        return _iso(value)
    return str(value)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _readable(value: str) -> str:
    moment = parse_time(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else value


def _norm(value: str) -> str:
    moment = parse_time(value)
    return _iso(moment) if moment else value


def _sort_time(value: str) -> datetime:
    return parse_time(value) or datetime.max.replace(tzinfo=UTC)
