"""ARM Microsoft.Storage routes: account get/update, keys, user-delegation keys and containers."""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import urlencode

from rehearsal.simulator.routing import ARM, Call, Context, Reply, Route, error, route
from rehearsal.simulator.state import new_etag
from responders.tenantfile import network_acls

ACCOUNT = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Storage/storageAccounts/(?P<account>[^/]+)"
)
CONTAINERS = ACCOUNT + r"/blobServices/default/containers"
SUBSCRIPTION_ACCOUNTS = r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Storage/storageAccounts"
OP = "Microsoft.Storage/storageAccounts"
# Properties ARM computes; a PATCH that sends them does not change them.
READ_ONLY = {
    "keyCreationTime",
    "creationTime",
    "primaryEndpoints",
    "primaryLocation",
    "provisioningState",
    "statusOfPrimary",
    "secondaryLocation",
    "statusOfSecondary",
}
BOOLEAN = {
    "allowBlobPublicAccess",
    "allowSharedKeyAccess",
    "supportsHttpsTrafficOnly",
    "allowCrossTenantReplication",
    "isHnsEnabled",
    "defaultToOAuthAuthentication",
}
PUBLIC_ACCESS = {"none": "None", "container": "Container", "blob": "Blob"}
PUBLIC_NETWORK_ACCESS = {v.lower(): v for v in ("Enabled", "Disabled", "SecuredByPerimeter")}
DEFAULT_ACTIONS = {"allow": "Allow", "deny": "Deny"}
BYPASS = {v.lower(): v for v in ("None", "Logging", "Metrics", "AzureServices")}
RULE_STATES = {
    v.lower(): v for v in ("Provisioning", "Deprovisioning", "Succeeded", "Failed", "NetworkSourceDeleted")
}
SERVICES = ("blob", "queue", "table", "file", "web", "dfs")
PAIRED = {
    "westeurope": "northeurope",
    "northeurope": "westeurope",
    "eastus": "westus",
    "westus": "eastus",
    "eastus2": "centralus",
    "centralus": "eastus2",
    "uksouth": "ukwest",
    "germanywestcentral": "germanynorth",
    "swedencentral": "swedensouth",
    "francecentral": "francesouth",
}


def _find(ctx: Context, call: Call) -> dict[str, Any] | Reply:
    """The account named by the path, checking its subscription and resource group too."""
    p = call.params
    account = ctx.state.accounts.get(p["account"].lower())
    if account and (account["subscriptionId"].lower(), account["resourceGroup"].lower()) == (
        p["sub"].lower(),
        p["rg"].lower(),
    ):
        return account
    return error(
        ARM,
        404,
        "ResourceNotFound",
        f"The Resource 'Microsoft.Storage/storageAccounts/{p['account']}' under resource "
        f"group '{p['rg']}' was not found.",
    )


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Stored values win, but server-computed sub-fields (e.g. encryption lastEnabledTime) survive."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(dict(base[key]), value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _endpoints(name: str, suffix: str, services: tuple[str, ...] = SERVICES) -> dict[str, str]:
    return {s: f"https://{name}{suffix}.{s}.core.windows.net/" for s in services}


