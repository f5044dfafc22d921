"""The control review: ranked by risk, each item with its owner, first and last seen, closed when a
later sweep no longer finds it (with the time to close), written to the ledger by each sweep and
printed as Markdown, JSON or one self-contained HTML page."""

from __future__ import annotations

import copy
import itertools
import json
from html.parser import HTMLParser
from typing import Any

import pytest

from responders import review
from responders.core.policy import Policy
from responders.core.posture import Assessment, Finding, assess
from responders.core.review import CLOSED, OPEN, fold, summary
from responders.posture import read_posture
from tests.harness import PREFIX, TENANT, Harness

T0, T1, T2, T3 = (
    "2026-12-01T08:00:00.0000000Z",
    "2026-12-01T10:00:00.0000000Z",
    "2026-12-01T12:30:00.0000000Z",
    "2026-12-01T13:00:00.0000000Z",
)
ACCOUNT_A, ACCOUNT_B = PREFIX + "sta", PREFIX + "stb"


def finding(
    kind: str, account: str, severity: str = "medium", openness: int = 2, owner: str = "o"
) -> Finding:
    return Finding(kind, account, account, severity, owner, f"{kind} on {account}", openness)


# --- pure: fold and rank ----------------------------------------------------------------------------


def test_an_item_opens_stays_open_closes_with_its_time_and_reopens() -> None:
    a, b = finding("shared-key-access", ACCOUNT_A), finding("no-blob-logs", ACCOUNT_B)
    first = fold([], [a, b], at=T0)
    assert {i.key: i.status for i in first.items} == {a.key: OPEN, b.key: OPEN}
    assert (first.run.opened, first.run.closed, first.run.open) == (2, 0, 2)

    second = fold(first.items, [a], at=T1)
    items = {i.key: i for i in second.items}
    assert items[a.key].status == OPEN
    assert (items[a.key].first_seen, items[a.key].last_seen) == (T0, T1)
    assert items[b.key].status == CLOSED
    assert (items[b.key].closed_at, items[b.key].seconds_to_close) == (T1, 7200.0)
    assert (second.run.opened, second.run.closed, second.run.open) == (0, 1, 1)

    third = fold(second.items, [a, b], at=T2)
    again = {i.key: i for i in third.items}[b.key]
    assert (again.status, again.reopened, again.first_seen, again.opened_at) == (OPEN, 1, T0, T2)
    assert again.closed_at == ""
    assert again.seconds_to_close is None
    closed_again = {i.key: i for i in fold(third.items, [a], at=T3).items}[b.key]
    assert closed_again.seconds_to_close == 1800.0, "time to close counts from the reopening"


def test_a_sweep_that_did_not_see_an_account_or_make_a_check_closes_nothing_there() -> None:
    a, b = finding("shared-key-access", ACCOUNT_A), finding("no-blob-logs", ACCOUNT_B)
    start = fold([], [a, b], at=T0).items
    partial = fold(
        start, [], at=T1, seen_accounts=[ACCOUNT_B.upper()], unevaluated=[("no-blob-logs", ACCOUNT_B)]
    )
    assert {i.key: i.status for i in partial.items} == {a.key: OPEN, b.key: OPEN}
    assert partial.run.complete is False
    assert {i.key: i for i in partial.items}[a.key].last_seen == T0, "not seen again, not refreshed"
    assert [(i.key, i.blind, i.last_seen) for i in partial.changed] == [(b.key, True, T0)]


