"""The tenant snapshot format (samples/tenant.json), shared by the simulated tenant and offline replay.

An account or container seed is flat: the keys below describe the resource itself, and every other
top-level key is an ARM property (allowBlobPublicAccess, publicAccess, metadata, ...).
"""

from __future__ import annotations

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
    }
)
CONTAINER_FIELDS = frozenset({"name", "etag", "properties", "id", "type"})


def seed_properties(seed: Mapping[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    """ARM properties of a seed: its flat keys outside `fields`, then its explicit `properties`."""
    properties = {k: v for k, v in seed.items() if k not in fields}
    properties.update(seed.get("properties") or {})
    return properties