def account_view(account: dict[str, Any], expand: str = "", now: str = "") -> dict[str, Any]:
    """The GET body: allowBlobPublicAccess appears only when set (absent means allowed)."""
    name, sku = account["name"], account["sku"].get("name", "").upper()
    properties: dict[str, Any] = {
        "keyCreationTime": {},
        "primaryEndpoints": _endpoints(name, ""),
        "primaryLocation": account["location"],
        "provisioningState": "Succeeded",
        "statusOfPrimary": "available",
        "supportsHttpsTrafficOnly": True,
        "minimumTlsVersion": "TLS1_2",
        "isHnsEnabled": False,
        "isSkuConversionBlocked": False,
        "accountMigrationInProgress": False,
        "encryption": {
            "services": {
                s: {
                    "keyType": "Account",
                    "enabled": True,
                    "lastEnabledTime": account["properties"]["creationTime"],
                }
                for s in ("blob", "file")
            },
            "keySource": "Microsoft.Storage",
        },
        "accessTier": "Hot",
    }
    properties = _merge(properties, account["properties"])
    properties["networkAcls"] = network_acls(account["properties"].get("networkAcls"))
    # the account body carries its connections too, each whole (StorageAccount.privateEndpointConnections)
    properties["privateEndpointConnections"] = private_endpoint_connections(account)
    # an account older than the property reports null per key (storage-account-keys-manage.md)
    properties["keyCreationTime"] = {k: v["creationTime"] for k, v in account["keys"].items()}
    routing = properties.get("routingPreference") or {}
    if routing.get("publishMicrosoftEndpoints"):
        properties["primaryEndpoints"]["microsoftEndpoints"] = _endpoints(name, "-microsoftrouting")
    if routing.get("publishInternetEndpoints"):
        properties["primaryEndpoints"]["internetEndpoints"] = _endpoints(
            name, "-internetrouting", ("web", "dfs", "blob", "file")
        )
    if "GRS" in sku:  # geo-redundant SKUs report their paired region
        properties.setdefault("secondaryLocation", PAIRED.get(account["location"].lower(), "northeurope"))
        properties.setdefault("statusOfSecondary", "available")
        if sku.startswith("STANDARD_RA") and "secondaryEndpoints" not in properties:
            properties["secondaryEndpoints"] = _endpoints(name, "-secondary")
        if "georeplicationstats" in expand.lower():
            properties["geoReplicationStats"] = {"status": "Live", "lastSyncTime": now, "canFailover": True}
    return {
        "id": account["id"],
        "name": name,
        "type": OP,
        "location": account["location"],
        "kind": account["kind"],
        "sku": copy.deepcopy(account["sku"]),
        "tags": copy.deepcopy(account["tags"]),
        "properties": properties,
    }


def private_endpoint_connections(account: dict[str, Any]) -> list[dict[str, Any]]:
    """The account's private endpoint connections in the shape Resource Manager answers them (id, name,
    type, properties with provisioningState, privateEndpoint and privateLinkServiceConnectionState:
    StorageAccountListPrivateEndpointConnections.json), from the seed's flat or full entries."""
    out = []
    for seed in account["properties"].get("privateEndpointConnections") or []:
        name = str(seed.get("name") or "pe-connection")
        props = copy.deepcopy(seed.get("properties") or {})
        props.setdefault("provisioningState", "Succeeded")
        props.setdefault("privateEndpoint", {"id": str(seed.get("privateEndpoint") or "")})
        props.setdefault(
            "privateLinkServiceConnectionState",
            {
                "status": str(seed.get("status") or "Approved"),
                "description": "Auto-Approved",
                "actionRequired": "None",
            },
        )
        out.append(
            {
                "id": f"{account['id']}/privateEndpointConnections/{name}",
                "name": name,
                "type": f"{OP}/privateEndpointConnections",
                "properties": props,
            }
        )
    return out


def list_private_endpoint_connections(ctx: Context, call: Call) -> Reply:
    with ctx.state.lock:
        found = _find(ctx, call)
        if isinstance(found, Reply):
            return found
        return Reply(200, {"value": private_endpoint_connections(found)})


def get_account(ctx: Context, call: Call) -> Reply:
    with ctx.state.lock:
        found = _find(ctx, call)
        if isinstance(found, Reply):
            return found
        return Reply(200, account_view(found, call.query.get("$expand", ""), ctx.state.now()))


def _allow_rules(raw: Any, key: str) -> list[dict[str, Any]] | None:
    """IP or virtual-network rules as stored: each with its key and action Allow (the only action);
    a virtual-network rule's state is the server's (Succeeded), whatever the request said."""
    if not isinstance(raw, list):
        return None
    out = []
    for rule in raw:
        if not isinstance(rule, dict) or not isinstance(rule.get(key), str) or not rule[key]:
            return None
        if str(rule.get("action") or "Allow").lower() != "allow":
            return None
        item = {key: rule[key], "action": "Allow"}
        if key == "id":
            state = rule.get("state")
            if state is not None and str(state).lower() not in RULE_STATES:
                return None
            item["state"] = "Succeeded"
        out.append(item)
    return out


