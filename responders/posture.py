"""Read what the posture checks need of one storage account: the account and its containers (the
storage SDK), the blob service's diagnostic settings (Resource Manager through the bare ARM pipeline:
azure-mgmt-monitor is not in our set), the role assignments that reach the account (the authorization
adapter) and the tags of the service principals holding them (Graph). Read-only.

Every URL is built from a parsed, validated storage account id, never from input text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from responders.core.arm import StorageRef, parse_storage_id
from responders.core.model import ContainerFacts
from responders.core.posture import AccountPosture

if TYPE_CHECKING:
    from responders.clients import Clients

DIAGNOSTICS_API = "2021-05-01-preview"
MAX_PAGES = 50


_NAME = re.compile(r"[a-z0-9]{3,24}")


def _ref(account_id: str) -> StorageRef:
    """The parsed account id; its name must be a storage account name (3-24 letters and digits)."""
    ref = parse_storage_id(account_id)
    if ref is None or ref.container or not _NAME.fullmatch(ref.account.lower()):
        raise ValueError(f"not a storage account id: {account_id[:200]!r}")
    return ref


def _account_id(account_id: str) -> str:
    return _ref(account_id).account_id


def _get_all(clients: Clients, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """GET a Resource Manager list and follow its nextLink (on the same endpoint only)."""
    from urllib.parse import urlparse

    from azure.core.exceptions import HttpResponseError
    from azure.core.rest import HttpRequest

    client = clients.arm()
    base = urlparse(clients.settings.arm_endpoint)
    url: str | None = client.format_url(path)
    request = HttpRequest("GET", url, params=params)
    out: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        response = client.send_request(request)
        if response.status_code >= 400:
            raise HttpResponseError(response=response)
        body = response.json()
        out += [v for v in body.get("value") or [] if isinstance(v, dict)]
        url = body.get("nextLink")
        if not url:
            return out
        parsed = urlparse(url)
        if (parsed.scheme, parsed.netloc) != (base.scheme, base.netloc):
            raise ValueError("a nextLink pointed away from the Resource Manager endpoint")
        request = HttpRequest("GET", url)
    raise ValueError(f"more than {MAX_PAGES} pages")


def blob_diagnostic_settings(clients: Clients, account_id: str) -> list[dict[str, Any]]:
    """The diagnostic settings of the account's blob service (where StorageBlobLogs come from)."""
    path = _account_id(account_id) + "/blobServices/default/providers/Microsoft.Insights/diagnosticSettings"
    return _get_all(clients, path, {"api-version": DIAGNOSTICS_API})


def role_assignments(clients: Clients, account_id: str) -> list[dict[str, Any]]:
    """The role assignments that apply to the account (at, above and below it), as the authorization
    adapter lists them for the facts."""
    from responders.actions.authorization import read_account_roles

    return [
        {"principalId": r.principal_id, "roleDefinitionId": r.role_definition_id, "scope": r.scope}
        for r in read_account_roles(clients, _account_id(account_id))
    ]


def principal_tags(clients: Clients, object_id: str) -> list[str] | None:
    """The tags of a service principal (GET /servicePrincipals/{id}?$select=id,tags), None when the id is
    not one (a user, a group: 404)."""
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.service_principals.item.service_principal_item_request_builder import (
        ServicePrincipalItemRequestBuilder,
    )

    from responders.core.parse import guid

    checked = guid(object_id)
    if not checked:
        raise ValueError("a service principal id must be a GUID")
    params = ServicePrincipalItemRequestBuilder.ServicePrincipalItemRequestBuilderGetQueryParameters(
        select=["id", "tags"]
    )
    config = RequestConfiguration(query_parameters=params)
    try:
        sp = clients.run_graph(lambda g: g.service_principals.by_service_principal_id(checked).get(config))
    except Exception as exc:
        if getattr(exc, "response_status_code", None) == 404:
            return None
        raise
    return [str(t) for t in (getattr(sp, "tags", None) or [])]


def read_posture(
    clients: Clients, account_id: str, *, diagnostics: bool = True, roles: bool = False
) -> AccountPosture:
    """The account as the posture checks read it. A read that fails raises (the caller records it);
    one not asked for stays None, so its checks count as not made."""
    ref = _ref(account_id)
    storage = clients.storage(ref.subscription)
    account = storage.storage_accounts.get_properties(ref.resource_group, ref.account)
    wire = account.as_dict()  # the hybrid models of azure-mgmt-storage 25 answer in wire names
    containers = tuple(
        ContainerFacts(
            name=str(c.name),
            public_access=str(getattr(c.public_access, "value", c.public_access) or "None"),
            metadata=dict(c.metadata or {}),
        )
        for c in storage.blob_containers.list(ref.resource_group, ref.account)
    )
    return AccountPosture(
        id=ref.account_id,
        tags=dict(account.tags or {}),
        properties=wire.get("properties") or {},
        containers=containers,
        diagnostics=tuple(blob_diagnostic_settings(clients, ref.account_id)) if diagnostics else None,
        role_assignments=tuple(role_assignments(clients, ref.account_id)) if roles else None,
    )


def finished_principals(principals: Iterable[Mapping[str, Any]], tags: Iterable[str]) -> dict[str, str]:
    """Service principals (Graph JSON: id, tags) whose tags say their job is done: object id -> why."""
    wanted = {t.lower() for t in tags}
    out: dict[str, str] = {}
    for sp in principals:
        marks = sorted({str(t).lower() for t in sp.get("tags") or []} & wanted)
        if marks and sp.get("id"):
            out[str(sp["id"]).lower()] = "tagged " + ", ".join(marks)
    return out
