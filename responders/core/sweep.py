"""The sweep's pure parts: the inventory query, Resource Graph rows -> accounts, which accounts are
synthetic-data candidates, which are exposed now, and the `sweep` signal each exposure becomes.

No SDK and no I/O: the adapter (responders/sweep.py) pages Resource Graph, lists containers and runs
each signal through the same pipeline as any event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from responders.core.arm import parse_storage_id
from responders.core.classify import synthetic_marks
from responders.core.model import AccountFacts, ContainerFacts, Signal, SignalKind
from responders.core.policy import Policy

ACCOUNT_TYPE = "microsoft.storage/storageaccounts"
# One query returns every account with what containment and the review need; `id` is projected so
# Resource Graph can page it, and the order makes pages repeatable.
INVENTORY_QUERY = (
    "resources"
    f" | where type =~ '{ACCOUNT_TYPE}'"
    " | project id, name, subscriptionId, resourceGroup, location, kind, tags,"
    " allowBlobPublicAccess = properties.allowBlobPublicAccess,"
    " allowSharedKeyAccess = properties.allowSharedKeyAccess,"
    " publicNetworkAccess = properties.publicNetworkAccess,"
    " networkAcls = properties.networkAcls,"
    " sasPolicy = properties.sasPolicy"
    " | order by id asc"
)
PAGE_SIZE = 1000  # Resource Graph's most rows per answer (QueryRequestOptions.$top maximum)
SUBSCRIPTION_BATCH = 300  # the most subscriptions per query the throttling guidance advises


@dataclass(frozen=True)
class InventoryRow:
    """One storage account as Resource Graph reports it (Resource Graph may lag the account by minutes:
    the pipeline reads the account itself before acting)."""

    id: str
    name: str
    subscription: str
    resource_group: str
    tags: Mapping[str, str] = field(default_factory=dict)
    allow_blob_public_access: bool | None = None  # None: not set, which means allowed
    raw: Mapping[str, Any] = field(default_factory=dict)  # the row as answered, for the posture review

    @property
    def public_allowed(self) -> bool:
        return self.allow_blob_public_access is not False


@dataclass(frozen=True)
class Exposure:
    """A synthetic-data candidate open to anonymous reads now: its account allows public blob access and
    (for accounts marked by tag or name) that alone, or these containers are public."""

    account_id: str
    account_public: bool
    containers: tuple[tuple[str, str], ...] = ()  # (name, publicAccess), sorted

    @property
    def fingerprint(self) -> str:
        """What is open, so the same exposure seen by two sweeps is one signal."""
        shape = "|".join(
            [f"account={self.account_public}", *(f"{n}={a.lower()}" for n, a in self.containers)]
        )
        return hashlib.sha256(shape.encode()).hexdigest()[:16]


def query_scope(policy: Policy) -> tuple[tuple[str, ...], bool]:
    """The subscriptions to query (from the policy's allow-list: a subscription or anything under it,
    and the subscriptions its management groups hold, see Policy.with_members), and whether the whole
    tenant is in scope ("*"). Nothing else is ever queried."""
    if "*" in policy.allowed_scopes:
        return (), True
    subscriptions = sorted(policy.member_subscriptions)
    for scope in policy.allowed_scopes:
        parts = scope.strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "subscriptions" and parts[1]:
            subscriptions.append(parts[1].lower())
    return tuple(dict.fromkeys(subscriptions)), False


def subscription_batches(subscriptions: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [
        subscriptions[i : i + SUBSCRIPTION_BATCH] for i in range(0, len(subscriptions), SUBSCRIPTION_BATCH)
    ]


def parse_row(raw: Any) -> InventoryRow:
    """A row of the inventory query; ValueError with the reason when it is not one (the sweep is then
    incomplete: an unreadable row is never taken as an account with nothing open)."""
    if not isinstance(raw, Mapping):
        raise ValueError("not an object")
    ref = parse_storage_id(raw.get("id"))  # type: ignore[arg-type]
    if ref is None or ref.container:
        raise ValueError(f"id is not a storage account id: {str(raw.get('id'))[:200]!r}")
    tags = raw.get("tags")
    if tags is None:
        tags = {}
    if not isinstance(tags, Mapping) or not all(isinstance(k, str) for k in tags):
        raise ValueError(f"{ref.account}: tags are not an object of strings")
    allow = raw.get("allowBlobPublicAccess")
    if allow is not None and not isinstance(allow, bool):
        raise ValueError(f"{ref.account}: allowBlobPublicAccess is not a boolean: {str(allow)[:50]!r}")
    subscription = raw.get("subscriptionId")
    if subscription is not None and str(subscription).lower() != ref.subscription:
        raise ValueError(f"{ref.account}: subscriptionId does not match its id")
    return InventoryRow(
        id=ref.account_id,
        name=ref.account,
        subscription=ref.subscription,
        resource_group=ref.resource_group,
        tags={k: "" if v is None else str(v) for k, v in tags.items()},
        allow_blob_public_access=allow,
        raw=dict(raw),
    )


def parse_rows(data: Any) -> tuple[list[InventoryRow], list[str]]:
    """The rows of one page and the reasons the ones that could not be read were dropped."""
    if not isinstance(data, list):
        return [], [f"the page's data is not an object array ({type(data).__name__})"]
    rows, problems = [], []
    for index, raw in enumerate(data):
        try:
            rows.append(parse_row(raw))
        except ValueError as exc:
            problems.append(f"row {index}: {exc}")
    return rows, problems


def marked(row: InventoryRow, policy: Policy) -> list[str]:
    """Why the account's own tags or name mark it synthetic (container metadata needs the containers)."""
    return synthetic_marks(AccountFacts(id=row.id, tags=row.tags), policy)


