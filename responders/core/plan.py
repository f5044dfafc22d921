"""(Signal, Facts, Verdict, Policy) -> Plan: an ordered list of idempotent actions, pure data."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

from responders.core import paths
from responders.core.catalogue import REVERSIBLE
from responders.core.classify import CREDENTIAL_KINDS
from responders.core.model import (
    AccountFacts,
    Action,
    Facts,
    Plan,
    PrincipalFacts,
    Signal,
    SignalKind,
    Verdict,
)
from responders.core.network import is_restricted, untrusted_rules
from responders.core.parse import incident_key
from responders.core.policy import ACTION_KINDS, Policy


def action_key(incident: str, kind: str, target: str, params: Mapping[str, str]) -> str:
    """Deterministic per incident, so a redelivered event finds the same ledger row."""
    return _digest(incident + _key_tail(kind, target, params))


def _key_tail(kind: str, target: str, params: Mapping[str, str]) -> str:
    """What an action key hashes after the incident: the same for every incident of one shape."""
    return "|".join(["", kind, target.lower(), *(f"{k}={v}" for k, v in sorted(params.items()))])


def _digest(raw: str) -> str:
    return "act-" + hashlib.sha256(raw.encode()).hexdigest()[:20]


class _Builder:
    def __init__(self, incident: str, policy: Policy, requested: Iterable[str]) -> None:
        self.incident = incident
        self.policy = policy
        self.requested = set(requested)
        self.actions: list[Action] = []
        self.keys: set[str] = set()  # of self.actions, for the membership tests
        self.skipped: list[tuple[str, str]] = []

    def add(
        self,
        kind: str,
        target: str,
        reason: str,
        params: dict[str, str] | None = None,
        after: tuple[str, ...] = (),
    ) -> str:
        params = params or {}
        key = action_key(self.incident, kind, target, params)
        if self.requested and kind not in self.requested:
            self.skipped.append((f"{kind} {target}", "not among the actions requested"))
            return key
        if key in self.keys:
            return key
        self.actions.append(
            Action(
                kind=kind,
                target=target,
                key=key,
                reason=reason,
                params=params,
                after=tuple([k for k in after if k in self.keys]) if after else (),
                mode=self.policy.approval.get(kind, "auto"),
                reversible=REVERSIBLE[kind],
            )
        )
        self.keys.add(key)
        return key


def plan(signal: Signal, facts: Facts, verdict: Verdict, policy: Policy) -> Plan:
    """Turn a verdict into actions; blocked targets (exempt, out of scope) become skipped entries."""
    incident = incident_key(signal.id)
    unknown = [a for a in signal.requested_actions if a not in ACTION_KINDS]
    builder = _Builder(incident, policy, signal.requested_actions)
    for name in unknown:
        builder.skipped.append((name, f"unknown action; known: {', '.join(ACTION_KINDS)}"))
    if not verdict.leak:
        return Plan(incident, signal, verdict, (), tuple(builder.skipped))

    for account_id in verdict.synthetic_accounts:
        if account_id in verdict.blocked:
            builder.skipped.append((account_id, verdict.blocked[account_id]))
            continue
        account = facts.accounts[account_id]
        revealed, skip = account_paths(signal, account, facts.access.get(account_id), policy)
        if skip:
            builder.skipped.append((f"storage.regenerate_key {account_id}", skip))
        kinds = paths.steps(revealed, policy.paths, ACTION_KINDS)
        # the network and shared-key steps are planned when a path's row names them, or when asked for
        kinds += [k for k in REQUESTED_ONLY if k in builder.requested and k not in kinds]
        for kind in kinds:
            cuts = paths.cutting(kind, revealed, policy.paths)
            _account_step(builder, kind, account_id, account, cuts, facts.access.get(account_id), policy)

    token = paths.token_path(signal)
    row = policy.paths.get(token, ())
    for object_id, why in _principal_guardrails(signal, facts, verdict, policy):
        if why:
            builder.skipped.append((object_id, why))
            continue
        if "identity.disable_service_principal" not in row:
            builder.skipped.append((object_id, f"the policy's paths.{token} does not disable principals"))
            continue
        builder.add(
            "identity.disable_service_principal",
            object_id,
            "application identity that obtained access to synthetic data",
        )
    for object_id, account_id, why in _role_steps(signal, facts, verdict, policy):
        what = f"authorization.remove_role_assignments {account_id} {object_id}"
        if why:
            builder.skipped.append((what, why))
            continue
        if "authorization.remove_role_assignments" not in row:
            builder.skipped.append((what, f"the policy's paths.{token} does not remove role assignments"))
            continue
        builder.add(
            "authorization.remove_role_assignments",
            account_id,
            f"service principal {object_id} holds role assignments on the account: its tokens, issued "
            "ones included, keep that access until they are removed",
            {"principal": object_id},
        )
    return Plan(incident, signal, verdict, tuple(builder.actions), tuple(builder.skipped))


def _restrict_network(builder: _Builder, account: AccountFacts, policy: Policy) -> None:
    """Deny by default, keep only the trusted rules; said as skipped when nothing would change."""
    what = f"storage.restrict_network {account.id}"
    trusted = policy.network_trusted
    if str(account.public_network_access or "").lower() == "disabled":
        builder.skipped.append(
            (what, "public network access is disabled: no request reaches the public endpoint")
        )
        return
    if is_restricted(account.network_acls, account.public_network_access, trusted):
        builder.skipped.append(
            (what, "the firewall already denies by default and lets in only trusted rules")
        )
        return
    dropped = untrusted_rules(account.network_acls, trusted)
    shown = "; ".join(dropped[:5]) + (f"; and {len(dropped) - 5} more" if len(dropped) > 5 else "")
    reason = (
        "refuse every request from outside the trusted networks, whatever its credential (tokens "
        f"already issued included); keeps {len(trusted.ip_rules)} trusted IP, "
        f"{len(trusted.virtual_network_rules)} subnet and {len(trusted.resource_access_rules)} resource rules"
        + (f"; removes {shown}" if dropped else "")
    )
    builder.add("storage.restrict_network", account.id, reason, {"trusted": trusted.as_param()})


# An account tagged so (value "true") says its own tooling signs requests with its keys
SHARED_KEY_TAG = "uses-shared-key"


def shared_key_warnings(account: AccountFacts, access: Mapping[str, int] | None) -> list[str]:
    """Why turning shared key off may break the account's own tooling: its tag, or key and SAS requests
    in the storage logs around the signal (which do not tell the offending caller from the others)."""
    out = []
    tags = {k.lower(): str(v).lower() for k, v in account.tags.items()}
    if tags.get(SHARED_KEY_TAG) == "true":
        out.append(f"the account is tagged {SHARED_KEY_TAG}=true: its own tooling signs with keys")
    if access is None:
        out.append("no storage logs could be read, so who else signs with keys or SAS is not known")
    else:
        seen = {k.lower(): n for k, n in access.items()}
        used = [
            f"{seen[k]} {name}" for k, name in (("accountkey", "AccountKey"), ("sas", "SAS")) if seen.get(k)
        ]
        if used:
            out.append(
                f"the storage logs show {' and '.join(used)} requests around the signal; legitimate "
                "callers signing with keys or SAS among them will be refused too"
            )
    return out


def _disable_shared_key(builder: _Builder, account: AccountFacts, access: Mapping[str, int] | None) -> None:
    """Shared key off, with a warning in the reason where the account's own tooling may need keys."""
    if not account.shared_key_allowed:
        builder.skipped.append(
            (f"storage.disable_shared_key {account.id}", "shared key access is already off")
        )
        return
    reason = (
        "refuse every account key and every account and service SAS at once (reversible, unlike rotation)"
    )
    warnings = shared_key_warnings(account, access)
    if warnings:
        reason += "; warning: " + "; ".join(warnings)
    builder.add("storage.disable_shared_key", account.id, reason)


