"""The control review in the ledger: `record` folds a sweep's findings into it, `latest` reads it back,
and the renderers print it as Markdown, JSON or one self-contained HTML page."""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Iterable
from typing import Any

from responders.core.posture import AccountPosture, Assessment
from responders.core.review import CLOSED, Fold, Item, Run, fold, summary
from responders.core.timeutil import parse_time
from responders.ledger import Ledger

log = logging.getLogger("responders.review")
TREND_RUNS = 96  # a day of sweeps at the default 15 minutes


def _ledger(target: Any) -> Ledger:
    """A Ledger, or anything that holds one (the runtime)."""
    if isinstance(target, Ledger):
        return target
    ledger = getattr(target, "ledger", None)
    if isinstance(ledger, Ledger):
        return ledger
    raise TypeError("record needs the Ledger or the runtime that holds it")


def record(
    target: Any,
    found: Any,
    *,
    at: str = "",
    sweep: str = "",
    seen_accounts: Iterable[str] | None = None,
) -> Fold:
    """Write one sweep's review: its findings and exposures (`posture.assess` gives both, as an
    Assessment or a list of Findings) folded into the items so far. `seen_accounts` are the accounts
    the sweep read in full; None means the sweep was complete. Given the sweep's own result (a
    SweepResult: inventory, containers, incomplete), `record_sweep` assesses it first. Items only
    change here; the line for the sweep is written last."""
    if hasattr(found, "inventory") and hasattr(found, "containers"):
        return record_sweep(target, found)
    if not at:
        raise ValueError("record needs the time of the sweep (at)")
    ledger = _ledger(target)
    assessment = found if isinstance(found, Assessment) else Assessment(tuple(found))
    previous = [Item.from_dict(raw) for raw in ledger.review_items() if raw.get("key")]
    folded = fold(
        previous,
        assessment.findings,
        at=at,
        sweep=sweep,
        seen_accounts=None if seen_accounts is None else list(seen_accounts),
        unevaluated=assessment.unevaluated,
    )
    moment = parse_time(at)
    epoch_ms = int(moment.timestamp() * 1000) if moment is not None else 0
    ledger.save_review([i.as_dict() for i in folded.changed], folded.run.as_dict(), epoch_ms)
    return folded


def sweep_postures(result: Any) -> list[AccountPosture]:
    """The accounts of a sweep's inventory as the posture checks take them: the Resource Graph row's
    properties (projected flat, or under `properties`), its tags, the containers the sweep listed
    (None for an account whose containers it did not list)."""
    out = []
    for row in result.inventory:
        raw = dict(getattr(row, "raw", {}) or {})
        properties = raw.get("properties") if isinstance(raw.get("properties"), dict) else raw
        out.append(
            AccountPosture(
                id=row.id,
                tags=dict(row.tags),
                properties=properties,
                containers=result.containers.get(row.id),
            )
        )
    return out


def record_sweep(rt: Any, result: Any, *, read_diagnostics: bool | None = None) -> Fold:
    """The review of one sweep (`responders.sweep.run_sweep`'s result): each synthetic-data account of
    its inventory assessed and folded in. With an evidence workspace configured, the blob service's
    diagnostic settings of each synthetic-data account are read once per
    RESPONDER_REVIEW_DIAGNOSTICS_HOURS, spread over the sweeps; an account not read in this sweep (or
    whose read failed) keeps what the review knew of it. An incomplete sweep closes only what it read
    in full."""
    from concurrent.futures import ThreadPoolExecutor

    from responders.core.posture import assess, synthetic_accounts
    from responders.core.review import read_due
    from responders.execute import describe
    from responders.posture import blob_diagnostic_settings, role_assignments

    policy = rt.settings.policy
    workspace = rt.settings.evidence_workspace_resource_id
    read = rt.settings.review_diagnostics if read_diagnostics is None else read_diagnostics
    at = str(getattr(result, "finished_at", "") or result.started_at)
    postures = sweep_postures(result)
    if workspace and read:
        synthetic = synthetic_accounts(postures, policy)
        last = _ledger(rt).review_runs(1)
        previous_at = str(last[0].get("at", "")) if last else ""
        period = rt.settings.review_diagnostics_hours * 3600

        def diagnostics(posture: AccountPosture) -> AccountPosture:
            if posture.id not in synthetic or not read_due(posture.id, previous_at, at, period):
                return posture
            found: dict[str, Any] = {}
            try:
                found["diagnostics"] = tuple(blob_diagnostic_settings(rt.clients, posture.id))
            except Exception as exc:
                log.warning("diagnostic settings of %s not read: %s", posture.id, describe(exc))
            try:
                found["role_assignments"] = tuple(role_assignments(rt.clients, posture.id))
            except Exception as exc:
                log.warning("role assignments of %s not read: %s", posture.id, describe(exc))
            return AccountPosture(**{**posture.__dict__, **found})

        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="review") as pool:
            postures = list(pool.map(diagnostics, postures))
    finished = _finished(rt, postures, policy) if workspace and read else None
    assessment = assess(postures, policy, evidence_workspace=workspace, finished_principals=finished)
    complete = not getattr(result, "incomplete", None)
    listed = {k.lower() for k in result.containers}
    candidates = {c.lower() for c in getattr(result, "candidates", [])}
    read_in_full = [p.id for p in postures if p.id.lower() in listed or p.id.lower() not in candidates]
    seen = None if complete else read_in_full
    return record(rt, assessment, at=at, sweep=str(getattr(result, "run_id", "")), seen_accounts=seen)


