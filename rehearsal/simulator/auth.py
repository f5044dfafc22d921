"""Opaque bearer tokens: the App Service managed-identity endpoint issues them, every API checks them."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass

from rehearsal.simulator.routing import ARM, GRAPH, LOGS, Call, Reply, error

TOKEN_LIFETIME_S = 3600
AUDIENCES = {
    ARM: ("https://management.azure.com", "https://management.core.windows.net"),
    GRAPH: ("https://graph.microsoft.com",),
    LOGS: ("https://api.loganalytics.io", "https://api.loganalytics.azure.com"),
}
_AUTH_CODES = {
    ARM: "AuthenticationFailed",
    GRAPH: "InvalidAuthenticationToken",
    LOGS: "AuthorizationRequiredError",
}


@dataclass(frozen=True)
class Principal:
    """Who a token was issued to, as the claims of a real token would say."""

    object_id: str
    app_id: str
    audience: str
    issued_at: int
    expires_at: int
    token_id: str


def normalize_audience(resource: str) -> str:
    """Scopes and resources name the same audience with or without /.default and a trailing slash."""
    resource = resource.strip()
    if resource.endswith("/.default"):
        resource = resource[: -len("/.default")]
    return resource.rstrip("/").lower()


class TokenStore:
    """Remembers every token issued so that APIs can tell who calls and tests can scrub them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, Principal] = {}

    def issue(self, object_id: str, app_id: str, audience: str) -> tuple[str, Principal]:
        """A fresh random token valid for one hour."""
        now = int(time.time())
        principal = Principal(
            object_id, app_id, normalize_audience(audience), now, now + TOKEN_LIFETIME_S, uuid.uuid4().hex
        )
        value = secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[value] = principal
        return value, principal

    def lookup(self, value: str) -> Principal | None:
        with self._lock:
            return self._tokens.get(value)

    def values(self) -> set[str]:
        with self._lock:
            return set(self._tokens)


def authenticate(tokens: TokenStore, api: str, authorization: str | None) -> Principal | Reply:
    """The caller behind a Bearer header, or the 401 that API family would send."""
    scheme, _, value = (authorization or "").partition(" ")
    principal = tokens.lookup(value.strip()) if scheme.lower() == "bearer" else None
    code = _AUTH_CODES.get(api, "AuthenticationFailed")
    if principal is None:
        reply = error(api, 401, code, "Authentication failed: missing or unknown bearer token.")
    elif principal.expires_at <= time.time():
        reply = error(
            api, 401, "ExpiredAuthenticationToken" if api == ARM else code, "The access token has expired."
        )
    elif principal.audience not in AUDIENCES.get(api, ()):
        reply = error(
            api,
            401,
            "InvalidAuthenticationTokenAudience" if api == ARM else code,
            f"The access token has an invalid audience {principal.audience!r}.",
        )
    else:
        return principal
    reply.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return reply


def issue_msi_token(
    tokens: TokenStore, call: Call, identity_header: str, principal_id: str, client_id: str
) -> Reply:
    """App Service managed identity (api-version 2019-08-01), as MSAL's App Service flow calls it."""
    if call.header("X-IDENTITY-HEADER") != identity_header:
        return Reply(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong."})
    resource = call.query.get("resource", "")
    if not resource:
        return Reply(400, {"statusCode": 400, "message": "The resource parameter is required."})
    asked = call.query.get("client_id") or call.query.get("object_id") or call.query.get("principal_id")
    if asked and asked.lower() not in (client_id.lower(), principal_id.lower()):
        return Reply(400, {"statusCode": 400, "message": "No managed identity found for the given id."})
    value, principal = tokens.issue(principal_id, client_id, resource)
    return Reply(
        200,
        {
            "access_token": value,
            "expires_on": str(principal.expires_at),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        },
    )
