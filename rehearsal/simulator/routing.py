"""Request/reply values, the route table type and the error bodies of each Azure API family."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rehearsal.simulator.auth import Principal
    from rehearsal.simulator.events import EventLog
    from rehearsal.simulator.state import TenantState

ARM, GRAPH, LOGS, MSI = "arm", "graph", "logs", "msi"


@dataclass(frozen=True)
class Call:
    """One parsed API request as a handler sees it."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any
    client: str
    params: Mapping[str, str] = field(default_factory=dict)
    caller: Principal | None = None

    def header(self, name: str) -> str | None:
        """Headers are case-insensitive on the wire, so look them up that way."""
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


@dataclass
class Reply:
    """What a handler answers; body None means an empty body."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """The shared services every handler needs: state, the event sink and the clock."""

    state: TenantState
    events: EventLog
    clock: Callable[[], datetime]


Handler = Callable[[Context, Call], Reply]


@dataclass(frozen=True)
class Route:
    """A method and a full-match, case-insensitive path pattern (ARM paths are case-insensitive)."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    api: str


def route(method: str, pattern: str, handler: Handler, api: str) -> Route:
    """Compile a route once at import time."""
    return Route(method, re.compile(pattern, re.IGNORECASE), handler, api)


def api_of(path: str) -> str:
    """Which API family a path belongs to decides its error body and token audience."""
    lowered = path.lower()
    if lowered.startswith("/v1.0/") or lowered == "/v1.0":
        return GRAPH
    if lowered.startswith("/v1/"):
        return LOGS
    if lowered.startswith("/msi/"):
        return MSI
    return ARM


def error(api: str, status: int, code: str, message: str) -> Reply:
    """An error reply in the body shape the SDK of that API family parses."""
    if api == GRAPH:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        inner = {"date": now, "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}
        if status == 429:
            inner = {
                "code": "429",
                "date": now,
                "message": "Please retry after",
                "request-id": inner["request-id"],
                "status": "429",
            }
        return Reply(status, {"error": {"code": code, "message": message, "innerError": inner}})
    if api == MSI:
        return Reply(status, {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())})
    if api == LOGS:
        body = {"error": {"message": message, "code": code, "correlationId": str(uuid.uuid4())}}
        return Reply(status, body)
    return Reply(status, {"error": {"code": code, "message": message}})


FAULT_CODES = {
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


def fault_error(api: str, status: int) -> Reply:
    """The body Azure sends for throttling and server faults."""
    code = FAULT_CODES.get(status, "InjectedFault")
    if api == GRAPH and status == 429:
        return error(api, status, code, "Please retry again later.")
    return error(api, status, code, f"Injected fault {status} from the simulator.")
