"""Raw payloads -> Signals. Pure and strict: anything we cannot trust is rejected with a reason."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import orjson

from responders.core import defender
from responders.core.arm import _parse_storage_id, parse_incident_id, parse_storage_id
from responders.core.model import BadInput, Caller, Signal, SignalKind

MAX_ID = 256
MAX_TEXT = 4096
MAX_ENTITIES = 500
OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

OPERATIONS: Mapping[str, SignalKind] = {
    "microsoft.storage/storageaccounts/write": SignalKind.PUBLIC_ACCESS_CHANGED,
    "microsoft.storage/storageaccounts/blobservices/containers/write": SignalKind.PUBLIC_ACCESS_CHANGED,
    "microsoft.storage/storageaccounts/listkeys/action": SignalKind.KEYS_LISTED,
    "microsoft.storage/storageaccounts/listaccountsas/action": SignalKind.SAS_LISTED,
    "microsoft.storage/storageaccounts/listservicesas/action": SignalKind.SAS_LISTED,
}
# Not here: Get User Delegation Key is a data-plane request and raises no Resource Manager event
# (no Event Grid ResourceActionSuccess, no Activity Log entry); it shows only in StorageBlobLogs.
RESOURCE_EVENTS = ("microsoft.resources.resourcewritesuccess", "microsoft.resources.resourceactionsuccess")
BLOB_CREATED = "microsoft.storage.blobcreated"
VALIDATION = "microsoft.eventgrid.subscriptionvalidationevent"
RESOURCE_DIMENSIONS = ("_resourceid", "resourceid")


# The hot records are made with tuple.__new__ and every field in order: a third of the cost of the
# NamedTuple constructors (which bind keywords in Python). The orders they rely on:
_new = tuple.__new__
assert Caller._fields == ("object_id", "app_id", "ip", "principal_type", "name")
assert " ".join(Signal._fields) == (
    "id source kind event_type occurred_at subject incident_id correlation_id operation accounts containers"
    " blob caller principals apps ips title requested_actions search_query search_window notes access"
)

# orjson encodes at most 254 levels; Azure's deepest payloads nest about ten
MAX_DEPTH = 254


def decode_json(raw: bytes | bytearray | str) -> Any:
    """JSON text -> values, or BadInput with the reason. orjson, not json: decoding is a large share of
    what replaying captured events costs, and orjson is about 2.5x faster on them. It is also stricter:
    it refuses NaN, infinite numbers, lone surrogates and invalid UTF-8, none of which Azure sends
    (integers beyond 64 bits become floats; no field we read is a number). Two things orjson accepts
    are refused too: nesting deeper than MAX_DEPTH (it would break any later encoding of the value),
    and a key given twice in one object (orjson keeps the last silently, so `"execute": false,
    "execute": true` would read as true)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise BadInput(f"body is nested deeper than {MAX_DEPTH} levels") from exc
        raise BadInput(f"body is not valid JSON: {exc}") from exc
    if type(value) is dict or type(value) is list:
        try:
            out = orjson.dumps(value)
        except orjson.JSONEncodeError as exc:  # its only failure on decoded JSON is the depth limit
            raise BadInput(f"body is nested deeper than {MAX_DEPTH} levels") from exc
        if out != raw and _may_repeat_a_key(raw if type(raw) is bytes else _utf8(raw), out):
            _refuse_duplicate_keys(raw)
    return value


def _utf8(raw: bytearray | str) -> bytes:
    return raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)


def _may_repeat_a_key(raw: bytes, out: bytes) -> bool:
    """False when no object of the text can hold a key twice; `out` is the decoded value encoded
    again. Text equal to it has no repeated key (the value has none). Otherwise colons are counted:
    every colon of JSON text is a key's or a literal one inside a string, and encoding again keeps
    both, while a repeated key loses its pair and so a colon. Only an escaped colon (backslash u003a)
    comes back as one more, which could hide a loss: text with a backslash u003 takes the exact check."""
    return out.count(b":") != raw.count(b":") or (b"\\" in raw and b"\\u003" in raw)


