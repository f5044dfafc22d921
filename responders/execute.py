"""Run a plan: claim each action in the ledger, read, act, verify, record. Independent actions run
concurrently; an action waits only for the actions it names in `after`."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, NamedTuple

from responders.actions import HANDLERS
from responders.clients import Clients
from responders.core.model import Action, Outcome, Plan
from responders.core.timeutil import is_after
from responders.ledger import Ledger

log = logging.getLogger("responders.execute")
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)
# Azure's answer to a write that overlaps another exclusive write on the same storage account
ACCOUNT_BUSY = "StorageAccountOperationInProgress"


class TransientFailure(RuntimeError):
    """A step failed in a way a redelivery can fix; raised after the ledger holds the failure."""


class AccountBusy(RuntimeError):
    """Another writer held the storage account longer than a step waits; a redelivery tries again."""


def is_transient(exc: BaseException) -> bool:
    """429, 5xx, broken connections and a storage account busy with another write (409
    StorageAccountOperationInProgress) are worth a retry; 400/401/403/404 and other 409s are not."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError)):
        return True
    status = getattr(exc, "status_code", None) or getattr(exc, "response_status_code", None)
    if isinstance(exc, HttpResponseError) and status is None:
        return True
    if status is not None and int(status) == 409:
        return _error_code(exc) == ACCOUNT_BUSY
    if status is not None:
        return int(status) in TRANSIENT_STATUS
    return type(exc).__module__.startswith("httpx")


def _error_code(exc: BaseException) -> str:
    """The service's error code: azure-core's parsed ARM error, else the "(Code) message" prefix."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if code:
        return str(code)
    text = str(getattr(exc, "message", "") or exc)
    return text[1 : text.index(")")] if text.startswith("(") and ")" in text else ""


def describe(exc: BaseException) -> str:
    """A one-line error for the ledger: type, status and the service's message, never a body dump."""
    status = getattr(exc, "status_code", None) or getattr(exc, "response_status_code", None)
    message = str(getattr(exc, "message", "") or exc).splitlines()[0][:500] if str(exc) else ""
    return f"{type(exc).__name__}" + (f" {status}" if status else "") + (f": {message}" if message else "")


class Known(NamedTuple):
    """What the delivery read of each target before planning (`actions.known_state`) and when."""

    states: dict[str, dict[str, Any]]
    read_at: str


