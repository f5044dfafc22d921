"""The simulated tenant's mutable state, seeded from a tenant file and guarded by one lock."""

from __future__ import annotations

import base64
import copy
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rehearsal.simulator.quota import Quota
from rehearsal.simulator.timefmt import arm_time
from responders.tenantfile import ACCOUNT_FIELDS, CONTAINER_FIELDS, seed_properties

DEFAULT_CREATION_TIME = "2026-01-05T09:00:00.0000000Z"
ZERO_GUID = "00000000-0000-0000-0000-000000000000"
REDACTED = "<redacted>"
NO_OWNER = {
    "objectId": None,
    "email": None,
    "assignedTo": None,
    "userPrincipalName": None,
    "ownerType": "Unknown",
}
# Seed keys that describe the resource itself; any other top-level key of a seeded account is an
# ARM property (allowBlobPublicAccess, publicNetworkAccess, ...), so the tenant file stays flat.


def new_key_value() -> str:
    """A storage account key looks like 64 random bytes in base64 (88 characters)."""
    return base64.b64encode(secrets.token_bytes(64)).decode("ascii")


def new_etag() -> str:
    """Storage etags look like "0x8D..."; quoting follows ARM."""
    return f'"0x8D{secrets.token_hex(6).upper()}"'


def _split_id(resource_id: str) -> tuple[str, str, str]:
    parts = resource_id.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    try:
        return (
            parts[lowered.index("subscriptions") + 1],
            parts[lowered.index("resourcegroups") + 1],
            parts[-1],
        )
    except (ValueError, IndexError) as exc:
        raise ValueError(f"not a storage account id: {resource_id!r}") from exc


