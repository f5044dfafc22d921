"""Azure Resource Graph `POST /providers/Microsoft.ResourceGraph/resources` (api-version 2021-03-01)
over the simulated storage accounts, for a small documented subset of its query language.

The subset (anything else answers 400 `BadRequest` > `InvalidQuery`, as Resource Graph does,
tests/data/azure/resourcegraph_400_invalid_query_issue13762.json):

    resources                                   (or resourcecontainers: the subscriptions; any case)
    | where <column> =~ '<text>'                (also ==, !=, !~ and `in~ ('a', 'b')`)
    | project <item>, ...                       item: column, properties.a.b or alias = properties.a.b
    | order by <column> [asc|desc]              (also `sort by`)
    | limit <n>                                 (also `take`)

Columns are those of the resources table: id, name, type, tenantId, kind, location, resourceGroup,
subscriptionId, sku, tags, properties, identity, zones, managedBy. A projected path without an alias
is named with `_` for `.` (properties.allowBlobPublicAccess -> properties_allowBlobPublicAccess); a
missing property is null.

Scope: `subscriptions`, else the subscriptions of `managementGroups` (the tenant file's
`managementGroups`: name -> subscription ids), else every subscription of the tenant.
Paging (resourcegraph.json 2021-03-01, work-with-data.md): `options.$top` 1..1000 rows per page
(100 when absent), `$skip`, and `$skipToken` when more rows remain and `id` is projected; without
`id` the answer is cut with `resultTruncated: "true"` and no token. The token is opaque and names
its query and scope: sent with another query it is refused.
Throttling (guidance-for-throttled-requests.md): a per-caller quota of `quota` queries per
`window` seconds (15 per 5 s by default), reported on every answer in `x-ms-user-quota-remaining`
and `x-ms-user-quota-resets-after` (hh:mm:ss); a query over quota answers 429 `RateLimiting`
with Retry-After.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rehearsal.simulator.routing import ARM, Call, Context, Reply, Route, route
from rehearsal.simulator.storage import account_view

ACCOUNT_TYPE = "microsoft.storage/storageaccounts"
COLUMNS = (
    "id", "name", "type", "tenantId", "kind", "location", "resourceGroup", "subscriptionId", "sku", "tags",
    "properties", "identity", "zones", "managedBy",
)  # fmt: skip
_COLUMN = {c.lower(): c for c in COLUMNS}
DEFAULT_TOP = 100
MAX_TOP = 1000
_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_STRING = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_WHERE = re.compile(rf"where\s+({_PATH})\s*(==|=~|!=|!~)\s*({_STRING})", re.IGNORECASE | re.DOTALL)
_WHERE_IN = re.compile(rf"where\s+({_PATH})\s+in~\s*\(\s*((?:{_STRING})(?:\s*,\s*(?:{_STRING}))*)\s*\)",
                       re.IGNORECASE | re.DOTALL)  # fmt: skip
_PROJECT = re.compile(r"project\s+(.+)", re.IGNORECASE | re.DOTALL)
_ITEM = re.compile(rf"(?:([A-Za-z_][A-Za-z0-9_]*)\s*=\s*)?({_PATH})", re.DOTALL)
_ORDER = re.compile(rf"(?:order|sort)\s+by\s+({_PATH})(?:\s+(asc|desc))?", re.IGNORECASE | re.DOTALL)


class QueryError(Exception):
    """A query outside the subset; `token` is the part that was not understood."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.token = token


def bad_request(details: list[dict[str, Any]]) -> Reply:
    """Resource Graph's 400: a support message, the reasons in `details` (issue13762's shape)."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    message = (
        f"Please provide below info when asking for support: timestamp = {stamp}, "
        f"correlationId = {uuid.uuid4()}."
    )
    return Reply(400, {"error": {"code": "BadRequest", "message": message, "details": details}})


def invalid_query(token: str) -> Reply:
    return bad_request(
        [
            {
                "code": "InvalidQuery",
                "message": "Query is invalid. Please refer to the documentation for the Azure Resource "
                "Graph service and fix the error before retrying.",
            },
            {
                "code": "InvalidQueryLanguage",
                "message": "InvalidQueryLanguage",
                "line": -1,
                "characterPositionInLine": -1,
                "token": token[:100],
            },
        ]
    )


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _column(path: str) -> list[str]:
    parts = path.split(".")
    root = _COLUMN.get(parts[0].lower())
    if root is None:
        raise QueryError(parts[0])
    return [root, *parts[1:]]


def _lookup(row: dict[str, Any], path: list[str]) -> Any:
    value: Any = row
    for part in path:
        if not isinstance(value, dict):
            return None
        # property names are matched case-insensitively, as Resource Graph does for dynamic columns
        value = value.get(part, next((v for k, v in value.items() if k.lower() == part.lower()), None))
    return value


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside quotes."""
    out, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote and text[i - 1] != "\\" else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


