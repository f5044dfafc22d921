"""Posture: what a sweep finds on a synthetic-data account, ranked by risk, with its owner. Pure.

Two sorts of entries come out. Exposures (a public container, an account that lets containers be made
public) are what the sweep contains through the pipeline. Posture findings make an exposure likely or
invisible and are reported, never acted on: shared-key access allowed, no SAS expiration policy, no
diagnostic setting sending the blob logs to the evidence workspace, public network access with no
rules, a `$web` container, a principal that finished its job but still holds a data role.

Risk = the severity of the data's provenance (see `classify.provenance_severity`) x how open the
resource is. A check that could not be made (the diagnostic settings not read, say) is `unevaluated`:
the review keeps what it found before open rather than taking silence for a fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from responders.core.classify import SEVERITIES, provenance_severity, synthetic_marks
from responders.core.model import AccountFacts, ContainerFacts
from responders.core.policy import Policy

# how open each kind leaves the data: 4 anyone can read it, 3 anyone can reach it, 2 a credential
# that leaks or outlives its job reads it, 1 reads go unseen
OPENNESS = {
    "public-container": 4,
    "static-website-container": 4,
    "public-access-allowed": 2,
    "public-network-no-rules": 3,
    "shared-key-access": 2,
    "no-sas-expiration-policy": 2,
    "finished-principal-data-role": 2,
    "no-blob-logs": 1,
}
# the severity each kind starts from, before the provenance of the data raises it
BASE_SEVERITY = {
    "public-container": "high",
    "static-website-container": "high",
    "public-access-allowed": "medium",
    "public-network-no-rules": "medium",
    "shared-key-access": "medium",
    "no-sas-expiration-policy": "low",
    "finished-principal-data-role": "medium",
    "no-blob-logs": "medium",
}
EXPOSURES = ("public-container", "public-access-allowed")
WEB_CONTAINER = "$web"
# built-in roles that read blob data, directly or by listing the account keys (role definition GUIDs
# are the same in every tenant: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles)
DATA_ROLES = {
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
    "81a9662b-bebf-436f-a333-f67b29880f12": "Storage Account Key Operator Service Role",
    "c12c1c16-33a1-487b-954d-41c89c60f349": "Reader and Data Access",
    "b24988ac-6180-49e0-80a9-d50f44b0e7fc": "Contributor",
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
}
# the diagnostic log categories of a blob service that make StorageBlobLogs
BLOB_LOG_CATEGORIES = ("StorageRead", "StorageWrite", "StorageDelete")
BLOB_LOG_GROUPS = ("allLogs", "audit")


@dataclass(frozen=True)
class Finding:
    """One exposure or posture finding about one resource; `key` is what a later sweep matches."""

    kind: str
    resource: str
    account: str
    severity: str
    owner: str
    summary: str
    openness: int

    @property
    def key(self) -> str:
        return f"{self.kind}|{self.resource.lower()}"

    @property
    def risk(self) -> int:
        return SEVERITIES.index(self.severity) * self.openness

    @property
    def exposure(self) -> bool:
        return self.kind in EXPOSURES


@dataclass(frozen=True)
class AccountPosture:
    """What the adapters read of one account: the ARM (or Resource Graph) properties as answered, the
    containers, the blob service's diagnostic settings and the role assignments that reach the account.
    None for what was not read."""

    id: str
    tags: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)
    containers: tuple[ContainerFacts, ...] | None = None
    diagnostics: tuple[Mapping[str, Any], ...] | None = None
    role_assignments: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True)
class Assessment:
    """The findings of a set of accounts; `unevaluated` lists (kind, account) checks not made."""

    findings: tuple[Finding, ...] = ()
    unevaluated: tuple[tuple[str, str], ...] = ()


def owner_of(tags: Mapping[str, str], policy: Policy) -> str:
    """The owner named by the first of the policy's owner tags the resource carries, or "unassigned"."""
    lowered = {str(k).lower(): str(v) for k, v in tags.items()}
    for tag in policy.owner_tags:
        value = lowered.get(tag, "").strip()
        if value:
            return value
    return "unassigned"


def _facts(account: AccountPosture) -> AccountFacts:
    allow = account.properties.get("allowBlobPublicAccess")
    return AccountFacts(
        id=account.id,
        tags=dict(account.tags),
        allow_blob_public_access=allow if isinstance(allow, bool) else None,
        containers=account.containers or (),
    )


def synthetic_accounts(accounts: list[AccountPosture], policy: Policy) -> set[str]:
    """The ids of the accounts a marker calls synthetic (the only ones the checks look at)."""
    return {a.id for a in accounts if synthetic_marks(_facts(a), policy)}


def assess(
    accounts: list[AccountPosture],
    policy: Policy,
    *,
    evidence_workspace: str = "",
    finished_principals: Mapping[str, str] | None = None,
) -> Assessment:
    """Exposures and posture findings of the synthetic-data accounts among `accounts`. An account no
    marker calls synthetic gives none. `evidence_workspace` is the ARM id of the workspace the blob logs
    must reach (empty: that check is not made); `finished_principals` maps object ids to why each one
    is finished (a tag, a ledger record)."""
    findings: list[Finding] = []
    unevaluated: list[tuple[str, str]] = []
    for account in accounts:
        facts = _facts(account)
        if not synthetic_marks(facts, policy):
            continue
        found, missed = _account_findings(account, facts, policy, evidence_workspace, finished_principals)
        findings += found
        unevaluated += missed
    findings.sort(key=lambda f: (-f.risk, f.kind, f.resource.lower()))
    return Assessment(tuple(findings), tuple(unevaluated))


