"""Which access path a signal reveals, and which steps cut it: one table, in the policy's defaults.

A path is a way to read the data: anonymous reads, the account keys, an account / service /
user-delegation SAS, an Entra token. The signal (or the alert's stated authentication type, or the
storage logs) says which paths were used; the policy's `paths` table says which actions cut each.
Pure: no SDK, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from responders.core import defender
from responders.core.model import Signal, SignalKind

ANONYMOUS = "anonymous"
ACCOUNT_KEY = "account-key"
ACCOUNT_SAS = "account-sas"
SERVICE_SAS = "service-sas"
SAS = "sas"
USER_DELEGATION_SAS = "user-delegation-sas"
ENTRA_TOKEN = "entra-token"  # noqa: S105 (a path name, not a secret)
MANAGEMENT_TOKEN = "management-token"  # noqa: S105 (a path name, not a secret)
UNKNOWN = "unknown"

# path -> what it is (the README's "Which path, which step" table, first column, word for word)
PATHS: dict[str, str] = {
    ANONYMOUS: "anonymous reads (a public container on an account that allows public access)",
    ACCOUNT_KEY: "an account key (Shared Key)",
    ACCOUNT_SAS: "an account SAS (signed with an account key)",
    SERVICE_SAS: "a service SAS (signed with an account key)",
    SAS: "a SAS of a kind not stated (the storage logs and Defender say only SAS)",
    USER_DELEGATION_SAS: "a user-delegation SAS (signed with a user-delegation key)",
    ENTRA_TOKEN: "an Entra token of a principal, used on the storage endpoint (OAuth requests)",
    MANAGEMENT_TOKEN: "an Entra token of a principal, used on Resource Manager (listing keys or SAS)",
    UNKNOWN: "not known (no stated authentication type, no storage logs)",
}

# path -> the actions that cut it, in the order they run; a policy may replace any row (e.g.
# `account-key: [storage.disable_shared_key]` to switch Shared Key off instead of rotating)
DEFAULT_STEPS: dict[str, tuple[str, ...]] = {
    ANONYMOUS: ("storage.disable_public_access", "storage.make_container_private"),
    ACCOUNT_KEY: ("storage.regenerate_key",),
    ACCOUNT_SAS: ("storage.regenerate_key",),
    SERVICE_SAS: ("storage.regenerate_key",),
    SAS: ("storage.regenerate_key", "storage.revoke_user_delegation_keys"),
    USER_DELEGATION_SAS: ("storage.revoke_user_delegation_keys",),
    # network rules apply to every request on the public endpoint whatever its credential: the one step
    # that cuts tokens already issued at once (approval by default)
    ENTRA_TOKEN: (
        "identity.disable_service_principal",
        "authorization.remove_role_assignments",
        "storage.restrict_network",
    ),
    # storage network rules do not apply to Resource Manager: disabling and role removal cut this one
    MANAGEMENT_TOKEN: ("identity.disable_service_principal", "authorization.remove_role_assignments"),
    UNKNOWN: ("storage.regenerate_key", "storage.revoke_user_delegation_keys"),
}

# The authentication types of the storage logs (and of an alert's statement, core.defender) ->
# the path they show. Types not listed (Kerberos, for Azure Files) show none this responder cuts.
EVIDENCE_PATHS: dict[str, str] = {
    defender.ANONYMOUS: ANONYMOUS,
    defender.SAS: SAS,
    defender.ACCOUNT_SAS: ACCOUNT_SAS,
    defender.ACCOUNT_KEY: ACCOUNT_KEY,
    defender.OAUTH: ENTRA_TOKEN,
    defender.USER_DELEGATION_KEY: USER_DELEGATION_SAS,
    defender.UNKNOWN: UNKNOWN,
}

# What a Resource Manager signal shows. Whoever can list keys or SAS holds
# Microsoft.Storage/storageAccounts/* (Contributor, Storage Account Contributor), which also
# grants generateUserDelegationKey: they may have user-delegation SAS too. Their token is a path.
SIGNAL_PATHS: dict[SignalKind, tuple[str, ...]] = {
    SignalKind.PUBLIC_ACCESS_CHANGED: (ANONYMOUS,),
    SignalKind.BLOB_CREATED: (ANONYMOUS,),
    SignalKind.SWEEP: (ANONYMOUS,),  # an exposure the sweep found open
    SignalKind.KEYS_LISTED: (ACCOUNT_KEY, USER_DELEGATION_SAS, MANAGEMENT_TOKEN),
    # Get User Delegation Key is a data-plane request made with a token
    SignalKind.USER_DELEGATION_KEY: (USER_DELEGATION_SAS, ENTRA_TOKEN),
    # a manual request contains every path it can without a network change (which it may name)
    SignalKind.MANUAL: (ANONYMOUS, ACCOUNT_KEY, USER_DELEGATION_SAS, MANAGEMENT_TOKEN),
}
# principal-level steps (disable, remove role assignments): their row is the token path the signal shows
PRINCIPAL_KINDS = ("identity.disable_service_principal", "authorization.remove_role_assignments")
SERVICE_SAS_OPERATION = "microsoft.storage/storageaccounts/listservicesas/action"


def signal_paths(signal: Signal) -> tuple[str, ...]:
    """The paths a Resource Manager or manual signal reveals by its kind (not for alerts)."""
    if signal.kind is SignalKind.SAS_LISTED:
        sas = SERVICE_SAS if signal.operation == SERVICE_SAS_OPERATION else ACCOUNT_SAS
        return (sas, USER_DELEGATION_SAS, MANAGEMENT_TOKEN)
    return SIGNAL_PATHS.get(signal.kind, ())


def token_path(signal: Signal) -> str:
    """The path of the principals a signal implicates: who listed keys or SAS used Resource Manager;
    a principal an alert names, the storage endpoint."""
    if signal.kind in (SignalKind.KEYS_LISTED, SignalKind.SAS_LISTED, SignalKind.MANUAL):
        return MANAGEMENT_TOKEN
    return ENTRA_TOKEN


def evidence_paths(seen: Iterable[str]) -> tuple[str, ...]:
    """The paths a set of authentication types shows (logs or the alert's statement), in table order."""
    found = {EVIDENCE_PATHS[k] for k in (s.lower() for s in seen) if k in EVIDENCE_PATHS}
    return tuple(p for p in PATHS if p in found)


def steps(paths: Iterable[str], table: Mapping[str, tuple[str, ...]], order: Iterable[str]) -> list[str]:
    """The actions that cut the paths, each once, in catalogue `order`."""
    wanted = {kind for path in paths for kind in table.get(path, ())}
    return [kind for kind in order if kind in wanted]


def cutting(kind: str, paths: Iterable[str], table: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The paths among `paths` that the action kind cuts, for its reason."""
    return [p for p in paths if kind in table.get(p, ())]
