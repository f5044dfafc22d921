"""(Signal, Facts, Policy) -> Verdict: small pure predicates whose reasons an auditor can read."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache

from responders.core import defender
from responders.core.model import AccountFacts, Facts, Signal, SignalKind, Verdict
from responders.core.open_paths import account_findings
from responders.core.policy import Policy

SEVERITIES = ("none", "low", "medium", "high", "critical")
EXPOSURE_KINDS = (SignalKind.PUBLIC_ACCESS_CHANGED, SignalKind.BLOB_CREATED, SignalKind.SWEEP)
CREDENTIAL_KINDS = (SignalKind.KEYS_LISTED, SignalKind.SAS_LISTED, SignalKind.USER_DELEGATION_KEY)


def _lowered(labels: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v).lower() for k, v in labels.items()}


def _matches(labels: Mapping[str, str], wanted: Mapping[str, tuple[str, ...]]) -> list[str]:
    if not labels:
        return []
    lowered = _lowered(labels)
    return [f"{k}={lowered[k]}" for k, values in wanted.items() if lowered.get(k) in values]


def tags_decide(policy: Policy) -> Callable[[Mapping[str, str]], bool]:
    """Whether an account's tags alone mark it synthetic (then container metadata changes nothing),
    or the policy names no metadata marker at all."""

    def decide(tags: Mapping[str, str]) -> bool:
        return not policy.synthetic_metadata or bool(_matches(tags, policy.synthetic_tags))

    return decide


@lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """The policy's name patterns compiled once (re.search would look each up in its cache per call)."""
    return tuple((p, re.compile(p, re.IGNORECASE)) for p in patterns)


def synthetic_marks(
    account: AccountFacts, policy: Policy, containers: tuple[str, ...] = (), blob: str = ""
) -> list[str]:
    """Why we believe this account holds synthetic data; empty when nothing marks it.

    Tags and metadata are declarations; a name pattern is only a guess, and anyone who can upload to a
    public container chooses blob names. So a blob name marks its container, and name marks count only
    when the account's own classification tag does not say otherwise (see `overruled_names`).
    """
    marks = [f"account tag {m}" for m in _matches(account.tags, policy.synthetic_tags)]
    for c in account.containers:
        if not containers or c.name in containers:
            marks += [
                f"container {c.name} metadata {m}" for m in _matches(c.metadata, policy.synthetic_metadata)
            ]
    if not contrary_classification(account, policy):
        marks += _name_marks(account, policy, containers, blob)
    return marks


def _name_marks(account: AccountFacts, policy: Policy, containers: tuple[str, ...], blob: str) -> list[str]:
    name = account.id.rsplit("/", 1)[-1]
    home = containers[0] if containers else ""
    marks: list[str] = []
    for pattern, compiled in _compiled(tuple(policy.name_patterns)):
        for candidate in (name, *containers):
            if candidate and compiled.search(candidate):
                marks.append(f"name {candidate!r} matches pattern {pattern!r}")
        if blob and compiled.search(blob):
            where = f"container {home}" if home else "its container"
            marks.append(f"{where} holds blob {blob!r}, whose name matches pattern {pattern!r}")
    return marks


def contrary_classification(account: AccountFacts, policy: Policy) -> str:
    """The account's own classification tag when it says the account is not synthetic, e.g.
    "data-classification=public", or ""."""
    tags = _lowered(account.tags)
    for key, values in policy.synthetic_tags.items():
        if key in tags and tags[key] not in values:
            return f"{key}={tags[key]}"
    return ""


def overruled_names(
    account: AccountFacts, policy: Policy, containers: tuple[str, ...] = (), blob: str = ""
) -> str:
    """A finding when name patterns would mark the account but its own tag says otherwise, or ""."""
    contrary = contrary_classification(account, policy)
    names = _name_marks(account, policy, containers, blob) if contrary else []
    if not names:
        return ""
    return f"{'; '.join(names)}, but the account's own tag {contrary} says otherwise: the tag wins"


def provenance_severity(account: AccountFacts, policy: Policy, base: str) -> tuple[str, list[str]]:
    """Raise severity for high-fidelity synthetic data derived from personal data without a guarantee."""
    tags = _lowered(account.tags)
    sensitivity = tags.get(policy.sensitivity_tag, "")
    guarantee = tags.get(policy.guarantee_tag, "")
    fidelity = tags.get(policy.fidelity_tag, "")
    level = SEVERITIES.index(base)
    why: list[str] = []
    if sensitivity in policy.sensitive_sources:
        level += 1
        why.append(f"derived from {sensitivity} data")
        if guarantee in ("", "none"):
            level += 1
            why.append("no privacy guarantee recorded")
        if fidelity == "high":
            why.append("high fidelity: re-identification risk close to the source data")
    return SEVERITIES[min(level, len(SEVERITIES) - 1)], why


def _exposure(account: AccountFacts) -> str:
    if not account.account_public_allowed:
        return ""
    public = account.public_containers
    if not public:
        return ""
    listed = ", ".join(f"{c.name} ({c.public_access})" for c in public)
    return f"publicly readable: account allows public blob access and containers {listed} are public"


def _credential_reason(signal: Signal) -> str:
    who = signal.caller.object_id or signal.caller.name or "an unknown caller"
    what = {
        SignalKind.KEYS_LISTED: "account keys were listed",
        SignalKind.SAS_LISTED: "a SAS was generated from the account keys",
        SignalKind.USER_DELEGATION_KEY: "a user-delegation key (for user-delegation SAS) was generated",
    }[signal.kind]
    kind = f" ({signal.caller.principal_type})" if signal.caller.principal_type else ""
    return f"{what} by {who}{kind}"


