"""ARM resource-id handling: normalise once so comparisons and idempotency keys are stable."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache

# The parts of an ARM id an input may name, each to Azure's own naming rules (ASCII only), so a part can
# never carry a separator, a dot segment, an escape or a host: ids are parsed into these and rebuilt.
GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# resource group: 1-90 of letters, digits, underscore, hyphen, period, parentheses; not ending in a period
RESOURCE_GROUP = r"[-\w.()]{0,89}[-\w()]"
# Log Analytics workspace: 4-63 letters, digits and hyphens, starting and ending with a letter or digit
WORKSPACE_NAME = r"[A-Za-z0-9][A-Za-z0-9-]{2,61}[A-Za-z0-9]"
# Sentinel incident name: a GUID in practice; letters, digits, hyphen and underscore at most
INCIDENT_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"
_STORAGE = re.compile(
    rf"^/subscriptions/(?P<sub>{GUID})/resourcegroups/(?P<rg>{RESOURCE_GROUP})/providers/microsoft\.storage/"
    r"storageaccounts/(?P<account>[^/]+)(?:/blobservices/default(?:/containers/(?P<container>[^/]+)"
    r"(?:/blobs/(?P<blob>.+))?)?)?/?$",
    re.IGNORECASE | re.ASCII,
)
_WORKSPACE = (
    rf"/subscriptions/(?P<sub>{GUID})/resourcegroups/(?P<rg>{RESOURCE_GROUP})"
    rf"/providers/microsoft\.operationalinsights/workspaces/(?P<ws>{WORKSPACE_NAME})"
)
_WORKSPACE_ID = re.compile(_WORKSPACE, re.IGNORECASE | re.ASCII)
_INCIDENT_ID = re.compile(
    rf"{_WORKSPACE}/providers/microsoft\.securityinsights/incidents/(?P<incident>{INCIDENT_NAME})",
    re.IGNORECASE | re.ASCII,
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
    if not _ACCOUNT_NAME.fullmatch(account) or (container and not _CONTAINER_NAME.fullmatch(container)):
        return None
    return StorageRef(
        subscription=m["sub"].lower(),
        resource_group=m["rg"].lower(),
        account=account,
        container=container,
        blob=m["blob"] or "",
    )


def is_container_name(name: object) -> bool:
    """A blob container name by Azure's rules (3-63 lower-case letters, digits, single hyphens)."""
    return isinstance(name, str) and bool(_CONTAINER_NAME.fullmatch(name))


def normalise_account_id(resource_id: str) -> str:
    """Canonical lower-case account id used as a key everywhere."""
    ref = parse_storage_id(resource_id)
    return ref.account_key if ref else resource_id.lower()


@dataclass(frozen=True)
class WorkspaceRef:
    """A Log Analytics workspace (the one Sentinel runs in), by its validated parts."""

    subscription: str
    resource_group: str
    name: str

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.OperationalInsights/workspaces/{self.name}"
        )

    def same_as(self, other: WorkspaceRef) -> bool:
        """ARM names compare case-insensitively."""
        return self.arm_id.lower() == other.arm_id.lower()


@dataclass(frozen=True)
class IncidentRef:
    """A Sentinel incident: the only kind of id the write-back ever builds a request from."""

    workspace: WorkspaceRef
    name: str

    @property
    def arm_id(self) -> str:
        """Rebuilt from the validated parts, never the string it was parsed from."""
        return f"{self.workspace.arm_id}/providers/Microsoft.SecurityInsights/incidents/{self.name}"


def _workspace(m: re.Match[str]) -> WorkspaceRef:
    return WorkspaceRef(subscription=m["sub"].lower(), resource_group=m["rg"], name=m["ws"])


def parse_workspace_id(value: object) -> WorkspaceRef | None:
    """The ARM id of a Log Analytics workspace, or None for anything else."""
    m = _WORKSPACE_ID.fullmatch(value) if isinstance(value, str) else None
    return _workspace(m) if m else None


def parse_incident_id(value: object) -> IncidentRef | None:
    """An ARM-relative Sentinel incident id, or None: URLs, protocol-relative and dot or escaped paths
    do not match, because no part may hold a slash, a dot segment, a colon or a percent sign."""
    m = _INCIDENT_ID.fullmatch(value) if isinstance(value, str) and len(value) <= 1024 else None
    return IncidentRef(_workspace(m), m["incident"].lower()) if m else None
