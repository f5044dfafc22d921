"""Log Analytics query API (POST /v1/workspaces/{id}/query) over the seeded tables."""

from __future__ import annotations

from datetime import datetime

from rehearsal.simulator.kql import KqlError, run_query, to_response
from rehearsal.simulator.routing import LOGS, Call, Context, Reply, Route, error, route
from rehearsal.simulator.timefmt import parse_interval


def _bad_argument(message: str, inner_code: str, inner_message: str) -> Reply:
    reply = error(LOGS, 400, "BadArgumentError", message)
    reply.body["error"]["innererror"] = {"code": inner_code, "message": inner_message}
    return reply


def query(ctx: Context, call: Call) -> Reply:
    if call.params["workspace"].lower() != ctx.state.workspace_id.lower():
        return error(
            LOGS,
            404,
            "WorkspaceNotFoundError",
            f"The workspace could not be found: {call.params['workspace']}",
        )
    body = call.body if isinstance(call.body, dict) else {}
    text = body.get("query") if call.method == "POST" else call.query.get("query")
    span = body.get("timespan") if call.method == "POST" else call.query.get("timespan")
    if not isinstance(text, str) or not text.strip():
        return _bad_argument(
            "The request had some invalid properties",
            "QueryValidationError",
            "The query parameter is required.",
        )
    now = ctx.clock()
    start: datetime | None = None
    end: datetime | None = None
    if span:
        try:
            start, end = parse_interval(str(span), now)
        except ValueError:
            return _bad_argument(
                "The request had some invalid properties", "QueryValidationError", f"Invalid timespan: {span}"
            )
    try:
        with ctx.state.lock:
            table = run_query(ctx.state.log_tables, text, start, end, now)
    except KqlError as exc:
        if not exc.engine_code:
            return _bad_argument("The request had some invalid properties", exc.code, str(exc))
        # as recorded (CDCgov/prime-reportstream#11773): SemanticError > SEM0100 with the message
        reply = _bad_argument(
            "The request had some invalid properties", exc.code, "A semantic error occurred."
        )
        reply.body["error"]["innererror"]["innererror"] = {"code": exc.engine_code, "message": str(exc)}
        return reply
    return Reply(200, to_response(table))


ROUTES: list[Route] = [
    route("POST", r"/v1/workspaces/(?P<workspace>[^/]+)/query", query, LOGS),
    route("GET", r"/v1/workspaces/(?P<workspace>[^/]+)/query", query, LOGS),
]
