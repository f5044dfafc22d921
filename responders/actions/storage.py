"""Storage adapter (azure-mgmt-storage): read account facts; the containment handlers act then read back.

The regenerateKey response carries both keys in clear: it is dropped here, unread, and never
returned, logged or recorded. Verification reads `keyCreationTime` instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from responders.core.arm import StorageRef, is_container_name, parse_storage_id
from responders.core.model import AccountFacts, Action, Applied, ContainerFacts, Write
from responders.core.network import (
    TrustedNetwork,
    is_restricted,
    restorable_network,
    restricted_acls,
    same_network,
)
from responders.core.open_paths import private_endpoint_connections
from responders.core.parse import guid
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


OPERATION = "microsoft.storage/storageaccounts"


class Recorder:
    """Notes the correlation id Resource Manager gives each successful answer to a write (azure-core's
    `raw_response_hook`), so the ledger can tell the write's Event Grid echo from anyone else's change."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self, response: Any) -> None:
        http = response.http_response
        if 200 <= http.status_code < 300:
            correlation = guid(http.headers.get("x-ms-correlation-request-id"))
            if correlation:
                self.ids.append(correlation)

    def writes(self, resource: str, operation: str) -> list[Write]:
        return [Write(c, resource.lower(), f"{OPERATION}/{operation}") for c in dict.fromkeys(self.ids)]


# Container metadata needs one GET per container (the list leaves it out): read at most this many,
# this many at a time, and only for the containers the signal names (all when it names none).
MAX_METADATA_READS = 100
METADATA_WORKERS = 8


def read_account(
    clients: Clients,
    account_id: str,
    *,
    tags_decide: Callable[[Mapping[str, str]], bool] | None = None,
    containers: tuple[str, ...] = (),
) -> AccountFacts:
    """GET the account and list its containers; a missing account is a fact, other errors raise.

    Resource Manager's container list carries no metadata (BlobContainers_List), so when
    `tags_decide` is given and the account's tags do not already decide, each container's metadata
    is read with a GET of its own, bounded and concurrently."""
    from azure.core.exceptions import ResourceNotFoundError

    ref = _ref(account_id)
    client = _client(clients, ref)
    # the container list does not depend on the account's body: both requests go out at once
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="containers") as pool:
        listing = pool.submit(
            lambda: [c.as_dict() for c in client.blob_containers.list(ref.resource_group, ref.account)]
        )
        try:
            account = client.storage_accounts.get_properties(ref.resource_group, ref.account).as_dict()
        except ResourceNotFoundError as exc:
            listing.exception()  # the list fails alike; wait for it, its error says nothing more
            return AccountFacts(id=account_id, found=False, error=f"not found ({exc.reason or 404})")
        listed = listing.result()
    props = account.get("properties", {}) or {}
    tags = dict(account.get("tags") or {})
    metadata: dict[str, dict[str, str]] = {}
    unread = 0
    if tags_decide is not None and not tags_decide(tags):
        wanted = [c.get("name", "") for c in listed if not containers or c.get("name") in containers]
        unread = max(0, len(wanted) - MAX_METADATA_READS)
        metadata = _container_metadata(client, ref, wanted[:MAX_METADATA_READS])
    facts = tuple(
        ContainerFacts(
            name=item.get("name", ""),
            public_access=str((item.get("properties", {}) or {}).get("publicAccess") or "None"),
            metadata=metadata.get(item.get("name", ""), {}),
        )
        for item in listed
    )
    allow = props.get("allowBlobPublicAccess")
    shared = props.get("allowSharedKeyAccess")
    return AccountFacts(
        id=account_id,
        tags=tags,
        allow_blob_public_access=None if allow is None else bool(allow),
        key_creation_time=key_times(props.get("keyCreationTime")),
        containers=facts,
        metadata_unread=unread,
        allow_shared_key_access=None if shared is None else bool(shared),
        public_network_access=_public_network_access(props),
        network_acls=_network_acls(props),
        private_endpoints=private_endpoint_connections(props.get("privateEndpointConnections")),
    )


def _network_acls(props: Mapping[str, Any]) -> dict[str, Any]:
    """`networkAcls` as answered (a copy); anything but an object counts as none."""
    raw = props.get("networkAcls")
    return json.loads(json.dumps(raw)) if isinstance(raw, Mapping) else {}


def _public_network_access(props: Mapping[str, Any]) -> str | None:
    raw = props.get("publicNetworkAccess")
    return None if raw is None else str(raw)


