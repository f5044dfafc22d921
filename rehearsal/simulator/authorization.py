"""ARM Microsoft.Authorization role assignments: list for a scope (with the filters Azure accepts),
get, create and delete, in the shapes of the azure-rest-api-specs 2022-04-01 examples.

Assignments are inherited: one at a subscription or resource group applies to every resource below it.
So a list for a scope without a filter answers those at, above and below the scope; `atScope()` those
at or above it; `principalId eq '{id}'` and `assignedTo('{id}')` those of one principal at, above or
below it (group membership is not modelled: `assignedTo` matches the principal's own assignments).
"""

from __future__ import annotations

import re
from typing import Any

from rehearsal.simulator.routing import ARM, Call, Context, Reply, Route, error, route

TYPE = "Microsoft.Authorization/roleAssignments"
SCOPE = r"(?P<scope>(?:/[^/]+)*?)"
LIST = SCOPE + r"/providers/Microsoft\.Authorization/roleAssignments"
ONE = LIST + r"/(?P<name>[^/]+)"
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_QUOTED = r"'(?P<id>[^']*)'"
_FILTERS = {
    "at": re.compile(r"atScope\(\)", re.IGNORECASE),
    "principal": re.compile(r"principalId\s+eq\s+" + _QUOTED, re.IGNORECASE),
    "assigned": re.compile(r"assignedTo\(" + _QUOTED + r"\)", re.IGNORECASE),
    "at+assigned": re.compile(r"atScope\(\)\s+and\s+assignedTo\(" + _QUOTED + r"\)", re.IGNORECASE),
}
# what Azure answers any other filter (azure-rest-api-specs#28255; the code as steampipe-plugin-azure
# quotes it)
UNSUPPORTED = (
    "UnsupportedQuery",
    "The filter '{}' is not supported. Supported filters are either 'atScope()' or "
    "'principalId eq '{{value}}' or assignedTo('{{value}}')'.",
)
# properties a create may set; the rest Azure fills in
WRITABLE = (
    "roleDefinitionId",
    "principalId",
    "principalType",
    "condition",
    "conditionVersion",
    "description",
)
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")


def normal_scope(scope: str) -> str:
    """A scope as assignments carry it: leading slash, no trailing one ("/" is the tenant root)."""
    return "/" + scope.strip("/")


def _at_or_above(assigned: str, scope: str) -> bool:
    a, s = assigned.lower().rstrip("/"), scope.lower().rstrip("/")
    return a == "" or s == a or s.startswith(a + "/")


def _below(assigned: str, scope: str) -> bool:
    return assigned.lower().startswith(scope.lower().rstrip("/") + "/")


def assignment_view(record: dict[str, Any]) -> dict[str, Any]:
    """The body Azure answers for one assignment (every 2022-04-01 property, null when unset)."""
    props = record["properties"]
    scope = props["scope"]
    return {
        "properties": {
            "roleDefinitionId": props["roleDefinitionId"],
            "principalId": props["principalId"],
            "principalType": props.get("principalType", "User"),
            "scope": scope,
            "condition": props.get("condition"),
            "conditionVersion": props.get("conditionVersion"),
            "createdOn": props.get("createdOn"),
            "updatedOn": props.get("updatedOn"),
            "createdBy": props.get("createdBy"),
            "updatedBy": props.get("updatedBy"),
            "delegatedManagedIdentityResourceId": props.get("delegatedManagedIdentityResourceId"),
            "description": props.get("description"),
        },
        "id": f"{scope.rstrip('/')}/providers/{TYPE}/{record['name']}",
        "type": TYPE,
        "name": record["name"],
    }


def _selector(raw: str) -> tuple[str, str] | Reply:
    """(which filter, principal id) for a $filter Azure accepts, or its 400."""
    text = raw.strip()
    if not text:
        return "", ""
    for kind, pattern in _FILTERS.items():
        match = pattern.fullmatch(text)
        if match:
            return kind, (match.groupdict().get("id") or "").lower()
    code, message = UNSUPPORTED
    return error(ARM, 400, code, message.format(raw))


def list_for_scope(ctx: Context, call: Call) -> Reply:
    """RoleAssignments_ListForScope (RoleAssignments_ListForScope.json)."""
    scope = normal_scope(call.params["scope"])
    chosen = _selector(call.query.get("$filter", ""))
    if isinstance(chosen, Reply):
        return chosen
    kind, principal = chosen
    with ctx.state.lock:
        found = []
        for record in ctx.state.role_assignments.values():
            assigned = record["properties"]["scope"]
            above = _at_or_above(assigned, scope)
            if not (above or (kind not in ("at", "at+assigned") and _below(assigned, scope))):
                continue
            if principal and record["properties"]["principalId"].lower() != principal:
                continue
            found.append(assignment_view(record))
    found.sort(key=lambda a: (a["properties"]["scope"].lower(), a["name"]))
    return Reply(200, {"value": found})