# A signal's identity: which event it was, when, and the ids of what it reported (the subject, the
# Sentinel incident, the write's correlation id). Classifying and planning read none of it (only the
# incident key is made from the id; the resources acted on are in `accounts`, `containers` and `blob`),
# so two signals equal in every other field get the same verdict and actions. `shape` is that rest, and
# a `Template` gives each event the plan of its shape. The identity fields are `id` (field 0) and the
# four after `event_type`.
IDENTITY = ("id", "occurred_at", "subject", "incident_id", "correlation_id")
_FROM, _TO = Signal._fields.index("occurred_at"), Signal._fields.index("correlation_id") + 1


def shape(signal: Signal) -> tuple[object, ...]:
    """Every field of the signal but its identity: a hashable memo key."""
    return signal[1:_FROM] + signal[_TO:]


def shape_key(signal: Signal) -> str:
    """The shape as a stable text key (the same in every process), for the ledger."""
    text = json.dumps(shape(signal), separators=(",", ":"), ensure_ascii=False)
    return "shape-" + hashlib.sha256(text.encode()).hexdigest()[:32]


class Template:
    """The plan made for one signal, reusable for every signal of the same shape (with the same facts
    and policy): the same verdict and actions, keyed to the other signal's incident."""

    __slots__ = ("_tails", "plan")

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._tails = tuple(_key_tail(a.kind, a.target, a.params) for a in plan.actions)

    def for_signal(self, signal: Signal) -> Plan:
        """What `plan` makes for `signal`, which has the template's shape. The records are made with
        tuple.__new__ and every field in order: a third of what the NamedTuple constructors cost, and
        tests/test_offline.py compares every field with a freshly made plan."""
        made = self.plan
        incident = "inc-" + _sha256(signal.id.lower().encode()).hexdigest()[:24]  # incident_key, inline
        if incident == made.incident or not made.actions:
            return _new(Plan, (incident, signal, made.verdict, made.actions, made.skipped))
        keys: dict[str, str] = {}
        actions = []
        for a, tail in zip(made.actions, self._tails, strict=True):
            key = keys[a.key] = "act-" + _sha256((incident + tail).encode()).hexdigest()[:20]  # _digest
            after = tuple([keys[k] for k in a.after]) if a.after else ()
            fields = (a.kind, a.target, key, a.reason, a.params, after, a.mode, a.reversible)
            actions.append(_new(Action, fields))
        return _new(Plan, (incident, signal, made.verdict, tuple(actions), made.skipped))