def test_a_complete_sweep_writes_only_what_changed_and_the_review_says_when_each_was_last_seen() -> None:
    a, b = finding("shared-key-access", ACCOUNT_A), finding("no-blob-logs", ACCOUNT_B)
    start = fold([], [a, b], at=T0)
    stored = start.changed  # what the ledger holds after the first sweep
    again = fold(stored, [a, b], at=T1)
    assert again.changed == (), "a sweep that finds the same findings rewrites none of them"
    lines = [start.run, again.run]
    shown = {i["key"]: i["last_seen"] for i in summary(stored, lines)["items"]}
    assert shown == {a.key: T1, b.key: T1}, "last seen is the latest complete sweep's time"
    # a complete sweep blind to b's check: b keeps the time it was last really seen
    blind = fold(stored, [a], at=T2, unevaluated=[("no-blob-logs", ACCOUNT_B)])
    assert [(i.key, i.blind) for i in blind.changed] == [(b.key, True)]
    stored = [*(i for i in stored if i.key != b.key), *blind.changed]
    shown = {i["key"]: i["last_seen"] for i in summary(stored, [*lines, blind.run])["items"]}
    assert shown == {a.key: T2, b.key: T0}
    # seen again: no longer blind, written once
    back = fold(stored, [a, b], at=T3)
    assert [(i.key, i.blind, i.last_seen) for i in back.changed] == [(b.key, False, T3)]


def test_items_rank_open_first_then_by_risk() -> None:
    low = finding("no-blob-logs", ACCOUNT_A, "medium", 1)
    high = finding("public-container", ACCOUNT_A + "/blobServices/default/containers/c", "critical", 4)
    mid = finding("shared-key-access", ACCOUNT_B, "high", 2)
    gone = finding("public-network-no-rules", ACCOUNT_B, "critical", 3)
    items = fold(fold([], [low, high, mid, gone], at=T0).items, [low, high, mid], at=T1).items
    assert [i.kind for i in items] == ["public-container", "shared-key-access", "no-blob-logs", gone.kind]
    assert items[-1].status == CLOSED
    assert high.risk == 16
    assert mid.risk == 6
    assert low.risk == 2


# --- written by each sweep, read back from the ledger ------------------------------------------------

HOSTILE = '<script>alert("x")</script><img src="https://evil.example/x.png">'


def hostile_tenant() -> dict[str, Any]:
    tenant = copy.deepcopy(TENANT)
    for account in tenant["storageAccounts"]:
        if account["id"].endswith("/stsynthpublic01"):
            account["tags"]["owner"] = HOSTILE
    return tenant


def sweep(h: Harness, at: str, policy: Policy) -> Any:
    """What a sweep hands the review: the findings of every account of the tenant, read with the real
    clients (the inventory here is the tenant's account list)."""
    accounts = [
        read_posture(h.rt.clients, a["id"], diagnostics=False)
        for a in h.sim.state.snapshot()["accounts"].values()
    ]
    found = assess(accounts, policy)
    return review.record(h.rt, found, at=at, sweep=f"sweep-{at}")


def test_each_sweep_writes_the_review_and_a_fix_closes_its_finding(make_harness) -> None:
    h = make_harness()
    policy = h.rt.settings.policy
    first = sweep(h, T0, policy)
    keys = {i.key: i for i in first.items}
    public = keys[
        f"public-container|{PREFIX.lower()}stsynthpublic01/blobservices/default/containers/patients-synth"
    ]
    assert first.items[0].exposure
    assert first.items[0].risk == max(i.risk for i in first.items)
    assert public.owner == "ml-platform@contoso.example"
    shared = f"shared-key-access|{PREFIX.lower()}stsynthpublic01"
    assert keys[shared].status == OPEN

    # the owner turns shared-key access off (a real PATCH through the SDK), the next sweep sees it
    storage = h.rt.clients.storage(PREFIX.split("/")[2])
    from azure.mgmt.storage.models import StorageAccountUpdateParameters

    storage.storage_accounts.update(
        "rg-synth-prod", "stsynthpublic01", StorageAccountUpdateParameters(allow_shared_key_access=False)
    )
    second = sweep(h, T1, policy)
    latest = review.latest(h.rt)
    item = next(i for i in latest["items"] if i["key"] == shared)
    assert (item["status"], item["closed_at"], item["seconds_to_close"]) == (CLOSED, T1, 7200.0)
    assert latest["closed"] >= 1
    assert [r["at"] for r in latest["trend"]] == [T0, T1]
    assert latest["trend"][-1] == second.run.as_dict()
    assert latest["open"] == second.run.open == first.run.open - second.run.closed
    assert latest["median_seconds_to_close"] == 7200.0

    third = sweep(h, T2, policy)
    assert third.changed == (), "nothing changed, so nothing is rewritten"
    shown = review.latest(h.rt)["items"]
    assert all(i["last_seen"] == T2 for i in shown if i["status"] == OPEN), "seen by the complete sweep"
    assert [r["at"] for r in review.latest(h.rt, runs=2)["trend"]] == [T1, T2], "the newest sweeps"


