"""ARM Microsoft.SecurityInsights routes: incidents (etag-checked PUT), comments, alerts, entities."""

from __future__ import annotations

import copy
import uuid
from collections import Counter
from typing import Any

from rehearsal.simulator.routing import ARM, Call, Context, Reply, Route, error, route
from rehearsal.simulator.state import NO_OWNER

WORKSPACE = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers"
    r"/Microsoft\.OperationalInsights/workspaces/(?P<ws>[^/]+)/providers/Microsoft\.SecurityInsights"
)
INCIDENT = WORKSPACE + r"/incidents/(?P<incident>[^/]+)"
OP = "Microsoft.SecurityInsights/incidents"
# Set by Sentinel, kept across a PUT whatever the body says.
READ_ONLY = {
    "incidentNumber",
    "createdTimeUtc",
    "lastModifiedTimeUtc",
    "incidentUrl",
    "additionalData",
    "providerIncidentId",
    "providerName",
    "relatedAnalyticRuleIds",
}


def _workspace_id(ctx: Context) -> str:
    sub, rg, ws = ctx.state.sentinel_scope
    return (
        f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.OperationalInsights"
        f"/workspaces/{ws}/providers/Microsoft.SecurityInsights"
    )


def _in_workspace(ctx: Context, call: Call) -> bool:
    wanted = tuple(s.lower() for s in ctx.state.sentinel_scope)
    return (call.params["sub"].lower(), call.params["rg"].lower(), call.params["ws"].lower()) == wanted


def _find(ctx: Context, call: Call) -> dict[str, Any] | Reply:
    incident = ctx.state.incidents.get(call.params["incident"].lower()) if _in_workspace(ctx, call) else None
    if incident is None:
        return error(ARM, 404, "NotFound", f"Incident {call.params['incident']} was not found.")
    return incident


def incident_view(ctx: Context, incident: dict[str, Any]) -> dict[str, Any]:
    resource_id = f"{_workspace_id(ctx)}/incidents/{incident['name']}"
    properties = copy.deepcopy(incident["properties"])
    properties.setdefault(
        "incidentUrl",
        f"https://portal.azure.com/#asset/Microsoft_Azure_Security_Insights/Incident{resource_id}",
    )
    properties["additionalData"] = {
        "alertsCount": len(incident["alerts"]),
        "bookmarksCount": 0,
        "commentsCount": len(incident["comments"]),
        "alertProductNames": sorted(
            {a.get("properties", {}).get("productName") for a in incident["alerts"]} - {None, ""}
        ),
        "tactics": [],
    }
    return {
        "id": resource_id,
        "name": incident["name"],
        "type": OP,
        "etag": incident["etag"],
        "properties": properties,
    }


def get_incident(ctx: Context, call: Call) -> Reply:
    with ctx.state.lock:
        found = _find(ctx, call)
        return found if isinstance(found, Reply) else Reply(200, incident_view(ctx, found))


def _etag_matches(sent: str | None, current: str) -> bool:
    if sent is None or sent.strip() == "*":
        return True
    return sent.strip().removeprefix("W/").strip('"') == current.strip('"')


def put_incident(ctx: Context, call: Call) -> Reply:
    body = call.body if isinstance(call.body, dict) else None
    properties = body.get("properties") if body else None
    if not isinstance(properties, dict):
        return error(ARM, 400, "BadRequest", "The incident properties are required.")
    missing = [p for p in ("title", "severity", "status") if not properties.get(p)]
    if missing:
        return error(ARM, 400, "BadRequest", f"Missing required properties: {', '.join(missing)}.")
    if properties["status"] == "Closed" and not properties.get("classification"):
        return error(ARM, 400, "BadRequest", "Classification is required when closing an incident.")
    if not _in_workspace(ctx, call):
        return error(ARM, 404, "NotFound", "Workspace was not found.")
    with ctx.state.lock:
        incident = ctx.state.incidents.get(call.params["incident"].lower())
        sent = call.header("If-Match") or body.get("etag")
        if incident is not None and not _etag_matches(sent, incident["etag"]):
            # Sentinel answers a stale etag with 409, not 412 (Azure/Azure-Sentinel#909)
            return error(
                ARM,
                409,
                "Conflict",
                f"Newer version of resource '{incident['name']}' exists. Data was not saved",
            )
        created = incident is None
        if created:
            number = (
                max(
                    (i["properties"].get("incidentNumber", 0) for i in ctx.state.incidents.values()),
                    default=0,
                )
                + 1
            )
            incident = {
                "name": call.params["incident"],
                "comments": {},
                "alerts": [],
                "entities": [],
                "properties": {
                    "incidentNumber": number,
                    "createdTimeUtc": ctx.state.now(),
                    "providerIncidentId": str(number),
                    "relatedAnalyticRuleIds": [],
                },
            }
            ctx.state.incidents[incident["name"].lower()] = incident
        kept = {k: v for k, v in incident["properties"].items() if k in READ_ONLY}
        incident["properties"] = {**copy.deepcopy(properties), **kept, "lastModifiedTimeUtc": ctx.state.now()}
        incident["properties"].setdefault("labels", [])
        incident["properties"]["owner"] = {**NO_OWNER, **(properties.get("owner") or {})}
        for label in incident["properties"]["labels"]:
            if isinstance(label, dict):
                label.setdefault("labelType", "User")
        incident["etag"] = f'"{uuid.uuid4()}"'
        view = incident_view(ctx, incident)
        ctx.events.emit(call, view["id"], ctx.state.sentinel_scope[0], f"{OP}/write")
        return Reply(201 if created else 200, view)


