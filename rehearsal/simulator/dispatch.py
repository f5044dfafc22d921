"""Everything between the wire and the handlers: routing, auth, faults, the request log, admin routes."""

from __future__ import annotations

import copy
import logging
import re
import threading
from typing import Any

from rehearsal.simulator import (
    apiversions,
    authorization,
    graph,
    loganalytics,
    monitor,
    resourcegraph,
    sentinel,
    storage,
)
from rehearsal.simulator.auth import TokenStore, authenticate, issue_msi_token
from rehearsal.simulator.events import EventLog
from rehearsal.simulator.faults import Fault, FaultPlan
from rehearsal.simulator.routing import (
    ARM,
    GRAPH,
    LOGS,
    MSI,
    Call,
    Context,
    Reply,
    Route,
    api_of,
    error,
    fault_error,
    route,
)
from rehearsal.simulator.state import TenantState

logger = logging.getLogger(__name__)
_BAD_JSON = {GRAPH: "BadRequest", LOGS: "BadArgumentError", MSI: "BadRequest"}
# Resource Manager's throttling budget headers, as recorded (azure-cli test_renew_account_key.yaml)
_RATE_LIMIT = {
    "GET": "x-ms-ratelimit-remaining-subscription-reads",
    "READ_POST": "x-ms-ratelimit-remaining-subscription-resource-requests",
    "WRITE": "x-ms-ratelimit-remaining-subscription-writes",
}
_RATE_LIMIT_LEFT = {"GET": "11999", "READ_POST": "11999", "WRITE": "1199"}


def fault_reply(fault: Fault, api: str) -> Reply | None:
    """The injected error reply, or None when the connection is to be dropped."""
    if fault.drop or fault.status is None:
        return None
    reply = fault_error(api, fault.status)
    if fault.retry_after is not None:
        seconds = float(fault.retry_after)
        reply.headers["Retry-After"] = str(int(seconds)) if seconds.is_integer() else str(seconds)
    return reply


