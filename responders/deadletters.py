"""Event Grid dead letters: read the dead-letter container with the identity, replay each event through
the pipeline an Event Grid delivery takes, and record each blob in the ledger as handled.

Event Grid writes the events it gave up on (after its retries, or at once on a 400 or 413) as blobs
named `{SUBSCRIPTION NAME IN UPPER CASE}/{year}/{month}/{day}/{hour}/{guid}.json` (date and hour UTC,
not zero-padded), each holding a JSON array of one or more events, every one with its delivery fields
beside it (deadLetterReason, deliveryAttempts, lastDeliveryOutcome, lastHttpStatusCode, publishTime,
lastDeliveryAttemptTime). The names are only read, never relied on: every blob of the container is
handled once, whatever its name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from responders.core.model import BadInput
from responders.core.parse import check_depth, clip_depth, decode_json, detect_schema

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

    from responders.service import Runtime

log = logging.getLogger("responders.deadletters")
# a blob is at most this large (Event Grid events are 1 MB at most; a dead-letter blob batches a few)
MAX_BLOB_BYTES = 16 * 1_048_576
MAX_EVENTS = 5000
# a blob in one of these states is not read again (a dry-run one only by another dry run)
SETTLED = ("replayed", "rejected")
DELIVERY_FIELDS = ("deadLetterReason", "deadletterreason")


@dataclass(frozen=True)
class BlobOutcome:
    """What one dead-letter blob became: replayed (every event through the pipeline or rejected with
    its reason), rejected (not a dead-letter blob), retrying (a transient failure: read again next
    time) or dry-run."""

    name: str
    status: str
    events: int = 0
    rejected: int = 0
    incidents: tuple[str, ...] = ()
    reason: str = ""


@dataclass
class DeadLetterReport:
    """One pass over the dead-letter container; `error` says why the container could not be listed
    (never read as "nothing was dead-lettered")."""

    container: str
    listed: int = 0
    skipped: int = 0
    outcomes: list[BlobOutcome] = field(default_factory=list)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return {
            "container": self.container,
            "listed": self.listed,
            "skipped": self.skipped,
            "counts": counts,
            "error": self.error,
            "blobs": [
                {
                    "name": o.name,
                    "status": o.status,
                    "events": o.events,
                    "rejected": o.rejected,
                    "incidents": list(o.incidents),
                    "reason": o.reason,
                }
                for o in self.outcomes
            ],
        }


def dead_letter_events(raw: bytes) -> list[tuple[Any, str]]:
    """The items of one dead-letter blob as (event, "") or (item, why it is not one); BadInput when the
    blob as a whole is not a dead-letter blob. Only Event Grid and CloudEvents events that carry the
    dead-letter fields are replayed: a blob holds what Event Grid could not deliver, nothing else."""
    if len(raw) > MAX_BLOB_BYTES:
        raise BadInput(f"blob is larger than {MAX_BLOB_BYTES} bytes")
    if not raw.strip():
        raise BadInput("blob is empty")
    try:
        decoded = decode_json(raw)
    except BadInput as exc:
        raise BadInput(str(exc).replace("body", "blob", 1)) from exc
    items = decoded if isinstance(decoded, list) else [decoded]
    if not items:
        raise BadInput("blob holds an empty array")
    if len(items) > MAX_EVENTS:
        raise BadInput(f"blob holds more than {MAX_EVENTS} events")
    out: list[tuple[Any, str]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            out.append((item, f"item {index}: not a JSON object"))
        elif _schema(item) not in ("eventgrid", "cloudevents"):
            out.append((item, f"item {index}: not an Event Grid or CloudEvents event"))
        elif not any(key in item for key in DELIVERY_FIELDS):
            out.append((item, f"item {index}: no deadLetterReason: not a dead-lettered event"))
        else:
            out.append((item, ""))
    return out


def replay_dead_letters(
    rt: Runtime, *, execute: bool | None = None, container: ContainerClient | None = None
) -> DeadLetterReport:
    """Replay every dead-letter blob the ledger has not recorded as handled; `execute` as for `process`
    (None: the settings' dry-run decides). A bad blob becomes a ledger row with its reason."""
    from responders.execute import describe

    client = container if container is not None else rt.clients.deadletters()
    if client is None:
        return DeadLetterReport("", error="no dead-letter container configured (RESPONDER_DEADLETTER_*)")
    report = DeadLetterReport(client.container_name)
    dry_run = rt.settings.dry_run if execute is None else not execute
    try:
        handled = rt.ledger.dead_letters(select=["ETag", "Status"])
        blobs = list(client.list_blobs())
    except Exception as exc:
        code = getattr(exc, "error_code", None)
        report.error = f"dead-letter container {client.container_name} not read: {describe(exc)}" + (
            f" ({code})" if code else ""
        )
        log.error("%s", report.error)
        return report
    report.listed = len(blobs)
    for blob in sorted(blobs, key=lambda b: (b.last_modified is None, b.last_modified, b.name)):
        row = handled.get(blob.name)
        same = row is not None and row.get("ETag") == str(blob.etag)
        status = str((row or {}).get("Status", ""))
        if same and (status in SETTLED or (status == "dry-run" and dry_run)):
            report.skipped += 1
            continue
        outcome = _replay_blob(rt, client, blob, dry_run)
        report.outcomes.append(outcome)
        rt.ledger.record_dead_letter(
            blob.name,
            str(blob.etag),
            outcome.status,
            rt.clock(),
            Events=outcome.events,
            Rejected=outcome.rejected,
            Incidents=list(outcome.incidents[:100]),
            Reason=outcome.reason[:2000],
            Size=int(blob.size or 0),
        )
    return report


def _replay_blob(rt: Runtime, client: ContainerClient, blob: Any, dry_run: bool) -> BlobOutcome:
    from responders.execute import describe, is_transient
    from responders.service import process

    name = str(blob.name)
    if int(blob.size or 0) > MAX_BLOB_BYTES:
        reason = f"blob is {blob.size} bytes, larger than {MAX_BLOB_BYTES}: not read"
        rt.ledger.reject(name.encode(), reason, "dead-letter", rt.clock())
        return BlobOutcome(name, "rejected", reason=reason)
    try:
        raw = client.download_blob(name, etag=blob.etag, match_condition=_if_unchanged()).readall()
    except Exception as exc:
        status = "retrying" if is_transient(exc) else "failed"
        return BlobOutcome(name, status, reason=f"download failed: {describe(exc)}")
    try:
        events = dead_letter_events(raw)
    except BadInput as exc:
        reason = str(exc)
        ref = rt.ledger.reject(raw, reason, "dead-letter", rt.clock())
        log.warning("dead-letter blob %s rejected: %s", name, reason)
        return BlobOutcome(name, "rejected", reason=f"{reason} (kept as rejected {ref})")
    incidents: list[str] = []
    rejected, reasons = 0, []
    for item, why in events:
        if why:
            rt.ledger.reject(_encoded(clip_depth(item)), f"{name}: {why}", "dead-letter", rt.clock())
            rejected += 1
            reasons.append(why)
            continue
        try:
            check_depth(item)
            result = process(item, rt, execute=not dry_run)
        except BadInput as exc:
            kept = _encoded(clip_depth(item))
            rt.ledger.reject(kept, f"{name}: {exc}", "dead-letter", rt.clock())
            rejected += 1
            reasons.append(str(exc))
            continue
        except Exception as exc:  # transient (the ledger holds what happened): the blob is read again
            return BlobOutcome(
                name, "retrying", len(events), rejected, tuple(incidents), f"replay stopped: {describe(exc)}"
            )
        incidents.append(str(result.get("incident", "")))
    status = "dry-run" if dry_run else "replayed"
    return BlobOutcome(name, status, len(events), rejected, tuple(incidents), "; ".join(reasons)[:2000])


def _schema(item: dict[str, Any]) -> str:
    try:
        return detect_schema(item)
    except BadInput:
        return ""


def _if_unchanged() -> Any:
    from azure.core import MatchConditions

    return MatchConditions.IfNotModified


def _encoded(value: Any) -> bytes:
    import json

    return json.dumps(value, default=str).encode()