def _comment_view(ctx: Context, incident: dict[str, Any], comment: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{_workspace_id(ctx)}/incidents/{incident['name']}/comments/{comment['name']}",
        "name": comment["name"],
        "type": f"{OP}/comments",
        "etag": comment["etag"],
        "properties": copy.deepcopy(comment["properties"]),
    }


def put_comment(ctx: Context, call: Call) -> Reply:
    body = call.body if isinstance(call.body, dict) else {}
    properties = body.get("properties")
    message = properties.get("message") if isinstance(properties, dict) else None
    if not isinstance(message, str) or not message:
        return error(ARM, 400, "BadRequest", "properties.message is required.")
    with ctx.state.lock:
        incident = _find(ctx, call)
        if isinstance(incident, Reply):
            return incident
        key = call.params["comment"].lower()
        comment = incident["comments"].get(key)
        created = comment is None
        now = ctx.state.now()
        if created:
            caller = call.caller
            author = {
                "objectId": caller.object_id if caller else None,
                "email": None,
                "userPrincipalName": None,
                "name": caller.app_id if caller else None,
            }
            comment = {
                "name": call.params["comment"],
                "properties": {"message": message, "createdTimeUtc": now, "author": author},
            }
            incident["comments"][key] = comment
        comment["properties"]["message"] = message
        comment["properties"]["lastModifiedTimeUtc"] = now
        comment["etag"] = f'"{uuid.uuid4()}"'  # quoted, like incident etags (recorded SOAR traffic)
        view = _comment_view(ctx, incident, comment)
        ctx.events.emit(call, view["id"], ctx.state.sentinel_scope[0], f"{OP}/comments/write")
        return Reply(201 if created else 200, view)


def get_comment(ctx: Context, call: Call) -> Reply:
    with ctx.state.lock:
        incident = _find(ctx, call)
        if isinstance(incident, Reply):
            return incident
        comment = incident["comments"].get(call.params["comment"].lower())
        if comment is None:
            return error(ARM, 404, "NotFound", f"Comment {call.params['comment']} was not found.")
        return Reply(200, _comment_view(ctx, incident, comment))


def list_comments(ctx: Context, call: Call) -> Reply:
    with ctx.state.lock:
        incident = _find(ctx, call)
        if isinstance(incident, Reply):
            return incident
        comments = sorted(incident["comments"].values(), key=lambda c: c["properties"]["createdTimeUtc"])
        return Reply(200, {"value": [_comment_view(ctx, incident, c) for c in comments]})


def list_alerts(ctx: Context, call: Call) -> Reply:
    with ctx.state.lock:
        incident = _find(ctx, call)
        if isinstance(incident, Reply):
            return incident
        return Reply(200, {"value": copy.deepcopy(incident["alerts"])})


def list_entities(ctx: Context, call: Call) -> Reply:
    with ctx.state.lock:
        incident = _find(ctx, call)
        if isinstance(incident, Reply):
            return incident
        entities = copy.deepcopy(incident["entities"])
        counts = Counter(e.get("kind", "Unknown") for e in entities)
        return Reply(
            200,
            {
                "entities": entities,
                "metaData": [{"entityKind": k, "count": n} for k, n in sorted(counts.items())],
            },
        )


ROUTES: list[Route] = [
    route("GET", INCIDENT, get_incident, ARM),
    route("PUT", INCIDENT, put_incident, ARM),
    route("GET", INCIDENT + "/comments", list_comments, ARM),
    route("GET", INCIDENT + r"/comments/(?P<comment>[^/]+)", get_comment, ARM),
    route("PUT", INCIDENT + r"/comments/(?P<comment>[^/]+)", put_comment, ARM),
    route("POST", INCIDENT + "/alerts", list_alerts, ARM),
    route("POST", INCIDENT + "/entities", list_entities, ARM),
]