def _account_findings(
    account: AccountPosture,
    facts: AccountFacts,
    policy: Policy,
    workspace: str,
    finished: Mapping[str, str] | None,
) -> tuple[list[Finding], list[tuple[str, str]]]:
    props = account.properties
    owner = owner_of(account.tags, policy)
    finished = None if finished is None else {k.lower(): v for k, v in finished.items()}
    out: list[Finding] = []
    missed: list[tuple[str, str]] = []

    def add(kind: str, resource: str, summary: str) -> None:
        severity, why = provenance_severity(facts, policy, BASE_SEVERITY[kind])
        text = summary + (f" (severity {severity}: {', '.join(why)})" if why else "")
        out.append(Finding(kind, resource, account.id, severity, owner, text, OPENNESS[kind]))

    # exposures: what the sweep contains
    if account.containers is None:
        missed += [("public-container", account.id), ("static-website-container", account.id)]
    if facts.account_public_allowed:
        public = facts.public_containers
        for container in public:
            add(
                "public-container",
                f"{account.id}/blobServices/default/containers/{container.name}",
                f"container {container.name} is publicly readable ({container.public_access}) and the "
                "account allows public blob access",
            )
        if not public:
            add(
                "public-access-allowed",
                account.id,
                "the account allows public blob access (allowBlobPublicAccess is not false): any container "
                "can be made public by one data-plane call, which raises no Resource Manager event",
            )
    # posture findings: reported, never acted on
    shared_key = props.get("allowSharedKeyAccess")
    if shared_key is not False:
        add(
            "shared-key-access",
            account.id,
            "shared-key access is allowed (allowSharedKeyAccess is not false): the account keys, and "
            "every SAS signed with them, read the data without Entra ID",
        )
        sas_policy = props.get("sasPolicy")
        if not isinstance(sas_policy, Mapping) or not sas_policy.get("sasExpirationPeriod"):
            add(
                "no-sas-expiration-policy",
                account.id,
                "no SAS expiration policy (sasPolicy): a SAS signed with the account keys may be valid "
                "for years, and nothing flags one that is",
            )
    if _open_network(props):
        add(
            "public-network-no-rules",
            account.id,
            "public network access is enabled with no IP or virtual-network rules (networkAcls "
            "defaultAction Allow): the account answers from any address",
        )
    for container in account.containers or ():
        if container.name == WEB_CONTAINER:
            add(
                "static-website-container",
                f"{account.id}/blobServices/default/containers/{WEB_CONTAINER}",
                "a $web container: with the static website on, its blobs are served anonymously from the "
                "web endpoint whatever the container's access level says",
            )
    if workspace:
        if account.diagnostics is None:
            missed.append(("no-blob-logs", account.id))
        elif not _sends_blob_logs(account.diagnostics, workspace):
            add(
                "no-blob-logs",
                account.id,
                "no diagnostic setting on blobServices/default sends StorageRead, StorageWrite and "
                "StorageDelete to the evidence workspace: StorageBlobLogs stays empty and the responder "
                "cannot see who read the data",
            )
    if finished is not None:
        if account.role_assignments is None:
            missed.append(("finished-principal-data-role", account.id))
        else:
            for principal, role, scope in _finished_holders(account.role_assignments, finished):
                add(
                    "finished-principal-data-role",
                    f"{account.id}|{principal}",
                    f"principal {principal} is finished ({finished[principal]}) but still holds {role} "
                    f"at {scope}",
                )
    return out, missed


def _open_network(props: Mapping[str, Any]) -> bool:
    """Public network access on (absent means enabled) and nothing narrowing it."""
    access = str(props.get("publicNetworkAccess") or "Enabled")
    if access.lower() != "enabled":
        return False
    acls = props.get("networkAcls")
    acls = acls if isinstance(acls, Mapping) else {}
    if str(acls.get("defaultAction") or "Allow").lower() != "allow":
        return False
    return not acls.get("ipRules") and not acls.get("virtualNetworkRules")


def _sends_blob_logs(settings: tuple[Mapping[str, Any], ...], workspace: str) -> bool:
    """Some setting sends every blob log category (by name or category group) to `workspace`."""
    for setting in settings:
        props = setting.get("properties")
        props = props if isinstance(props, Mapping) else setting
        if str(props.get("workspaceId") or "").lower().rstrip("/") != workspace.lower().rstrip("/"):
            continue
        enabled: set[str] = set()
        for entry in props.get("logs") or []:
            if not isinstance(entry, Mapping) or entry.get("enabled") is not True:
                continue
            if str(entry.get("categoryGroup") or "") in BLOB_LOG_GROUPS:
                return True
            enabled.add(str(entry.get("category") or ""))
        if set(BLOB_LOG_CATEGORIES) <= enabled:
            return True
    return False


def _finished_holders(
    assignments: tuple[Mapping[str, Any], ...], finished: Mapping[str, str]
) -> list[tuple[str, str, str]]:
    """(principal, role name, scope) of each data role held by a finished principal."""
    out = []
    for assignment in assignments:
        props = assignment.get("properties")
        props = props if isinstance(props, Mapping) else assignment
        principal = str(props.get("principalId") or "").lower()
        role = str(props.get("roleDefinitionId") or "").rsplit("/", 1)[-1].lower()
        if principal in finished and role in DATA_ROLES:
            out.append((principal, DATA_ROLES[role], str(props.get("scope") or "")))
    return sorted(set(out))