_new, _sha256 = tuple.__new__, hashlib.sha256
assert Plan._fields == ("incident", "signal", "verdict", "actions", "skipped")  # the order for_signal uses
assert Action._fields == ("kind", "target", "key", "reason", "params", "after", "mode", "reversible")


MICROSOFT_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"  # owns Microsoft's first-party apps
OWNED_BY = "Application.ReadWrite.OwnedBy"


def cannot_disable(principal: PrincipalFacts | None, policy: Policy) -> str:
    """Why Graph would refuse to disable this service principal (said before any call), or ''."""
    if principal is None or not principal.found:
        return ""
    if principal.app_owner_tenant == MICROSOFT_TENANT:
        return "a Microsoft first-party service principal cannot be disabled by a tenant's app"
    if policy.graph_permission != OWNED_BY:
        return ""
    if principal.principal_type == "ManagedIdentity":
        return (
            "a managed identity's service principal cannot have owners, and the responder's "
            f"{OWNED_BY} changes only service principals it owns"
        )
    if principal.owners is not None and not set(principal.owners) & set(policy.responder_object_ids):
        return f"the responder is not among its owners, and {OWNED_BY} changes only those it owns"
    return ""


# Get User Delegation Key is a data-plane request (no Resource Manager event): seen in StorageBlobLogs,
# it is counted apart from the authentication types, and calls for revoking user-delegation keys
UDK_OPERATION, UDK_ACCESS = "getuserdelegationkey", "user-delegation-key"


def access_kinds(auth: object, operation: object) -> tuple[str, ...]:
    """What one storage log row counts as: its authentication type, plus a user-delegation key
    obtained when the operation is GetUserDelegationKey."""
    kinds = (str(auth or "unknown"),)
    return (*kinds, UDK_ACCESS) if str(operation or "").lower() == UDK_OPERATION else kinds


