"""Turn func.* objects into plain data, call the pipeline, and map its results to HTTP semantics."""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func

from responders.core.model import BadInput
from responders.core.parse import VALIDATION, check_depth, clip_depth, guid, parse_body, parse_item
from responders.execute import TransientFailure
from responders.service import Runtime, process, runtime

log = logging.getLogger("responders.triggers")
JSON = "application/json"


def _response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, sort_keys=True), status_code=status, mimetype=JSON, headers=headers or {}
    )


def _reject(rt: Runtime, body: bytes, reason: str, source: str) -> func.HttpResponse:
    """400 with the reason; the body is kept in the ledger so nothing is lost."""
    try:
        ref = rt.ledger.reject(body, reason, source, rt.clock())
    except Exception as exc:  # the 400 must still reach the caller
        log.warning("could not record rejected input: %s", type(exc).__name__)
        ref = ""
    return _response({"error": reason, "rejected": ref}, 400)


def eventgrid_item(event: func.EventGridEvent) -> dict[str, Any]:
    """The Event Grid schema dict of a func.EventGridEvent, as the platform received it."""
    when = event.event_time
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": when.isoformat().replace("+00:00", "Z") if when else "",
        "data": event.get_json(),
        "dataVersion": event.data_version,
    }


def handle_eventgrid(event: func.EventGridEvent) -> dict[str, Any] | None:
    """Ignored and finished events return; transient failures raise so Event Grid retries."""
    rt = runtime()
    item = eventgrid_item(event)
    try:
        check_depth(item)
        return process(item, rt)
    except BadInput as exc:
        kept = json.dumps(clip_depth(item), default=str).encode()
        rt.ledger.reject(kept, str(exc), "eventgrid", rt.clock())
        log.warning("rejected event %s: %s", event.id, exc)
        return None


def _validation(items: list[Any]) -> func.HttpResponse | None:
    for item in items:
        if isinstance(item, dict) and str(item.get("eventType", "")).lower() == VALIDATION:
            code = (item.get("data") or {}).get("validationCode")
            if not isinstance(code, str) or not code:
                raise BadInput("subscription validation event without data.validationCode")
            return _response({"validationResponse": code})
    return None


def _options(req: func.HttpRequest) -> func.HttpResponse:
    """CloudEvents webhook abuse-protection handshake."""
    origin = req.headers.get("WebHook-Request-Origin", "")
    if not origin or len(origin) > 255:
        return _response({"error": "OPTIONS needs a WebHook-Request-Origin header"}, 400)
    return func.HttpResponse(
        status_code=200,
        headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "120", "Allow": "POST"},
    )


def _run_items(rt: Runtime, items: list[Any], execute: bool | None) -> func.HttpResponse:
    results: list[dict[str, Any]] = []
    try:
        for item in items:
            results.append(process(item, rt, execute=execute))
    except TransientFailure as exc:
        return _response({"error": str(exc), "results": results}, 503, {"Retry-After": "30"})
    return _response({"results": results})


def handle_alerts(req: func.HttpRequest) -> func.HttpResponse:
    if req.method == "OPTIONS":
        return _options(req)
    rt = runtime()
    body = req.get_body() or b""
    try:
        items = parse_body(body, now=rt.clock(), max_bytes=rt.settings.max_body_bytes)
        if req.headers.get("aeg-event-type", "").lower() == "subscriptionvalidation" or len(items) == 1:
            answer = _validation(items)
            if answer is not None:
                return answer
        now = rt.clock()
        for index, item in enumerate(items):  # all or nothing: validate the whole batch first
            try:
                parse_item(item, now=now)
            except BadInput as exc:
                raise BadInput(f"item {index}: {exc}" if len(items) > 1 else str(exc)) from exc
    except BadInput as exc:
        return _reject(rt, body, str(exc), "alerts")
    return _run_items(rt, items, None)


def handle_evidence(req: func.HttpRequest) -> func.HttpResponse:
    from datetime import UTC, datetime

    from responders.evidence_pack import build_pack, render_json, render_markdown

    rt = runtime()
    _, refusal = caller_of(req, rt)
    if refusal is not None:
        return refusal
    incident = req.route_params.get("incident", "")
    fmt = req.params.get("format", "json")
    if fmt not in ("md", "json") or not incident.startswith("inc-") or len(incident) > 64:
        return _response({"error": "GET /api/evidence/inc-... with format md or json"}, 400)
    row = rt.ledger.incident(incident)
    if row is None:
        return _response({"error": f"no incident {incident}"}, 404)
    pack = build_pack(row, datetime.now(UTC))
    if fmt == "md":
        return func.HttpResponse(render_markdown(pack), status_code=200, mimetype="text/markdown")
    return func.HttpResponse(render_json(pack), status_code=200, mimetype=JSON)


