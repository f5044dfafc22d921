"""Storage adapter (azure-mgmt-storage): read account facts; the containment handlers act then read back.

The regenerateKey response carries both keys in clear: it is dropped here, unread, and never
returned, logged or recorded. Verification reads `keyCreationTime` instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from responders.core.arm import StorageRef, is_container_name, parse_storage_id
from responders.core.model import AccountFacts, Action, ContainerFacts
from responders.core.timeutil import is_after

if TYPE_CHECKING:
    from azure.mgmt.storage import StorageManagementClient

    from responders.clients import Clients


def _ref(resource_id: str) -> StorageRef:
    ref = parse_storage_id(resource_id)
    if ref is None:
        raise ValueError(f"not a storage account id: {resource_id}")
    return ref


def _container(action: Action) -> str:
    """The container an action names, checked again: it goes into the request path."""
    name = action.params.get("container", "")
    if not is_container_name(name):
        raise ValueError(f"not a container name: {name!r}")
    return name


def _client(clients: Clients, ref: StorageRef) -> StorageManagementClient:
    return clients.storage(ref.subscription)


def read_account(clients: Clients, account_id: str) -> AccountFacts:
    """GET the account and list its containers; a missing account is a fact, other errors raise."""
    from azure.core.exceptions import ResourceNotFoundError

    ref = _ref(account_id)
    client = _client(clients, ref)
    try:
        account = client.storage_accounts.get_properties(ref.resource_group, ref.account).as_dict()
    except ResourceNotFoundError as exc:
        return AccountFacts(id=account_id, found=False, error=f"not found ({exc.reason or 404})")
    props = account.get("properties", {}) or {}
    containers = tuple(
        ContainerFacts(
            name=item.get("name", ""),
            public_access=str((item.get("properties", {}) or {}).get("publicAccess") or "None"),
            metadata=dict((item.get("properties", {}) or {}).get("metadata") or {}),
        )
        for item in (c.as_dict() for c in client.blob_containers.list(ref.resource_group, ref.account))
    )
    allow = props.get("allowBlobPublicAccess")
    return AccountFacts(
        id=account_id,
        tags=dict(account.get("tags") or {}),
        allow_blob_public_access=None if allow is None else bool(allow),
        key_creation_time={k: str(v) for k, v in (props.get("keyCreationTime") or {}).items()},
        containers=containers,
    )


def account_state(facts: AccountFacts) -> dict[str, Any]:
    """Public view of an account's exposure, for the incident row (never keys)."""
    return {
        "allowBlobPublicAccess": facts.allow_blob_public_access,
        "containers": {c.name: c.public_access for c in facts.containers},
        "keyCreationTime": dict(facts.key_creation_time),
    }


class DisablePublicAccess:
    """Account allowBlobPublicAccess=false; missing means allowed, so it is always written explicitly."""

    kind = "storage.disable_public_access"
    account_write = True  # Azure runs one such write per account at a time
    observable = True

    def read(self, clients: Clients, action: Action) -> dict[str, Any]:
        facts = read_account(clients, action.target)
        return {"allowBlobPublicAccess": facts.allow_blob_public_access}

    def done(self, state: dict[str, Any], action: Action, since: str) -> bool:
        return state.get("allowBlobPublicAccess") is False

    def done_at(self, state: dict[str, Any]) -> str:
        return ""

    def apply(self, clients: Clients, action: Action) -> None:
        ref = _ref(action.target)
        _client(clients, ref).storage_accounts.update(
            ref.resource_group, ref.account, {"properties": {"allowBlobPublicAccess": False}}
        )

    def restore(self, clients: Clients, action: Action, before: dict[str, Any]) -> None:
        ref = _ref(action.target)
        value = before.get("allowBlobPublicAccess")
        _client(clients, ref).storage_accounts.update(
            ref.resource_group, ref.account, {"properties": {"allowBlobPublicAccess": value is not False}}
        )


class MakeContainerPrivate:
    """Container publicAccess=None; the previous level is kept in the ledger for restore."""

    kind = "storage.make_container_private"
    observable = True

    def read(self, clients: Clients, action: Action) -> dict[str, Any]:
        ref = _ref(action.target)
        container = _container(action)
        item = _client(clients, ref).blob_containers.get(ref.resource_group, ref.account, container).as_dict()
        return {
            "container": container,
            "publicAccess": str((item.get("properties") or {}).get("publicAccess") or "None"),
        }

    def done(self, state: dict[str, Any], action: Action, since: str) -> bool:
        return str(state.get("publicAccess", "")).lower() == "none"

    def done_at(self, state: dict[str, Any]) -> str:
        return ""

    def apply(self, clients: Clients, action: Action) -> None:
        ref = _ref(action.target)
        _client(clients, ref).blob_containers.update(
            ref.resource_group,
            ref.account,
            _container(action),
            {"properties": {"publicAccess": "None"}},
        )

    def restore(self, clients: Clients, action: Action, before: dict[str, Any]) -> None:
        ref = _ref(action.target)
        _client(clients, ref).blob_containers.update(
            ref.resource_group,
            ref.account,
            _container(action),
            {"properties": {"publicAccess": before.get("publicAccess", "None")}},
        )


class RegenerateKey:
    """Regenerate one account key: every SAS signed with it dies. Not reversible."""

    kind = "storage.regenerate_key"
    account_write = True  # Azure runs one such write per account at a time
    observable = True

    def read(self, clients: Clients, action: Action) -> dict[str, Any]:
        ref = _ref(action.target)
        props = (
            _client(clients, ref).storage_accounts.get_properties(ref.resource_group, ref.account).as_dict()
        )
        created = ((props.get("properties") or {}).get("keyCreationTime") or {}).get(
            action.params["key_name"]
        )
        return {"key": action.params["key_name"], "keyCreationTime": str(created) if created else None}

    def done(self, state: dict[str, Any], action: Action, since: str) -> bool:
        """Rotated after the signal: any key that was listed before `since` is already dead."""
        return is_after(state.get("keyCreationTime"), since)

    def done_at(self, state: dict[str, Any]) -> str:
        return str(state.get("keyCreationTime") or "")

    def apply(self, clients: Clients, action: Action) -> None:
        ref = _ref(action.target)
        # retry_total=0: a blind transport retry would rotate twice; the executor verifies instead.
        result = _client(clients, ref).storage_accounts.regenerate_key(
            ref.resource_group, ref.account, {"keyName": action.params["key_name"]}, retry_total=0
        )
        del result


class RevokeUserDelegationKeys:
    """Revoke user-delegation keys: the only way to kill user-delegation SAS. Not observable by GET, so
    "done" means a revocation the ledger recorded (`writtenAt`, added by the executor) after `since`."""

    kind = "storage.revoke_user_delegation_keys"
    account_write = True  # Azure runs one such write per account at a time
    observable = False

    def read(self, clients: Clients, action: Action) -> dict[str, Any]:
        return {"revocation": "not observable through Resource Manager"}

    def done(self, state: dict[str, Any], action: Action, since: str) -> bool:
        return is_after(state.get("writtenAt"), since)

    def done_at(self, state: dict[str, Any]) -> str:
        return str(state.get("writtenAt") or "")

    def apply(self, clients: Clients, action: Action) -> None:
        ref = _ref(action.target)
        _client(clients, ref).storage_accounts.revoke_user_delegation_keys(ref.resource_group, ref.account)