def _too_deep(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return True
    return False


def check_depth(value: Any) -> None:
    """BadInput when an already decoded value (an Event Grid event the host decoded) nests too deep."""
    if (type(value) is dict or type(value) is list) and _too_deep(value):
        raise BadInput(f"event is nested deeper than {MAX_DEPTH} levels")


def clip_depth(value: Any, depth: int = 0) -> Any:
    """The value with every level below MAX_DEPTH replaced by a note, so even a hostile event can be
    kept with its rejection (the recursion here is bounded by MAX_DEPTH)."""
    if type(value) is dict:
        if depth >= MAX_DEPTH:
            return "(deeper levels not kept)"
        return {k: clip_depth(v, depth + 1) for k, v in value.items()}
    if type(value) is list:
        if depth >= MAX_DEPTH:
            return "(deeper levels not kept)"
        return [clip_depth(v, depth + 1) for v in value]
    return value


def _refuse_duplicate_keys(raw: bytes | bytearray | str) -> None:
    """The exact check, with the standard library's decoder (depth already bounded)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(items)
        if len(found) != len(items):
            seen: set[str] = set()
            twice = next(k for k, _ in items if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise BadInput(f"duplicate key {twice[:64]!r} in an object: each key may be given once")
        return found

    json.loads(raw, object_pairs_hook=pairs)


def is_guid(value: object) -> bool:
    return isinstance(value, str) and bool(_GUID.fullmatch(value))


def guid(value: object) -> str:
    """The GUID in lower case, or "" for anything that is not one."""
    return _lower_guid(value) if type(value) is str and len(value) == 36 else ""


@lru_cache(maxsize=4096)  # the same few principals act over and over
def _lower_guid(value: str) -> str:
    return value.lower() if _GUID.fullmatch(value) else ""


def _text(obj: Mapping[str, Any], key: str, required: bool = False, limit: int = MAX_TEXT) -> str:
    value = obj.get(key)
    if type(value) is str and value and len(value) <= limit:  # the common case, checked first
        return value
    if value is None or value == "":
        if required:
            raise BadInput(f"missing required field {key!r}")
        return ""
    if not isinstance(value, str):
        raise BadInput(f"field {key!r} must be a string")
    if len(value) > limit:
        raise BadInput(f"field {key!r} is longer than {limit} characters")
    return value


def _mapping(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if type(value) is dict:  # decoded JSON: skip the slower abstract-class check
        return value
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadInput(f"field {key!r} must be an object")
    return value


INCIDENT_ID_FORM = (
    "/subscriptions/{guid}/resourceGroups/{name}/providers/Microsoft.OperationalInsights/workspaces/{name}"
    "/providers/Microsoft.SecurityInsights/incidents/{name}"
)


def _incident_arm_id(value: str, field: str) -> str:
    """The Sentinel incident id rebuilt from its validated parts; a URL, a protocol-relative or dotted
    path, an escape or anything else is refused (the write-back would send our token to it)."""
    ref = parse_incident_id(value)
    if ref is None:
        raise BadInput(
            f"{field} is not a Sentinel incident ARM id of the form {INCIDENT_ID_FORM} "
            "(URLs, hosts, '..' and escapes are refused)"
        )
    return ref.arm_id


def incident_key(source_id: str) -> str:
    """Deterministic incident key: the same event, however often delivered, maps to one incident."""
    return "inc-" + hashlib.sha256(source_id.lower().encode()).hexdigest()[:24]


def detect_schema(item: Mapping[str, Any]) -> str:
    """Name the schema of one item, so the right parser sees it and the wrong ones never do."""
    if "specversion" in item:
        return "cloudevents"
    if "eventType" in item:
        return "eventgrid"
    if item.get("schemaId") == "azureMonitorCommonAlertSchema":
        return "monitor-alert"
    obj = item.get("object")
    if (
        isinstance(obj, Mapping)
        and "/providers/microsoft.securityinsights/incidents/" in str(obj.get("id", "")).lower()
    ):
        return "sentinel-incident"
    if "SystemAlertId" in item or "AlertDisplayName" in item or "AlertType" in item:
        return "sentinel-alert"
    if str(item.get("type", "")).lower() == DEFENDER_ALERT_TYPE and isinstance(
        item.get("properties"), Mapping
    ):
        return "defender-alert"
    if "resourceId" in item or "event" in item:
        return "playbook"
    raise BadInput(
        "unrecognised payload: expected an Event Grid or CloudEvents event, a Sentinel incident "
        "or alert, a Defender for Cloud alert, an Azure Monitor common-schema alert, or a playbook request"
    )


def _caller(data: Mapping[str, Any]) -> Caller:
    # every event has these: a decoded object is taken as is, anything else gets _mapping's checks
    claims = v if type(v := data.get("claims")) is dict else _mapping(data, "claims")
    auth = v if type(v := data.get("authorization")) is dict else _mapping(data, "authorization")
    evidence = v if type(v := auth.get("evidence")) is dict else _mapping(auth, "evidence")
    http = v if type(v := data.get("httpRequest")) is dict else _mapping(data, "httpRequest")
    ip = http.get("clientIpAddress") or claims.get("ipaddr") or ""
    kind = evidence.get("principalType") or ""
    name = claims.get("name") or ""
    oid = claims.get(OID_CLAIM) or claims.get("oid") or evidence.get("principalId")
    app = claims.get("appid")
    # every field in order (see _new); the two ids as guid() makes them, without its call
    return _new(
        Caller,
        (
            _lower_guid(oid) if type(oid) is str and len(oid) == 36 else "",
            _lower_guid(app) if type(app) is str and len(app) == 36 else "",
            (ip if type(ip) is str else str(ip))[:64],
            (kind if type(kind) is str else str(kind))[:64],
            (name if type(name) is str else str(name))[:256],
        ),
    )


def _resource_signal(
    source: str, event_id: str, event_type: str, when: str, subject: str, data: Mapping[str, Any]
) -> Signal:
    # `v if <a string within MAX_TEXT> else _text(...)` is _text's own first test, without its call
    v = data.get("operationName")
    operation = (v if type(v) is str and len(v) <= MAX_TEXT else _text(data, "operationName")).lower()
    status = "Succeeded" if data.get("status") == "Succeeded" else _text(data, "status")
    v = data.get("resourceUri")
    resource = (v if type(v) is str and len(v) <= MAX_TEXT else _text(data, "resourceUri")) or subject
    kind = OPERATIONS.get(operation, SignalKind.OTHER)
    notes: tuple[str, ...] = ()
    if status and status.lower() != "succeeded":
        kind, notes = SignalKind.OTHER, (f"operation status is {status}, not Succeeded",)
    ref = _parse_storage_id(resource)  # resource is a str: parse_storage_id's own test
    if kind is not SignalKind.OTHER and ref is None:
        kind, notes = SignalKind.OTHER, (f"resource {resource!r} is not a storage account or container",)
    if kind is SignalKind.OTHER and not notes:
        notes = (f"operation {operation or '(none)'} is not one this responder handles",)
    if ref is None:
        accounts: tuple[str, ...] = ()
        containers: tuple[tuple[str, str], ...] = ()
    else:
        accounts = (ref.account_key,)
        containers = ((ref.account_key, ref.container),) if ref.container else ()
    correlation = data.get("correlationId")
    return _new(
        Signal,
        (
            event_id,  # id
            source,
            kind,
            event_type,
            when,  # occurred_at
            subject,
            "",  # incident_id
            _lower_guid(correlation) if type(correlation) is str and len(correlation) == 36 else "",
            operation,
            accounts,
            containers,
            "",  # blob
            _caller(data),
            (),  # principals
            (),  # apps
            (),  # ips
            "",  # title
            (),  # requested_actions
            "",  # search_query
            ("", ""),  # search_window
            notes,
            (),  # access
        ),
    )


def _blob_signal(
    source: str,
    event_id: str,
    event_type: str,
    when: str,
    subject: str,
    account_id: str,
    data: Mapping[str, Any],
) -> Signal:
    ref = parse_storage_id(account_id.rstrip("/") + subject) if subject.startswith("/blobServices") else None
    ref = ref or parse_storage_id(subject)
    if ref is None or not ref.container:
        raise BadInput(f"BlobCreated event names no storage container: subject {subject!r}")
    return Signal(
        id=event_id,
        source=source,
        kind=SignalKind.BLOB_CREATED,
        event_type=event_type,
        operation=_text(data, "api").lower(),
        occurred_at=when,
        subject=subject,
        accounts=(ref.account_key,),
        containers=((ref.account_key, ref.container),),
        blob=ref.blob[:1024],
    )


def parse_eventgrid(item: Mapping[str, Any], source: str = "eventgrid") -> Signal:
    """One Event Grid schema event (also a dead-letter record, which carries the original event)."""
    # `v if <a string _text returns> else _text(...)` is _text's own first test, without its call
    get = item.get
    v = get("id")
    event_id = v if type(v) is str and v and len(v) <= MAX_ID else _text(item, "id", True, MAX_ID)
    v = get("eventType")
    event_type = v if type(v) is str and v and len(v) <= MAX_ID else _text(item, "eventType", True, MAX_ID)
    v = get("subject")
    subject = v if type(v) is str and v and len(v) <= MAX_TEXT else _text(item, "subject", True)
    v = get("eventTime")
    when = v if type(v) is str and len(v) <= 64 else _text(item, "eventTime", limit=64)
    data = v if type(v := get("data")) is dict else _mapping(item, "data")
    lowered = event_type.lower()
    if lowered == VALIDATION:
        raise BadInput("subscription validation events are answered by the endpoint, not processed")
    if "deadLetterReason" in item:
        source = "dead-letter"
    if lowered in RESOURCE_EVENTS:
        return _resource_signal(source, event_id, event_type, when, subject, data)
    if lowered == BLOB_CREATED:
        return _blob_signal(source, event_id, event_type, when, subject, _text(item, "topic"), data)
    return Signal(
        id=event_id,
        source=source,
        kind=SignalKind.OTHER,
        event_type=event_type,
        occurred_at=when,
        subject=subject,
        notes=(f"event type {event_type} is not one this responder handles",),
    )


def parse_cloudevent(item: Mapping[str, Any]) -> Signal:
    """One CloudEvents 1.0 event carrying an Azure system event in `data`."""
    if _text(item, "specversion", required=True) != "1.0":
        raise BadInput("only CloudEvents specversion 1.0 is accepted")
    event_id = _text(item, "id", required=True, limit=MAX_ID)
    event_type = _text(item, "type", required=True, limit=MAX_ID)
    src = _text(item, "source", required=True)
    subject = _text(item, "subject")
    when = _text(item, "time", limit=64)
    data = _mapping(item, "data")
    lowered = event_type.lower()
    if lowered in RESOURCE_EVENTS:
        return _resource_signal("cloudevents", event_id, event_type, when, subject or src, data)
    if lowered == BLOB_CREATED:
        return _blob_signal("cloudevents", event_id, event_type, when, subject, src, data)
    return Signal(
        id=event_id,
        source="cloudevents",
        kind=SignalKind.OTHER,
        event_type=event_type,
        occurred_at=when,
        subject=subject,
        notes=(f"event type {event_type} is not one this responder handles",),
    )


def _embedded_json(text: str, field: str, empty: Any) -> Any:
    """A field that carries JSON as a string (Sentinel's Entities, ExtendedProperties), decoded with
    the same bounds as a body."""
    if not text.strip():
        return empty
    try:
        return decode_json(text)
    except BadInput as exc:
        detail = str(exc).removeprefix("body is ").replace("not valid JSON", "not JSON", 1)
        raise BadInput(f"{field} is a string but {detail}") from exc


def _entities(raw: Any) -> list[Mapping[str, Any]]:
    if isinstance(raw, str):
        raw = _embedded_json(raw, "Entities", [])
    if raw is None:
        return []
    # type(e) is dict first: decoded JSON, without the slower abstract-class check
    if not isinstance(raw, list) or not all(type(e) is dict or isinstance(e, Mapping) for e in raw):
        raise BadInput("entities must be a list of objects")
    if len(raw) > MAX_ENTITIES:
        raise BadInput(f"more than {MAX_ENTITIES} entities")
    return raw


def _entity_targets(
    entities: Iterable[Mapping[str, Any]],
) -> tuple[list[str], list[tuple[str, str]], list[str], list[str], list[str], list[str]]:
    """Map entities to containment targets by immutable id only; display names are never used.

    Service principals come only from Entra ids (an Account's aadUserId). A CloudApplication's
    `appId` is the Defender for Cloud Apps id, an int32 (securityinsights 2024-09-01
    EntityTypes.json), not an Entra application id: it is reported, never resolved."""
    accounts: list[str] = []
    containers: list[tuple[str, str]] = []
    principals: list[str] = []
    apps: list[str] = []
    ips: list[str] = []
    notes: list[str] = []
    for entity in entities:
        props = p if type(p := entity.get("properties")) is dict or isinstance(p, Mapping) else entity
        # Sentinel's entities name their kind in `kind` or `Type`, the Defender alerts API in `type`
        kind = (
            str(entity.get("kind") or entity.get("Type") or entity.get("type") or "").lower().replace("-", "")
        )
        if kind == "azureresource":
            ref = parse_storage_id(str(props.get("resourceId") or props.get("ResourceId") or ""))
            if ref:
                accounts.append(ref.account_key)
                if ref.container:
                    containers.append((ref.account_key, ref.container))
        elif kind == "account":
            oid = (
                props.get("aadUserId")
                or props.get("AadUserId")
                or props.get("objectGuid")
                or props.get("ObjectGuid")
            )
            if is_guid(oid):
                principals.append(str(oid).lower())
        elif kind == "cloudapplication":
            app = props.get("appId") if "appId" in props else props.get("AppId")
            name = str(props.get("appName") or props.get("AppName") or props.get("friendlyName") or "")
            shown = f"{name[:80]!r} " if name else ""
            notes.append(
                f"CloudApplication entity {shown}(Defender for Cloud Apps id {str(app)[:40]}) cannot be "
                "mapped to a service principal by an immutable id"
            )
        elif kind == "ip":
            addr = props.get("address") or props.get("Address")
            if isinstance(addr, str) and len(addr) <= 64:
                ips.append(addr)
    return accounts, containers, principals, apps, ips, notes


def _dedupe(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(values))


def _targets(entities: Iterable[Mapping[str, Any]], accounts: Iterable[str] = ()) -> dict[str, Any]:
    """Signal fields for the containment targets the entities name, de-duplicated in order."""
    found, containers, principals, apps, ips, notes = _entity_targets(entities)
    return {
        "accounts": _dedupe([*found, *accounts]),
        "containers": _dedupe(containers),
        "principals": _dedupe(principals),
        "apps": _dedupe(apps),
        "ips": _dedupe(ips),
        "notes": _dedupe(notes),
    }


def entity_targets(raw: Any) -> dict[str, Any]:
    """Signal fields for a list of Sentinel entities read from the incident (same rules as a body)."""
    return _targets(_entities(raw))


def parse_sentinel_incident(item: Mapping[str, Any]) -> Signal:
    """Sentinel incident trigger body: `object` is the incident with related entities and alerts."""
    obj = _mapping(item, "object")
    incident_id = _incident_arm_id(_text(obj, "id", required=True, limit=1024), "object.id")
    props = _mapping(obj, "properties")
    entities = _entities(props.get("relatedEntities"))
    stated: dict[str, Any] = {}
    for alert in props.get("alerts") or []:
        if isinstance(alert, Mapping):
            alert_props = alert.get("properties") if isinstance(alert.get("properties"), Mapping) else alert
            entities.extend(_entities(alert_props.get("entities") or alert_props.get("Entities")))
            alert_type = _text(alert_props, "alertType", limit=MAX_ID)
            if defender.is_storage_alert(alert_type):
                ext = alert_props.get("extendedProperties") or alert_props.get("additionalData") or {}
                _merge(stated, _defender_fields(alert_type, ext, "alerts[].properties.extendedProperties"))
    targets = _targets(entities)
    return Signal(
        id=incident_id.lower(),
        source="sentinel-incident",
        kind=_alert_kind(stated),
        event_type="Microsoft.SecurityInsights/Incidents",
        occurred_at=_text(props, "firstActivityTimeUtc", limit=64)
        or _text(props, "createdTimeUtc", limit=64),
        subject=incident_id,
        incident_id=incident_id,
        title=_text(props, "title")[:512],
        **_with_stated(targets, stated),
    )


def parse_sentinel_alert(item: Mapping[str, Any]) -> Signal:
    """SecurityAlert schema (Sentinel alert trigger); Entities may arrive as a JSON string."""
    alert_id = _text(item, "SystemAlertId", limit=MAX_ID) or _text(item, "VendorOriginalId", limit=MAX_ID)
    if not alert_id:
        raise BadInput("missing required field 'SystemAlertId'")
    entities = _entities(item.get("Entities"))
    ext = item.get("ExtendedProperties")
    if isinstance(ext, str):
        ext = _embedded_json(ext, "ExtendedProperties", {})
    extra: list[str] = []
    if isinstance(ext, Mapping):
        for key in ("ResourceId", "resourceId", "Resource Id"):
            ref = parse_storage_id(str(ext.get(key, "")))
            if ref:
                extra.append(ref.account_key)
    alert_type = _text(item, "AlertType", limit=MAX_ID)
    stated: dict[str, Any] = {}
    if defender.is_simulated(alert_type):
        note = (
            f"{alert_type[:120]} is a Defender sample alert: its resources are made up, nothing is contained"
        )
        stated = {"access": (), "container": "", "simulated": True, "notes": (note,)}
    elif defender.is_storage_alert(alert_type):
        # the SecurityAlert row's ResourceId: "full identifier of the affected resource"
        extra += _storage_ids([_text(item, "ResourceId", limit=1024)], "ResourceId")
        stated = _defender_fields(alert_type, ext, "ExtendedProperties")
    field = "IncidentArmId" if "IncidentArmId" in item else "incidentArmId"
    incident = _text(item, field, limit=1024)
    incident = _incident_arm_id(incident, field) if incident else ""
    targets = _targets(entities, extra)
    if stated and not targets["accounts"]:
        raise BadInput(f"Defender for Storage alert {alert_type[:120]} names no storage account")
    return Signal(
        id=alert_id.lower(),
        source="sentinel-alert",
        kind=_alert_kind(stated),
        event_type="SecurityAlert",
        occurred_at=_text(item, "StartTime", limit=64) or _text(item, "TimeGenerated", limit=64),
        subject=_text(item, "AlertDisplayName")[:512],
        incident_id=incident,
        operation=alert_type.lower() if stated else "",
        title=_text(item, "AlertDisplayName")[:512],
        **_with_stated(targets, stated),
    )


DEFENDER_ALERT_TYPE = "microsoft.security/locations/alerts"
CLOSED_ALERT_STATES = ("resolved", "dismissed")


def _storage_ids(values: Iterable[str], field: str) -> list[str]:
    """The storage accounts among resource ids a Defender alert names. An id that claims to be a
    storage resource but is not a valid one is refused (it would otherwise be silently dropped and
    the alert judged as naming nothing); ids of other resource types are not ours to judge."""
    found = []
    for value in values:
        if not value:
            continue
        ref = parse_storage_id(value)
        if ref:
            found.append(ref.account_key)
        elif "microsoft.storage" in value.lower():
            raise BadInput(f"{field} {value[:200]!r} is not a valid storage account ARM id")
    return found


def _defender_fields(alert_type: str, ext: Any, field: str) -> dict[str, Any]:
    """What a Defender for Storage alert states beyond its entities: the access it saw (its
    authentication type, in the storage logs' vocabulary), the container, and notes for the record."""
    if isinstance(ext, str):
        ext = _embedded_json(ext, field, {})
    if ext is None:
        ext = {}
    if not isinstance(ext, Mapping):
        raise BadInput(f"{field} must be an object")
    props = defender.extended(ext)
    return {
        "access": defender.stated_access(alert_type, props),
        "container": defender.container(props),
        "notes": defender.notes(alert_type, props),
        "simulated": defender.is_simulated(alert_type),
    }


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    """Several alerts of one incident: the union of what they state."""
    if not more:
        return
    into["access"] = _dedupe([*into.get("access", ()), *more["access"]])
    into["containers"] = _dedupe(
        [*into.get("containers", ()), *([more["container"]] if more["container"] else [])]
    )
    into["notes"] = _dedupe([*into.get("notes", ()), *more["notes"]])
    into["simulated"] = into.get("simulated", False) or more["simulated"]


def _with_stated(targets: dict[str, Any], stated: dict[str, Any]) -> dict[str, Any]:
    """Signal fields: the entities' targets plus what Defender alerts state (a container they name is
    taken in each account they name)."""
    if not stated:
        return targets
    names = stated.get("containers") or ((stated["container"],) if stated.get("container") else ())
    out = dict(targets)
    out["containers"] = _dedupe(
        [*targets["containers"], *((a, c) for a in targets["accounts"] for c in names)]
    )
    out["notes"] = _dedupe([*stated["notes"], *targets["notes"]])
    out["access"] = tuple(stated["access"])
    return out


def _alert_kind(stated: dict[str, Any]) -> SignalKind:
    """A Defender sample alert names made-up resources: it is recorded, not acted on."""
    return SignalKind.OTHER if stated.get("simulated") else SignalKind.ALERT


def parse_defender_alert(item: Mapping[str, Any]) -> Signal:
    """A Defender for Cloud alert as the alerts API and workflow automation deliver it (an ARM resource
    of type Microsoft.Security/locations/alerts). Its id names the alert; nothing is requested from it."""
    props = _mapping(item, "properties")
    alert_type = _text(props, "alertType", limit=MAX_ID) or _text(props, "alertName", limit=MAX_ID)
    if not alert_type:
        raise BadInput("missing required field 'properties.alertType'")
    alert_id = (
        _text(props, "systemAlertId", limit=MAX_ID)
        or _text(item, "name", limit=MAX_ID)
        or _text(item, "id", required=True, limit=1024)
    )
    entities = _entities(props.get("entities"))
    identifiers = props.get("resourceIdentifiers") or []
    if not isinstance(identifiers, list) or not all(isinstance(r, Mapping) for r in identifiers):
        raise BadInput("properties.resourceIdentifiers must be a list of objects")
    named = [_text(r, "azureResourceId", limit=1024) for r in identifiers]
    named.append(_text(props, "associatedResource", limit=1024))  # the 2019 schema's field
    # a sample alert names made-up resources ("Sample-Storage"): recorded, never resolved
    simulated = defender.is_simulated(alert_type)
    storage = defender.is_storage_alert(alert_type) and not simulated
    accounts = _storage_ids(named, "properties.resourceIdentifiers[].azureResourceId") if storage else []
    targets = _targets(entities, accounts)
    stated = (
        _defender_fields(alert_type, props.get("extendedProperties"), "properties.extendedProperties")
        if storage
        else {}
    )
    notes: tuple[str, ...] = ()
    kind = SignalKind.ALERT
    status = (_text(props, "status", limit=64) or _text(props, "state", limit=64)).lower()
    if status in CLOSED_ALERT_STATES:
        kind, notes = SignalKind.OTHER, (f"alert is {status}, not active",)
    elif simulated:
        kind = SignalKind.OTHER
        notes = (
            f"{alert_type[:120]} is a Defender sample alert: its resources are made up, nothing is contained",
        )
    elif not storage:
        kind, notes = (
            SignalKind.OTHER,
            (f"alert type {alert_type[:120]} is not a Defender for Storage alert",),
        )
    elif not targets["accounts"]:
        raise BadInput(f"Defender for Storage alert {alert_type[:120]} names no storage account")
    fields = _with_stated(targets, stated)
    fields["notes"] = _dedupe([*notes, *fields["notes"]])
    if kind is SignalKind.ALERT:
        kind = _alert_kind(stated)
    title = _text(props, "alertDisplayName")[:512]
    return Signal(
        id=f"defender:{alert_id}".lower(),
        source="defender-alert",
        kind=kind,
        event_type="Microsoft.Security/locations/alerts",
        occurred_at=_text(props, "startTimeUtc", limit=64)
        or _text(props, "detectedTimeUtc", limit=64)
        or _text(props, "timeGeneratedUtc", limit=64),
        subject=title,
        operation=alert_type.lower(),
        title=title,
        **fields,
    )


# What makes a Log Analytics query read beyond the workspace it runs in: cross-resource functions
# (workspace(), app(), resource()), cross-service ones (adx(), arg(), cluster(), database()) and
# external data (externaldata, external_table(), evaluate plugins). Over-matching refuses an alert.
_REACHING = re.compile(
    r"\b(?:workspace|app|resource|adx|arg|cluster|database|external_table)\s*\(|\b(?:externaldata|evaluate)\b",
    re.IGNORECASE,
)


def parse_monitor_alert(item: Mapping[str, Any]) -> Signal:
    """Azure Monitor common alert schema; activity-log alerts carry the operation like Event Grid."""
    data = _mapping(item, "data")
    essentials = _mapping(data, "essentials")
    context = _mapping(data, "alertContext")
    alert_id = _text(essentials, "alertId", required=True, limit=1024)
    targets = essentials.get("alertTargetIDs") or []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise BadInput("essentials.alertTargetIDs must be a list of strings")
    refs = [r for r in (parse_storage_id(t) for t in targets) if r]
    condition = _mapping(context, "condition")
    search, window = "", ("", "")
    for criterion in condition.get("allOf") or []:
        if not isinstance(criterion, Mapping):
            raise BadInput("alertContext.condition.allOf must hold objects")
        for dimension in criterion.get("dimensions") or []:
            if (
                isinstance(dimension, Mapping)
                and str(dimension.get("name", "")).lower() in RESOURCE_DIMENSIONS
            ):
                ref = parse_storage_id(str(dimension.get("value", "")))
                if ref:
                    refs.append(ref)
        search = search or _text(criterion, "searchQuery", limit=8000)
    if search and _REACHING.search(search):
        # the query is run with the responder's identity: it may read only the workspace it runs in
        raise BadInput(
            "the alert's searchQuery reaches beyond its workspace (other workspaces, apps, resources, "
            "clusters or external data): the responder runs only queries confined to its workspace"
        )
    if search:
        window = (_text(condition, "windowStartTime", limit=64), _text(condition, "windowEndTime", limit=64))
        if not all(window):
            raise BadInput("log search alert without condition.windowStartTime and windowEndTime")
    operation = _text(context, "operationName").lower()
    kind = OPERATIONS.get(operation, SignalKind.ALERT)
    notes: tuple[str, ...] = ()
    # the condition is part of the alert's identity: a Resolved notification delivered before the
    # Fired one is its own (recorded, not acted on) event, not an earlier delivery of the alert
    identity = alert_id.lower()
    if _text(essentials, "monitorCondition").lower() == "resolved":
        kind, notes = SignalKind.OTHER, ("alert is resolved, not fired",)
        identity += "|resolved"
    return Signal(
        id=identity,
        source="monitor-alert",
        kind=kind,
        event_type=f"AzureMonitorAlert/{_text(essentials, 'signalType')}",
        operation=operation,
        occurred_at=_text(essentials, "firedDateTime", limit=64),
        subject=_text(essentials, "alertRule")[:512],
        accounts=_dedupe(r.account_key for r in refs),
        containers=_dedupe((r.account_key, r.container) for r in refs if r.container),
        title=_text(essentials, "alertRule")[:512],
        notes=notes,
        search_query=search,
        search_window=window,
    )


def parse_playbook(item: Mapping[str, Any], requested_at: str) -> Signal:
    """Manual playbook request: a resource id (account, container, service principal) to contain, and
    optionally `principalId`, the service principal (object id) implicated on that account or container,
    whose steps (disable it, remove its role assignments there) are planned with the usual guardrails."""
    resource = _text(item, "resourceId", required=True, limit=1024)
    actions = item.get("actions") or []
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        raise BadInput("actions must be a list of action names")
    reason = _text(item, "reason")[:1024]
    ref = parse_storage_id(resource)
    principals: tuple[str, ...] = ()
    if ref is None:
        if not is_guid(resource):
            raise BadInput(
                "resourceId must be a storage account or container ARM id, or a service "
                "principal object id (GUID)"
            )
        principals = (resource.lower(),)
    if "principalId" in item:
        principal = guid(item["principalId"])
        if not principal:
            raise BadInput("principalId must be a service principal object id (GUID)")
        if ref is None:
            raise BadInput("principalId goes with a storage account or container resourceId")
        principals = (principal,)
    # a request is its own event unless the caller names it: asking again (after a re-exposure, say)
    # must act again; a caller that retries the same request gives the same requestId
    named = _text(item, "requestId", limit=MAX_ID)
    subject = f"{resource}|{principals[0]}" if ref is not None and principals else resource
    request_id = named or f"{subject}|{','.join(sorted(actions))}|{requested_at}"
    return Signal(
        id=f"playbook:{request_id}".lower(),
        source="playbook",
        kind=SignalKind.MANUAL,
        event_type="ManualPlaybook",
        occurred_at=requested_at,
        subject=resource,
        accounts=(ref.account_key,) if ref else (),
        containers=((ref.account_key, ref.container),) if ref and ref.container else (),
        principals=principals,
        requested_actions=tuple(actions),
        title=reason,
    )


def parse_item(item: Any, *, now: str) -> Signal:
    """Parse one item of any accepted schema."""
    if type(item) is not dict and not isinstance(item, Mapping):
        raise BadInput("each event must be a JSON object")
    if "eventType" in item and "specversion" not in item:  # detect_schema's first answer, without its call
        return parse_eventgrid(item)
    schema = detect_schema(item)
    if schema == "eventgrid":
        return parse_eventgrid(item)
    if schema == "cloudevents":
        return parse_cloudevent(item)
    if schema == "monitor-alert":
        return parse_monitor_alert(item)
    if schema == "sentinel-incident":
        return parse_sentinel_incident(item)
    if schema == "sentinel-alert":
        return parse_sentinel_alert(item)
    if schema == "defender-alert":
        return parse_defender_alert(item)
    if "event" in item and "resourceId" not in item:
        if not isinstance(item["event"], Mapping):
            raise BadInput("event must be a JSON object")
        return parse_item(item["event"], now=now)
    return parse_playbook(item, now)


def parse_body(body: bytes, *, now: str, max_bytes: int = 1_048_576) -> list[Any]:
    """Decode a request body into items; arrays are batches. Raises BadInput with the reason."""
    if len(body) > max_bytes:
        raise BadInput(f"body is larger than {max_bytes} bytes")
    if not body.strip():
        raise BadInput("body is empty")
    decoded = decode_json(body)
    items = decoded if isinstance(decoded, list) else [decoded]
    if not items:
        raise BadInput("the batch is empty")
    if len(items) > 5000:
        raise BadInput("a batch may hold at most 5000 events")
    return items
