"""Audit ledger on Table Storage: one row per incident, one per action, conditional writes for exactly-once.

Partition = incident key, so an incident and all its actions are read in one query. Action rows
are created with a conditional insert: a redelivered event finds the earlier row instead of acting.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from responders.core.model import Action, Outcome, Plan, Write

if TYPE_CHECKING:
    from azure.data.tables import TableClient

INCIDENT_ROW = "incident"
CONTAINED = "contained"  # partition: shape key -> the incident that last contained that change
WRITES = "write"  # partition: correlation id -> a write the responder made (resource, operation)
ACCOUNT_WRITES = "account-write"  # partition: one write lease per storage account
REVIEW = "review"  # partition: one row per review item (kind|resource), one per sweep (newest first)
RUN_KEY_BASE = 99_999_999_999_999  # run rows are keyed base - epoch ms, so a query reads the newest first
DEAD_LETTERS = "deadletter"  # partition: sha256 of a dead-letter blob's name -> what became of it
SWEEPS = "sweep"  # partition: one row per sweep run, keyed by its start time (sorts oldest first)
TERMINAL = ("contained", "already-contained", "failed", "skipped", "restored")
LEASE_SECONDS = 120
# A string property holds 64 KiB (32K UTF-16 code units); the JSON we write is ASCII (json.dumps
# escapes the rest), so a value up to INLINE characters stays in its row and a longer one is split
# over part rows of the same partition (one INLINE-character part each), never cut.
INLINE = 30_000
PARTS = "@parts:"  # a packed value: "@parts:<digest of the text>:<number of parts>" (JSON never starts so)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _load(value: Any, default: Any) -> Any:
    if not value:
        return default
    try:
        return json.loads(value)
    except (TypeError, json.JSONDecodeError):
        return default


class Ledger:
    """Reads and writes ledger rows; callers pass times in, so the ledger holds no clock of its own."""

    def __init__(self, table: TableClient) -> None:
        self.table = table
        self._ready = False

    def _ensure(self) -> None:
        """Create the table only where it is missing. In Azure, Bicep makes it and the identity holds
        rights on that table alone, where creating a table (an account-level request) answers 403;
        a one-row read needs only those rights, and only a missing table answers it with 404."""
        if not self._ready:
            from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

            try:
                next(self.table.list_entities(results_per_page=1, select=["RowKey"]).by_page(), None)
            except ResourceNotFoundError:
                with contextlib.suppress(ResourceExistsError):
                    self.table.create_table()
            self._ready = True

    # values larger than a property -----------------------------------------------------------
    def _pack(self, entity: dict[str, Any]) -> dict[str, Any]:
        """The entity with each JSON value longer than INLINE replaced by a pointer to part rows, which
        are written first. Parts are named by the digest of the whole text, so a reader never mixes
        two versions and rewriting the same value rewrites the same rows."""
        from azure.data.tables import UpdateMode

        out = dict(entity)
        for key, value in entity.items():
            if key not in JSON_FIELDS or not isinstance(value, str) or len(value) <= INLINE:
                continue
            digest = hashlib.sha256(value.encode()).hexdigest()[:24]
            parts = [value[i : i + INLINE] for i in range(0, len(value), INLINE)]
            for i, part in enumerate(parts):
                self.table.upsert_entity(
                    {"PartitionKey": entity["PartitionKey"], "RowKey": _part_key(digest, i), "Text": part},
                    mode=UpdateMode.REPLACE,
                )
            out[key] = f"{PARTS}{digest}:{len(parts)}"
        return out

    def _upsert(self, entity: dict[str, Any], mode: Any) -> None:
        self.table.upsert_entity(self._pack(entity), mode=mode)

    def _decode(self, row: Mapping[str, Any], known: Mapping[str, str] | None = None) -> dict[str, Any]:
        """A row with its JSON fields decoded, packed ones joined from their part rows (taken from
        `known`, RowKey -> Text, when the caller already read the partition)."""
        out: dict[str, Any] = {}
        for key, value in row.items():
            if key in JSON_FIELDS and isinstance(value, str) and value.startswith(PARTS):
                value = self._unpack(str(row["PartitionKey"]), value, known or {})
            out[key] = _load(value, value) if key in JSON_FIELDS else value
        return out

    def _unpack(self, partition: str, pointer: str, known: Mapping[str, str]) -> str:
        digest, _, count = pointer[len(PARTS) :].partition(":")
        keys = [_part_key(digest, i) for i in range(int(count or 0))]
        return "".join(
            known[k] if k in known else str(self.table.get_entity(partition, k)["Text"]) for k in keys
        )

    # incidents -----------------------------------------------------------------------------
    def record_incident(
        self,
        plan: Plan,
        *,
        status: str,
        now: str,
        responder: str,
        dry_run: bool,
        earlier: Mapping[str, Any] | None,
        state_before: Mapping[str, Any] | None = None,
        owners: list[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Upsert the incident row (merge), keeping the first detection time of the incident.

        `earlier` is the incident row as this delivery read it (`head`), or None when there was none.
        """
        from azure.data.tables import UpdateMode

        self._ensure()
        signal, verdict = plan.signal, plan.verdict
        entity: dict[str, Any] = {
            "PartitionKey": plan.incident,
            "RowKey": INCIDENT_ROW,
            "Source": signal.source,
            "EventId": signal.id[:1024],
            "EventType": signal.event_type,
            "SignalKind": str(signal.kind),
            "Operation": signal.operation,
            "Subject": signal.subject[:1024],
            "Title": signal.title,
            "OccurredAt": signal.occurred_at,
            "IncidentArmId": signal.incident_id,
            "Caller": _json(signal.caller._asdict()),
            "Leak": verdict.leak,
            "Severity": verdict.severity,
            "Confidence": verdict.confidence,
            "Reasons": _json(list(verdict.reasons)),
            "Findings": _json(list(verdict.findings)),
            "Blocked": _json(dict(verdict.blocked)),
            "Plan": _json([_action_summary(a) for a in plan.actions]),
            "Skipped": _json([list(s) for s in plan.skipped]),
            "Status": status,
            "DryRun": dry_run,
            "Responder": responder,
            "UpdatedAt": now,
        }
        if state_before is not None:
            entity["StateBefore"] = _json(state_before)
        if owners is not None:
            entity["Owners"] = _json(owners)
        entity.update(extra or {})
        # `earlier` is the row this delivery already read (ledger.head), so it is not read twice
        entity["DetectedAt"] = (earlier or {}).get("DetectedAt") or now
        entity["Deliveries"] = int((earlier or {}).get("Deliveries") or 0) + 1
        self._upsert(entity, mode=UpdateMode.MERGE)

    def head(self, incident: str) -> dict[str, Any] | None:
        """Just the incident row (one point read), or None."""
        from azure.core.exceptions import ResourceNotFoundError

        self._ensure()
        try:
            return self._decode(self.table.get_entity(incident, INCIDENT_ROW))
        except ResourceNotFoundError:
            return None

    def note_delivery(self, incident: str, deliveries: int, now: str) -> None:
        """Count a repeated delivery without touching what was recorded about the first."""
        from azure.data.tables import UpdateMode

        self.table.upsert_entity(
            {
                "PartitionKey": incident,
                "RowKey": INCIDENT_ROW,
                "Deliveries": deliveries,
                "LastDeliveryAt": now,
            },
            mode=UpdateMode.MERGE,
        )

    def set_incident_status(self, incident: str, status: str | None, now: str, **extra: Any) -> None:
        """Merge fields into the incident row; status None leaves the recorded status as it is."""
        from azure.data.tables import UpdateMode

        self._ensure()
        entity: dict[str, Any] = {"PartitionKey": incident, "RowKey": INCIDENT_ROW, "UpdatedAt": now}
        if status is not None:
            entity["Status"] = status
        entity.update({k: (_json(v) if isinstance(v, (dict, list)) else v) for k, v in extra.items()})
        self._upsert(entity, mode=UpdateMode.MERGE)

    def incident(self, incident: str) -> dict[str, Any] | None:
        """The incident row and its action rows, decoded, or None when unknown."""
        self._ensure()
        rows = list(self.table.query_entities("PartitionKey eq @pk", parameters={"pk": incident}))
        head = next((r for r in rows if r["RowKey"] == INCIDENT_ROW), None)
        if head is None:
            return None
        parts = {r["RowKey"]: str(r.get("Text", "")) for r in rows if r["RowKey"].startswith("part-")}
        out = self._decode(head, parts)
        out["actions"] = sorted(
            (self._decode(r, parts) for r in rows if r["RowKey"].startswith("act-")),
            key=lambda r: (r.get("Seq", 0), r["RowKey"]),
        )
        return out

    def incidents(self) -> Iterator[dict[str, Any]]:
        self._ensure()
        for row in self.table.query_entities("RowKey eq @rk", parameters={"rk": INCIDENT_ROW}):
            yield self._decode(row)

    def _row(self, partition: str, row: str) -> dict[str, Any] | None:
        """One point read: the row as a dict, or None where it does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        self._ensure()
        try:
            return dict(self.table.get_entity(partition, row))
        except ResourceNotFoundError:
            return None

    # storm folding -------------------------------------------------------------------------
    def contained_shape(self, key: str) -> dict[str, Any] | None:
        """The last incident that contained a change of this shape (one point read), or None."""
        return self._row(CONTAINED, key)

    def remember_contained(self, key: str, plan: Plan, acted_from: str) -> None:
        """Note that `plan` contained the change of this shape, writing from `acted_from` (taken
        before its first write), so the rest of a storm of that change can be folded into it."""
        from azure.data.tables import UpdateMode

        self._ensure()
        self.table.upsert_entity(
            {
                "PartitionKey": CONTAINED,
                "RowKey": key,
                "Incident": plan.incident,
                "ActedFrom": acted_from,
                "Severity": plan.verdict.severity,
                "Confidence": plan.verdict.confidence,
            },
            mode=UpdateMode.REPLACE,
        )

    # actions -------------------------------------------------------------------------------
    def begin(self, plan: Plan, action: Action, seq: int, now: str) -> tuple[bool, dict[str, Any]]:
        """Claim an action: (True, row) when this caller owns it now, (False, row) when it is taken."""
        from azure.core.exceptions import ResourceExistsError

        self._ensure()
        lease = _shift(now, LEASE_SECONDS)
        entity = {
            "PartitionKey": plan.incident,
            "RowKey": action.key,
            "Seq": seq,
            "Kind": action.kind,
            "Target": action.target,
            "Params": _json(dict(action.params)),
            "Reason": action.reason,
            "Mode": action.mode,
            "Reversible": action.reversible,
            "Status": "started",
            "PlannedAt": now,
            "LeaseUntil": lease,
            "Attempts": 1,
        }
        try:
            self.table.create_entity(self._pack(entity))
            return True, entity
        except ResourceExistsError:
            pass
        row = self.table.get_entity(plan.incident, action.key)
        status = row.get("Status", "")
        lease_open = status == "started" and str(row.get("LeaseUntil", "")) > now
        if status in TERMINAL or lease_open:
            return False, self._decode(row)
        takeover = {
            "PartitionKey": plan.incident,
            "RowKey": action.key,
            "Status": "started",
            "LeaseUntil": lease,
            "Attempts": int(row.get("Attempts") or 0) + 1,
            "Mode": action.mode,
        }
        if not self._merge_if_unchanged(takeover, row.metadata["etag"]):
            return False, self._decode(self.table.get_entity(plan.incident, action.key))
        merged = self._decode(row)
        merged.update(takeover)
        return True, merged

    def finish(self, incident: str, outcome: Outcome, now: str) -> None:
        from azure.data.tables import UpdateMode

        entity = {
            "PartitionKey": incident,
            "RowKey": outcome.action.key,
            "Status": outcome.status,
            "Before": _json(dict(outcome.before)),
            "After": _json(dict(outcome.after)),
            "Error": outcome.error[:4000],
            "ActedAt": outcome.acted_at,
            "VerifiedAt": outcome.verified_at,
            "FinishedAt": now,
            "LeaseUntil": "",
        }
        self._upsert(entity, mode=UpdateMode.MERGE)

    def update_action(self, incident: str, key: str, **fields: Any) -> None:
        from azure.data.tables import UpdateMode

        entity = {"PartitionKey": incident, "RowKey": key}
        entity.update({k: (_json(v) if isinstance(v, (dict, list)) else v) for k, v in fields.items()})
        self._upsert(entity, mode=UpdateMode.MERGE)

    def _merge_if_unchanged(self, entity: dict[str, Any], etag: str) -> bool:
        """Optimistic concurrency: merge only if nobody wrote the row since we read it (ETag)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError
        from azure.data.tables import UpdateMode

        try:
            self.table.update_entity(
                entity, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceModifiedError:
            return False
        return True

    # one claim per resource step, across incidents ----------------------------------------
    @staticmethod
    def _resource_key(action: Action) -> str:
        parts = [action.kind, action.target.lower(), *(f"{k}={v}" for k, v in sorted(action.params.items()))]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    def claim_resource(self, action: Action, incident: str, now: str) -> tuple[bool, dict[str, Any]]:
        """Serialise writers of the same step (kind, target, params) across incidents.

        Returns (True, row) when this incident may read the resource and act, (False, row) while another
        incident holds an unexpired claim. The row says when the step was last written (`WrittenAt`);
        it never says whether the step is done now: only the resource's state can.
        """
        from azure.core.exceptions import ResourceExistsError

        self._ensure()
        key = self._resource_key(action)
        claim = {
            "PartitionKey": "resource",
            "RowKey": key,
            "Kind": action.kind,
            "Target": action.target,
            "Incident": incident,
            "Status": "started",
            "LeaseUntil": _shift(now, LEASE_SECONDS),
        }
        try:
            self.table.create_entity(claim)
            return True, claim
        except ResourceExistsError:
            pass
        row = self.table.get_entity("resource", key)
        mine = row.get("Incident") == incident
        if row.get("Status") == "started" and str(row.get("LeaseUntil", "")) > now and not mine:
            return False, dict(row)
        if not self._merge_if_unchanged(claim, row.metadata["etag"]):
            return False, dict(self.table.get_entity("resource", key))
        return True, {**dict(row), **claim}

    def last_write(self, action: Action) -> dict[str, Any] | None:
        """The step's claim row: which incident last wrote it and when (`WrittenAt`), or None."""
        return self._row("resource", self._resource_key(action))

    def release_resource(
        self, action: Action, incident: str, *, written_at: str | None, now: str = ""
    ) -> None:
        """Free the claim; `written_at` (when this incident's write was sent) is kept as the step's last
        write, which is what "done" means for a step whose result cannot be read back. `ReleasedAt`
        (`now`) is when that write had surely landed: a write sent before another delivery read the
        resource may land after that read, which then no longer shows the state."""
        from azure.data.tables import UpdateMode

        entity: dict[str, Any] = {
            "PartitionKey": "resource",
            "RowKey": self._resource_key(action),
            "Incident": incident,
            "Status": "released",
            "LeaseUntil": "",
        }
        if written_at:
            entity["WrittenAt"] = written_at
            entity["ReleasedAt"] = now or written_at
        self.table.upsert_entity(entity, mode=UpdateMode.MERGE)

    # one writer per storage account, across instances ---------------------------------------
    def hold_account(self, account: str, holder: str, now: str, last: str | None = None) -> str | None:
        """Take the account's write lease for `holder` (Azure refuses overlapping writes to one
        account): the row's ETag to release it with, or None while another holder's lease runs.
        `last` is the ETag this holder's release left: when nobody wrote the row since, one
        conditional write takes the lease again."""
        from azure.core.exceptions import ResourceExistsError

        self._ensure()
        lease = {
            "PartitionKey": ACCOUNT_WRITES,
            "RowKey": hashlib.sha256(account.lower().encode()).hexdigest()[:32],
            "Target": account,
            "Holder": holder,
            "LeaseUntil": _shift(now, LEASE_SECONDS),
        }
        if last and (taken := self._replace_if_unchanged(lease, last)):
            return taken
        try:
            return str(self.table.create_entity(lease)["etag"])
        except ResourceExistsError:
            pass
        row = self.table.get_entity(ACCOUNT_WRITES, lease["RowKey"])
        if row.get("Holder") and str(row.get("LeaseUntil", "")) > now and row.get("Holder") != holder:
            return None
        return self._replace_if_unchanged(lease, row.metadata["etag"])

    def release_account(self, account: str, holder: str, etag: str, now: str) -> str | None:
        """Free the write lease, unless it expired and another holder has taken it since (ETag); the
        row's new ETag, for taking it again cheaply."""
        from azure.core.exceptions import ResourceNotFoundError

        lease = {
            "PartitionKey": ACCOUNT_WRITES,
            "RowKey": hashlib.sha256(account.lower().encode()).hexdigest()[:32],
            "Target": account,
            "Holder": "",
            "LeaseUntil": "",
            "LastWriter": holder,
            "LastWriteAt": now,
        }
        try:
            return self._replace_if_unchanged(lease, etag)
        except ResourceNotFoundError:
            return None

    def _replace_if_unchanged(self, entity: dict[str, Any], etag: str) -> str | None:
        """Replace a row only if nobody wrote it since `etag`: the new ETag, or None when someone did."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError
        from azure.data.tables import UpdateMode

        try:
            written = self.table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceModifiedError:
            return None
        return str(written["etag"])

    # the responder's own writes, by correlation id (echo suppression) ---------------------
    def record_writes(self, writes: list[Write], incident: str, action_key: str, at: str) -> None:
        """Keep each write's correlation id with its resource and operation: its Event Grid echo is
        recognised by all three, and nothing else made with the responder's identity is."""
        from azure.data.tables import UpdateMode

        for write in writes:
            self.table.upsert_entity(
                {
                    "PartitionKey": WRITES,
                    "RowKey": write.correlation_id,
                    "Resource": write.resource,
                    "Operation": write.operation,
                    "Incident": incident,
                    "Action": action_key,
                    "WrittenAt": at,
                },
                mode=UpdateMode.REPLACE,
            )

    def own_write(self, correlation_id: str) -> dict[str, Any] | None:
        """The write the responder recorded under this correlation id (one point read), or None."""
        return self._row(WRITES, correlation_id)

    # whole documents (evidence rows) -------------------------------------------------------
    def store_document(self, incident: str, name: str, value: Any) -> None:
        """Keep a JSON document whole (a long one over part rows, like every large value)."""
        from azure.data.tables import UpdateMode

        entity = {"PartitionKey": incident, "RowKey": f"doc-{name}", "Document": _json(value)}
        self._upsert(entity, mode=UpdateMode.REPLACE)

    def document(self, incident: str, name: str) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            row = self.table.get_entity(incident, f"doc-{name}")
        except ResourceNotFoundError:
            return None
        return self._decode(row).get("Document")

    # Event Grid dead-letter blobs ---------------------------------------------------------
    def dead_letters(self, select: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Every dead-letter blob handled so far, by blob name (one query of their partition); `select`
        keeps only those columns (the replay needs three, not each blob's reason and incidents)."""
        self._ensure()
        columns = sorted({"Blob", *select}) if select else None
        rows = self.table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": DEAD_LETTERS}, select=columns
        )
        return {str(r.get("Blob", "")): dict(r) for r in rows}

    def record_dead_letter(self, blob: str, etag: str, status: str, now: str, **fields: Any) -> None:
        """What became of one dead-letter blob (its ETag too: a blob written again is read again)."""
        from azure.data.tables import UpdateMode

        self._ensure()
        entity: dict[str, Any] = {
            "PartitionKey": DEAD_LETTERS,
            "RowKey": hashlib.sha256(blob.encode()).hexdigest()[:32],
            "Blob": blob[:1024],
            "ETag": etag,
            "Status": status,
            "HandledAt": now,
        }
        entity.update({k: (_json(v) if isinstance(v, (dict, list)) else v) for k, v in fields.items()})
        self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    # sweeps ----------------------------------------------------------------------------------
    def record_sweep(self, summary: Mapping[str, Any]) -> None:
        """One row per sweep: complete or incomplete and why, what it found and the incident of each, so
        a partial inventory is on record (never read as "nothing exposed")."""
        from azure.data.tables import UpdateMode

        self._ensure()
        entity = {
            "PartitionKey": SWEEPS,
            "RowKey": str(summary["sweep"]),
            "Status": summary["status"],
            "DryRun": bool(summary["dry_run"]),
            "StartedAt": summary["started_at"],
            "FinishedAt": summary["finished_at"],
            "Pages": int(summary["pages"]),
            "TotalRecords": -1 if summary["total_records"] is None else int(summary["total_records"]),
            "Scope": _json(summary["scope"]),
            "Counts": _json(summary["counts"]),
            "Exposures": _json(summary["exposures"]),
            "Incidents": _json(
                [
                    {k: r.get(k) for k in ("incident", "subject", "status", "duplicate")}
                    for r in summary["incidents"]
                ]
            ),
            "Incomplete": _json(summary["incomplete"]),
            "Retries": _json(summary["retries"]),
            "DeadLetters": _json(summary.get("dead_letters") or {}),
            "Review": _json(summary.get("review") or {}),
        }
        self._upsert(entity, mode=UpdateMode.REPLACE)

    def sweeps(self) -> list[dict[str, Any]]:
        """Every sweep row, oldest first."""
        self._ensure()
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": SWEEPS})
        return sorted(
            (self._decode(r) for r in rows if not r["RowKey"].startswith("part-")), key=lambda r: r["RowKey"]
        )

    # the control review ------------------------------------------------------------------
    def review_items(self) -> list[dict[str, Any]]:
        """Every review item recorded so far (open and closed), as the review folded them."""
        self._ensure()
        rows = self.table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": REVIEW, "lo": "item-", "hi": "item."},
        )
        return [_load(r.get("Item"), {}) for r in rows if r.get("Item")]

    def review_runs(self, limit: int) -> list[dict[str, Any]]:
        """The latest `limit` sweeps' review lines, newest first (their row keys count down)."""
        self._ensure()
        rows = self.table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": REVIEW, "lo": "run-", "hi": "run."},
            results_per_page=min(limit, 1000),
        )
        out: list[dict[str, Any]] = []
        for row in rows:
            out.append(_load(row.get("Run"), {}))
            if len(out) >= limit:
                break
        return out

    def save_review(self, items: list[dict[str, Any]], run: dict[str, Any], epoch_ms: int) -> None:
        """Write the items a sweep changed (in batches of 100, one partition), then its review line: a
        reader that finds the line finds every item it counts."""
        from azure.data.tables import UpdateMode

        self._ensure()
        operations = [
            (
                "upsert",
                {
                    "PartitionKey": REVIEW,
                    "RowKey": "item-" + hashlib.sha256(str(item["key"]).encode()).hexdigest()[:32],
                    "Status": item.get("status", ""),
                    "Item": _json(item),
                },
                {"mode": UpdateMode.REPLACE},
            )
            for item in items
        ]
        for start in range(0, len(operations), 100):
            self.table.submit_transaction(operations[start : start + 100])
        self.table.upsert_entity(
            {"PartitionKey": REVIEW, "RowKey": f"run-{RUN_KEY_BASE - epoch_ms:014d}", "Run": _json(run)},
            mode=UpdateMode.REPLACE,
        )

    # rejected input ------------------------------------------------------------------------
    def reject(self, body: bytes, reason: str, source: str, now: str) -> str:
        """Keep bad input with its reason (nothing is lost); the same body twice is one row."""
        from azure.data.tables import UpdateMode

        self._ensure()
        digest = hashlib.sha256(body).hexdigest()[:32]
        self.table.upsert_entity(
            {
                "PartitionKey": "rejected",
                "RowKey": digest,
                "Source": source,
                "Reason": reason[:2000],
                "Size": len(body),
                "Body": body[:16_000].decode("utf-8", "replace"),
                "ReceivedAt": now,
            },
            mode=UpdateMode.MERGE,
        )
        return digest


def _shift(iso: str, seconds: int) -> str:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")) if iso else datetime.now(UTC)
    return (moment + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _action_summary(action: Action) -> dict[str, Any]:
    return {
        "key": action.key,
        "kind": action.kind,
        "target": action.target,
        "params": dict(action.params),
        "mode": action.mode,
        "after": list(action.after),
        "reversible": action.reversible,
        "reason": action.reason,
    }


JSON_FIELDS = {
    "Reasons",
    "Findings",
    "Blocked",
    "Plan",
    "Skipped",
    "Params",
    "Before",
    "After",
    "StateBefore",
    "Owners",
    "Caller",
    "Evidence",
    "OpenPaths",
    "Comment",
    "Document",
    "Scope",
    "Counts",
    "Exposures",
    "Incidents",
    "Incomplete",
    "DeadLetters",
    "Review",
    "Retries",
}


def _part_key(digest: str, index: int) -> str:
    return f"part-{digest}-{index:05d}"