class _Seen:
    """The known state of each target during one run: the facts, then each write's own answer.

    It answers a step's first read unless the step's claim row shows a write by any incident that
    was not over (released) before the facts were read: a write sent earlier may have landed after
    the read (its 429s and 503s retried meanwhile). A retry always reads Azure again.
    """

    def __init__(self, known: Known | None) -> None:
        self._lock = threading.Lock()
        self._states = {k: dict(v) for k, v in (known.states if known else {}).items()}
        self.read_at = known.read_at if known else ""

    def state(
        self, handler: Any, action: Action, claim: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        written = str((claim or {}).get("WrittenAt") or "")
        over = str((claim or {}).get("ReleasedAt") or "")
        if claim is not None and (not self.read_at or (written and not is_after(self.read_at, over))):
            return None
        with self._lock:
            known = self._states.get(action.target.lower())
            return None if known is None else handler.state_from(known, action)

    def answered(self, action: Action, answer: dict[str, Any]) -> None:
        with self._lock:
            known = self._states.setdefault(action.target.lower(), {})
            for field, value in answer.items():
                base = known.get(field)
                known[field] = (
                    {**base, **value} if isinstance(value, dict) and isinstance(base, dict) else value
                )


class _Turn:
    """This instance's writers of one storage account: whose turn it is, and the ledger lease they hold
    (`lease`, its ETag) or last released (`released`, the row's ETag after that release)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting = 0
        self.planned = 0  # account writes of running plans not yet done, the one holding the lock included
        self.lease: str | None = None
        self.released: str | None = None


class Executor:
    """Executes plans against the adapters; the clock is injected so tests control time."""

    def __init__(
        self,
        clients: Clients,
        ledger: Ledger,
        clock: Callable[[], str],
        workers: int = 8,
        attempts: int = 3,
        backoff: float = 0.3,
        claim_wait: float = 30.0,
    ) -> None:
        self.clients = clients
        self.ledger = ledger
        self.clock = clock
        self.workers = workers
        self.attempts = attempts
        self.backoff = backoff
        self.claim_wait = claim_wait
        self.instance = uuid.uuid4().hex  # this instance's name on the accounts' write leases
        self._accounts: dict[str, _Turn] = {}
        self._ledger_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ledger")
        self._accounts_lock = threading.Lock()

    def run(self, plan: Plan, *, dry_run: bool, known: Known | None = None) -> list[Outcome]:
        """Run the plan's steps; `known` (the facts read just before planning) answers first reads."""
        if dry_run:
            return [Outcome(action=a, status="dry-run") for a in plan.actions]
        now = self.clock()
        # a signal stamped in the future (clock skew) must not make a fresh rotation look stale
        since = plan.signal.occurred_at if is_after(now, plan.signal.occurred_at) else now
        seq = {a.key: i for i, a in enumerate(plan.actions)}
        results: dict[str, Outcome] = {}
        seen = _Seen(known)
        remaining = list(plan.actions)
        accounts = {
            a.target.lower() for a in plan.actions if getattr(HANDLERS[a.kind], "account_write", False)
        }
        counted = set(range(len(plan.actions)))  # steps still counted as writes to come (_plan_writes)
        index = {a.key: i for i, a in enumerate(plan.actions)}

        def settled(action: Action) -> None:
            if index[action.key] in counted:
                counted.discard(index[action.key])
                self._plan_writes((action,), -1)

        self._plan_writes(plan.actions, +1)
        try:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="act") as pool:
                for account in accounts:  # the leases are taken while the steps are claimed
                    pool.submit(self._lease_ahead, account)
                running: dict[Future[Outcome], Action] = {}
                while remaining or running:
                    # start every step whose predecessors are done, as soon as they are (not in waves)
                    ready = [a for a in remaining if all(dep in results for dep in a.after)]
                    for action in ready:
                        remaining.remove(action)
                        waiting = self._waiting_on(plan, action, seq[action.key], results)
                        if waiting is not None:
                            results[action.key] = waiting
                            settled(action)
                            continue
                        future = pool.submit(self._one, plan, action, seq[action.key], since, seen)
                        running[future] = action
                    if ready and not running:
                        continue  # steps settled without running may unblock others
                    if not running:
                        raise RuntimeError("plan has a dependency cycle")
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        action = running.pop(future)
                        settled(action)
                        results[action.key] = future.result()
        finally:
            for action in plan.actions:
                settled(action)
            for account in accounts:
                self._release_idle(account)
        return [results[a.key] for a in plan.actions]

    def _waiting_on(
        self, plan: Plan, action: Action, seq: int, results: dict[str, Outcome]
    ) -> Outcome | None:
        """The outcome of a step whose predecessor is not done, or None when it may run.

        A predecessor still in flight makes this step wait for a redelivery (nothing is recorded, so
        the step stays open); one awaiting approval makes it await approval too; one that failed
        for good makes it skipped, for good.
        """
        statuses = {results[d].status for d in action.after}
        if statuses <= {"contained", "already-contained"}:
            return None
        if statuses & {"retrying", "in-progress"}:
            return Outcome(action=action, status="retrying", error="waiting for an earlier step")
        if "pending-approval" in statuses:
            owned, _ = self.ledger.begin(plan, action, seq, self.clock())
            if owned:
                self.ledger.update_action(plan.incident, action.key, Status="pending-approval", LeaseUntil="")
            return Outcome(
                action=action, status="pending-approval", error="waits for an earlier step's approval"
            )
        return self._record(
            plan,
            action,
            seq,
            Outcome(action=action, status="skipped", error="an earlier step it depends on did not complete"),
        )

    def _attempts(
        self,
        handler: Any,
        incident: str,
        action: Action,
        since: str,
        row: dict[str, Any],
        claim: dict[str, Any],
        seen: _Seen | None = None,
    ) -> Outcome:
        """Read, act, read back: the resource's state decides. The intent (with the state before) is
        recorded before each write, so a delivery that finds an intent of an earlier one (whose outcome
        the ledger lost) keeps that before-state and reports the write, not "already contained". A
        transient failure is retried in this delivery after re-reading the state first (so a write that
        landed before its response was lost is not sent again)."""
        sent_at = str(row.get("IntentAt") or "")  # when an earlier delivery sent (or meant to send) it
        before: dict[str, Any] = dict(row.get("Before") or {}) if sent_at else {}
        seen = seen or _Seen(None)
        for attempt in range(1, self.attempts + 1):
            try:
                known = seen.state(handler, action, claim) if attempt == 1 and handler.observable else None
                state = known if known is not None else self._read(handler, action, claim)
                before = before or state
                if handler.done(state, action, since):
                    if not sent_at:
                        done_at = handler.done_at(state)
                        return Outcome(
                            action=action,
                            status="already-contained",
                            before=state,
                            after={**state, "doneAt": done_at} if done_at else state,
                            verified_at=self.clock(),
                        )
                    return Outcome(
                        action=action,
                        status="contained",
                        before=before,
                        after=state,
                        acted_at=sent_at,
                        verified_at=self.clock(),
                    )
                with self.account_write(handler, action):
                    acted_at = self.clock()
                    self.ledger.update_action(incident, action.key, Before=before, IntentAt=acted_at)
                    sent_at = acted_at
                    written = handler.apply(self.clients, action)
                self.ledger.record_writes(written, incident, action.key, acted_at)
                answer = getattr(written, "answer", None)
                if answer:  # the write's own answer shows the state: no read-back
                    seen.answered(action, answer)
                shown = seen.state(handler, action) if answer and handler.observable else None
                read_back = (
                    shown if shown is not None else self._read(handler, action, claim, written_at=acted_at)
                )
                after = {**read_back, "actedAt": acted_at}
                verified = handler.done(after, action, since)
                return Outcome(
                    action=action,
                    status="contained" if verified else "failed",
                    before=before,
                    after=after,
                    acted_at=acted_at,
                    verified_at=self.clock(),
                    error="" if verified else "state read back does not show the change",
                )
            except AccountBusy as exc:
                return Outcome(action=action, status="retrying", before=before, error=str(exc))
            except Exception as exc:
                transient = is_transient(exc)
                log.warning(
                    "action %s on %s failed (attempt %d): %s",
                    action.kind,
                    action.target,
                    attempt,
                    describe(exc),
                )
                if not transient:
                    return Outcome(action=action, status="failed", before=before, error=describe(exc))
                if attempt == self.attempts:
                    return Outcome(action=action, status="retrying", before=before, error=describe(exc))
                _sleep(self.backoff * attempt * (1 + random.random()))
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def account_write(self, handler: Any, action: Action) -> Iterator[None]:
        """Hold the storage account alone for one write (Azure answers overlapping writes 409):
        first among this instance's threads, then across instances through the ledger's lease, which
        passes straight to the next of this instance's writers when one is waiting. Other accounts,
        container writes and Graph calls are not held. Restores write through it too."""
        if not getattr(handler, "account_write", False):
            yield
            return
        account = action.target.lower()
        deadline = time.monotonic() + self.claim_wait
        turn = self._turn(account)
        with self._accounts_lock:
            turn.waiting += 1
        got = turn.lock.acquire(timeout=self.claim_wait)
        with self._accounts_lock:
            turn.waiting -= 1
        if not got:
            raise AccountBusy("another step of this instance holds the storage account")
        try:
            while turn.lease is None:
                turn.lease = self.ledger.hold_account(account, self.instance, self.clock(), turn.released)
                if turn.lease is None:
                    if time.monotonic() >= deadline:
                        raise AccountBusy("another instance holds the storage account's write lease")
                    _sleep(0.05 + random.random() * 0.1)
            yield
        finally:
            try:
                with self._accounts_lock:  # keep the lease while another write of this instance is to come
                    pass_on = turn.waiting > 0 or turn.planned > 1
                if not pass_on:
                    self._free_lease(account, turn)
            finally:
                turn.lock.release()

    def _turn(self, account: str) -> _Turn:
        with self._accounts_lock:
            return self._accounts.setdefault(account, _Turn())

    def _plan_writes(self, actions: tuple[Action, ...] | list[Action], delta: int) -> None:
        """Count the account writes this instance has still to run on each account (a step counts
        until its outcome is in, whether or not it writes)."""
        for action in actions:
            if getattr(HANDLERS[action.kind], "account_write", False):
                turn = self._turn(action.target.lower())
                with self._accounts_lock:
                    turn.planned += delta

    def _lease_ahead(self, account: str) -> None:
        """Take the account's ledger lease before the first write needs it (one try: a lease another
        instance holds is waited for by the write itself)."""
        turn = self._turn(account)
        if turn.lock.acquire(blocking=False):
            try:
                if turn.lease is None:
                    turn.lease = self.ledger.hold_account(account, self.instance, self.clock(), turn.released)
            finally:
                turn.lock.release()

    def _release_idle(self, account: str) -> None:
        """Free a lease taken ahead that no write used (a writer still at work frees it itself)."""
        turn = self._turn(account)
        if turn.lock.acquire(blocking=False):
            try:
                with self._accounts_lock:
                    idle = turn.waiting == 0 and turn.planned == 0
                if idle:
                    self._free_lease(account, turn)
            finally:
                turn.lock.release()

    def _free_lease(self, account: str, turn: _Turn) -> None:
        """Release the ledger lease (the caller holds the turn). A ledger that cannot be reached leaves
        the lease to expire on its own; this instance may take it again at once."""
        if turn.lease is None:
            return
        lease, turn.lease = turn.lease, None
        try:
            turn.released = self.ledger.release_account(account, self.instance, lease, self.clock())
        except Exception as exc:
            turn.released = None
            log.warning(
                "releasing the write lease of %s failed (it expires by itself): %s", account, describe(exc)
            )

    def _read(
        self, handler: Any, action: Action, claim: dict[str, Any], written_at: str = ""
    ) -> dict[str, Any]:
        """The step's current state. A step Resource Manager cannot show (revoking user-delegation
        keys) reads the last write the ledger recorded for it, from any incident, or this one's."""
        state = handler.read(self.clients, action)
        if not handler.observable:
            state["writtenAt"] = written_at or str(claim.get("WrittenAt") or "")
        return state

    def _record(self, plan: Plan, action: Action, seq: int, outcome: Outcome) -> Outcome:
        self.ledger.begin(plan, action, seq, self.clock())
        self.ledger.finish(plan.incident, outcome, self.clock())
        return outcome

    def _one(self, plan: Plan, action: Action, seq: int, since: str, seen: _Seen | None = None) -> Outcome:
        handler = HANDLERS[action.kind]
        owned, row = self.ledger.begin(plan, action, seq, self.clock())
        if not owned:
            status = row.get("Status", "")
            if status == "started":
                return Outcome(
                    action=action, status="in-progress", error="another delivery holds this action"
                )
            return Outcome(
                action=action,
                status=status,
                before=row.get("Before") or {},
                after=row.get("After") or {},
                error=row.get("Error", ""),
                acted_at=row.get("ActedAt", ""),
                verified_at=row.get("VerifiedAt", ""),
            )
        if action.mode == "approval" and row.get("Mode") != "approved":
            outcome = Outcome(action=action, status="pending-approval")
            self.ledger.update_action(plan.incident, action.key, Status="pending-approval", LeaseUntil="")
            return outcome
        owned, claim = self._claim_resource(plan, action)
        if not owned:
            outcome = Outcome(
                action=action,
                status="retrying",
                error=f"incident {claim.get('Incident')} is acting on the same resource",
            )
            self.ledger.finish(plan.incident, outcome, self.clock())
            return outcome
        outcome: Outcome | None = None
        try:
            outcome = self._attempts(handler, plan.incident, action, since, row, claim, seen)
        except BaseException:
            self.ledger.release_resource(action, plan.incident, written_at=None)
            raise
        written_at = outcome.acted_at if outcome.status == "contained" else None
        # the outcome row and the claim are different rows: both writes go out at once
        released = self._ledger_pool.submit(
            self.ledger.release_resource, action, plan.incident, written_at=written_at, now=self.clock()
        )
        try:
            self.ledger.finish(plan.incident, outcome, self.clock())
        finally:
            released.result()
        return outcome

    def _claim_resource(self, plan: Plan, action: Action) -> tuple[bool, dict[str, Any]]:
        """Wait (bounded) while another incident acts on the same resource step."""
        deadline = time.monotonic() + self.claim_wait
        while True:
            owned, claim = self.ledger.claim_resource(action, plan.incident, self.clock())
            if owned or time.monotonic() >= deadline:
                return owned, claim
            _sleep(0.05 + random.random() * 0.1)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def with_mode(plan: Plan, key: str, mode: str) -> Plan:
    """A copy of the plan with one action's approval mode changed (used when a human approves)."""
    return plan._replace(actions=tuple(a._replace(mode=mode) if a.key == key else a for a in plan.actions))
