"""Immutable value types that flow through the pipeline; plain data so every stage stays testable.

The records made once per event (Caller, Signal, Verdict, Action, Plan) are NamedTuples: building one
costs a fifth of a frozen dataclass with the same fields (0.45 us against 2.4 us for a Signal), and a
replay makes several per event. They are hashable when their fields are, compare by value, and change
only through `_replace`. The facts, read once per resource, stay frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

# the shared default of a mapping field of a NamedTuple: one instance, so it must not be mutable
EMPTY: Mapping[str, Any] = MappingProxyType({})


class SignalKind(StrEnum):
    """What a trigger reported, reduced to the risks this product contains."""

    PUBLIC_ACCESS_CHANGED = "public-access-changed"
    KEYS_LISTED = "keys-listed"
    SAS_LISTED = "sas-listed"
    USER_DELEGATION_KEY = "user-delegation-key"
    BLOB_CREATED = "blob-created"
    ALERT = "alert"
    MANUAL = "manual"
    SWEEP = "sweep"  # an exposure the periodic sweep found in the inventory, whatever raised it
    OTHER = "other"


class BadInput(ValueError):
    """Input that can never be processed; the reason is safe to show to the caller."""


class Caller(NamedTuple):
    """Who caused the change, by immutable ids only (display names are for humans)."""

    object_id: str = ""
    app_id: str = ""
    ip: str = ""
    principal_type: str = ""
    name: str = ""


class Signal(NamedTuple):
    """One risky change or alert, independent of the schema it arrived in.

    `id` and the four fields after `event_type` identify the event (which one, when, about which
    subject or Sentinel incident, under which Resource Manager correlation id); verdicts and plans
    never depend on them (see `core.plan.shape`).
    """

    id: str
    source: str
    kind: SignalKind
    event_type: str
    occurred_at: str = ""
    subject: str = ""
    incident_id: str = ""
    correlation_id: str = ""  # a validated GUID: the write's x-ms-correlation-request-id, or ""
    operation: str = ""
    accounts: tuple[str, ...] = ()
    containers: tuple[tuple[str, str], ...] = ()
    blob: str = ""
    caller: Caller = Caller()
    principals: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    title: str = ""
    requested_actions: tuple[str, ...] = ()
    search_query: str = ""
    search_window: tuple[str, str] = ("", "")
    notes: tuple[str, ...] = ()
    # how the access an alert reports was authenticated, as the alert itself states it (Defender for
    # Storage's "Authentication type"), in the storage logs' vocabulary (core.paths.EVIDENCE_KINDS);
    # empty when the signal does not say, and then the storage logs or the policy decide
    access: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerFacts:
    """A container's exposure and labels as read from Resource Manager."""

    name: str
    public_access: str = "None"
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AccountFacts:
    """A storage account as read before acting; `allow_blob_public_access` None means allowed."""

    id: str
    found: bool = True
    tags: Mapping[str, str] = field(default_factory=dict)
    allow_blob_public_access: bool | None = None
    # None for a key whose creation Azure never recorded (accounts older than the property)
    key_creation_time: Mapping[str, str | None] = field(default_factory=dict)
    containers: tuple[ContainerFacts, ...] = ()
    error: str = ""
    # containers whose metadata was not read (over the read bound), so not known to be unmarked
    metadata_unread: int = 0
    # None: absent, which Azure reads as allowed (keys and account/service SAS work), as for public access
    allow_shared_key_access: bool | None = None
    # "Enabled", "Disabled", "SecuredByPerimeter", or None (absent: the network rules alone decide)
    public_network_access: str | None = None
    # `networkAcls` exactly as Resource Manager answered it (defaultAction, bypass, ipRules, ipv6Rules,
    # virtualNetworkRules, resourceAccessRules); empty when it answered none
    network_acls: Mapping[str, Any] = field(default_factory=dict)
    # (name, privateLinkServiceConnectionState.status) of each private endpoint connection the account
    # shows in properties.privateEndpointConnections
    private_endpoints: tuple[tuple[str, str], ...] = ()

    @property
    def account_public_allowed(self) -> bool:
        return self.allow_blob_public_access is not False

    @property
    def shared_key_allowed(self) -> bool:
        """Account keys, and the account and service SAS signed with them, are honoured."""
        return self.allow_shared_key_access is not False

    @property
    def network_default_action(self) -> str:
        """What the firewall does with a request no rule matches: "Allow" (also when absent) or "Deny"."""
        return "Deny" if str(self.network_acls.get("defaultAction") or "").lower() == "deny" else "Allow"

    @property
    def network_bypass(self) -> tuple[str, ...]:
        """The traffic that passes the firewall whatever the rules say (AzureServices, Logging, Metrics);
        Azure's default, when absent, is AzureServices."""
        raw = self.network_acls.get("bypass")
        names = [p.strip() for p in str("AzureServices" if raw is None else raw).split(",")]
        return tuple(p for p in names if p and p.lower() != "none")

    @property
    def ip_rules(self) -> tuple[str, ...]:
        """The addresses and ranges the firewall lets in (IPv4 and IPv6 rules)."""
        return tuple(
            str(r.get("value"))
            for key in ("ipRules", "ipv6Rules")
            for r in self.network_acls.get(key) or ()
            if isinstance(r, Mapping)
        )

    @property
    def virtual_network_rules(self) -> tuple[str, ...]:
        """The subnet ids the firewall lets in."""
        rules = self.network_acls.get("virtualNetworkRules") or ()
        return tuple(str(r.get("id")) for r in rules if isinstance(r, Mapping))

    @property
    def resource_access_rules(self) -> tuple[tuple[str, str], ...]:
        """(tenant id, resource id) of each resource instance the firewall lets in."""
        rules = self.network_acls.get("resourceAccessRules") or ()
        return tuple(
            (str(r.get("tenantId")), str(r.get("resourceId"))) for r in rules if isinstance(r, Mapping)
        )

    @property
    def public_endpoint_open(self) -> bool:
        """Any network reaches the public endpoint: public network access is not disabled (nor left to a
        perimeter) and the firewall allows by default."""
        access = str(self.public_network_access or "Enabled").lower()
        return access == "enabled" and self.network_default_action == "Allow"

    @property
    def public_containers(self) -> tuple[ContainerFacts, ...]:
        return tuple(c for c in self.containers if c.public_access.lower() != "none")


