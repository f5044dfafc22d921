"""The access paths still open on each account after containment, and why: computed from the state read
after the steps ran (never a fixed list), plus the findings no management-plane write can close. Pure.

Sources (tests/data/azure/SOURCES.md): files in the `$web` container are served anonymously at the
static website endpoint whatever the container's public access level says (storage-blob-static-website.md);
the storage firewall only controls the public endpoint, so approved private endpoints pass it
(storage-private-endpoints.md); a SAS dies when the key that signed it is regenerated, and one tied to a
stored access policy also when that policy is deleted, a data-plane change (Set Container ACL) Resource
Manager does not show (the Learn module on stored access policies).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import NamedTuple

from responders.core.model import AccountFacts, Facts, Outcome, PrincipalFacts, RoleAssignmentFacts
from responders.core.timeutil import is_after

STATIC_WEBSITE_CONTAINER = "$web"
# built-in roles by definition id (the GUID at the end of roleDefinitionId) and what their tokens reach
KNOWN_ROLES: Mapping[str, str] = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner (lists the keys)",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor (lists the keys)",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor (lists the keys)",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "db58b8e5-c6ad-4a2a-8342-4190687cbf4a": "Storage Blob Delegator (user-delegation keys)",
}
DONE = ("contained", "already-contained")


class OpenPath(NamedTuple):
    """One way the account's data can still be read, with why it is open."""

    account: str
    path: str
    why: str


def account_findings(account: AccountFacts) -> list[str]:
    """What about the account no step of this responder closes (reported, never acted on)."""
    out: list[str] = []
    if has_static_website_container(account):
        out.append(
            f"container {STATIC_WEBSITE_CONTAINER} exists: with static website hosting on, its files are "
            "served anonymously at the web endpoint whatever allowBlobPublicAccess and its public access "
            "level say; only turning static website off (a Blob service setting) or emptying the "
            "container closes it"
        )
    approved = approved_private_endpoints(account)
    if approved:
        out.append(
            f"approved private endpoint connections {', '.join(approved)}: requests through them do not "
            "pass the storage firewall, so restricting the network does not cut them"
        )
    if "AzureServices" in account.network_bypass and account.network_default_action == "Deny":
        out.append("networkAcls.bypass lets trusted Azure services through the firewall")
    if account.resource_access_rules:
        ids = ", ".join(r for _, r in account.resource_access_rules)
        out.append(f"resource instance rules let {ids} through the firewall")
    return out


def has_static_website_container(account: AccountFacts) -> bool:
    return any(c.name.lower() == STATIC_WEBSITE_CONTAINER for c in account.containers)


def approved_private_endpoints(account: AccountFacts) -> list[str]:
    return [name for name, status in account.private_endpoints if status.lower() == "approved"]


def left_open(
    after: Facts,
    *,
    since: str,
    principals: Iterable[str],
    done: Iterable[tuple[str, str]],
    responder: Iterable[str] = (),
) -> list[OpenPath]:
    """Every path still open on each account `after` shows, each with why.

    `since` is when the signal happened (keys created after it were rotated by or after containment);
    `principals` are the ones the incident implicated; `done` the (kind, target) of the steps that
    ended contained (user-delegation key revocations cannot be read back, so only the record says);
    `responder` the responder's own object ids (its role assignments are its own, not a path)."""
    finished = {(k, t.lower()) for k, t in done}
    own = {r.lower() for r in responder}
    implicated = [p.lower() for p in principals]
    out: list[OpenPath] = []
    for account_id, account in after.accounts.items():
        if not account.found:
            continue
        key = account_id.lower()
        out += _anonymous(key, account)
        out += _shared_key(key, account, since)
        if ("storage.revoke_user_delegation_keys", key) not in finished:
            out.append(
                OpenPath(
                    key,
                    "user-delegation-sas",
                    "user-delegation keys were not revoked: a user-delegation SAS issued before still works "
                    "until it expires (at most 7 days)",
                )
            )
        out += _tokens(key, account, after, implicated, own)
        out += _network(key, account)
    return out


def _anonymous(key: str, account: AccountFacts) -> list[OpenPath]:
    out = []
    public = account.public_containers
    if account.account_public_allowed and public:
        listed = ", ".join(f"{c.name} ({c.public_access})" for c in public)
        out.append(
            OpenPath(key, "anonymous", f"the account allows public access and containers {listed} grant it")
        )
    if has_static_website_container(account):
        out.append(
            OpenPath(
                key,
                "static-website",
                f"container {STATIC_WEBSITE_CONTAINER} is served anonymously at the static website endpoint "
                "whatever allowBlobPublicAccess says",
            )
        )
    return out


def _shared_key(key: str, account: AccountFacts, since: str) -> list[OpenPath]:
    if not account.shared_key_allowed:
        return []
    times = dict(account.key_creation_time)
    stale = sorted(
        name
        for name in ("key1", "key2")
        if not times.get(name) or not since or not is_after(times[name], since)
    )
    if not stale:
        return []
    return [
        OpenPath(
            key,
            "shared-key",
            f"Shared Key is allowed and {', '.join(stale)} were not rotated after the signal: the key and "
            "every account or service SAS signed with it still work (a service SAS tied to a stored "
            "access policy also dies when that policy is deleted, a data-plane change)",
        )
    ]