def account_paths(
    signal: Signal, account: AccountFacts, access: Mapping[str, int] | None, policy: Policy
) -> tuple[list[str], str]:
    """The access paths to cut on one account, and why keys are not rotated ("" when they are or the
    signal is no alert). An alert's paths come from what it states (Defender's authentication type),
    else from the storage logs; rotation breaks every legitimate key user, so it needs key or SAS
    access shown, or not knowing, unless the policy says always or never. A generic alert also closes
    public access, as does any alert on an account that is publicly readable now."""
    if signal.kind is not SignalKind.ALERT:
        return list(paths.signal_paths(signal)), ""
    stated = bool(signal.access)
    found: list[str] = []
    if not stated or paths.ANONYMOUS in paths.evidence_paths(signal.access) or _exposure_open(account):
        found.append(paths.ANONYMOUS)
    if policy.alert_credentials == "never":
        credential: tuple[str, ...] = ()
    elif policy.alert_credentials == "always":
        credential = (paths.UNKNOWN,)
    elif stated:
        credential = paths.evidence_paths(signal.access)
    elif access is None:
        credential = (paths.UNKNOWN,)
    else:
        credential = paths.evidence_paths(access)
    found += [p for p in credential if p not in found]
    if "storage.regenerate_key" in paths.steps(found, policy.paths, ACTION_KINDS):
        return found, ""
    if policy.alert_credentials == "never":
        return found, "keys not rotated: policy alerts.revoke_credentials is never"
    if stated:
        return found, f"keys not rotated: the alert states {', '.join(signal.access)} access"
    seen = ", ".join(sorted(access or {})) or "no access at all"
    return found, f"keys not rotated: the storage logs show {seen}"


def _exposure_open(account: AccountFacts) -> bool:
    """Publicly readable now: the account allows public access and a container grants it."""
    return account.account_public_allowed and bool(account.public_containers)


# planned on a manual request that names them, unless a row of the policy's paths table does
REQUESTED_ONLY = ("storage.restrict_network", "storage.disable_shared_key")


def _account_step(
    builder: _Builder,
    kind: str,
    account_id: str,
    account: AccountFacts,
    cuts: list[str],
    access: Mapping[str, int] | None,
    policy: Policy,
) -> None:
    """The actions of one kind on one account, as its facts call for them."""
    why = f" (cuts {', '.join(cuts)})"
    if kind == "storage.disable_public_access":
        if account.account_public_allowed:
            builder.add(kind, account_id, "account allows anonymous blob access" + why)
    elif kind == "storage.make_container_private":
        for container in account.public_containers:
            builder.add(
                kind,
                account_id,
                f"container {container.name} grants {container.public_access} public access" + why,
                {"container": container.name},
            )
    elif kind == "storage.regenerate_key":
        first = builder.add(
            kind,
            account_id,
            "invalidate listed keys and every account/service SAS signed with key1" + why,
            {"key_name": "key1"},
        )
        builder.add(
            kind,
            account_id,
            "invalidate listed keys and every account/service SAS signed with key2" + why,
            {"key_name": "key2"},
            after=(first,),
        )
    elif kind == "storage.revoke_user_delegation_keys":
        builder.add(kind, account_id, "invalidate every user-delegation SAS issued for the account" + why)
    elif kind == "storage.restrict_network":
        _restrict_network(builder, account, policy)
    elif kind == "storage.disable_shared_key":
        _disable_shared_key(builder, account, access)
    # identity.disable_service_principal and authorization.remove_role_assignments act on the principals
    # the signal implicates: planned below, by the row of their token path


