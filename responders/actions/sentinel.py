"""Sentinel adapter (Microsoft.SecurityInsights over the ARM pipeline): incident comment and labels.

The comment id is derived from our incident key, so a retry or redelivery rewrites the same comment
instead of adding a second one. Labels are added with the incident's etag (optimistic concurrency).
Every request path is rebuilt from an IncidentRef (validated parts), never taken from a string, so the
bearer token only goes to the configured ARM endpoint.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from responders.core.arm import IncidentRef

if TYPE_CHECKING:
    from responders.clients import Clients

API_VERSION = "2024-09-01"
LABELS = ("synthetic-data-leak", "contained-by-responder")
COMMENT_NAMESPACE = uuid.UUID("6f1e0c52-7a1d-4c3e-9b55-2f0f8f6f4a10")
MAX_COMMENT = 30_000


def comment_id(incident_key: str) -> str:
    """Deterministic comment id for one of our incidents."""
    return str(uuid.uuid5(COMMENT_NAMESPACE, incident_key))


def _send(
    clients: Clients,
    method: str,
    incident: IncidentRef,
    child: str = "",
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    from azure.core.exceptions import HttpResponseError
    from azure.core.rest import HttpRequest

    if not isinstance(incident, IncidentRef):
        raise TypeError("Sentinel requests are built from an IncidentRef, never from a string")
    client = clients.arm()
    url = client.format_url(incident.arm_id + child)
    request = HttpRequest(method, url, params={"api-version": API_VERSION}, json=body, headers=headers)
    response = client.send_request(request)
    if response.status_code >= 400:
        raise HttpResponseError(response=response)
    return response


def write_comment(clients: Clients, incident: IncidentRef, incident_key: str, message: str) -> str:
    """PUT the comment (create or replace); returns the comment id."""
    cid = comment_id(incident_key)
    text = message if len(message) <= MAX_COMMENT else message[: MAX_COMMENT - 20] + "\n...(truncated)"
    _send(clients, "PUT", incident, f"/comments/{cid}", {"properties": {"message": text}})
    return cid


# a stale etag: Sentinel answers 409 Conflict "Newer version of resource ... exists. Data was not
# saved" (Azure/Azure-Sentinel#909); 412 is what other ARM services answer to a failed If-Match
STALE_ETAG = (409, 412)
LABEL_ATTEMPTS = 4


def add_labels(clients: Clients, incident: IncidentRef, labels: tuple[str, ...] = LABELS) -> list[str]:
    """Add labels the incident lacks, with the incident's etag; a stale etag (someone else wrote the
    incident in between) re-reads it and tries again, keeping their change and ours."""
    from azure.core.exceptions import HttpResponseError

    for attempt in range(LABEL_ATTEMPTS):
        current = _send(clients, "GET", incident).json()
        props = current.get("properties", {})
        present = {str(label.get("labelName", "")).lower() for label in props.get("labels") or []}
        missing = [label for label in labels if label.lower() not in present]
        if not missing:
            return []
        props["labels"] = [
            *(props.get("labels") or []),
            *({"labelName": m, "labelType": "User"} for m in missing),
        ]
        body = {"etag": current.get("etag"), "properties": props}
        try:
            _send(clients, "PUT", incident, "", body, headers={"If-Match": str(current.get("etag", "*"))})
            return missing
        except HttpResponseError as exc:
            if exc.status_code not in STALE_ETAG or attempt == LABEL_ATTEMPTS - 1:
                raise
    return []


def incident_entities(clients: Clients, incident: IncidentRef) -> list[dict[str, Any]]:
    """POST {incident}/entities: the entities Sentinel attached, which may come minutes after the
    incident was created (Azure/Azure-Sentinel#4661); a missing incident has none."""
    from azure.core.exceptions import HttpResponseError

    try:
        body = _send(clients, "POST", incident, "/entities").json()
    except HttpResponseError as exc:
        if exc.status_code == 404:
            return []
        raise
    entities = body.get("entities") if isinstance(body, dict) else None
    return [e for e in entities if isinstance(e, dict)] if isinstance(entities, list) else []


def comments(clients: Clients, incident: IncidentRef) -> list[dict[str, Any]]:
    return list(_send(clients, "GET", incident, "/comments").json().get("value", []))
