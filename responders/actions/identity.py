"""Identity adapter (msgraph-sdk): read and disable service principals by immutable object id.

Disabling (accountEnabled=false) is reversible and stops new tokens; tokens already issued stay
valid until they expire (60-90 minutes), which the report tells the human.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from responders.core.model import Action, PrincipalFacts, Write
from responders.core.parse import guid

if TYPE_CHECKING:
    from responders.clients import Clients

SELECT = ["id", "appId", "displayName", "accountEnabled", "servicePrincipalType", "appOwnerOrganizationId"]


def _checked(value: str) -> str:
    """Graph request paths are built from GUIDs only (the URL template would carry anything else)."""
    checked = guid(value)
    if not checked:
        raise ValueError("a service principal or application id must be a GUID")
    return checked


def _is_not_found(exc: Exception) -> bool:
    return getattr(exc, "response_status_code", None) == 404


def _facts(clients: Clients, sp: Any, owners: bool) -> PrincipalFacts:
    """What the plan needs to know of a service principal, owners included when asked (they decide
    whether Application.ReadWrite.OwnedBy may disable it)."""
    object_id = _checked(str(sp.id))
    owned_by: tuple[str, ...] | None = None
    if owners:
        found = clients.run_graph(
            lambda g: g.service_principals.by_service_principal_id(object_id).owners.get()
        )
        owned_by = tuple(str(o.id).lower() for o in (getattr(found, "value", None) or []) if o.id)
    tenant = sp.app_owner_organization_id
    return PrincipalFacts(
        object_id=object_id,
        app_id=str(sp.app_id or "").lower(),
        display_name=str(sp.display_name or ""),
        account_enabled=sp.account_enabled is not False,
        principal_type=str(sp.service_principal_type or ""),
        app_owner_tenant=str(tenant).lower() if tenant else "",
        owners=owned_by,
    )


def read_principal(clients: Clients, object_id: str, *, owners: bool = False) -> PrincipalFacts:
    """GET /servicePrincipals/{id}; 404 means the id is not a service principal (maybe a user)."""
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.service_principals.item.service_principal_item_request_builder import (
        ServicePrincipalItemRequestBuilder,
    )

    params = ServicePrincipalItemRequestBuilder.ServicePrincipalItemRequestBuilderGetQueryParameters(
        select=SELECT
    )
    config = RequestConfiguration(query_parameters=params)
    object_id = _checked(object_id)
    try:
        sp = clients.run_graph(lambda g: g.service_principals.by_service_principal_id(object_id).get(config))
    except Exception as exc:
        if _is_not_found(exc):
            return PrincipalFacts(object_id=object_id, found=False, error="not a service principal (404)")
        raise
    return _facts(clients, sp, owners)


def principals_for_app(clients: Clients, app_id: str, *, owners: bool = False) -> list[PrincipalFacts]:
    """Resolve an application (client) id to its service principal in this tenant (alternate key)."""
    app_id = _checked(app_id)
    try:
        sp = clients.run_graph(lambda g: g.service_principals_with_app_id(app_id).get())
    except Exception as exc:
        if _is_not_found(exc):
            return []
        raise
    return [_facts(clients, sp, owners)]


def principal_state(facts: PrincipalFacts) -> dict[str, Any]:
    """What disabling a principal reads of it (the facts gathered before planning hold the same)."""
    return {
        "found": facts.found,
        "accountEnabled": facts.account_enabled if facts.found else None,
        "appId": facts.app_id,
        "displayName": facts.display_name,
    }


class DisableServicePrincipal:
    """PATCH accountEnabled=false on the service principal."""

    kind = "identity.disable_service_principal"
    observable = True

    def read(self, clients: Clients, action: Action) -> dict[str, Any]:
        return principal_state(read_principal(clients, action.target))

    def state_from(self, known: dict[str, Any], action: Action) -> dict[str, Any] | None:
        return dict(known) if "accountEnabled" in known else None

    def done(self, state: dict[str, Any], action: Action, since: str) -> bool:
        return state.get("accountEnabled") is False

    def done_at(self, state: dict[str, Any]) -> str:
        return ""

    def apply(self, clients: Clients, action: Action) -> list[Write]:
        """Graph writes raise no Event Grid event, so there is no echo to recognise."""
        self._set(clients, action.target, enabled=False)
        return []

    def restore(self, clients: Clients, action: Action, before: dict[str, Any]) -> list[Write]:
        self._set(clients, action.target, enabled=before.get("accountEnabled") is not False)
        return []

    @staticmethod
    def _set(clients: Clients, object_id: str, *, enabled: bool) -> None:
        from msgraph.generated.models.service_principal import ServicePrincipal

        body = ServicePrincipal(account_enabled=enabled)
        object_id = _checked(object_id)
        clients.run_graph(lambda g: g.service_principals.by_service_principal_id(object_id).patch(body))