def _principal_guardrails(
    signal: Signal, facts: Facts, verdict: Verdict, policy: Policy
) -> list[tuple[str, str]]:
    """Each service principal the signal implicates, with why it is not disabled ("" when it is).

    The same guardrails as for accounts: the incident must concern an in-scope, non-exempt
    synthetic-data resource (or be a human's request naming only the principal), the principal must be
    within the policy's principal scope, and the responder itself is never disabled.
    """
    acts_on_account = any(a not in verdict.blocked for a in verdict.synthetic_accounts)
    named_alone = signal.kind is SignalKind.MANUAL and not signal.accounts
    own = set(policy.responder_object_ids)
    out: list[tuple[str, str]] = []
    for object_id in _principal_candidates(signal, facts):
        principal = facts.principals.get(object_id)
        if object_id in own:
            out.append((object_id, "the responder's own identity is never disabled"))
        elif principal is not None and not principal.found:
            continue  # not a service principal (a user, or gone): nothing to disable
        elif not (acts_on_account or named_alone):
            out.append((object_id, "the incident names no in-scope, non-exempt synthetic-data resource"))
        elif not policy.principal_in_scope(object_id, principal.app_id if principal else ""):
            out.append((object_id, "outside the policy's principal scope (principals.allow)"))
        elif not policy.disable_principals and signal.kind is not SignalKind.MANUAL:
            out.append((object_id, "policy disables no service principals automatically"))
        elif principal is not None and not principal.account_enabled:
            out.append((object_id, "service principal already disabled"))
        elif why := cannot_disable(principal, policy):
            out.append((object_id, f"cannot be disabled: {why}"))
        else:
            out.append((object_id, ""))
    return out


def _role_steps(signal: Signal, facts: Facts, verdict: Verdict, policy: Policy) -> list[tuple[str, str, str]]:
    """(principal, account, why not) for each implicated service principal holding role assignments at
    or under an in-scope, non-exempt synthetic account ("" when they are removed).

    The facts decide: where they show no assignment of the principal at or under the account there
    is nothing to remove (inherited ones are a path this step leaves open, said as a skip); where the
    read failed, the step is planned and its own read decides (and records the failure). The same
    guardrails as disabling: principals.allow, only service principals by object id, never the
    responder itself.
    """
    accounts = [a for a in verdict.synthetic_accounts if a not in verdict.blocked]
    own = set(policy.responder_object_ids)
    out: list[tuple[str, str, str]] = []
    for object_id in _principal_candidates(signal, facts):
        principal = facts.principals.get(object_id)
        if principal is not None and not principal.found:
            continue  # not a service principal (a user, or gone)
        for account_id in accounts:
            held = [r for r in facts.role_assignments.get(account_id, ()) if r.principal_id == object_id]
            removable = [r for r in held if r.relation(account_id) in ("at", "under")]
            if not removable and account_id not in facts.role_assignments_error:
                inherited = sorted({r.scope for r in held if r.relation(account_id) == "above"})
                if inherited and object_id not in own:
                    out.append(
                        (
                            object_id,
                            account_id,
                            "no role assignment at or under the account to remove; inherited from "
                            f"{', '.join(inherited)} (left in place: removing it there reaches beyond "
                            "the account)",
                        )
                    )
                continue
            if object_id in own:
                out.append((object_id, account_id, "the responder's own role assignments are never removed"))
            elif not policy.principal_in_scope(object_id, principal.app_id if principal else ""):
                out.append((object_id, account_id, "outside the policy's principal scope (principals.allow)"))
            elif not policy.disable_principals and signal.kind is not SignalKind.MANUAL:
                out.append((object_id, account_id, "policy acts on no service principals automatically"))
            else:
                out.append((object_id, account_id, ""))
    return out


def _principal_candidates(signal: Signal, facts: Facts) -> list[str]:
    """Only service principals, only by immutable object id: the caller of a credential signal, and the
    principals and applications an alert or a manual request names."""
    found: list[str] = []
    # a user's token also carries an appid (their client app): only service principals qualify, and an
    # unknown principal type is settled by the Graph read (404 = not a service principal).
    caller_type = signal.caller.principal_type.lower()
    credential = signal.kind in CREDENTIAL_KINDS and caller_type in ("serviceprincipal", "")
    if credential and signal.caller.object_id:
        found.append(signal.caller.object_id)
    if signal.kind in (SignalKind.ALERT, SignalKind.MANUAL):
        found += signal.principals
        for app_id in signal.apps:
            found += [p.object_id for p in facts.principals.values() if p.found and p.app_id == app_id]
    return list(dict.fromkeys(found))