@dataclass(frozen=True)
class PrincipalFacts:
    """A service principal as read from Microsoft Graph."""

    object_id: str
    found: bool = True
    app_id: str = ""
    display_name: str = ""
    account_enabled: bool = True
    error: str = ""
    principal_type: str = ""  # servicePrincipalType: Application, ManagedIdentity, ...
    app_owner_tenant: str = ""  # appOwnerOrganizationId: Microsoft's tenant for first-party apps
    owners: tuple[str, ...] | None = None  # object ids of its owners; None when not read


@dataclass(frozen=True)
class RoleAssignmentFacts:
    """One Azure role assignment that applies to an account, as Resource Manager lists it."""

    name: str  # a GUID, unique across every scope
    scope: str
    role_definition_id: str
    principal_id: str
    principal_type: str = ""
    condition: str = ""
    condition_version: str = ""
    description: str = ""

    def relation(self, account_id: str) -> str:
        """ "at" or "under" the account (removable there), "above" it (inherited), or "" (elsewhere)."""
        scope, account = self.scope.lower().rstrip("/"), account_id.lower().rstrip("/")
        if scope == account:
            return "at"
        if scope.startswith(account + "/"):
            return "under"
        if scope == "" or account.startswith(scope + "/"):
            return "above"
        return ""


@dataclass(frozen=True)
class Facts:
    """Current state of everything a signal names, read once before classifying."""

    accounts: Mapping[str, AccountFacts] = field(default_factory=dict)
    principals: Mapping[str, PrincipalFacts] = field(default_factory=dict)
    # account id -> {authentication type: requests} from the storage logs around the signal; an
    # account absent here means "not known" (no workspace, or not asked), never "no access"
    access: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # why the storage logs could not be read (then `access` is empty: nothing is known)
    evidence_error: str = ""
    # account id -> every role assignment that applies at, above or below it (all principals), read when
    # the signal implicates a principal; an account absent here was not read, or failed (see the error)
    role_assignments: Mapping[str, tuple[RoleAssignmentFacts, ...]] = field(default_factory=dict)
    role_assignments_error: Mapping[str, str] = field(default_factory=dict)


class Verdict(NamedTuple):
    """Is this a synthetic-data leak, how bad, and why; reasons are written for auditors."""

    leak: bool
    severity: str
    confidence: float
    reasons: tuple[str, ...]
    findings: tuple[str, ...] = ()
    synthetic_accounts: tuple[str, ...] = ()
    blocked: Mapping[str, str] = EMPTY


class Action(NamedTuple):
    """One idempotent containment step; `key` is deterministic so a redelivery finds it."""

    kind: str
    target: str
    key: str
    reason: str
    params: Mapping[str, str] = EMPTY
    after: tuple[str, ...] = ()
    mode: str = "auto"
    reversible: bool = True


class Write(NamedTuple):
    """A write the responder sent to Resource Manager, named as its Event Grid echo will name it."""

    correlation_id: str  # the answer's x-ms-correlation-request-id (a GUID)
    resource: str  # the resource id, lower case
    operation: str  # e.g. microsoft.storage/storageaccounts/write, lower case


class Applied(list[Write]):
    """The writes a step sent (for echo suppression) and what the write's own answer shows of its
    target (`answer`, e.g. the account a PATCH answers with; None when it shows nothing): the executor
    takes that answer as the step's read-back instead of asking again."""

    def __init__(self, writes: list[Write] = (), answer: dict[str, Any] | None = None) -> None:  # type: ignore[assignment]
        super().__init__(writes)
        self.answer = answer


class Plan(NamedTuple):
    """What will be done about one signal: data, so dry-run can show it and execute can run it."""

    incident: str
    signal: Signal
    verdict: Verdict
    actions: tuple[Action, ...]
    skipped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What happened to one action, with the state observed before and after."""

    action: Action
    status: str
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""
    acted_at: str = ""
    verified_at: str = ""
