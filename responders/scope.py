"""The policy's management group scopes, resolved to the subscriptions they hold now (Resource Graph's
`resourcecontainers`, scoped by `managementGroups`), for the sweep and for every event alike.

Membership changes rarely; it is read at most once per MEMBERS_TTL seconds per process. Until it is
read (or when it cannot be), a management group scope allows nothing: the policy stays safe by
default, and what it blocks is recorded as outside the scope.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from responders.core.policy import Policy
from responders.execute import describe

if TYPE_CHECKING:
    from responders.service import Runtime

log = logging.getLogger("responders.scope")
MEMBERS_QUERY = (
    "resourcecontainers | where type =~ 'microsoft.resources/subscriptions' | project id, subscriptionId"
    " | order by id asc"
)
MEMBERS_TTL = 900.0
MAX_PAGES = 50
_lock = threading.Lock()
_members: dict[tuple[str, tuple[str, ...]], tuple[float, frozenset[str]]] = {}


def subscriptions_of(rt: Runtime, groups: tuple[str, ...]) -> frozenset[str]:
    """The subscription ids under these management groups, paged; errors raise (the caller decides)."""
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    found: set[str] = set()
    token: str | None = None
    for _ in range(MAX_PAGES):
        body: Any = rt.clients.resource_graph().resources(
            QueryRequest(
                management_groups=list(groups),
                query=MEMBERS_QUERY,
                options=QueryRequestOptions(top=1000, skip_token=token, result_format="objectArray"),
            )
        )
        if not isinstance(body.data, list) or str(body.result_truncated).lower() == "true":
            raise ValueError("Resource Graph answered the management groups' subscriptions in part")
        found |= {str(r.get("subscriptionId", "")).lower() for r in body.data if isinstance(r, dict)} - {""}
        token = body.skip_token or None
        if not token:
            return frozenset(found)
    raise ValueError(f"more than {MAX_PAGES} pages of subscriptions")


def effective_policy(rt: Runtime, *, fresh: bool = False) -> tuple[Policy, str]:
    """The policy with its management groups' subscriptions, and why they are unknown ("" when known)."""
    policy = rt.settings.policy
    groups = policy.management_groups
    if not groups:
        return policy, ""
    now = time.monotonic()
    key = (rt.settings.arm_endpoint, groups)  # one tenant's membership is not another's
    with _lock:
        cached = _members.get(key)
    if cached is not None and not fresh and now - cached[0] < MEMBERS_TTL:
        return policy.with_members(cached[1]), ""
    try:
        members = subscriptions_of(rt, groups)
    except Exception as exc:
        why = f"the subscriptions of management groups {', '.join(groups)} could not be read: {describe(exc)}"
        log.warning("%s", why)
        if cached is not None:  # the last membership read stands until a read succeeds
            return policy.with_members(cached[1]), why
        return policy, why
    with _lock:
        _members[key] = (now, members)
    return policy.with_members(members), ""
