"""The tenant snapshot format (samples/tenant.json), shared by the simulated tenant and offline replay.

An account or container seed is flat: the keys below describe the resource itself, and every other
top-level key is an ARM property (allowBlobPublicAccess, publicAccess, metadata, ...).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

ACCOUNT_FIELDS = frozenset(
    {
        "id",
        "name",
        "type",
        "location",
        "kind",
        "sku",
        "tags",
        "containers",
        "properties",
        "keys",
        "keyCreationTime",
        "diagnosticSettings",
    }
)
CONTAINER_FIELDS = frozenset({"name", "etag", "properties", "id", "type"})


def seed_properties(seed: Mapping[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    """ARM properties of a seed: its flat keys outside `fields`, then its explicit `properties`."""
    properties = {k: v for k, v in seed.items() if k not in fields}
    properties.update(seed.get("properties") or {})
    return properties


# What Resource Manager shows of an account's network rules when none were set: allow by default, every
# list empty, bypass AzureServices (StorageAccountUpdate.json's answer and azure-cli's recorded create,
# tests/data/azure). A PATCH of networkAcls replaces the object; what it leaves out falls back to these.
DEFAULT_NETWORK_ACLS: Mapping[str, Any] = {
    "bypass": "AzureServices",
    "defaultAction": "Allow",
    "ipRules": [],
    "virtualNetworkRules": [],
    "resourceAccessRules": [],
}


def network_acls(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The networkAcls an account shows: what was stored (seeded or written) over the defaults."""
    return copy.deepcopy({**DEFAULT_NETWORK_ACLS, **(stored or {})})