def is_candidate(row: InventoryRow, policy: Policy) -> bool:
    """Whose containers the sweep lists: accounts in scope marked synthetic by tag or name, and, when the
    policy marks containers by metadata, accounts that allow public access (a public container there may
    be marked, which only a read of that container shows)."""
    if not policy.in_scope(row.id):
        return False
    return bool(marked(row, policy)) or (bool(policy.synthetic_metadata) and row.public_allowed)


def exposure_of(
    row: InventoryRow, containers: Iterable[ContainerFacts] | None, policy: Policy
) -> Exposure | None:
    """What of a candidate is open now, or None. `containers` None: the list could not be read, so
    only the account's own setting is known (the pipeline lists them again before deciding)."""
    if not row.public_allowed:
        return None  # with public access disallowed no container can be read anonymously
    public = tuple(
        sorted((c.name, c.public_access) for c in containers or () if c.public_access.lower() != "none")
    )
    if marked(row, policy) or public or containers is None:
        return Exposure(row.id, True, public)
    return None


def signal_for(exposure: Exposure, run_at: str, generation: int = 0) -> Signal:
    """The `sweep` signal of an exposure. Its id names the account and what is open, so a second sweep
    finding the same exposure is a repeated delivery of it; `generation` counts the earlier incidents of
    the same id that closed it (a re-opening after containment is a new exposure)."""
    base = f"sweep:{exposure.account_id.lower()}:{exposure.fingerprint}"
    opened = ", ".join(f"{n} ({a})" for n, a in exposure.containers) or "no container yet"
    return Signal(
        id=base if generation == 0 else f"{base}#{generation}",
        source="sweep",
        kind=SignalKind.SWEEP,
        event_type="Sweep.PublicExposure",
        occurred_at=run_at,
        subject=exposure.account_id,
        accounts=(exposure.account_id,),
        containers=tuple((exposure.account_id, n) for n, _ in exposure.containers),
        title=f"sweep: account allows public blob access; public containers: {opened}",
    )


def _recorded_open(state: Any, exposure: Exposure) -> bool:
    """Did the incident's own read of the account (its StateBefore) show this exposure?"""
    if not isinstance(state, Mapping):
        return False
    account = next((v for k, v in state.items() if str(k).lower() == exposure.account_id.lower()), None)
    if not isinstance(account, Mapping) or account.get("allowBlobPublicAccess") is False:
        return False
    containers = account.get("containers") or {}
    if not isinstance(containers, Mapping):
        return False
    public = {str(n) for n, a in containers.items() if str(a).lower() != "none"}
    return {n for n, _ in exposure.containers} <= public


def moves_on(head: Mapping[str, Any] | None, exposure: Exposure) -> bool:
    """Whether the incident recorded under a sweep id has closed its exposure, so seeing it again is a
    new one (the next generation): it contained it, or its own read found nothing open (Resource Graph
    lagged behind a containment). An incident that saw the exposure and left it by decision (exempt,
    out of scope, awaiting approval, not synthetic) stands, as does one still running."""
    if head is None:
        return False
    status = str(head.get("Status") or "")
    if status == "contained":
        return True
    if status in ("planned", "retrying", "facts-failed", "dry-run") or "StateBefore" not in head:
        return False
    return not _recorded_open(head.get("StateBefore"), exposure)


@dataclass
class SweepResult:
    """What one sweep saw and did: the inventory, candidates, exposures, the incident of each, and why
    it is incomplete (empty `incomplete` and complete only when every page and list was read)."""

    run_id: str
    started_at: str
    dry_run: bool
    scope: tuple[str, ...]
    finished_at: str = ""
    pages: int = 0
    total_records: int | None = None
    inventory: list[InventoryRow] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    containers: dict[str, tuple[ContainerFacts, ...]] = field(default_factory=dict)
    exposures: list[Exposure] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)
    # candidates with public access off whose containers were not listed (over the read budget)
    unlisted: list[str] = field(default_factory=list)
    # the dead-letter blobs this sweep replayed (responders.deadletters) and its control review line
    dead_letters: dict[str, Any] = field(default_factory=dict)
    review: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "incomplete" if self.incomplete else "complete"

    def counts(self) -> dict[str, int]:
        """Each exposure counted once: repeats of an earlier incident apart from what this sweep did."""
        fresh = [str(r.get("status", "")) for r in self.incidents if not r.get("duplicate")]
        return {
            "accounts": len(self.inventory),
            "candidates": len(self.candidates),
            "exposures": len(self.exposures),
            "contained": fresh.count("contained"),
            "already_handled": sum(1 for r in self.incidents if r.get("duplicate")),
            "not_a_leak": fresh.count("ignored"),
            "pending_approval": fresh.count("pending-approval"),
            "dry_run": fresh.count("dry-run"),
            "failed": sum(1 for s in fresh if s in ("failed", "partial", "retrying", "facts-failed")),
        }

    def summary(self) -> dict[str, Any]:
        """The JSON form (no inventory rows: they can be thousands; the review reads them in process)."""
        return {
            "sweep": self.run_id,
            "status": self.status,
            "dry_run": self.dry_run,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "scope": list(self.scope),
            "pages": self.pages,
            "total_records": self.total_records,
            "counts": self.counts(),
            "exposures": [
                {
                    "account": e.account_id,
                    "account_public": e.account_public,
                    "containers": [{"name": n, "publicAccess": a} for n, a in e.containers],
                }
                for e in self.exposures
            ],
            "incidents": self.incidents,
            "incomplete": list(self.incomplete),
            "retries": list(self.retries),
            "unlisted": len(self.unlisted),
            "dead_letters": dict(self.dead_letters),
            "review": dict(self.review),
        }
