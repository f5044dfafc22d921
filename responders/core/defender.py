"""Microsoft Defender for Storage alerts: which access path an alert type and its stated
authentication type reveal. Pure; the alert types are those of MicrosoftDocs/azure-docs
articles/defender-for-cloud/alerts-azure-storage.md (tests/data/azure/defender_storage_alert_types_docs.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from responders.core.arm import is_container_name
from responders.core.model import BadInput

# the vocabulary of StorageBlobLogs' AuthenticationType, lower case (plus our own two: a user-delegation
# key obtained, and an account SAS named by the alert type), that core.paths maps to access paths
ANONYMOUS, SAS, ACCOUNT_SAS, ACCOUNT_KEY, OAUTH, UNKNOWN = (
    "anonymous",
    "sas",
    "accountsas",
    "accountkey",
    "oauth",
    "unknown",
)
USER_DELEGATION_KEY = "user-delegation-key"

# Alert type prefixes of Defender for Storage. Sample alerts ("Create sample alerts" in the portal) carry
# SIMULATED_ before the type and name made-up resources.
PREFIXES = ("storage.blob_", "storage.files_")
SIMULATED = "simulated_"
SENSITIVE = ".sensitive"
# families whose alert type alone says the path, when the alert states no authentication type
ANONYMOUS_FAMILIES = ("anonymousaccessanomaly", "openacl", "opencontainersscanning")
ACCOUNT_SAS_FAMILY = "accountsas."
# the extended properties read (keys compared case-insensitively: the alerts API and the workflow
# automation body spell them "Authentication type", continuous export "authentication type")
AUTHENTICATION = "authentication type"
CONTAINER = "container"
OPERATIONS = "operations types"
USER_AGENT = "user agent"
READ = (AUTHENTICATION, CONTAINER, OPERATIONS, USER_AGENT)
MAX_VALUE = 1024


def is_storage_alert(alert_type: str) -> bool:
    """A Defender for Storage alert type (Blob or Files), sample alerts included."""
    lowered = alert_type.lower().removeprefix(SIMULATED)
    return lowered.startswith(PREFIXES)


def is_simulated(alert_type: str) -> bool:
    return alert_type.lower().startswith(SIMULATED)


def is_sensitive(alert_type: str) -> bool:
    """The `.Sensitive` variants: Defender's sensitive-data discovery found sensitive data there."""
    return alert_type.lower().endswith(SENSITIVE)


def authentication_kind(stated: str) -> str:
    """Defender's "Authentication type" in the storage logs' vocabulary; UNKNOWN for anything else.
    Captured values: "Shared access signature (SAS)", "Anonymous" (tests/data/azure)."""
    text = " ".join(stated.lower().split())
    if not text:
        return ""
    if "anonymous" in text or "unauthenticated" in text:
        return ANONYMOUS
    if "user delegation" in text:
        return USER_DELEGATION_KEY
    if "shared access signature" in text or text == "sas" or "(sas)" in text:
        return SAS
    if "key" in text and ("account" in text or "shared" in text or "storage" in text):
        return ACCOUNT_KEY
    if any(w in text for w in ("oauth", "azure ad", "azure active directory", "entra", "aad", "bearer")):
        return OAUTH
    return UNKNOWN


def _family(alert_type: str) -> str:
    lowered = alert_type.lower().removeprefix(SIMULATED)
    for prefix in PREFIXES:
        if lowered.startswith(prefix):
            return lowered[len(prefix) :]
    return lowered


def extended(raw: Mapping[str, Any]) -> dict[str, str]:
    """The extended properties this responder reads, keys lower-cased; each must be a string."""
    out: dict[str, str] = {}
    for key, value in raw.items():
        name = str(key).strip().lower()
        if name not in READ or value is None:
            continue
        if not isinstance(value, str):
            raise BadInput(f"extended property {key!r} must be a string")
        if len(value) > MAX_VALUE:
            raise BadInput(f"extended property {key!r} is longer than {MAX_VALUE} characters")
        out[name] = value.strip()
    return out


def stated_access(alert_type: str, props: Mapping[str, str]) -> tuple[str, ...]:
    """What the alert says was used: its authentication type, refined by the alert type (an account
    SAS family names an account SAS; an anonymous family reveals anonymous access whatever it states), and a
    user-delegation key obtained when the operations include GetUserDelegationKey."""
    family = _family(alert_type)
    kind = authentication_kind(props.get(AUTHENTICATION, ""))
    if family.startswith(ACCOUNT_SAS_FAMILY) and kind in ("", SAS, UNKNOWN):
        kind = ACCOUNT_SAS
    found = [kind] if kind else []
    if family.startswith(ANONYMOUS_FAMILIES):  # anonymous reads, or a container made public
        found.append(ANONYMOUS)
    found = found or [UNKNOWN]
    operations = {op.strip().lower() for op in props.get(OPERATIONS, "").replace(";", ",").split(",")}
    if "getuserdelegationkey" in operations:
        found.append(USER_DELEGATION_KEY)
    return tuple(dict.fromkeys(found))


def container(props: Mapping[str, str]) -> str:
    """The container the alert names ("" when none), refused when it is not a container name."""
    name = props.get(CONTAINER, "")
    if not name:
        return ""
    if not is_container_name(name.lower()):
        raise BadInput(f"extended property Container {name[:80]!r} is not a blob container name")
    return name.lower()


def notes(alert_type: str, props: Mapping[str, str]) -> tuple[str, ...]:
    """What the alert states, for the record (shown, never used to select a target)."""
    said = [f"Defender for Storage alert {alert_type[:120]}"]
    if props.get(AUTHENTICATION):
        said.append(f"authentication type {props[AUTHENTICATION][:80]!r}")
    if props.get(OPERATIONS):
        said.append(f"operations {props[OPERATIONS][:200]!r}")
    if props.get(USER_AGENT):
        said.append(f"user agent {props[USER_AGENT][:200]!r}")
    return ("; ".join(said),)