Stage = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def _where(segment: str) -> Stage:
    match = _WHERE_IN.fullmatch(segment)
    if match:
        path = _column(match[1])
        wanted = {_unquote(s.strip()).lower() for s in _split_top(match[2])}
        return lambda rows: [r for r in rows if str(_lookup(r, path) or "").lower() in wanted]
    match = _WHERE.fullmatch(segment)
    if match is None:
        raise QueryError(segment.split()[1] if len(segment.split()) > 1 else "where")
    path, op, literal = _column(match[1]), match[2], _unquote(match[3])

    def keep(row: dict[str, Any]) -> bool:
        value = _lookup(row, path)
        text = "" if value is None else str(value)
        if op == "==":
            return text == literal
        if op == "!=":
            return text != literal
        same = text.lower() == literal.lower()
        return same if op == "=~" else not same

    return lambda rows: [r for r in rows if keep(r)]


def _project(segment: str) -> tuple[Stage, list[str]]:
    items: list[tuple[str, list[str]]] = []
    for raw in _split_top(_PROJECT.fullmatch(segment)[1]):  # type: ignore[index]
        match = _ITEM.fullmatch(raw.strip())
        if match is None:
            raise QueryError(raw.strip() or ",")
        path = _column(match[2])
        items.append((match[1] or "_".join(path), path))
    names = [n for n, _ in items]
    return (lambda rows: [{n: _lookup(r, p) for n, p in items} for r in rows]), names