def _tokens(
    key: str, account: AccountFacts, after: Facts, implicated: list[str], own: set[str]
) -> list[OpenPath]:
    out: list[OpenPath] = []
    network_open = account.public_endpoint_open
    for object_id in implicated:
        principal: PrincipalFacts | None = after.principals.get(object_id)
        if principal is None or not principal.found:
            continue
        if principal.account_enabled:
            out.append(OpenPath(key, "entra-token", f"service principal {object_id} is still enabled"))
        elif network_open:
            out.append(
                OpenPath(
                    key,
                    "entra-token",
                    f"service principal {object_id} is disabled, but tokens issued before stay valid 60-90 "
                    "minutes and the public endpoint accepts every network",
                )
            )
    for role in after.role_assignments.get(key, ()):
        relation = role.relation(key)
        if not relation or role.principal_id.lower() in own:
            continue
        name = KNOWN_ROLES.get(role.role_definition_id.rsplit("/", 1)[-1].lower(), role.role_definition_id)
        whose = "the implicated" if role.principal_id.lower() in implicated else "another"
        where = "inherited from" if relation == "above" else "at"
        out.append(
            OpenPath(
                key,
                "entra-token",
                f"{whose} principal {role.principal_id} holds {name} {where} {role.scope}: its tokens keep "
                "that access" + ("" if network_open else " from the networks the firewall lets in"),
            )
        )
    if key in after.role_assignments_error:
        out.append(
            OpenPath(
                key, "entra-token", f"role assignments could not be read: {after.role_assignments_error[key]}"
            )
        )
    return out


def _network(key: str, account: AccountFacts) -> list[OpenPath]:
    if account.public_endpoint_open:
        return []  # every network reaches the account: the paths above say what they can use
    out = []
    approved = approved_private_endpoints(account)
    if approved:
        out.append(
            OpenPath(
                key,
                "private-endpoint",
                f"approved private endpoint connections {', '.join(approved)} do not pass the firewall",
            )
        )
    if "AzureServices" in account.network_bypass and account.network_default_action == "Deny":
        out.append(
            OpenPath(key, "trusted-services", "networkAcls.bypass lets trusted Azure services through")
        )
    if account.resource_access_rules:
        ids = ", ".join(r for _, r in account.resource_access_rules)
        out.append(
            OpenPath(key, "resource-instances", f"resource instance rules let {ids} through the firewall")
        )
    return out


def after_facts(before: Facts, outcomes: Iterable[Outcome]) -> Facts:
    """The state after containment: the facts read just before it, with what each step observed of its
    target once it ran (its read-back or its write's own answer, `Outcome.after`) put over them. A step
    that observed nothing (it failed, or waits for approval) leaves its target as it was read."""
    accounts = dict(before.accounts)
    principals = dict(before.principals)
    roles = dict(before.role_assignments)
    for outcome in outcomes:
        seen, kind = outcome.after or {}, outcome.action.kind
        target = outcome.action.target.lower()
        account = accounts.get(target)
        if kind == "identity.disable_service_principal":
            principal = principals.get(target)
            if principal is not None and isinstance(seen.get("accountEnabled"), bool):
                principals[target] = replace(principal, account_enabled=seen["accountEnabled"])
            continue
        if account is None:
            continue
        if kind == "storage.disable_public_access" and "allowBlobPublicAccess" in seen:
            account = replace(account, allow_blob_public_access=seen["allowBlobPublicAccess"])
        elif kind == "storage.make_container_private" and seen.get("container"):
            name, level = str(seen["container"]), str(seen.get("publicAccess") or "None")
            account = replace(
                account,
                containers=tuple(
                    replace(c, public_access=level) if c.name == name else c for c in account.containers
                ),
            )
        elif kind == "storage.regenerate_key" and seen.get("key") and seen.get("keyCreationTime"):
            times = {**account.key_creation_time, str(seen["key"]): str(seen["keyCreationTime"])}
            account = replace(account, key_creation_time=times)
        elif kind == "storage.disable_shared_key" and "allowSharedKeyAccess" in seen:
            account = replace(account, allow_shared_key_access=seen["allowSharedKeyAccess"])
        elif kind == "storage.restrict_network" and isinstance(seen.get("networkAcls"), Mapping):
            account = replace(
                account,
                network_acls=dict(seen["networkAcls"]),
                public_network_access=seen.get("publicNetworkAccess"),
            )
        elif kind == "authorization.remove_role_assignments" and "assignments" in seen:
            principal = str(seen.get("principal") or outcome.action.params.get("principal") or "").lower()
            kept = [r for r in roles.get(target, ()) if r.principal_id.lower() != principal]
            left = [*(seen.get("assignments") or ()), *(seen.get("inherited") or ())]
            kept += [_role(r) for r in left if isinstance(r, Mapping)]
            roles[target] = tuple(kept)
        accounts[target] = account
    return replace(before, accounts=accounts, principals=principals, role_assignments=roles)


def _role(record: Mapping[str, object]) -> RoleAssignmentFacts:
    return RoleAssignmentFacts(
        name=str(record.get("name") or ""),
        scope=str(record.get("scope") or ""),
        role_definition_id=str(record.get("roleDefinitionId") or ""),
        principal_id=str(record.get("principalId") or "").lower(),
        principal_type=str(record.get("principalType") or ""),
    )


def private_endpoint_connections(raw: object) -> tuple[tuple[str, str], ...]:
    """(name, status) of each connection in an account's properties.privateEndpointConnections."""
    out = []
    for item in raw if isinstance(raw, list) else ():
        if not isinstance(item, Mapping):
            continue
        props = item.get("properties") if isinstance(item.get("properties"), Mapping) else {}
        state = props.get("privateLinkServiceConnectionState")
        status = state.get("status") if isinstance(state, Mapping) else ""
        out.append((str(item.get("name") or ""), str(status or "")))
    return tuple(out)


def as_rows(paths: Iterable[OpenPath]) -> list[dict[str, str]]:
    """JSON rows for the ledger, the pack and the comment."""
    return [{"account": p.account, "path": p.path, "why": p.why} for p in paths]