def test_record_takes_the_assessment_or_a_plain_list_and_refuses_other_targets(make_harness) -> None:
    h = make_harness()
    folded = review.record(h.rt.ledger, [finding("shared-key-access", ACCOUNT_A)], at=T0)
    assert folded.run.open == 1
    assert review.record(h.rt, Assessment(), at=T1).run.closed == 1
    with pytest.raises(TypeError):
        review.record(object(), [], at=T2)


class Page(HTMLParser):
    """Every tag, attribute and text node of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.style: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        (self.style if self._in_style else self.text).append(data)


def test_the_review_prints_as_markdown_json_and_one_self_contained_html_page(make_harness, capsys) -> None:
    from responders.cli import main

    h = make_harness(tenant=hostile_tenant())
    sweep(h, T0, h.rt.settings.policy)
    sweep(h, T1, h.rt.settings.policy)

    assert main(["review", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["as_of"] == T1
    assert len(data["trend"]) == 2
    assert HOSTILE in {i["owner"] for i in data["items"]}

    assert main(["review", "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("# Control review")
    assert "<script>" not in md
    assert "&lt;script&gt;" in md
    table = [line for line in md.splitlines() if line.startswith("| 1 |")]
    assert len(table) == 1
    assert table[0].count(" | ") == 10, "eleven cells: nothing broke the table"

    assert main(["review", "--format", "html"]) == 0
    page_text = capsys.readouterr().out
    page = Page()
    page.feed(page_text)
    page.close()
    assert page.tags[0] == "html"
    assert "svg" in page.tags
    assert "polyline" in page.tags
    assert "table" in page.tags
    assert not {"script", "link", "img", "iframe", "object", "embed", "base", "form"} & set(page.tags)
    assert not [a for a, _ in page.attrs if a in ("src", "href", "srcset", "action", "xlink:href")]
    assert not [a for a, _ in page.attrs if a.startswith("on")]
    assert "url(" not in "".join(page.style)
    assert "@import" not in "".join(page.style)
    assert HOSTILE in "".join(page.text), "the hostile tag value is shown, as text"
    assert "<script>" not in page_text
    assert "&lt;script&gt;" in page_text


# --- the sweep's result, as run_sweep hands it over ----------------------------------------------


def sweep_result(h: Harness, at: str, skip: tuple[str, ...] = ()) -> Any:
    """A result shaped like responders.sweep.run_sweep's SweepResult, built from what the simulated
    tenant answers: each account as a Resource Graph row (its properties projected flat), the
    containers of each, and an `incomplete` reason for the accounts left out (a page not answered)."""
    from types import SimpleNamespace

    rows, containers = [], {}
    for account in h.sim.state.snapshot()["accounts"].values():
        if account["name"] in skip:
            continue
        posture = read_posture(h.rt.clients, account["id"], diagnostics=False)
        rows.append(
            SimpleNamespace(id=posture.id, tags=posture.tags, raw={"id": posture.id, **posture.properties})
        )
        containers[posture.id] = posture.containers
    return SimpleNamespace(
        run_id=f"run-{at}",
        started_at=at,
        finished_at=at,
        inventory=rows,
        candidates=[r.id for r in rows],
        containers=containers,
        incomplete=[f"page 2: {', '.join(skip)} not answered"] if skip else [],
    )


def test_the_sweep_result_is_reviewed_with_the_blob_logs_check_and_partial_sweeps_close_nothing_unseen(
    make_harness,
) -> None:
    h = make_harness(env={"RESPONDER_REVIEW_DIAGNOSTICS_HOURS": "0"})  # read them in every sweep
    first = review.record(h.rt, sweep_result(h, T0))
    kinds = {(i.kind, i.account.rsplit("/", 1)[-1]) for i in first.items}
    assert ("no-blob-logs", "stsynthpublic01") in kinds, "no diagnostic setting reaches the workspace"
    diagnostic_reads = [r for r in h.sim.requests() if "diagnosticSettings" in r["path"]]
    synthetic = {a for k, a in kinds}
    assert len(diagnostic_reads) == len(synthetic), "one read per synthetic-data account"

    # a sweep that missed stsynthpublic01 (an unanswered page) keeps its items open, as they were
    partial = review.record(h.rt, sweep_result(h, T1, skip=("stsynthpublic01",)))
    assert partial.run.complete is False
    mine = [i for i in partial.items if i.account.endswith("/stsynthpublic01")]
    assert mine
    assert all(i.status == OPEN and i.last_seen == T0 for i in mine)

    # it gets a diagnostic setting to the evidence workspace: the next complete sweep closes that item
    workspace = h.rt.settings.evidence_workspace_resource_id
    with h.sim.state.locked() as state:
        state.accounts["stsynthpublic01"]["diagnosticSettings"] = [
            {
                "name": "evidence",
                "properties": {
                    "workspaceId": workspace,
                    "logs": [
                        {"category": c, "enabled": True}
                        for c in ("StorageRead", "StorageWrite", "StorageDelete")
                    ],
                },
            }
        ]
    closed = review.record(h.rt, sweep_result(h, T2))
    item = next(
        i
        for i in closed.items
        if (i.kind, i.account.rsplit("/", 1)[-1]) == ("no-blob-logs", "stsynthpublic01")
    )
    assert (item.status, item.seconds_to_close) == (CLOSED, 4.5 * 3600)


def test_diagnostic_settings_are_read_once_a_period_spread_over_the_sweeps() -> None:
    from datetime import timedelta

    from responders.core.review import read_due
    from responders.core.timeutil import parse_time

    start = parse_time(T0)
    sweeps = [(start + timedelta(minutes=15 * n)).strftime("%Y-%m-%dT%H:%M:%SZ") for n in range(97)]
    accounts = [f"{PREFIX}st{n:03d}" for n in range(200)]
    reads = {a: 0 for a in accounts}
    per_sweep = []
    for before, at in itertools.pairwise(sweeps):
        due = [a for a in accounts if read_due(a, before, at, 24 * 3600)]
        per_sweep.append(len(due))
        for a in due:
            reads[a] += 1
    assert set(reads.values()) == {1}, "each account once in 24 hours"
    assert max(per_sweep) < 20, per_sweep  # about 200 / 96 a sweep, never all at once
    assert read_due(accounts[0], "", T0, 0)
    assert sum(read_due(a, "", T0, 24 * 3600) for a in accounts) < 20, "a first sweep reads a share too"


def test_an_account_whose_settings_are_not_due_keeps_its_blob_logs_item(make_harness) -> None:
    h = make_harness(env={"RESPONDER_REVIEW_DIAGNOSTICS_HOURS": "0"})
    review.record(h.rt, sweep_result(h, T0))
    before = [i for i in review.latest(h.rt)["items"] if i["kind"] == "no-blob-logs"]
    assert before
    # read no more (as when none is due): the items stay open as they were
    later = review.record_sweep(h.rt, sweep_result(h, T1), read_diagnostics=False)
    after = {i.key: i for i in later.items}
    assert all(after[i["key"]].status == OPEN for i in before)
