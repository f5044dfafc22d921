"""Offline classification remembers the plan of each signal shape; a remembered plan must be exactly
the plan a fresh classification makes, for any event of that shape."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responders.core.model import BadInput, Caller, Signal, SignalKind
from responders.core.parse import parse_item
from responders.core.plan import IDENTITY, Template, shape
from responders.offline import OfflineClassifier
from responders.settings import load_policy_document

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
TENANT: dict[str, Any] = json.loads((SAMPLES / "tenant.json").read_text())
POLICY = load_policy_document((SAMPLES / "policy.yaml").read_text(), "samples/policy.yaml").with_responder(
    TENANT["responderIdentity"]["principalId"]
)
NOW = "2026-11-25T09:00:00Z"


def sample_signals() -> list[Signal]:
    out = []
    for path in sorted((SAMPLES / "events").glob("*.json")):
        try:
            decoded = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        for item in decoded if isinstance(decoded, list) else [decoded]:
            try:
                out.append(parse_item(item, now=NOW))
            except BadInput:
                continue
    return out


SIGNALS = sample_signals()


def fresh(signal: Signal) -> Any:
    """The plan with nothing remembered: a new classifier for every signal."""
    return OfflineClassifier(TENANT, POLICY).plan_signal(signal)


def test_the_samples_cover_leaks_with_actions_and_dependent_steps() -> None:
    plans = [fresh(s) for s in SIGNALS]
    assert sum(bool(p.actions) for p in plans) >= 5
    assert any(a.after for p in plans for a in p.actions)  # key2 waits for key1: re-keyed too


def test_shape_leaves_out_exactly_the_identity_fields() -> None:
    values: dict[str, Any] = {name: f"<{name}>" for name in Signal._fields}
    values["kind"] = SignalKind.ALERT
    values["caller"] = Caller(object_id="<caller>")
    signal = Signal(**values)
    for name in Signal._fields:
        changed = signal._replace(**{name: ("<other>",) if name != "kind" else SignalKind.MANUAL})
        assert (shape(changed) == shape(signal)) is (name in IDENTITY), name


@pytest.mark.parametrize("signal", SIGNALS, ids=lambda s: f"{s.source}-{s.kind}")
def test_a_remembered_plan_is_the_plan_made_afresh_for_a_new_event(signal: Signal) -> None:
    classifier = OfflineClassifier(TENANT, POLICY)
    first = classifier.plan_signal(signal)
    assert first == fresh(signal)
    again = signal._replace(id=signal.id + "-redelivered-elsewhere", occurred_at=NOW)
    remembered = classifier.plan_signal(again)
    assert remembered == fresh(again)
    assert remembered.signal is again
    if first.actions:
        assert remembered.incident != first.incident
        assert {a.key for a in remembered.actions}.isdisjoint(a.key for a in first.actions)


@settings(max_examples=60, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=len(SIGNALS) - 1),
    identity=st.fixed_dictionaries({name: st.text(max_size=40) for name in IDENTITY}),
    untitled=st.booleans(),
)
def test_verdicts_and_plans_never_depend_on_the_identity_of_a_signal(
    index: int, identity: dict[str, str], untitled: bool
) -> None:
    signal = SIGNALS[index]._replace(title="") if untitled else SIGNALS[index]
    other = signal._replace(**identity)
    mine, theirs = fresh(signal), fresh(other)
    assert mine.verdict == theirs.verdict
    assert mine.skipped == theirs.skipped
    assert [a._replace(key="", after=()) for a in mine.actions] == [
        a._replace(key="", after=()) for a in theirs.actions
    ]
    assert Template(mine).for_signal(other) == theirs


def test_the_memo_is_bounded_and_past_the_bound_plans_are_still_made() -> None:
    classifier = OfflineClassifier(TENANT, POLICY, max_shapes=3)
    for _ in range(2):
        assert [classifier.plan_signal(s) for s in SIGNALS] == [fresh(s) for s in SIGNALS]
    assert classifier.shapes == 3


def test_remembered_plans_equal_fresh_ones_over_a_generated_capture() -> None:
    from bench.throughput import NOW as BENCH_NOW
    from bench.throughput import generate

    remembering = OfflineClassifier(TENANT, POLICY)
    leaks = 0
    for raw in generate(1500, seed=11):
        try:
            expected = OfflineClassifier(TENANT, POLICY).plan(raw, now=BENCH_NOW)
        except BadInput as exc:
            with pytest.raises(BadInput, match=re.escape(str(exc))):
                remembering.plan(raw, now=BENCH_NOW)
            continue
        assert remembering.plan(raw, now=BENCH_NOW) == expected
        leaks += expected.verdict.leak
    assert leaks > 300
    assert remembering.shapes < 1500 / 2, "the capture repeats its shapes"