def network_rule_set(raw: Any) -> dict[str, Any] | None:
    """The networkAcls a PATCH stores, or None when it is invalid. The object is replaced whole: what
    it leaves out falls back to the defaults (bypass AzureServices, no rules), as azure-cli's recorded
    network-rule add/remove and StorageAccountUpdate.json show."""
    if not isinstance(raw, dict) or str(raw.get("defaultAction", "")).lower() not in DEFAULT_ACTIONS:
        return None
    bypass = raw.get("bypass") or "AzureServices"  # null or left out: the default
    parts = [p.strip() for p in bypass.split(",")] if isinstance(bypass, str) else None
    if not parts or any(p.lower() not in BYPASS for p in parts):
        return None
    stored: dict[str, Any] = {
        "bypass": ", ".join(BYPASS[p.lower()] for p in parts),
        "defaultAction": DEFAULT_ACTIONS[str(raw["defaultAction"]).lower()],
    }
    for name, key in (("ipRules", "value"), ("ipv6Rules", "value"), ("virtualNetworkRules", "id")):
        if name in raw or name != "ipv6Rules":
            rules = _allow_rules(raw.get(name) or [], key)
            if rules is None:
                return None
            stored[name] = rules
    access = raw.get("resourceAccessRules") or []
    if not isinstance(access, list) or not all(
        isinstance(r, dict) and isinstance(r.get("tenantId"), str) and isinstance(r.get("resourceId"), str)
        for r in access
    ):
        return None
    stored["resourceAccessRules"] = [
        {"tenantId": r["tenantId"], "resourceId": r["resourceId"]} for r in access
    ]
    return stored


def patch_account(ctx: Context, call: Call) -> Reply:
    body = call.body if call.body is not None else {}
    properties = body.get("properties", {}) if isinstance(body, dict) else None
    tags = body.get("tags") if isinstance(body, dict) else None
    if not isinstance(properties, dict) or (tags is not None and not isinstance(tags, dict)):
        return error(ARM, 400, "InvalidRequestContent", "The request content was invalid.")
    for name in BOOLEAN & properties.keys():
        if not isinstance(properties[name], bool):
            return error(ARM, 400, "InvalidRequestContent", f"{name} must be a boolean.")
    properties = dict(properties)
    if "networkAcls" in properties:
        rules = network_rule_set(properties["networkAcls"])
        if rules is None:
            return error(ARM, 400, "InvalidRequestContent", "networkAcls is invalid.")
        properties["networkAcls"] = rules
    if "publicNetworkAccess" in properties:
        access = properties["publicNetworkAccess"]
        if not isinstance(access, str) or access.lower() not in PUBLIC_NETWORK_ACCESS:
            return error(
                ARM,
                400,
                "InvalidValuesForRequestParameters",
                "Values for request parameters are invalid: publicNetworkAccess.",
            )
        properties["publicNetworkAccess"] = PUBLIC_NETWORK_ACCESS[access.lower()]
    with ctx.state.lock:
        account = _find(ctx, call)
        if isinstance(account, Reply):
            return account
        for name, value in properties.items():
            if name not in READ_ONLY:
                account["properties"][name] = copy.deepcopy(value)
        if tags is not None:  # ARM PATCH replaces the whole tag set
            account["tags"] = {str(k): str(v) for k, v in tags.items()}
        for field in ("sku", "kind"):
            if isinstance(body.get(field), dict | str):
                account[field] = copy.deepcopy(body[field])
        ctx.events.emit(call, account["id"], account["subscriptionId"], f"{OP}/write")
        return Reply(200, account_view(account))


def _keys_body(account: dict[str, Any]) -> dict[str, Any]:
    return {
        "keys": [
            {
                "keyName": name,
                "value": key["value"],
                "permissions": "FULL",
                **({"creationTime": key["creationTime"]} if key["creationTime"] else {}),
            }
            for name, key in sorted(account["keys"].items())
        ]
    }