def blocked_reason(account: AccountFacts, policy: Policy) -> str:
    """Why the policy forbids acting on this account (its exemption tag, or the scope), or ""."""
    exempt = next((str(v) for k, v in account.tags.items() if k.lower() == policy.exempt_tag), "")
    if exempt.lower() == "true":
        reason_tag = policy.exempt_tag + "-reason"
        note = next((str(v) for k, v in account.tags.items() if k.lower() == reason_tag), "")
        return f"exempt by tag {policy.exempt_tag}=true" + (f" ({note})" if note else "")
    if not policy.in_scope(account.id):
        return "outside the allowed scopes of the policy"
    return ""


def classify(signal: Signal, facts: Facts, policy: Policy, echo: str = "") -> Verdict:
    """Decide whether the signal is a synthetic-data leak; every branch says why.

    `echo` is why the ledger recognises the signal as the echo of one of the responder's own recorded
    writes (see `service.recorded_echo`): only then is it ignored. Any other change made with the
    responder's identity is judged like anyone's, and flagged.
    """
    if signal.kind is SignalKind.OTHER:
        return Verdict(False, "none", 1.0, signal.notes or ("not a signal this responder handles",))
    if echo:
        return Verdict(False, "none", 1.0, (echo,))

    reasons: list[str] = []
    findings: list[str] = []
    caller = signal.caller.object_id.lower()
    if caller and caller in policy.responder_object_ids:
        findings.append(
            f"changed with the responder's own identity ({caller}) but matching no write it recorded: "
            "a stolen token or a call made outside the responder; handled like anyone's change"
        )
    blocked: dict[str, str] = {}
    synthetic: list[str] = []
    severity = "none"
    exposed = False
    for account_id in signal.accounts:
        account = facts.accounts.get(account_id)
        if account is None or not account.found:
            findings.append(f"{account_id}: not found ({account.error if account else 'not read'})")
            continue
        containers = tuple(c for a, c in signal.containers if a == account_id)
        marks = synthetic_marks(account, policy, containers, signal.blob)
        overruled = overruled_names(account, policy, containers, signal.blob)
        if overruled:
            findings.append(f"{account_id}: {overruled}")
        if account.metadata_unread:
            findings.append(
                f"{account_id}: metadata of {account.metadata_unread} containers not read (over the bound)"
            )
        if not marks:
            findings.append(f"{account_id}: no synthetic-data marker (tags, metadata or name pattern)")
            continue
        synthetic.append(account_id)
        reasons.append(f"{account_id}: synthetic data ({'; '.join(marks)})")
        findings += [f"{account_id}: {f}" for f in account_findings(account)]
        if signal.kind is SignalKind.BLOB_CREATED and not _matches(account.tags, policy.synthetic_tags):
            findings.append(f"{account_id}: synthetic data landed in an account not classified for it")
        base = "medium"
        if signal.kind in EXPOSURE_KINDS:
            why = _exposure(account)
            if why:
                exposed = True
                base = "high"
                reasons.append(f"{account_id}: {why}")
            elif account.account_public_allowed:
                exposed = True
                reasons.append(f"{account_id}: account allows public blob access (no container public yet)")
            else:
                findings.append(f"{account_id}: not publicly readable; nothing to contain")
        elif signal.kind in CREDENTIAL_KINDS:
            exposed = True
            base = "high" if signal.kind is not SignalKind.USER_DELEGATION_KEY else "medium"
            reasons.append(f"{account_id}: {_credential_reason(signal)}")
        else:
            exposed = True
            label = (
                "manual containment requested"
                if signal.kind is SignalKind.MANUAL
                else (f"alert names it: {signal.title}" if signal.title else "an untitled alert names it")
            )
            reasons.append(f"{account_id}: {label}")
            why = _exposure(account)
            if why:
                base = "high"
                reasons.append(f"{account_id}: {why}")
            if signal.access:
                reasons.append(f"{account_id}: the alert states the access used: {', '.join(signal.access)}")
            if defender.is_sensitive(signal.operation):
                base = SEVERITIES[min(SEVERITIES.index(base) + 1, len(SEVERITIES) - 1)]
                reasons.append(
                    f"{account_id}: severity {base}: a .Sensitive alert (Defender found sensitive data there)"
                )
        level, why = provenance_severity(account, policy, base)
        if why:
            reasons.append(f"{account_id}: severity {level}: {', '.join(why)}")
        if SEVERITIES.index(level) > SEVERITIES.index(severity):
            severity = level
        why_not = blocked_reason(account, policy)
        if why_not:
            blocked[account_id] = why_not

    findings += signal.notes  # what the parser could not map (e.g. entities without an Entra id)
    if facts.evidence_error and signal.kind is SignalKind.ALERT:
        findings.append(
            f"storage logs could not be read ({facts.evidence_error}): which credentials were used is "
            f"unknown, so the policy's fallback for alerts.revoke_credentials={policy.alert_credentials} "
            "applies"
        )
    principals_only = not signal.accounts and (signal.principals or signal.apps)
    if principals_only and signal.kind in (SignalKind.MANUAL, SignalKind.ALERT):
        exposed = True
        severity = "medium"
        reasons.append(
            "manual request to disable a service principal"
            if signal.kind is SignalKind.MANUAL
            else "alert names application identities but no storage account"
        )

    if not exposed:
        if not reasons:
            reasons.append("no synthetic-data resource is at risk")
        return Verdict(False, "none", 0.9, tuple(reasons), tuple(findings), tuple(synthetic), blocked)
    confidence = 0.9 if any("account tag" in r or "metadata" in r for r in reasons) else 0.6
    return Verdict(
        True,
        severity if severity != "none" else "medium",
        confidence,
        tuple(reasons),
        tuple(findings),
        tuple(synthetic),
        blocked,
    )