def list_containers(clients: Clients, account_id: str) -> tuple[ContainerFacts, ...]:
    """The account's containers and their public access, from one Resource Manager list (no metadata:
    the list has none); errors raise."""
    ref = _ref(account_id)
    listed = [
        c.as_dict() for c in _client(clients, ref).blob_containers.list(ref.resource_group, ref.account)
    ]
    return tuple(
        ContainerFacts(
            name=item.get("name", ""),
            public_access=str((item.get("properties", {}) or {}).get("publicAccess") or "None"),
        )
        for item in listed
    )


def key_times(raw: Any) -> dict[str, str | None]:
    """keyCreationTime per key; an account older than the property reports null, kept as None."""
    return {str(k): (None if v is None else str(v)) for k, v in (raw or {}).items()}


def _answered_account(account: dict[str, Any]) -> dict[str, Any]:
    """The known state an account PATCH answers with (the whole account), keyed as `known_account`."""
    props = account.get("properties") or {}
    allow = props.get("allowBlobPublicAccess")
    shared = props.get("allowSharedKeyAccess")
    return {
        "allowBlobPublicAccess": None if allow is None else bool(allow),
        "keyCreationTime": key_times(props.get("keyCreationTime")),
        "allowSharedKeyAccess": None if shared is None else bool(shared),
        "network": _network_state(_network_acls(props), _public_network_access(props)),
    }


def _network_state(acls: Mapping[str, Any], public_network_access: str | None) -> dict[str, Any]:
    return {"networkAcls": dict(acls), "publicNetworkAccess": public_network_access}


def _container_metadata(
    client: StorageManagementClient, ref: StorageRef, names: list[str]
) -> dict[str, dict[str, str]]:
    """GET each named container (concurrently) for the metadata the list leaves out."""
    if not names:
        return {}

    def one(name: str) -> dict[str, str]:
        item = client.blob_containers.get(ref.resource_group, ref.account, name).as_dict()
        return dict((item.get("properties") or {}).get("metadata") or {})

    with ThreadPoolExecutor(max_workers=min(METADATA_WORKERS, len(names)), thread_name_prefix="meta") as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def account_state(facts: AccountFacts) -> dict[str, Any]:
    """Public view of an account's exposure, for the incident row (never keys)."""
    return {
        "allowBlobPublicAccess": facts.allow_blob_public_access,
        "containers": {c.name: c.public_access for c in facts.containers},
        "keyCreationTime": dict(facts.key_creation_time),
        "allowSharedKeyAccess": facts.allow_shared_key_access,
        "networkAcls": dict(facts.network_acls),
        "publicNetworkAccess": facts.public_network_access,
    }


def known_account(facts: AccountFacts) -> dict[str, Any]:
    """What the facts show of the account, for the steps' first reads. The network state is one value
    under "network": a write's answer replaces it whole (networkAcls is replaced whole, never merged)."""
    state = account_state(facts)
    state["network"] = _network_state(state.pop("networkAcls"), state.pop("publicNetworkAccess"))
    return state