class TenantState:
    """Thread-safe store of accounts, containers, keys, service principals and Sentinel incidents."""

    def __init__(self, tenant: dict[str, Any], clock: Callable[[], datetime]) -> None:
        self.lock = threading.RLock()
        self._clock = clock
        self._issued_keys: set[str] = set()
        self.tenant_id: str = tenant.get("tenantId", ZERO_GUID)
        identity = tenant.get("responderIdentity") or {}
        self.responder_principal_id: str = str(identity.get("principalId", ZERO_GUID)).lower()
        self.responder_client_id: str = identity.get("clientId", ZERO_GUID)
        # the Graph application permission granted to the responder (OwnedBy limits writes to owned SPs)
        self.responder_graph_permission: str = identity.get("graphPermission", "Application.ReadWrite.All")
        self.accounts: dict[str, dict[str, Any]] = {}
        for seed in tenant.get("storageAccounts", []):
            account = self._seed_account(seed)
            self.accounts[account["name"].lower()] = account
        # management group name -> the subscription ids under it (Resource Graph's managementGroups scope)
        self.management_groups: dict[str, list[str]] = {
            str(k): [str(s) for s in v] for k, v in (tenant.get("managementGroups") or {}).items()
        }
        graph_quota = tenant.get("resourceGraphQuota") or {}
        self.resource_graph_quota = Quota(
            int(graph_quota.get("queries", 15)), float(graph_quota.get("window", 5))
        )
        self.service_principals: dict[str, dict[str, Any]] = {
            sp["id"].lower(): copy.deepcopy(sp) for sp in tenant.get("servicePrincipals", [])
        }
        # role assignments by lower-case name (a GUID, unique across every scope)
        self.role_assignments: dict[str, dict[str, Any]] = {}
        for seed in tenant.get("roleAssignments", []):
            assignment = self._seed_role_assignment(seed)
            self.role_assignments[assignment["name"]] = assignment
        logs = tenant.get("logAnalytics") or {}
        self.workspace_id: str = logs.get("workspaceId", ZERO_GUID)
        self.log_tables: dict[str, list[dict[str, Any]]] = copy.deepcopy(logs.get("tables") or {})
        sentinel = tenant.get("sentinel") or {}
        self.sentinel_scope = (
            sentinel.get("subscriptionId", ""),
            sentinel.get("resourceGroup", ""),
            sentinel.get("workspaceName", ""),
        )
        self.incidents: dict[str, dict[str, Any]] = {}
        for seed in sentinel.get("incidents", []):
            incident = self._seed_incident(seed)
            self.incidents[incident["name"].lower()] = incident

    # --- seeding -------------------------------------------------------------------------------

    def _seed_account(self, seed: dict[str, Any]) -> dict[str, Any]:
        subscription, group, name = _split_id(seed["id"])
        properties = copy.deepcopy(seed_properties(seed, ACCOUNT_FIELDS))
        created = properties.setdefault("creationTime", DEFAULT_CREATION_TIME)
        # "keyCreationTime": null seeds an account older than the property: Azure reports null per key
        key_times = seed.get("keyCreationTime") or properties.pop("keyCreationTime", None) or {}
        if "keyCreationTime" in seed and seed["keyCreationTime"] is None:
            key_times = {"key1": None, "key2": None}
        seeded_keys = seed.get("keys") or {}
        keys = {}
        for key_name in ("key1", "key2"):
            value = seeded_keys.get(key_name) or new_key_value()
            self._issued_keys.add(value)
            keys[key_name] = {"value": value, "creationTime": key_times.get(key_name, created)}
        return {
            "id": seed["id"],
            "name": seed.get("name", name),
            "subscriptionId": subscription,
            "resourceGroup": group,
            "location": seed.get("location", "westeurope"),
            "kind": seed.get("kind", "StorageV2"),
            "sku": copy.deepcopy(seed.get("sku") or {"name": "Standard_LRS", "tier": "Standard"}),
            "tags": copy.deepcopy(seed.get("tags") or {}),
            "properties": properties,
            "keys": keys,
            "userDelegationKeysRevokedAt": [],
            "containers": {c["name"].lower(): self._seed_container(c) for c in seed.get("containers", [])},
            "diagnosticSettings": copy.deepcopy(seed.get("diagnosticSettings") or []),
        }

    @staticmethod
    def _seed_container(seed: dict[str, Any]) -> dict[str, Any]:
        properties = copy.deepcopy(seed_properties(seed, CONTAINER_FIELDS))
        properties.setdefault("publicAccess", "None")
        properties.setdefault("metadata", {})
        properties.setdefault("lastModifiedTime", DEFAULT_CREATION_TIME)
        return {"name": seed["name"], "etag": seed.get("etag") or new_etag(), "properties": properties}

    @staticmethod
    def _seed_role_assignment(seed: dict[str, Any]) -> dict[str, Any]:
        """A flat seed (name, scope, roleDefinitionId, principalId, ...) or an ARM body (id, properties)."""
        properties = copy.deepcopy(seed_properties(seed, frozenset({"id", "name", "type", "properties"})))
        name = str(seed.get("name") or str(seed.get("id", "")).rsplit("/", 1)[-1]).lower()
        rid = str(seed.get("id", ""))
        scope = properties.get("scope") or rid[: rid.lower().rfind("/providers/microsoft.authorization/")]
        if not name or not scope or "roleDefinitionId" not in properties or "principalId" not in properties:
            raise ValueError(
                f"a role assignment seed needs a name, scope, roleDefinitionId and principalId: {seed!r}"
            )
        properties["scope"] = "/" + str(scope).strip("/")
        properties.setdefault("principalType", "ServicePrincipal")
        properties.setdefault("createdOn", DEFAULT_CREATION_TIME)
        properties.setdefault("updatedOn", properties["createdOn"])
        properties.setdefault("createdBy", ZERO_GUID)  # the object id of whoever created it
        properties.setdefault("updatedBy", properties["createdBy"])
        return {"name": name, "properties": properties}

    def _seed_incident(self, seed: dict[str, Any]) -> dict[str, Any]:
        properties = copy.deepcopy(seed.get("properties") or {})
        number = properties.setdefault("incidentNumber", 1)
        properties.setdefault("labels", [])
        properties.setdefault("description", "")
        properties["owner"] = {**NO_OWNER, **(properties.get("owner") or {})}
        properties.setdefault("createdTimeUtc", DEFAULT_CREATION_TIME)
        properties.setdefault("lastModifiedTimeUtc", properties["createdTimeUtc"])
        properties.setdefault("providerName", "Azure Sentinel")
        properties.setdefault("providerIncidentId", str(number))
        properties.setdefault("relatedAnalyticRuleIds", [])
        return {
            "name": seed["name"],
            "etag": f'"{uuid.uuid4()}"',
            "properties": properties,
            "comments": {},
            "alerts": copy.deepcopy(seed.get("alerts") or []),
            "entities": copy.deepcopy(seed.get("entities") or []),
        }

    # --- mutations used by handlers (call with the lock held) -----------------------------------

    def now(self) -> str:
        return arm_time(self._clock())

    def regenerate_key(self, account: dict[str, Any], key_name: str) -> None:
        value = new_key_value()
        with self.lock:
            self._issued_keys.add(value)
            account["keys"][key_name] = {"value": value, "creationTime": self.now()}

    def issued_keys(self) -> set[str]:
        with self.lock:
            return set(self._issued_keys)

    # --- read access for tests and the admin route ---------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[TenantState]:
        """Hold the lock to read or edit the raw dicts (accounts, service_principals, incidents)."""
        with self.lock:
            yield self

    def account(self, name: str) -> dict[str, Any]:
        """A copy of one account's raw record (properties, tags, keys, containers)."""
        with self.lock:
            return copy.deepcopy(self.accounts[name.lower()])

    def container(self, account: str, name: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.accounts[account.lower()]["containers"][name.lower()])

    def keys(self, account: str) -> dict[str, str]:
        with self.lock:
            return {k: v["value"] for k, v in self.accounts[account.lower()]["keys"].items()}

    def key_creation_times(self, account: str) -> dict[str, str]:
        with self.lock:
            return {k: v["creationTime"] for k, v in self.accounts[account.lower()]["keys"].items()}

    def udk_revocations(self, account: str) -> list[str]:
        """When user-delegation keys were revoked, oldest first."""
        with self.lock:
            return list(self.accounts[account.lower()]["userDelegationKeysRevokedAt"])

    def service_principal(self, id_or_app_id: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.find_service_principal(id_or_app_id) or {})

    def find_service_principal(self, id_or_app_id: str) -> dict[str, Any] | None:
        key = id_or_app_id.lower()
        if key in self.service_principals:
            return self.service_principals[key]
        return next(
            (sp for sp in self.service_principals.values() if str(sp.get("appId", "")).lower() == key), None
        )

    def role_assignment_list(self) -> list[dict[str, Any]]:
        """Every role assignment as Azure shows it, by scope then name (for tests)."""
        from rehearsal.simulator.authorization import assignment_view

        with self.lock:
            views = [assignment_view(r) for r in self.role_assignments.values()]
        return sorted(views, key=lambda a: (a["properties"]["scope"].lower(), a["name"]))

    def incident(self, name: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.incidents[name.lower()])

    def comments(self, incident: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.incidents[incident.lower()]["comments"])

    def labels(self, incident: str) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.incidents[incident.lower()]["properties"].get("labels", []))

    def snapshot(self, redact: bool = False) -> dict[str, Any]:
        """Everything as plain JSON; redact=True hides key values (for the out-of-process route)."""
        with self.lock:
            accounts = copy.deepcopy(self.accounts)
            if redact:
                for account in accounts.values():
                    for key in account["keys"].values():
                        key["value"] = REDACTED
            return {
                "tenantId": self.tenant_id,
                "accounts": {a["name"]: a for a in accounts.values()},
                "servicePrincipals": copy.deepcopy(self.service_principals),
                "incidents": {i["name"]: i for i in copy.deepcopy(self.incidents).values()},
                "roleAssignments": copy.deepcopy(self.role_assignments),
            }

    # --- persistence (the local stack keeps the tenant across commands) --------------------------

    def persisted(self) -> dict[str, Any]:
        """What changes as the tenant is used, unredacted, to be reloaded by `restore`."""
        with self.lock:
            saved = self.snapshot()
            saved["issuedKeys"] = sorted(self._issued_keys)
            return saved

    def restore(self, saved: dict[str, Any]) -> None:
        """Take back the accounts, service principals, incidents, role assignments and issued keys
        `persisted` returned;
        the rest (identity, workspaces, log tables) comes from the tenant file as seeded."""
        try:
            accounts = {str(a["name"]).lower(): a for a in saved["accounts"].values()}
            principals = {str(k).lower(): v for k, v in saved["servicePrincipals"].items()}
            incidents = {str(i["name"]).lower(): i for i in saved["incidents"].values()}
            issued = {str(k) for k in saved.get("issuedKeys", [])}
            assignments = {str(k).lower(): v for k, v in (saved.get("roleAssignments") or {}).items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a saved tenant state: {exc}") from exc
        with self.lock:
            self.accounts, self.service_principals, self.incidents = accounts, principals, incidents
            if "roleAssignments" in saved:
                self.role_assignments = assignments
            self._issued_keys |= issued
            for account in accounts.values():
                self._issued_keys |= {k["value"] for k in account.get("keys", {}).values()}