MAX_PRINCIPALS = 200  # Graph reads of principal tags per sweep; the rest wait for a later one


def _finished(rt: Any, postures: list[AccountPosture], policy: Any) -> dict[str, str]:
    """The principals holding a data role on the accounts read this sweep whose service principal tags
    say their job is done (one Graph read each, at most MAX_PRINCIPALS). A principal not read leaves
    the check of its accounts unmade: their role assignments are taken back out."""
    from responders.core.posture import DATA_ROLES
    from responders.execute import describe
    from responders.posture import finished_principals, principal_tags

    holders: dict[str, set[str]] = {}
    for posture in postures:
        for assignment in posture.role_assignments or ():
            role = str(assignment.get("roleDefinitionId", "")).rsplit("/", 1)[-1].lower()
            if role in DATA_ROLES:
                holders.setdefault(str(assignment.get("principalId", "")).lower(), set()).add(posture.id)
    found: list[dict[str, Any]] = []
    unread: set[str] = set()
    for n, principal in enumerate(sorted(holders)):
        try:
            if n >= MAX_PRINCIPALS:
                raise RuntimeError(f"over {MAX_PRINCIPALS} principals this sweep")
            tags = principal_tags(rt.clients, principal)
        except Exception as exc:
            log.warning("tags of principal %s not read: %s", principal, describe(exc))
            unread |= holders[principal]
            continue
        if tags is not None:
            found.append({"id": principal, "tags": tags})
    for i, posture in enumerate(postures):
        if posture.id in unread:
            postures[i] = AccountPosture(**{**posture.__dict__, "role_assignments": None})
    return finished_principals(found, policy.finished_principal_tags)


def latest(target: Any, runs: int = TREND_RUNS) -> dict[str, Any]:
    """The review as of the latest sweep, with the trend over the last `runs` sweeps."""
    ledger = _ledger(target)
    items = [Item.from_dict(raw) for raw in ledger.review_items() if raw.get("key")]
    lines = [
        Run(
            at=str(r.get("at", "")),
            sweep=str(r.get("sweep", "")),
            complete=bool(r.get("complete")),
            open=int(r.get("open") or 0),
            opened=int(r.get("opened") or 0),
            closed=int(r.get("closed") or 0),
            open_exposures=int(r.get("open_exposures") or 0),
        )
        for r in ledger.review_runs(runs)
    ]
    return summary(items, lines)


# --- rendering --------------------------------------------------------------------------------------


