"""Offline classification: parse -> classify -> plan with the facts taken from a tenant snapshot.

`replay --offline` and the throughput benchmark use this to answer "what would the responder do with
these events?" without Azure, the simulator or the ledger: no I/O at all. The facts are built from
the tenant snapshot format of `samples/tenant.json` (the format the simulated tenant is seeded from),
so an offline verdict and plan match what a dry-run against that simulated tenant produces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from responders.core.arm import normalise_account_id
from responders.core.classify import classify, tags_decide
from responders.core.model import (
    AccountFacts,
    BadInput,
    ContainerFacts,
    Facts,
    Plan,
    PrincipalFacts,
    RoleAssignmentFacts,
    Signal,
    SignalKind,
)
from responders.core.open_paths import private_endpoint_connections
from responders.core.parse import decode_json, parse_item
from responders.core.plan import Template, access_kinds, shape
from responders.core.plan import plan as make_plan
from responders.core.policy import Policy
from responders.tenantfile import ACCOUNT_FIELDS, CONTAINER_FIELDS, network_acls, seed_properties

# Seed keys that describe the resource itself; every other top-level key of a seeded account or
# container is an ARM property (the simulator reads the snapshot the same way).
_CREDENTIAL_KINDS = (SignalKind.KEYS_LISTED, SignalKind.SAS_LISTED, SignalKind.USER_DELEGATION_KEY)
MEMO_SHAPES = 8192  # plans (and facts) remembered per classifier; past it, new shapes are built afresh
# The texts the live readers record for a missing resource (read_account / read_principal on a 404).
ACCOUNT_NOT_FOUND = "not found (Not Found)"
PRINCIPAL_NOT_FOUND = "not a service principal (404)"


class _Snapshot:
    """Indexes of one tenant snapshot, and the facts built from it so far (per account, per principal)."""

    def __init__(self, tenant: Mapping[str, Any]) -> None:
        self.tenant = tenant
        self.account_seeds = {
            normalise_account_id(str(a.get("id", ""))): a for a in tenant.get("storageAccounts") or []
        }
        self.principal_seeds = {
            str(sp.get("id", "")).lower(): sp for sp in tenant.get("servicePrincipals") or []
        }
        self.by_app = {
            str(sp.get("appId", "")).lower(): str(sp.get("id", "")).lower()
            for sp in tenant.get("servicePrincipals") or []
            if sp.get("appId")
        }
        logs = ((tenant.get("logAnalytics") or {}).get("tables") or {}).get("StorageBlobLogs")
        # as evidence.access_by_account: authentication types per account name; None = no logs at all
        self.access_by_name: dict[str, dict[str, int]] | None = None
        if logs is not None:
            self.access_by_name = {}
            for row in logs:
                seen = self.access_by_name.setdefault(str(row.get("AccountName", "")).lower(), {})
                for kind in access_kinds(row.get("AuthenticationType"), row.get("OperationName")):
                    seen[kind] = seen.get(kind, 0) + 1
        self.roles = tuple(_role_facts(r) for r in tenant.get("roleAssignments") or [])
        self.accounts: dict[str, AccountFacts] = {}
        self.principals: dict[str, PrincipalFacts] = {}
        self.facts: dict[tuple[Any, ...], Facts] = {}

    def access(self, account_id: str) -> dict[str, int] | None:
        if self.access_by_name is None:
            return None
        return dict(self.access_by_name.get(account_id.rsplit("/", 1)[-1].lower(), {}))

    def account(self, account_id: str) -> AccountFacts:
        facts = self.accounts.get(account_id)
        if facts is None:
            seed = self.account_seeds.get(normalise_account_id(account_id))
            facts = (
                AccountFacts(id=account_id, found=False, error=ACCOUNT_NOT_FOUND)
                if seed is None
                else _account_facts(account_id, seed)
            )
            self.accounts[account_id] = facts
        return facts

    def principal(self, object_id: str) -> PrincipalFacts:
        facts = self.principals.get(object_id)
        if facts is None:
            seed = self.principal_seeds.get(object_id.lower())
            facts = (
                PrincipalFacts(object_id=object_id, found=False, error=PRINCIPAL_NOT_FOUND)
                if seed is None
                else _principal_facts(object_id, seed)
            )
            self.principals[object_id] = facts
        return facts


def _account_facts(account_id: str, seed: Mapping[str, Any]) -> AccountFacts:
    """What read_account returns for this seed when the simulated tenant serves it."""
    props = seed_properties(seed, ACCOUNT_FIELDS)
    containers = []
    for c in seed.get("containers") or []:
        cprops = seed_properties(c, CONTAINER_FIELDS)
        containers.append(
            ContainerFacts(
                name=str(c.get("name", "")),
                public_access=str(cprops.get("publicAccess") or "None"),
                metadata=dict(cprops.get("metadata") or {}),
            )
        )
    allow = props.get("allowBlobPublicAccess")
    shared = props.get("allowSharedKeyAccess")
    acls, access = props.get("networkAcls"), props.get("publicNetworkAccess")
    return AccountFacts(
        id=account_id,
        tags=dict(seed.get("tags") or {}),
        allow_blob_public_access=None if allow is None else bool(allow),
        allow_shared_key_access=None if shared is None else bool(shared),
        public_network_access=None if access is None else str(access),
        network_acls=network_acls(acls if isinstance(acls, Mapping) else None),
        private_endpoints=private_endpoint_connections(props.get("privateEndpointConnections")),
        key_creation_time=(
            dict.fromkeys(("key1", "key2"))
            if "keyCreationTime" in seed and seed["keyCreationTime"] is None
            else {
                k: None if v is None else str(v)
                for k, v in (seed.get("keyCreationTime") or props.get("keyCreationTime") or {}).items()
            }
        ),
        containers=tuple(containers),
    )


def as_read(facts: AccountFacts, policy: Policy, containers: tuple[str, ...]) -> AccountFacts:
    """The metadata read_account would have: none when the account's tags decide (it reads none),
    else only that of the containers the signal names (all when it names none)."""
    if not facts.found:
        return facts
    decided = tags_decide(policy)(facts.tags)
    kept = tuple(
        c
        if not decided and (not containers or c.name in containers)
        else ContainerFacts(c.name, c.public_access, {})
        for c in facts.containers
    )
    return replace(facts, containers=kept)


def _role_facts(seed: Mapping[str, Any]) -> RoleAssignmentFacts:
    """A role assignment seed, flat (name, scope, ...) or as Azure lists it (id, properties)."""
    props = {
        **{k: v for k, v in seed.items() if k not in ("id", "properties")},
        **(seed.get("properties") or {}),
    }
    rid = str(seed.get("id", ""))
    scope = props.get("scope") or rid[: rid.lower().rfind("/providers/microsoft.authorization/")]
    return RoleAssignmentFacts(
        name=str(seed.get("name") or rid.rsplit("/", 1)[-1]).lower(),
        scope="/" + str(scope).strip("/"),
        role_definition_id=str(props.get("roleDefinitionId", "")),
        principal_id=str(props.get("principalId", "")).lower(),
        principal_type=str(props.get("principalType") or "ServicePrincipal"),
        condition=str(props.get("condition") or ""),
        condition_version=str(props.get("conditionVersion") or ""),
        description=str(props.get("description") or ""),
    )


def _principal_facts(object_id: str, seed: Mapping[str, Any]) -> PrincipalFacts:
    return PrincipalFacts(
        object_id=object_id,
        app_id=str(seed.get("appId") or "").lower(),
        display_name=str(seed.get("displayName") or ""),
        account_enabled=seed.get("accountEnabled") is not False,
        principal_type=str(seed.get("servicePrincipalType") or "Application"),
        app_owner_tenant=str(seed.get("appOwnerOrganizationId") or "").lower(),
        owners=tuple(str(o).lower() for o in seed.get("owners") or ()),
    )


class OfflineClassifier:
    """Classifies events against one tenant snapshot and one policy, remembering what it built.

    The snapshot is treated as immutable: the facts of each account and principal are built once and
    reused (frozen values), and so is the plan of each signal shape (see `core.plan.Template`): a
    capture repeats a few shapes (one account, one caller, one operation) many times over. Make a new
    classifier after changing the snapshot or the policy.
    """

    def __init__(self, tenant: Mapping[str, Any], policy: Policy, *, max_shapes: int = MEMO_SHAPES) -> None:
        self._snap = _Snapshot(tenant)
        self.policy = policy
        self.max_shapes = max_shapes
        self._plans: dict[tuple[object, ...], Template] = {}

    @property
    def shapes(self) -> int:
        """How many plans are remembered (at most `max_shapes`: memory stays flat on any capture)."""
        return len(self._plans)

    def plan(self, raw: bytes | str | Any, *, now: str = "") -> Plan:
        """One event (JSON bytes or text, or the parsed item) -> its Plan, as a dry-run would make it.

        Raises BadInput with the reason for input the pipeline would reject. Changes made with the
        responder's own identity are judged and flagged (without a ledger no echo is recognised); `now`
        is the request time given to manual playbook requests.
        """
        item = decode_json(raw) if type(raw) is bytes or isinstance(raw, (bytearray, str)) else raw
        if type(item) is list:
            raise BadInput("one event at a time: split batches first (responders.core.parse.parse_body)")
        return self.plan_signal(parse_item(item, now=now))

    def plan_signal(self, signal: Signal) -> Plan:
        """The plan of a parsed signal (see `plan`)."""
        key = shape(signal)
        template = self._plans.get(key)
        if template is not None:
            return template.for_signal(signal)
        policy = self.policy
        # as service: nothing is read for signals ignored before any facts matter (offline there is no
        # ledger, so no write is recognised as the responder's own echo)
        wanted = signal.kind is not SignalKind.OTHER
        facts = self.facts(signal) if wanted else Facts()
        made = make_plan(signal, facts, classify(signal, facts, policy), policy)
        if len(self._plans) < self.max_shapes:
            self._plans[key] = Template(made)
        return made

    def facts(self, signal: Signal) -> Facts:
        """The Facts `service.gather_facts` would read for this signal, from the snapshot instead of
        Azure: every account named, every principal named, the caller of a credential signal, and the
        service principals of the applications named (by appId)."""
        snap = self._snap
        caller = signal.caller.object_id if signal.kind in _CREDENTIAL_KINDS else ""
        key = (
            signal.accounts,
            signal.containers,
            signal.principals,
            caller,
            signal.apps,
            signal.kind is SignalKind.ALERT,
            bool(signal.access),
        )
        facts = snap.facts.get(key)
        if facts is not None:
            return facts
        principals = list(signal.principals)
        if caller:
            principals.append(caller)
        principal_facts = {p: snap.principal(p) for p in dict.fromkeys(principals)}
        for app in signal.apps:
            object_id = snap.by_app.get(app.lower())
            if object_id:
                principal_facts.setdefault(object_id, snap.principal(object_id))
        evidence = self.policy.alert_credentials == "evidence"
        alert = signal.kind is SignalKind.ALERT and not signal.access and evidence
        access = {a: seen for a in signal.accounts if (seen := snap.access(a)) is not None} if alert else {}
        accounts = {
            a: as_read(snap.account(a), self.policy, tuple(c for n, c in signal.containers if n == a))
            for a in signal.accounts
        }
        # as gather_facts: who holds which role on each account, when a principal is implicated
        roles = (
            {a: tuple(r for r in snap.roles if r.relation(a)) for a in signal.accounts}
            if principals or signal.apps
            else {}
        )
        facts = Facts(accounts=accounts, principals=principal_facts, access=access, role_assignments=roles)
        if len(snap.facts) < self.max_shapes:
            snap.facts[key] = facts
        return facts