def _order(segment: str) -> Stage:
    match = _ORDER.fullmatch(segment)
    if match is None:
        raise QueryError("by")
    path, descending = _column(match[1]), (match[2] or "asc").lower() == "desc"

    def sort(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(rows, key=lambda r: str(_lookup(r, path) or "").lower(), reverse=descending)

    return sort


TABLES = ("resources", "resourcecontainers")


def compile_query(text: str) -> tuple[str, list[Stage], bool]:
    """The table, the stages of a query in the subset and whether its output has an `id` column (paging
    needs it)."""
    segments = [s.strip() for s in _split_top(text, "|")]
    if not segments or segments[0].lower() not in TABLES:
        raise QueryError(segments[0].split()[0] if segments and segments[0] else "|")
    stages: list[Stage] = []
    has_id = True
    for segment in segments[1:]:
        word = segment.split(None, 1)[0].lower() if segment else "|"
        if word == "where":
            stages.append(_where(segment))
        elif word == "project" and _PROJECT.fullmatch(segment):
            stage, names = _project(segment)
            stages.append(stage)
            has_id = "id" in names
        elif word in ("order", "sort"):
            stages.append(_order(segment))
        elif word in ("limit", "take"):
            parts = segment.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise QueryError(parts[-1])
            count = int(parts[1])
            stages.append(lambda rows, n=count: rows[:n])
        else:
            raise QueryError(word)
    return segments[0].lower(), stages, has_id


def resource_rows(ctx: Context, subscriptions: set[str]) -> list[dict[str, Any]]:
    """The resources table for the subscriptions in scope: one row per storage account."""
    state = ctx.state
    with state.lock:
        now = state.now()
        return [
            {
                "id": a["id"],
                "name": a["name"],
                "type": ACCOUNT_TYPE,
                "tenantId": state.tenant_id,
                "kind": a["kind"],
                "location": a["location"],
                "resourceGroup": a["resourceGroup"],
                "subscriptionId": a["subscriptionId"],
                "sku": dict(a["sku"]),
                "tags": dict(a["tags"]),
                "properties": account_view(a, now=now)["properties"],
                "identity": None,
                "zones": None,
                "managedBy": "",
            }
            for a in sorted(state.accounts.values(), key=lambda a: a["id"].lower())
            if a["subscriptionId"].lower() in subscriptions
        ]


def container_rows(ctx: Context, subscriptions: set[str]) -> list[dict[str, Any]]:
    """The resourcecontainers table: one row per subscription in scope (resource groups left out)."""
    return [
        {
            "id": f"/subscriptions/{sub}",
            "name": sub,
            "type": "microsoft.resources/subscriptions",
            "tenantId": ctx.state.tenant_id,
            "subscriptionId": sub,
            "properties": {"state": "Enabled"},
            "tags": {},
        }
        for sub in sorted(subscriptions)
    ]


def _hhmmss(seconds: float) -> str:
    whole = math.ceil(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _context(query: str, scope: list[str]) -> str:
    return hashlib.sha256(json.dumps([query, scope]).encode()).hexdigest()[:16]


def _token(query: str, scope: list[str], offset: int) -> str:
    return base64.b64encode(json.dumps({"o": offset, "q": _context(query, scope)}).encode()).decode()


def _offset(token: str, query: str, scope: list[str]) -> int | None:
    """The offset a token names, or None when it is not a token of this query and scope."""
    try:
        raw = json.loads(base64.b64decode(token, validate=True))
        offset = raw["o"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(offset, int) or offset < 0 or raw.get("q") != _context(query, scope):
        return None
    return offset


def _scope(ctx: Context, body: dict[str, Any]) -> tuple[set[str], list[str]] | Reply:
    subs, groups = body.get("subscriptions"), body.get("managementGroups")
    for name, value in (("subscriptions", subs), ("managementGroups", groups)):
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return bad_request([{"code": "InvalidRequestContent", "message": f"{name} must be strings."}])
    tenant_groups = {k.lower(): [s.lower() for s in v] for k, v in ctx.state.management_groups.items()}
    if subs:
        return {s.lower() for s in subs}, ["s", *sorted(s.lower() for s in subs)]
    if groups:
        unknown = [g for g in groups if g.lower() not in tenant_groups]
        if unknown:
            return bad_request(
                [{"code": "InvalidManagementGroup", "message": f"Management group {unknown[0]} not found."}]
            )
        found = {s for g in groups for s in tenant_groups[g.lower()]}
        return found, ["m", *sorted(g.lower() for g in groups)]
    with ctx.state.lock:
        every = {a["subscriptionId"].lower() for a in ctx.state.accounts.values()}
        every |= {s for subs in tenant_groups.values() for s in subs}
    return every, ["t"]


def resources(ctx: Context, call: Call) -> Reply:
    """Resources: page a query of the subset over the accounts in scope."""
    caller = call.caller.object_id if call.caller else "anonymous"
    allowed, remaining, resets = ctx.state.resource_graph_quota.take(caller)
    headers = {
        "x-ms-user-quota-remaining": str(max(remaining, 0)),
        "x-ms-user-quota-resets-after": _hhmmss(resets),
    }
    if not allowed:
        message = "Please see https://aka.ms/resourcegraph-throttling for help."
        reply = Reply(429, {"error": {"code": "RateLimiting", "message": message}}, headers)
        reply.headers["Retry-After"] = str(max(1, math.ceil(resets)))
        return reply
    reply = _answer(ctx, call)
    reply.headers.update(headers)
    return reply


def _answer(ctx: Context, call: Call) -> Reply:
    body = call.body if isinstance(call.body, dict) else None
    text = body.get("query") if body else None
    if not isinstance(text, str) or not text.strip():
        return bad_request([{"code": "InvalidRequestContent", "message": "The query is required."}])
    options = body.get("options") or {}  # type: ignore[union-attr]
    if not isinstance(options, dict):
        return bad_request([{"code": "InvalidRequestContent", "message": "options must be an object."}])
    top, skip = options.get("$top", DEFAULT_TOP), options.get("$skip", 0)
    if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= MAX_TOP:
        return bad_request([{"code": "InvalidRequestContent", "message": "$top must be within 1..1000."}])
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
        return bad_request([{"code": "InvalidRequestContent", "message": "$skip must be at least 0."}])
    fmt = str(options.get("resultFormat") or "objectArray")
    if fmt.lower() not in ("objectarray", "table"):
        return bad_request([{"code": "InvalidRequestContent", "message": "resultFormat is invalid."}])
    scope = _scope(ctx, body)  # type: ignore[arg-type]
    if isinstance(scope, Reply):
        return scope
    subscriptions, scope_key = scope
    try:
        table, stages, has_id = compile_query(text)
    except QueryError as exc:
        return invalid_query(exc.token)
    rows = resource_rows(ctx, subscriptions) if table == "resources" else container_rows(ctx, subscriptions)
    for stage in stages:
        rows = stage(rows)
    offset = skip
    token = options.get("$skipToken")
    if token:
        found = _offset(str(token), text, scope_key)
        if found is None:
            return bad_request([{"code": "InvalidSkipToken", "message": "The $skipToken is invalid."}])
        offset = found
    page = rows[offset : offset + top]
    more = offset + len(page) < len(rows)
    answer: dict[str, Any] = {
        "totalRecords": len(rows),
        "count": len(page),
        "resultTruncated": "true" if more and not has_id else "false",
        "facets": [],
    }
    if more and has_id:
        answer["$skipToken"] = _token(text, scope_key, offset + len(page))
    if fmt.lower() == "table":
        names = list(page[0]) if page else []
        answer["data"] = {
            "columns": [{"name": n, "type": "object"} for n in names],
            "rows": [[r.get(n) for n in names] for r in page],
        }
    else:
        answer["data"] = page
    return Reply(200, answer)


ROUTES: list[Route] = [
    route("POST", r"/providers/Microsoft\.ResourceGraph/resources", resources, ARM),
]