PLAYBOOK_KEYS = {
    "resourceId",
    "principalId",
    "event",
    "approve",
    "restore",
    "execute",
    "actions",
    "reason",
    "requestId",
}
OPERATIONS = ("resourceId", "event", "approve", "restore")


FUNCTION_KEY = "function key"


def caller_of(req: func.HttpRequest, rt: Runtime) -> tuple[str, func.HttpResponse | None]:
    """The caller as recorded: the Entra ID object id (a GUID) that App Service authentication vouches
    for, or "function key". The header counts only when that authentication is on (WEBSITE_AUTH_ENABLED):
    without it any key holder can send it. RESPONDER_PLAYBOOK_CALLERS then fails closed."""
    allowed = rt.settings.playbook_callers
    if not rt.settings.platform_auth:
        if allowed:
            return "", _response(
                {
                    "error": "RESPONDER_PLAYBOOK_CALLERS is set but App Service authentication is off "
                    "(WEBSITE_AUTH_ENABLED): no caller identity can be verified"
                },
                401,
            )
        return FUNCTION_KEY, None
    raw = req.headers.get("x-ms-client-principal-id") or ""
    caller = guid(raw.strip())
    if raw and not caller:
        return "", _response({"error": "x-ms-client-principal-id is not an object id (GUID)"}, 401)
    if not allowed:
        return caller or FUNCTION_KEY, None
    if not caller:
        return "", _response({"error": "caller identity required: enable App Service authentication"}, 401)
    if caller not in allowed:
        return caller, _response({"error": "caller is not on RESPONDER_PLAYBOOK_CALLERS"}, 403)
    return caller, None


def _playbook_request(body: bytes, rt: Runtime) -> tuple[str, dict[str, Any], bool]:
    items = parse_body(body, now=rt.clock(), max_bytes=rt.settings.max_body_bytes)
    if len(items) != 1 or not isinstance(items[0], dict):
        raise BadInput("the playbook takes one JSON object")
    request = items[0]
    unknown = sorted(set(request) - PLAYBOOK_KEYS)
    if unknown:
        raise BadInput(f"unknown fields {unknown}; accepted: {sorted(PLAYBOOK_KEYS)}")
    named = [op for op in OPERATIONS if op in request]
    if len(named) != 1:
        raise BadInput("give exactly one of resourceId, event, approve or restore")
    execute = request.get("execute", False)
    if not isinstance(execute, bool):
        raise BadInput("execute must be true or false")
    if named[0] == "resourceId":
        parse_item(request, now=rt.clock())
    elif named[0] == "event":
        parse_item(request["event"], now=rt.clock())
    elif not isinstance(request[named[0]], str):
        raise BadInput(f"{named[0]} must be an incident key")
    return named[0], request, execute


def handle_playbook(req: func.HttpRequest) -> func.HttpResponse:
    from responders import manage

    rt = runtime()
    caller, refusal = caller_of(req, rt)
    if refusal is not None:
        return refusal
    body = req.get_body() or b""
    try:
        operation, request, execute = _playbook_request(body, rt)
        if operation == "approve":
            keys = request.get("actions")
            if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
                raise BadInput("actions must be a list of action keys")
            return _response(manage.approve(rt, request["approve"], keys, execute=execute, by=caller))
        if operation == "restore":
            return _response(manage.restore(rt, request["restore"], execute=execute, by=caller))
    except BadInput as exc:
        return _reject(rt, body, str(exc), "playbook")
    except TransientFailure as exc:
        return _response({"error": str(exc)}, 503, {"Retry-After": "30"})
    item = request if operation == "resourceId" else request["event"]
    response = _run_items(rt, [item], execute and not rt.settings.dry_run)
    if response.status_code in (200, 503):
        for result in json.loads(response.get_body()).get("results", []):
            if result.get("incident") and not result.get("duplicate"):
                rt.ledger.set_incident_status(result["incident"], None, rt.clock(), RequestedBy=caller)
    if execute and rt.settings.dry_run and response.status_code == 200:
        payload = json.loads(response.get_body())
        payload["note"] = "RESPONDER_DRY_RUN is on: nothing was changed"
        return _response(payload)
    return response


class SweepIncomplete(RuntimeError):
    """The sweep could not read everything in scope; raised after its ledger row is written."""


def handle_sweep(*, past_due: bool = False) -> dict[str, Any]:
    """Run one sweep with the app's settings (dry-run as RESPONDER_DRY_RUN says). An incomplete sweep
    raises, so the timer's retry policy runs it again; its partial result is already in the ledger."""
    from responders.sweep import run_sweep

    if past_due:
        log.info("sweep timer is past due: sweeping now")
    result = run_sweep(runtime())
    summary = result.summary()
    if result.incomplete:
        raise SweepIncomplete(f"sweep {result.run_id} incomplete: {'; '.join(result.incomplete)[:2000]}")
    return summary
