"""The control review: what each sweep found, folded into items that open, stay open and close. Pure.

An item is one finding key (kind and resource). It opens the first time a sweep finds it, its last
seen moves with every sweep that finds it again, and it closes when a later sweep that could see it
no longer finds it, with the time it took. A sweep that saw only part of the estate (an incomplete
Resource Graph answer, an account not read, a check not made) closes nothing it could not see: silence
is never taken for a fix. Found again after closing, an item reopens (its first seen is kept).

A complete sweep sees every open item it does not close, except those it was blind to (marked so),
so an item it finds unchanged is not written again: its last seen is that sweep's time (`summary`
derives it). Writing every open item on every sweep would rewrite the whole review every 15 minutes
(8,000 rows for 4,000 accounts with two findings each). An incomplete sweep writes what it saw.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from responders.core.posture import Finding
from responders.core.timeutil import parse_time

OPEN, CLOSED = "open", "closed"


@dataclass(frozen=True)
class Item:
    """One finding across sweeps."""

    key: str
    kind: str
    resource: str
    account: str
    severity: str
    owner: str
    summary: str
    openness: int
    risk: int
    exposure: bool
    status: str
    first_seen: str
    opened_at: str
    last_seen: str
    closed_at: str = ""
    seconds_to_close: float | None = None
    reopened: int = 0
    blind: bool = False  # open, but the latest sweep could not make its check: last seen is as stored

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Item:
        seconds = raw.get("seconds_to_close")
        return cls(
            key=str(raw["key"]),
            kind=str(raw.get("kind", "")),
            resource=str(raw.get("resource", "")),
            account=str(raw.get("account", "")),
            severity=str(raw.get("severity", "none")),
            owner=str(raw.get("owner", "unassigned")),
            summary=str(raw.get("summary", "")),
            openness=int(raw.get("openness") or 0),
            risk=int(raw.get("risk") or 0),
            exposure=bool(raw.get("exposure")),
            status=str(raw.get("status", OPEN)),
            first_seen=str(raw.get("first_seen", "")),
            opened_at=str(raw.get("opened_at", "") or raw.get("first_seen", "")),
            last_seen=str(raw.get("last_seen", "")),
            closed_at=str(raw.get("closed_at", "") or ""),
            seconds_to_close=None if seconds in (None, "") else float(seconds),
            reopened=int(raw.get("reopened") or 0),
            blind=bool(raw.get("blind")),
        )


@dataclass(frozen=True)
class Run:
    """One sweep's line in the trend."""

    at: str
    sweep: str
    complete: bool
    open: int
    opened: int
    closed: int
    open_exposures: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Fold:
    """The items after one sweep (every one, open and closed, ranked) and the items that changed."""

    items: tuple[Item, ...]
    changed: tuple[Item, ...]
    run: Run


def rank(items: Iterable[Item]) -> list[Item]:
    """Open before closed, then the highest risk, the worst severity, the oldest, by key."""
    from responders.core.classify import SEVERITIES

    return sorted(
        items,
        key=lambda i: (i.status != OPEN, -i.risk, -SEVERITIES.index(i.severity), i.opened_at, i.key),
    )


def _seconds(start: str, end: str) -> float | None:
    a, b = parse_time(start), parse_time(end)
    return None if a is None or b is None else max((b - a).total_seconds(), 0.0)