class DisablePublicAccess:
    """Account allowBlobPublicAccess=false; missing means allowed, so it is always written explicitly."""

    kind = "storage.disable_public_access"
    account_write = True  # Azure runs one such write per account at a time
    observable = True

    def read(self, clients: Clients, action: Action) -> dict[str, Any]:
        facts = read_account(clients, action.target)
        return {"allowBlobPublicAccess": facts.allow_blob_public_access}

    def state_from(self, known: dict[str, Any], action: Action) -> dict[str, Any] | None:
        if "allowBlobPublicAccess" not in known:
            return None
        return {"allowBlobPublicAccess": known["allowBlobPublicAccess"]}

    def done(self, state: dict[str, Any], action: Action, since: str) -> bool:
        return state.get("allowBlobPublicAccess") is False

    def done_at(self, state: dict[str, Any]) -> str:
        return ""

    def apply(self, clients: Clients, action: Action) -> list[Write]:
        return self._set(clients, action, False)

    def restore(self, clients: Clients, action: Action, before: dict[str, Any]) -> list[Write]:
        return self._set(clients, action, before.get("allowBlobPublicAccess") is not False)

    @staticmethod
    def _set(clients: Clients, action: Action, allow: bool) -> Applied:
        """The PATCH answers with the account: that answer is the read-back."""
        ref, seen = _ref(action.target), Recorder()
        account = _client(clients, ref).storage_accounts.update(
            ref.resource_group,
            ref.account,
            {"properties": {"allowBlobPublicAccess": allow}},
            raw_response_hook=seen,
        )
        return Applied(seen.writes(ref.account_id, "write"), _answered_account(account.as_dict()))


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

    def state_from(self, known: dict[str, Any], action: Action) -> dict[str, Any] | None:
        container = _container(action)
        access = (known.get("containers") or {}).get(container)
        return None if access is None else {"container": container, "publicAccess": str(access)}

    def done(self, state: dict[str, Any], action: Action, since: str) -> bool:
        return str(state.get("publicAccess", "")).lower() == "none"

    def done_at(self, state: dict[str, Any]) -> str:
        return ""

    def apply(self, clients: Clients, action: Action) -> list[Write]:
        return self._set(clients, action, "None")

    def restore(self, clients: Clients, action: Action, before: dict[str, Any]) -> list[Write]:
        return self._set(clients, action, before.get("publicAccess", "None"))

    @staticmethod
    def _set(clients: Clients, action: Action, level: str) -> Applied:
        """The PATCH answers with the container: that answer is the read-back."""
        ref, seen = _ref(action.target), Recorder()
        container = _container(action)
        item = _client(clients, ref).blob_containers.update(
            ref.resource_group,
            ref.account,
            container,
            {"properties": {"publicAccess": level}},
            raw_response_hook=seen,
        )
        resource = f"{ref.account_id}/blobServices/default/containers/{container}"
        access = str((item.as_dict().get("properties") or {}).get("publicAccess") or "None")
        return Applied(
            seen.writes(resource, "blobservices/containers/write"), {"containers": {container: access}}
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
        return {"key": action.params["key_name"], "keyCreationTime": key_times({"k": created})["k"]}

    def state_from(self, known: dict[str, Any], action: Action) -> dict[str, Any] | None:
        if "keyCreationTime" not in known:
            return None
        created = (known["keyCreationTime"] or {}).get(action.params["key_name"])
        return {"key": action.params["key_name"], "keyCreationTime": created}

    def done(self, state: dict[str, Any], action: Action, since: str) -> bool:
        """Rotated after the signal: any key that was listed before `since` is already dead."""
        return is_after(state.get("keyCreationTime"), since)

    def done_at(self, state: dict[str, Any]) -> str:
        return str(state.get("keyCreationTime") or "")

    def apply(self, clients: Clients, action: Action) -> Applied:
        """The answer lists both keys: only each key's creationTime is read (the read-back, for this
        key and the other); the key values are dropped unread, never returned, logged or recorded."""
        ref, seen = _ref(action.target), Recorder()
        # retry_total=0: a blind transport retry would rotate twice; the executor verifies instead.
        result = _client(clients, ref).storage_accounts.regenerate_key(
            ref.resource_group,
            ref.account,
            {"keyName": action.params["key_name"]},
            retry_total=0,
            raw_response_hook=seen,
        )
        times = key_times(
            {k.key_name.lower(): k.creation_time for k in result.keys_property or () if k.key_name}
        )
        del result
        return Applied(seen.writes(ref.account_id, "regeneratekey/action"), {"keyCreationTime": times})


class RevokeUserDelegationKeys:
    """Revoke user-delegation keys: the only way to kill user-delegation SAS. Not observable by GET, so
    "done" means a revocation the ledger recorded (`writtenAt`, added by the executor) after `since`."""

    kind = "storage.revoke_user_delegation_keys"
    account_write = True  # Azure runs one such write per account at a time
    observable = False

    def read(self, clients: Clients, action: Action) -> dict[str, Any]:
        return {"revocation": "not observable through Resource Manager"}

    def state_from(self, known: dict[str, Any], action: Action) -> dict[str, Any] | None:
        return None

    def done(self, state: dict[str, Any], action: Action, since: str) -> bool:
        return is_after(state.get("writtenAt"), since)

    def done_at(self, state: dict[str, Any]) -> str:
        return str(state.get("writtenAt") or "")

    def apply(self, clients: Clients, action: Action) -> list[Write]:
        ref, seen = _ref(action.target), Recorder()
        _client(clients, ref).storage_accounts.revoke_user_delegation_keys(
            ref.resource_group, ref.account, raw_response_hook=seen
        )
        return seen.writes(ref.account_id, "revokeuserdelegationkeys/action")


def _account_properties(clients: Clients, ref: StorageRef) -> dict[str, Any]:
    account = _client(clients, ref).storage_accounts.get_properties(ref.resource_group, ref.account)
    return dict(account.as_dict().get("properties") or {})


class DisableSharedKey:
    """Account allowSharedKeyAccess=false: every key and every account and service SAS is refused at once,
    and, unlike rotating the keys, it can be undone. Absent means allowed, so it is written explicitly."""

    kind = "storage.disable_shared_key"
    account_write = True  # Azure runs one such write per account at a time
    observable = True

    def read(self, clients: Clients, action: Action) -> dict[str, Any]:
        shared = _account_properties(clients, _ref(action.target)).get("allowSharedKeyAccess")
        return {"allowSharedKeyAccess": None if shared is None else bool(shared)}

    def state_from(self, known: dict[str, Any], action: Action) -> dict[str, Any] | None:
        if "allowSharedKeyAccess" not in known:
            return None
        return {"allowSharedKeyAccess": known["allowSharedKeyAccess"]}

    def done(self, state: dict[str, Any], action: Action, since: str) -> bool:
        return state.get("allowSharedKeyAccess") is False

    def done_at(self, state: dict[str, Any]) -> str:
        return ""

    def apply(self, clients: Clients, action: Action) -> Applied:
        return _patch_account(clients, action, {"allowSharedKeyAccess": False})

    def restore(self, clients: Clients, action: Action, before: dict[str, Any]) -> Applied:
        """The recorded value; absent (null) was "allowed", and is written back as true."""
        if "allowSharedKeyAccess" not in before:
            raise ValueError("no recorded allowSharedKeyAccess to put back")
        return _patch_account(
            clients, action, {"allowSharedKeyAccess": before.get("allowSharedKeyAccess") is not False}
        )


class RestrictNetwork:
    """Account networkAcls: deny by default, keep only the rules the policy trusts (the action's `trusted`
    parameter). Network rules apply to every request on the public endpoint whatever its credential, so
    this cuts tokens already issued. publicNetworkAccess is read and recorded but not written: disabling it
    would cut the trusted networks too. Restore puts back the recorded networkAcls and publicNetworkAccess."""

    kind = "storage.restrict_network"
    account_write = True  # Azure runs one such write per account at a time
    observable = True

    def read(self, clients: Clients, action: Action) -> dict[str, Any]:
        props = _account_properties(clients, _ref(action.target))
        return dict(_network_state(_network_acls(props), _public_network_access(props)))

    def state_from(self, known: dict[str, Any], action: Action) -> dict[str, Any] | None:
        network = known.get("network")
        return None if not isinstance(network, dict) else dict(network)

    def done(self, state: dict[str, Any], action: Action, since: str) -> bool:
        trusted = TrustedNetwork.from_param(action.params.get("trusted", ""))
        return is_restricted(state.get("networkAcls") or {}, state.get("publicNetworkAccess"), trusted)

    def done_at(self, state: dict[str, Any]) -> str:
        return ""

    def apply(self, clients: Clients, action: Action) -> Applied:
        """Read the account's bypass just before writing: a PATCH that left it out would reset it to
        AzureServices, which may let in more than the account did."""
        trusted = TrustedNetwork.from_param(action.params.get("trusted", ""))
        current = _network_acls(_account_properties(clients, _ref(action.target)))
        return _patch_account(clients, action, {"networkAcls": restricted_acls(current, trusted)})

    def unchanged(self, state: dict[str, Any], after: dict[str, Any]) -> bool:
        """Is the account's network as the step left it? Restore refuses otherwise: a rule let in, a
        bypass narrowed or public network access disabled since would be undone by it."""
        return same_network(state, after)

    def restore(self, clients: Clients, action: Action, before: dict[str, Any]) -> Applied:
        """The whole recorded networkAcls (an account that showed none gets Azure's default, allow), and
        the recorded publicNetworkAccess when it had one, each field validated before it is sent."""
        return _patch_account(clients, action, restorable_network(before))


def _patch_account(clients: Clients, action: Action, properties: dict[str, Any]) -> Applied:
    """PATCH the account's properties; the answer (the whole account) is the read-back."""
    ref, seen = _ref(action.target), Recorder()
    account = _client(clients, ref).storage_accounts.update(
        ref.resource_group, ref.account, {"properties": properties}, raw_response_hook=seen
    )
    return Applied(seen.writes(ref.account_id, "write"), _answered_account(account.as_dict()))
