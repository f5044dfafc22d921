"""Microsoft Graph v1.0 service principal routes: GET (by id or appId) and PATCH (204)."""

from __future__ import annotations

import copy
from typing import Any

from rehearsal.simulator.routing import GRAPH, Call, Context, Reply, Route, error, route

BY_ID = r"/v1\.0/servicePrincipals/(?P<key>[^/()]+)"
BY_APP_ID = r"/v1\.0/servicePrincipals\(appId='(?P<key>[^']+)'\)"
CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals/$entity"
READ_ONLY = {"id", "appId", "@odata.type", "@odata.context", "deletedDateTime", "owners"}
SEED_ONLY = ("owners",)  # seeded relationships, not properties of the entity


def sp_view(tenant_id: str, sp: dict[str, Any]) -> dict[str, Any]:
    """Every documented field, defaulted the way Graph shows an app's service principal."""
    body: dict[str, Any] = {
        "accountEnabled": True,
        "addIns": [],
        "alternativeNames": [],
        "appDisplayName": sp.get("displayName"),
        "appId": sp.get("appId"),
        "appOwnerOrganizationId": tenant_id,
        "appRoleAssignmentRequired": False,
        "appRoles": [],
        "disabledByMicrosoftStatus": None,
        "displayName": None,
        "endpoints": [],
        "homepage": None,
        "id": sp.get("id"),
        "verifiedPublisher": {"displayName": None, "verifiedPublisherId": None, "addedDateTime": None},
        "info": {
            "termsOfServiceUrl": None,
            "supportUrl": None,
            "privacyStatementUrl": None,
            "marketingUrl": None,
            "logoUrl": None,
        },
        "keyCredentials": [],
        "logoutUrl": None,
        "oauth2PermissionScopes": [],
        "passwordCredentials": [],
        "publisherName": None,
        "replyUrls": [],
        "resourceSpecificApplicationPermissions": [],
        "servicePrincipalNames": [sp["appId"]] if sp.get("appId") else [],
        "servicePrincipalType": "Application",
        "signInAudience": "AzureADMyOrg",
        "tags": [],
        "tokenEncryptionKeyId": None,
    }
    body.update({k: copy.deepcopy(v) for k, v in sp.items() if k not in SEED_ONLY})
    return body


def _find(ctx: Context, call: Call) -> dict[str, Any] | Reply:
    sp = ctx.state.find_service_principal(call.params["key"])
    if sp is None:
        return error(
            GRAPH,
            404,
            "Request_ResourceNotFound",
            f"Resource '{call.params['key']}' does not exist or one of its queried "
            "reference-property objects are not present.",
        )
    return sp


def get_service_principal(ctx: Context, call: Call) -> Reply:
    with ctx.state.lock:
        sp = _find(ctx, call)
        if isinstance(sp, Reply):
            return sp
        body = sp_view(ctx.state.tenant_id, sp)
    select = [s.strip() for s in call.query.get("$select", "").split(",") if s.strip()]
    if select:
        wanted = {s.lower() for s in select}
        body = {k: v for k, v in body.items() if k.lower() in wanted}
        context = CONTEXT.replace("/$entity", f"({','.join(select)})/$entity")
        return Reply(200, {"@odata.context": context, **body})
    return Reply(200, {"@odata.context": CONTEXT, **body})


# Microsoft's own tenant: service principals of Microsoft first-party apps are owned by it
MICROSOFT_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
OWNED_BY = "Application.ReadWrite.OwnedBy"
DENIED = ("Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def _refused(ctx: Context, call: Call, sp: dict[str, Any]) -> Reply | None:
    """Graph's 403 (microsoft-graph-docs-contrib#2331 body) for a write the caller may not make:
    under Application.ReadWrite.OwnedBy only service principals it owns (a managed identity's can
    have no owners), and never a Microsoft first-party one."""
    caller = (call.caller.object_id if call.caller else "").lower()
    owners = {str(o).lower() for o in sp.get("owners") or []}
    first_party = str(sp.get("appOwnerOrganizationId") or "").lower() == MICROSOFT_TENANT
    owned_only = (
        ctx.state.responder_graph_permission == OWNED_BY and caller == ctx.state.responder_principal_id
    )
    managed = str(sp.get("servicePrincipalType") or "") == "ManagedIdentity"
    if first_party or (owned_only and (managed or caller not in owners)):
        return error(GRAPH, 403, *DENIED)
    return None


def list_owners(ctx: Context, call: Call) -> Reply:
    """GET /servicePrincipals/{id}/owners: the directory objects that own it (ids only here)."""
    with ctx.state.lock:
        sp = _find(ctx, call)
        if isinstance(sp, Reply):
            return sp
        owners = [
            {"@odata.type": "#microsoft.graph.servicePrincipal", "id": str(o)} for o in sp.get("owners") or []
        ]
    return Reply(
        200,
        {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects", "value": owners},
    )


def patch_service_principal(ctx: Context, call: Call) -> Reply:
    if not isinstance(call.body, dict):
        return error(GRAPH, 400, "BadRequest", "Empty Payload. JSON content expected.")
    if "accountEnabled" in call.body and not isinstance(call.body["accountEnabled"], bool):
        return error(
            GRAPH, 400, "Request_BadRequest", "Invalid value specified for property 'accountEnabled'."
        )
    with ctx.state.lock:
        sp = _find(ctx, call)
        if isinstance(sp, Reply):
            return sp
        refused = _refused(ctx, call, sp)
        if refused is not None:
            return refused
        for name, value in call.body.items():
            if name not in READ_ONLY:
                sp[name] = copy.deepcopy(value)
    return Reply(204)


ROUTES: list[Route] = [
    route("GET", BY_ID + "/owners", list_owners, GRAPH),
    route("GET", BY_ID, get_service_principal, GRAPH),
    route("GET", BY_APP_ID, get_service_principal, GRAPH),
    route("PATCH", BY_ID, patch_service_principal, GRAPH),
    route("PATCH", BY_APP_ID, patch_service_principal, GRAPH),
]