def fold(
    previous: Iterable[Item],
    findings: Iterable[Finding],
    *,
    at: str,
    sweep: str = "",
    seen_accounts: Iterable[str] | None = None,
    unevaluated: Iterable[tuple[str, str]] = (),
) -> Fold:
    """Fold one sweep's findings into the items so far. `seen_accounts` lists the accounts the sweep
    read in full (None: all of them, a complete sweep); an open item of an account it did not read,
    or of a check it could not make (`unevaluated`: (kind, account)), stays open as it was."""
    before = {i.key: i for i in previous}
    seen = None if seen_accounts is None else {a.lower() for a in seen_accounts}
    blind = {(k, a.lower()) for k, a in unevaluated}
    now: dict[str, Item] = dict(before)
    changed: list[Item] = []
    opened = closed = 0
    found: set[str] = set()
    for finding in findings:
        key = finding.key
        if key in found:
            continue
        found.add(key)
        old = before.get(key)
        fresh = {
            "kind": finding.kind,
            "resource": finding.resource,
            "account": finding.account,
            "severity": finding.severity,
            "owner": finding.owner,
            "summary": finding.summary,
            "openness": finding.openness,
            "risk": finding.risk,
            "exposure": finding.exposure,
            "last_seen": at,
            "blind": False,
        }
        if old is None:
            item = Item(key=key, status=OPEN, first_seen=at, opened_at=at, **fresh)
            opened += 1
        elif old.status == CLOSED:
            item = replace(
                old, status=OPEN, opened_at=at, closed_at="", seconds_to_close=None, reopened=old.reopened + 1
            )
            item = replace(item, **fresh)
            opened += 1
        else:
            item = replace(old, **fresh)
            if seen is None and replace(old, last_seen=at) == item:
                now[key] = item  # seen again, unchanged: the sweep's line says when (see `summary`)
                continue
        now[key] = item
        changed.append(item)
    for key, old in before.items():
        if key in found or old.status != OPEN:
            continue
        if seen is not None and old.account.lower() not in seen:
            continue
        if (old.kind, old.account.lower()) in blind:
            if not old.blind:
                now[key] = replace(old, blind=True)
                changed.append(now[key])
            continue
        item = replace(old, status=CLOSED, closed_at=at, seconds_to_close=_seconds(old.opened_at, at))
        now[key] = item
        changed.append(item)
        closed += 1
    items = tuple(rank(now.values()))
    still = [i for i in items if i.status == OPEN]
    run = Run(
        at=at,
        sweep=sweep,
        complete=seen is None,
        open=len(still),
        opened=opened,
        closed=closed,
        open_exposures=sum(1 for i in still if i.exposure),
    )
    return Fold(items, tuple(changed), run)


def read_due(resource: str, previous_at: str, at: str, period_seconds: int) -> bool:
    """Whether a slow-changing setting of `resource` (its diagnostic settings) is read again in the
    sweep at `at`, the last one having run at `previous_at`: once per period, each resource at its own
    offset in it, so the reads spread over the period instead of all landing on one sweep. With no
    earlier sweep, the sweep is taken to follow one 15 minutes before."""
    import hashlib

    if period_seconds <= 0:
        return True
    now = parse_time(at)
    if now is None:
        return True
    before = parse_time(previous_at)
    now_s = now.timestamp()
    before_s = before.timestamp() if before is not None and before < now else now_s - 900
    offset = int(hashlib.sha256(resource.lower().encode()).hexdigest()[:8], 16) % period_seconds
    return (now_s + offset) // period_seconds != (before_s + offset) // period_seconds


def summary(items: Iterable[Item], runs: Iterable[Run]) -> dict[str, Any]:
    """The review as data: ranked items, counts by severity and owner, closure times, the trend."""
    trend = sorted(runs, key=lambda r: r.at)
    complete = [r.at for r in trend if r.complete]
    if complete:  # a complete sweep saw every open item it was not blind to (see the module's note)
        items = [
            replace(i, last_seen=max(i.last_seen, complete[-1]))
            if i.status == OPEN and not i.blind and i.last_seen
            else i
            for i in items
        ]
    ranked = rank(items)
    open_items = [i for i in ranked if i.status == OPEN]
    closed_items = [i for i in ranked if i.status == CLOSED]
    by_owner: dict[str, int] = {}
    by_severity: dict[str, int] = {}
    for item in open_items:
        by_owner[item.owner] = by_owner.get(item.owner, 0) + 1
        by_severity[item.severity] = by_severity.get(item.severity, 0) + 1
    times = sorted(i.seconds_to_close for i in closed_items if i.seconds_to_close is not None)
    return {
        "as_of": trend[-1].at if trend else "",
        "latest": trend[-1].as_dict() if trend else None,
        "open": len(open_items),
        "closed": len(closed_items),
        "open_by_severity": by_severity,
        "open_by_owner": dict(sorted(by_owner.items(), key=lambda kv: (-kv[1], kv[0]))),
        "median_seconds_to_close": times[len(times) // 2] if times else None,
        "items": [i.as_dict() for i in ranked],
        "trend": [r.as_dict() for r in trend],
    }
