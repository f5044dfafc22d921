"""ARM resource-id handling: normalise once so comparisons and idempotency keys are stable."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache

_STORAGE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/microsoft\.storage/"
    r"storageaccounts/(?P<account>[^/]+)(?:/blobservices/default(?:/containers/(?P<container>[^/]+)"
    r"(?:/blobs/(?P<blob>.+))?)?)?/?$",
    re.IGNORECASE,
)
_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER_NAME = re.compile(r"^(\$root|\$web|[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9])$")


@dataclass(frozen=True)
class StorageRef:
    """A storage account, optionally a container and blob inside it."""

    subscription: str
    resource_group: str
    account: str
    container: str = ""
    blob: str = ""

    @property
    def account_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Storage/storageAccounts/{self.account}"
        )

    @cached_property
    def account_key(self) -> str:
        """The account id in lower case, the form accounts are compared and stored by (refs are
        cached, so this is built once per account)."""
        return self.account_id.lower()


def parse_storage_id(resource_id: str) -> StorageRef | None:
    """Parse an ARM storage id (account, container or blob subject); None when it is not one."""
    if not isinstance(resource_id, str):
        return None
    return _parse_storage_id(resource_id)


# Event streams name the same few resources over and over; StorageRef is frozen, so sharing is safe.
@lru_cache(maxsize=1024)
def _parse_storage_id(resource_id: str) -> StorageRef | None:
    m = _STORAGE.match(resource_id.strip())
    if not m:
        return None
    account = m["account"].lower()
    container = (m["container"] or "").lower()
    if not _ACCOUNT_NAME.match(account) or (container and not _CONTAINER_NAME.match(container)):
        return None
    return StorageRef(
        subscription=m["sub"].lower(),
        resource_group=m["rg"].lower(),
        account=account,
        container=container,
        blob=m["blob"] or "",
    )


def normalise_account_id(resource_id: str) -> str:
    """Canonical lower-case account id used as a key everywhere."""
    ref = parse_storage_id(resource_id)
    return ref.account_key if ref else resource_id.lower()
