"""Graph's own retry (kiota's RetryHandler) is capped like ARM's, and the cut-off cancels a Graph call:
a PATCH cannot land after its step was recorded for a retry."""

from __future__ import annotations

import time
from typing import Any

from responders.clients import Clients
from responders.core.model import Action
from responders.execute import Executor
from tests.harness import Harness, sample

SP = "3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d"  # the app that listed keys in sample 03
PATCH_SP = {"method": "PATCH", "path": f"/servicePrincipals/{SP}$", "status": 429, "count": 1}


def sp_patches(h: Harness) -> list[dict[str, Any]]:
    return [r for r in h.sim.requests() if r["method"] == "PATCH" and r["path"].endswith(SP)]


def disable_plan(h: Harness) -> Any:
    """Sample 03's plan cut down to disabling the service principal."""
    from responders.core.classify import classify
    from responders.core.parse import parse_item
    from responders.core.plan import plan as make_plan
    from responders.service import gather_facts

    signal = parse_item(sample("03-listkeys-by-app.json")[0], now=h.rt.clock())
    facts = gather_facts(signal, h.rt)
    made = make_plan(signal, facts, classify(signal, facts, h.rt.settings.policy), h.rt.settings.policy)
    steps: tuple[Action, ...] = tuple(
        a for a in made.actions if a.kind == "identity.disable_service_principal"
    )
    assert [a.target for a in steps] == [SP]
    return made._replace(actions=steps)


def test_graph_honours_retry_after_only_up_to_the_cap(make_harness) -> None:
    h: Harness = make_harness()
    clients = Clients(h.rt.settings, retry_after_cap=0.2, graph_cutoff=30)
    try:
        h.sim.set_faults([{**PATCH_SP, "retry_after": 150}])  # kiota alone would wait 150 s
        started = time.monotonic()
        Executor(clients, h.rt.ledger, h.rt.clock, attempts=1).run(disable_plan(h), dry_run=False)
        took = time.monotonic() - started
    finally:
        clients.close()
    assert [r["status"] for r in sp_patches(h)] == [429, 204]
    assert took < 20
    assert h.sim.state.service_principal(SP)["accountEnabled"] is False


def test_the_cut_off_cancels_the_graph_call_so_no_patch_lands_after_it(make_harness) -> None:
    h: Harness = make_harness()
    clients = Clients(h.rt.settings, retry_after_cap=30, graph_cutoff=0.5)
    try:
        h.sim.set_faults([{**PATCH_SP, "retry_after": 2}])
        [outcome] = Executor(clients, h.rt.ledger, h.rt.clock, attempts=1).run(disable_plan(h), dry_run=False)
        assert outcome.status == "retrying", outcome.error
        assert "TimeoutError" in outcome.error
        time.sleep(3)  # past the Retry-After: a call left running would have sent its retry by now
        assert [r["status"] for r in sp_patches(h)] == [429]
        assert h.sim.state.service_principal(SP)["accountEnabled"] is True
        # the Graph loop still serves later calls
        h.sim.set_faults([])
        [again] = Executor(clients, h.rt.ledger, h.rt.clock).run(
            disable_plan(h)._replace(incident="inc-" + "0" * 24), dry_run=False
        )
    finally:
        clients.close()
    assert again.status == "contained"
    assert h.sim.state.service_principal(SP)["accountEnabled"] is False