def render_json(review: dict[str, Any]) -> str:
    return json.dumps(review, indent=2, sort_keys=True)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes / 60
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def _md(value: Any) -> str:
    """A table cell: no pipe, newline or markup that would break the table or render as HTML."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    return html.escape(text, quote=False).replace("|", "\\|")


def render_markdown(review: dict[str, Any]) -> str:
    latest_run = review.get("latest") or {}
    lines = [
        "# Control review",
        "",
        f"As of the sweep at {_md(review.get('as_of') or 'never')}"
        + ("" if latest_run.get("complete", True) else " (incomplete: items it could not see stay open)"),
        "",
        f"- open: {review['open']} (by severity: "
        + (", ".join(f"{_md(k)} {v}" for k, v in sorted(review["open_by_severity"].items())) or "none")
        + ")",
        f"- closed: {review['closed']}, median time to close: "
        + (_duration(review["median_seconds_to_close"]) or "n/a"),
        "- open by owner: "
        + (", ".join(f"{_md(k)} {v}" for k, v in review["open_by_owner"].items()) or "none"),
        "",
        "| # | risk | severity | kind | resource | owner | status | first seen | last seen | closed "
        "| time to close |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, item in enumerate(review["items"], 1):
        cells = [
            n,
            item["risk"],
            item["severity"],
            item["kind"],
            item["resource"],
            item["owner"],
            item["status"],
            item["first_seen"],
            item["last_seen"],
            item["closed_at"],
            _duration(item["seconds_to_close"]),
        ]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    lines += ["", "## Trend", "", "| sweep at | open | opened | closed | open exposures | complete |"]
    lines.append("|---|---|---|---|---|---|")
    for run in review["trend"]:
        cells = [run["at"], run["open"], run["opened"], run["closed"], run["open_exposures"], run["complete"]]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1b1b1b;max-width:80rem}
h1{font-size:1.5rem;margin-bottom:.25rem}h2{font-size:1.15rem;margin-top:2rem}
.meta{color:#555}.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;min-width:9rem}
.card b{display:block;font-size:1.4rem}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{border-bottom:1px solid #e3e3e3;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.r{text-align:right}.closed td{color:#777}
.sev-critical{color:#8b0000;font-weight:600}.sev-high{color:#b23b00;font-weight:600}
.sev-medium{color:#8a6d00}.sev-low{color:#35622b}.res{word-break:break-all}
svg text{font-size:11px;fill:#444}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _chart(trend: list[dict[str, Any]]) -> str:
    """Open items over time as an inline SVG polyline (no script, no external reference)."""
    width, height, pad = 720, 200, 36
    if not trend:
        return '<p class="meta">No sweep has written a review yet.</p>'
    peak = max(max(int(r["open"]) for r in trend), 1)
    n = len(trend)

    def x(i: int) -> float:
        return pad + (width - 2 * pad) * (i / (n - 1) if n > 1 else 0.5)

    def y(v: int) -> float:
        return height - pad - (height - 2 * pad) * (v / peak)

    points = " ".join(f"{x(i):.1f},{y(int(r['open'])):.1f}" for i, r in enumerate(trend))
    exposures = " ".join(f"{x(i):.1f},{y(int(r['open_exposures'])):.1f}" for i, r in enumerate(trend))
    dots = "".join(
        f'<circle cx="{x(i):.1f}" cy="{y(int(r["open"])):.1f}" r="3" fill="#1f5fa8">'
        f"<title>{_e(r['at'])}: {_e(r['open'])} open</title></circle>"
        for i, r in enumerate(trend)
    )
    return (
        f'<svg role="img" aria-label="open findings over time" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>'
        f'<text x="4" y="{pad + 4}">{peak}</text><text x="4" y="{height - pad + 4}">0</text>'
        f'<text x="{pad}" y="{height - 8}">{_e(trend[0]["at"])}</text>'
        f'<text x="{width - pad}" y="{height - 8}" text-anchor="end">{_e(trend[-1]["at"])}</text>'
        f'<polyline fill="none" stroke="#1f5fa8" stroke-width="2" points="{points}"/>'
        f'<polyline fill="none" stroke="#b23b00" stroke-width="1.5" stroke-dasharray="4 3" '
        f'points="{exposures}"/>{dots}</svg>'
        '<p class="meta">Solid: open findings and exposures. Dashed: open exposures.</p>'
    )


def render_html(review: dict[str, Any]) -> str:
    """One page with everything inline (CSS, SVG): no script, no link, no external address; every
    value escaped."""
    latest_run = review.get("latest") or {}
    rows = []
    for n, item in enumerate(review["items"], 1):
        css = "closed" if item["status"] == CLOSED else ""
        rows.append(
            f'<tr class="{css}"><td class="r">{n}</td><td class="r">{_e(item["risk"])}</td>'
            f'<td class="sev-{_e(item["severity"])}">{_e(item["severity"])}</td>'
            f"<td>{_e(item['kind'])}{' (exposure)' if item['exposure'] else ''}</td>"
            f'<td class="res">{_e(item["resource"])}<br><span class="meta">{_e(item["summary"])}</span></td>'
            f"<td>{_e(item['owner'])}</td><td>{_e(item['status'])}</td><td>{_e(item['first_seen'])}</td>"
            f"<td>{_e(item['last_seen'])}</td><td>{_e(item['closed_at'])}</td>"
            f"<td>{_e(_duration(item['seconds_to_close']))}</td></tr>"
        )
    owners = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in review["open_by_owner"].items())
    severity = ", ".join(f"{_e(k)} {_e(v)}" for k, v in sorted(review["open_by_severity"].items()))
    incomplete = (
        ""
        if latest_run.get("complete", True)
        else " <b>Incomplete sweep:</b> items it could not see stay open as they were."
    )
    median = _duration(review["median_seconds_to_close"]) or "n/a"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Control review</title><style>{CSS}</style></head><body>"
        "<h1>Control review: synthetic-data storage</h1>"
        f'<p class="meta">As of the sweep at {_e(review.get("as_of") or "never")}.{incomplete} '
        "Ranked by risk: severity of the data's provenance times how open the resource is.</p>"
        '<div class="cards">'
        f'<div class="card"><b>{_e(review["open"])}</b>open</div>'
        f'<div class="card"><b>{_e(review["closed"])}</b>closed</div>'
        f'<div class="card"><b>{_e(median)}</b>median time to close</div>'
        f'<div class="card"><b>{_e(latest_run.get("open_exposures", 0))}</b>open exposures</div></div>'
        f"<p>Open by severity: {severity or 'none'}</p>"
        f"<h2>Open findings over time</h2>{_chart(review['trend'])}"
        "<h2>Findings and exposures</h2><table><thead><tr><th>#</th><th>risk</th><th>severity</th>"
        "<th>kind</th><th>resource</th><th>owner</th><th>status</th><th>first seen</th><th>last seen</th>"
        "<th>closed</th><th>time to close</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + f"<h2>Open by owner</h2><ul>{owners or '<li>none</li>'}</ul>"
        + "</body></html>\n"
    )
