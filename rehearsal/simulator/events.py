"""Event Grid events (Event Grid schema) that Azure would emit for ARM writes and actions."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from rehearsal.simulator.routing import Call
from rehearsal.simulator.timefmt import arm_time

WRITE = "Microsoft.Resources.ResourceWriteSuccess"
ACTION = "Microsoft.Resources.ResourceActionSuccess"
CONTRIBUTOR_ROLE = "b24988ac-6180-42a0-ab88-20f7382dd24c"


class EventLog:
    """Collects events in order; the responder uses them to prove it ignores its own echo."""

    def __init__(self, tenant_id: str, clock: Callable[[], datetime]) -> None:
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._tenant_id = tenant_id
        self._clock = clock

    def emit(self, call: Call, resource_id: str, subscription_id: str, operation: str) -> None:
        """Record one ResourceWriteSuccess (operation ends in /write) or ResourceActionSuccess."""
        caller = call.caller
        object_id = caller.object_id if caller else ""
        scope = f"/subscriptions/{subscription_id}"
        query = f"?{urlencode(dict(call.query))}" if call.query else ""
        event = {
            "subject": resource_id,
            "eventType": WRITE if operation.lower().endswith("/write") else ACTION,
            "eventTime": arm_time(self._clock()),
            "id": str(uuid.uuid4()),
            "data": {
                "authorization": {
                    "scope": resource_id,
                    "action": operation,
                    "evidence": {
                        "role": "Contributor",
                        "roleAssignmentScope": scope,
                        "roleAssignmentId": uuid.uuid5(uuid.NAMESPACE_URL, scope + object_id).hex,
                        "roleDefinitionId": CONTRIBUTOR_ROLE.replace("-", ""),
                        "principalId": object_id.replace("-", ""),
                        "principalType": "ServicePrincipal",
                    },
                },
                "claims": self._claims(caller),
                "correlationId": call.header("x-ms-correlation-request-id") or str(uuid.uuid4()),
                "httpRequest": {
                    "clientRequestId": call.header("x-ms-client-request-id") or "",
                    "clientIpAddress": call.client,
                    "method": call.method,
                    "url": f"https://management.azure.com{call.path}{query}",
                },
                "resourceProvider": operation.split("/", 1)[0],
                "resourceUri": resource_id,
                "operationName": operation,
                "status": "Succeeded",
                "subscriptionId": subscription_id,
                "tenantId": self._tenant_id,
            },
            "dataVersion": "2",
            "metadataVersion": "1",
            "topic": scope,
        }
        with self._lock:
            self._events.append(event)

    def _claims(self, caller: Any) -> dict[str, str]:
        issued = str(caller.issued_at) if caller else ""
        object_id = caller.object_id if caller else ""
        return {
            "aud": caller.audience if caller else "",
            "iss": f"https://sts.windows.net/{self._tenant_id}/",
            "iat": issued,
            "nbf": issued,
            "exp": str(caller.expires_at) if caller else "",
            "aio": "",
            "appid": caller.app_id if caller else "",
            "appidacr": "2",
            "http://schemas.microsoft.com/identity/claims/identityprovider": f"https://sts.windows.net/{self._tenant_id}/",
            "http://schemas.microsoft.com/identity/claims/objectidentifier": object_id,
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier": object_id,
            "http://schemas.microsoft.com/identity/claims/tenantid": self._tenant_id,
            "uti": caller.token_id if caller else "",
            "ver": "1.0",
        }

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._events)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