def _named(ctx: Context, call: Call) -> dict[str, Any] | None:
    """The assignment of that name at exactly that scope (names are unique across scopes)."""
    record = ctx.state.role_assignments.get(call.params["name"].lower())
    scope = normal_scope(call.params["scope"])
    if record is None or record["properties"]["scope"].lower() != scope.lower():
        return None
    return record


def get_assignment(ctx: Context, call: Call) -> Reply:
    """RoleAssignments_Get (RoleAssignments_Get.json); 404 RoleAssignmentNotFound when absent."""
    with ctx.state.lock:
        record = _named(ctx, call)
        if record is None:
            return error(
                ARM,
                404,
                "RoleAssignmentNotFound",
                "The role assignment '{}' is not found.".format(call.params["name"]),
            )
        return Reply(200, assignment_view(record))


def delete_assignment(ctx: Context, call: Call) -> Reply:
    """RoleAssignments_Delete (RoleAssignments_Delete.json): 200 with the deleted assignment, 204 when
    it was already deleted or never existed."""
    with ctx.state.lock:
        record = _named(ctx, call)
        if record is None:
            return Reply(204)
        del ctx.state.role_assignments[record["name"].lower()]
        return Reply(200, assignment_view(record))


def _same_role(a: str, b: str) -> bool:
    """Role definition ids name the same role with or without the subscription prefix."""
    return a.rsplit("/", 1)[-1].lower() == b.rsplit("/", 1)[-1].lower()


def create_assignment(ctx: Context, call: Call) -> Reply:
    """RoleAssignments_Create (RoleAssignments_CreateForResource.json): 201 when created, 200 when the
    same assignment is put again; names are GUIDs, unique across scopes, and never change properties."""
    name = call.params["name"]
    if not _GUID.fullmatch(name):
        return error(
            ARM,
            400,
            "InvalidRoleAssignmentId",
            f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
        )
    body = call.body.get("properties") if isinstance(call.body, dict) else None
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k), str) for k in ("roleDefinitionId", "principalId")
    ):
        return error(
            ARM, 400, "InvalidRequestContent", "properties.roleDefinitionId and principalId are required."
        )
    bad = [k for k in WRITABLE if body.get(k) is not None and not isinstance(body.get(k), str)]
    if bad or body.get("principalType", "User") not in PRINCIPAL_TYPES:
        return error(
            ARM,
            400,
            "InvalidRequestContent",
            f"invalid role assignment properties {bad or ['principalType']}.",
        )
    scope = normal_scope(call.params["scope"])
    wanted = {k: body.get(k) for k in WRITABLE if body.get(k) is not None}
    wanted.setdefault("principalType", "User")
    with ctx.state.lock:
        existing = ctx.state.role_assignments.get(name.lower())
        if existing is not None:
            props = existing["properties"]
            same = props["scope"].lower() == scope.lower() and all(
                str(props.get(k) or "").lower() == str(v).lower() for k, v in wanted.items()
            )
            if not same:
                return error(
                    ARM,
                    400,
                    "RoleAssignmentUpdateNotPermitted",
                    "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                )
            return Reply(200, assignment_view(existing))
        for other in ctx.state.role_assignments.values():
            props = other["properties"]
            if (
                props["scope"].lower() == scope.lower()
                and props["principalId"].lower() == wanted["principalId"].lower()
                and _same_role(props["roleDefinitionId"], wanted["roleDefinitionId"])
                and (props.get("condition") or "") == (wanted.get("condition") or "")
            ):
                return error(ARM, 409, "RoleAssignmentExists", "The role assignment already exists.")
        now = ctx.state.now()
        caller = call.caller.object_id if call.caller else None
        record = {
            "name": name.lower(),
            "properties": {
                **wanted,
                "scope": scope,
                "createdOn": now,
                "updatedOn": now,
                "createdBy": caller,
                "updatedBy": caller,
            },
        }
        ctx.state.role_assignments[name.lower()] = record
        return Reply(201, assignment_view(record))


ROUTES: list[Route] = [
    route("GET", LIST, list_for_scope, ARM),
    route("GET", ONE, get_assignment, ARM),
    route("PUT", ONE, create_assignment, ARM),
    route("DELETE", ONE, delete_assignment, ARM),
]