def list_keys(ctx: Context, call: Call) -> Reply:
    with ctx.state.lock:
        account = _find(ctx, call)
        if isinstance(account, Reply):
            return account
        ctx.events.emit(call, account["id"], account["subscriptionId"], f"{OP}/listKeys/action")
        return Reply(200, _keys_body(account))


def regenerate_key(ctx: Context, call: Call) -> Reply:
    key_name = call.body.get("keyName") if isinstance(call.body, dict) else None
    if not isinstance(key_name, str) or key_name.lower() not in ("key1", "key2"):
        return error(
            ARM,
            400,
            "InvalidValuesForRequestParameters",
            "Values for request parameters are invalid: keyName.",
        )
    with ctx.state.lock:
        account = _find(ctx, call)
        if isinstance(account, Reply):
            return account
        ctx.state.regenerate_key(account, key_name.lower())
        ctx.events.emit(call, account["id"], account["subscriptionId"], f"{OP}/regenerateKey/action")
        return Reply(200, _keys_body(account))


def revoke_user_delegation_keys(ctx: Context, call: Call) -> Reply:
    with ctx.state.lock:
        account = _find(ctx, call)
        if isinstance(account, Reply):
            return account
        account["userDelegationKeysRevokedAt"].append(ctx.state.now())
        ctx.events.emit(
            call, account["id"], account["subscriptionId"], f"{OP}/revokeUserDelegationKeys/action"
        )
        return Reply(200)


def container_view(account: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    properties = {
        "leaseStatus": "Unlocked",
        "leaseState": "Available",
        "hasImmutabilityPolicy": False,
        "hasLegalHold": False,
        "deleted": False,
        "remainingRetentionDays": 0,
        "defaultEncryptionScope": "$account-encryption-key",
        "denyEncryptionScopeOverride": False,
    }
    properties.update(copy.deepcopy(container["properties"]))
    return {
        "id": f"{account['id']}/blobServices/default/containers/{container['name']}",
        "name": container["name"],
        "type": f"{OP}/blobServices/containers",
        "etag": container["etag"],
        "properties": properties,
    }


def _find_container(ctx: Context, call: Call) -> tuple[dict[str, Any], dict[str, Any]] | Reply:
    account = _find(ctx, call)
    if isinstance(account, Reply):
        return account
    container = account["containers"].get(call.params["container"].lower())
    if container is None:
        return error(ARM, 404, "ContainerNotFound", "The specified container does not exist.")
    return account, container


def list_containers(ctx: Context, call: Call) -> Reply:
    """BlobContainers_List: no `metadata` on any item (only a GET of one container has it), paged
    by `$maxpagesize` with a `nextLink` that resumes after `$skipToken` (BlobContainersList.json)."""
    size = call.query.get("$maxpagesize", "")
    if size and not (size.isdigit() and 0 < int(size) <= 5000):
        return error(ARM, 400, "InvalidQueryParameterValue", "$maxpagesize must be between 1 and 5000.")
    with ctx.state.lock:
        account = _find(ctx, call)
        if isinstance(account, Reply):
            return account
        containers = sorted(account["containers"].values(), key=lambda c: c["name"])
        skip = call.query.get("$skipToken", "").rsplit("/", 1)[-1]
        if skip:
            containers = [c for c in containers if c["name"] > skip]
        page = containers[: int(size)] if size else containers
        items = []
        for container in page:
            view = container_view(account, container)
            view["properties"].pop("metadata", None)
            items.append(view)
        body: dict[str, Any] = {"value": items}
        if size and len(containers) > len(page):
            host = call.header("Host") or ""
            query = urlencode(
                {
                    "api-version": call.query.get("api-version", ""),
                    "$maxpagesize": size,
                    "$skipToken": f"/{account['name']}/{page[-1]['name']}",
                }
            )
            body["nextLink"] = f"https://{host}{call.path}?{query}"
        return Reply(200, body)


def get_container(ctx: Context, call: Call) -> Reply:
    with ctx.state.lock:
        found = _find_container(ctx, call)
        return found if isinstance(found, Reply) else Reply(200, container_view(*found))


def patch_container(ctx: Context, call: Call) -> Reply:
    body = call.body if call.body is not None else {}
    properties = body.get("properties", {}) if isinstance(body, dict) else None
    if not isinstance(properties, dict):
        return error(ARM, 400, "InvalidRequestContent", "The request content was invalid.")
    access = properties.get("publicAccess")
    if access is not None and str(access).lower() not in PUBLIC_ACCESS:
        return error(ARM, 400, "InvalidValuesForRequestParameters", "publicAccess is invalid.")
    metadata = properties.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return error(ARM, 400, "InvalidRequestContent", "metadata must be an object.")
    with ctx.state.lock:
        found = _find_container(ctx, call)
        if isinstance(found, Reply):
            return found
        account, container = found
        if (
            access is not None
            and str(access).lower() != "none"
            and account["properties"].get("allowBlobPublicAccess") is False
        ):
            return error(
                ARM,
                409,
                "PublicAccessNotPermitted",
                "Public access is not permitted on this storage account.",
            )
        if access is not None:
            container["properties"]["publicAccess"] = PUBLIC_ACCESS[str(access).lower()]
        if metadata is not None:  # metadata is one value: sending it replaces the set
            container["properties"]["metadata"] = {str(k): str(v) for k, v in metadata.items()}
        container["properties"]["lastModifiedTime"] = ctx.state.now()
        container["etag"] = new_etag()
        resource_id = container_view(account, container)["id"]
        ctx.events.emit(call, resource_id, account["subscriptionId"], f"{OP}/blobServices/containers/write")
        return Reply(200, container_view(account, container))


# Writes that need the account to themselves: one overlapping another answers 409 (Azure/ARO-RP#1197,
# hashicorp/terraform-provider-azurerm#29351). Container writes are not among them in any source found.
EXCLUSIVE = [
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        "PATCH " + ACCOUNT,
        "POST " + ACCOUNT + "/regenerateKey",
        "POST " + ACCOUNT + "/revokeUserDelegationKeys",
    )
]
IN_PROGRESS = (
    "StorageAccountOperationInProgress",
    "An operation is currently performing on this storage account that requires exclusive access.",
)