class Dispatcher:
    """Thread-safe request processing shared by all connection threads of one simulator."""

    def __init__(self, ctx: Context, tokens: TokenStore, faults: FaultPlan, identity_header: str) -> None:
        self.ctx, self.tokens, self.faults = ctx, tokens, faults
        self.identity_header = identity_header
        self._log_lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._busy_lock = threading.Lock()
        self._busy: set[str] = set()
        self._recorded: list[list[Any]] = []  # [method, path pattern, reply, answers left or None]
        self._routes: list[Route] = [
            route("GET", r"/msi/token", self._msi, MSI),
            *monitor.ROUTES,
            *storage.ROUTES,
            *authorization.ROUTES,
            *resourcegraph.ROUTES,
            *sentinel.ROUTES,
            *graph.ROUTES,
            *loganalytics.ROUTES,
        ]

    @property
    def state(self) -> TenantState:
        return self.ctx.state

    @property
    def events(self) -> EventLog:
        return self.ctx.events

    def _msi(self, ctx: Context, call: Call) -> Reply:
        state = ctx.state
        return issue_msi_token(
            self.tokens, call, self.identity_header, state.responder_principal_id, state.responder_client_id
        )

    def hold(self, method: str, path: str) -> tuple[str | None, bool]:
        """Take the account an exclusive write needs: (account or None, False when another write
        holds it, which Azure answers with 409 StorageAccountOperationInProgress)."""
        account = storage.exclusive_account(method, path)
        if account is None:
            return None, True
        with self._busy_lock:
            if account in self._busy:
                return None, False
            self._busy.add(account)
        return account, True

    def release(self, account: str | None) -> None:
        if account is not None:
            with self._busy_lock:
                self._busy.discard(account)

    def record(self, entry: dict[str, Any]) -> None:
        with self._log_lock:
            self._requests.append(entry)

    def requests(self) -> list[dict[str, Any]]:
        with self._log_lock:
            return copy.deepcopy(self._requests)

    def clear_requests(self) -> None:
        with self._log_lock:
            self._requests.clear()

    def play_recorded(self, method: str, path: str, reply: Reply | None, count: int | None = None) -> None:
        """Answer an authenticated `method` on paths matching `path` (a regex) with a recorded reply
        instead of the simulated one (`count` times, or always), so adapters can be fed real Azure
        responses; None clears all."""
        with self._log_lock:
            if reply is None:
                self._recorded.clear()
            else:
                self._recorded.append([method.upper(), re.compile(path, re.IGNORECASE), reply, count])

    def _recorded_reply(self, method: str, path: str) -> Reply | None:
        with self._log_lock:
            for entry in self._recorded:
                wanted, pattern, reply, left = entry
                if wanted == method and pattern.search(path) and (left is None or left > 0):
                    if left is not None:
                        entry[3] = left - 1
                    return copy.deepcopy(reply)
        return None

    def api(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
        bad_json: bool,
        client: str,
    ) -> tuple[Reply, str | None]:
        """Route, authenticate and run one API request; returns the reply and the caller's object id."""
        api = api_of(path)
        matches = [r for r in self._routes if r.pattern.fullmatch(path)]
        chosen = next((r for r in matches if r.method == method), None)
        if chosen is None:
            if matches:
                return error(api, 405, "MethodNotAllowed", f"{method} is not supported on {path}."), None
            code = "Request_ResourceNotFound" if api == GRAPH else "NotFound"
            return error(api, 404, code, f"No route for {method} {path}."), None
        if bad_json:
            code = _BAD_JSON.get(api, "InvalidRequestContent")
            return error(api, 400, code, "The request content was not valid JSON."), None
        params = chosen.pattern.fullmatch(path).groupdict()  # type: ignore[union-attr]
        call = Call(method, path, query, headers, body, client, params)
        if chosen.api != MSI:
            caller = authenticate(self.tokens, chosen.api, call.header("Authorization"))
            if isinstance(caller, Reply):
                return caller, None
            call = Call(method, path, query, headers, body, client, params, caller)
        refused = apiversions.check(path, query) if chosen.api == ARM else None
        if refused is not None:
            return refused, call.caller.object_id if call.caller else None
        reply = self._recorded_reply(method, path)
        if reply is None:
            try:
                reply = chosen.handler(self.ctx, call)
            except Exception:  # a simulator bug must answer 500, not kill the connection
                logger.exception("simulator handler failed for %s %s", method, path)
                reply = error(api, 500, "InternalServerError", "The simulator failed to handle the request.")
        if chosen.api == ARM:
            reads = ("/listkeys", "/microsoft.resourcegraph/resources")
            kind = "READ_POST" if path.lower().endswith(reads) else "WRITE"
            kind = "GET" if method == "GET" else kind
            reply.headers.setdefault(_RATE_LIMIT[kind], _RATE_LIMIT_LEFT[kind])
        return reply, call.caller.object_id if call.caller else None

    def admin(self, method: str, path: str, body: Any) -> Reply:
        """Out-of-process control: requests, state (key values redacted), events, faults. No secrets."""
        key = (method, path.lower())
        if key == ("GET", "/_sim/requests"):
            return Reply(200, self.requests())
        if key == ("DELETE", "/_sim/requests"):
            self.clear_requests()
            return Reply(204)
        if key == ("GET", "/_sim/state"):
            return Reply(200, self.state.snapshot(redact=True))
        if key == ("GET", "/_sim/events"):
            return Reply(200, self.events.all())
        if key == ("DELETE", "/_sim/events"):
            self.events.clear()
            return Reply(204)
        if key == ("POST", "/_sim/faults"):
            if not isinstance(body, dict) or not isinstance(body.get("rules", []), list):
                return error("arm", 400, "InvalidRequestContent", 'expected {"rules": [...], "seed": n}')
            try:
                self.faults.set(body.get("rules", []), body.get("seed"))
            except (ValueError, TypeError) as exc:
                return error("arm", 400, "InvalidRequestContent", str(exc))
            return Reply(204)
        return error("arm", 404, "NotFound", f"No admin route {method} {path}.")