def exclusive_account(method: str, path: str) -> str | None:
    """The account (lower-case name) a request must hold alone while it runs, or None."""
    line = f"{method.upper()} {path}"
    for pattern in EXCLUSIVE:
        match = pattern.fullmatch(line)
        if match:
            return match["account"].lower()
    return None


def operation_in_progress() -> Reply:
    """What Azure answers a write that overlaps another exclusive write on the same account."""
    return error(ARM, 409, *IN_PROGRESS)


def list_accounts(ctx: Context, call: Call) -> Reply:
    """StorageAccounts_List for a subscription (as recorded by cloud-custodian)."""
    sub = call.params["sub"].lower()
    with ctx.state.lock:
        items = [
            account_view(a, now=ctx.state.now())
            for a in sorted(ctx.state.accounts.values(), key=lambda a: a["name"])
            if a["subscriptionId"].lower() == sub
        ]
    return Reply(200, {"value": items})


ROUTES: list[Route] = [
    route("GET", SUBSCRIPTION_ACCOUNTS, list_accounts, ARM),
    route("GET", ACCOUNT, get_account, ARM),
    route("PATCH", ACCOUNT, patch_account, ARM),
    route("POST", ACCOUNT + "/listKeys", list_keys, ARM),
    route("POST", ACCOUNT + "/regenerateKey", regenerate_key, ARM),
    route("POST", ACCOUNT + "/revokeUserDelegationKeys", revoke_user_delegation_keys, ARM),
    route("GET", ACCOUNT + "/privateEndpointConnections", list_private_endpoint_connections, ARM),
    route("GET", CONTAINERS, list_containers, ARM),
    route("GET", CONTAINERS + r"/(?P<container>[^/]+)", get_container, ARM),
    route("PATCH", CONTAINERS + r"/(?P<container>[^/]+)", patch_container, ARM),
]
