"""Evidence adapter (azure-monitor-query): who read or listed what around the detection, and the
app-registration changes, summarised for the ledger and kept whole for an auditor.

Queries are built only from values the parser validated (account names, GUIDs), so nothing from an
event is ever spliced into KQL unchecked.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from responders.core.arm import parse_storage_id
from responders.core.parse import is_guid
from responders.core.plan import access_kinds
from responders.core.timeutil import parse_time

if TYPE_CHECKING:
    from responders.clients import Clients
    from responders.core.model import Plan

LOOKBACK = timedelta(hours=24)
MAX_ROWS = 1000
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
STORAGE_COLUMNS = (
    "TimeGenerated, AccountName, OperationName, AuthenticationType, CallerIpAddress, Uri, StatusCode, "
    "ResponseBodySize, RequesterObjectId, UserAgentHeader"
)


def storage_query(accounts: list[str]) -> str:
    names = ", ".join(f'"{a}"' for a in accounts if _ACCOUNT.match(a))
    return (
        f"StorageBlobLogs | where AccountName in ({names}) | project {STORAGE_COLUMNS} "
        f"| order by TimeGenerated asc | take {MAX_ROWS}"
    )


def audit_query(object_id: str) -> str:
    if not is_guid(object_id):
        raise ValueError("audit query needs an object id")
    return (
        f'AuditLogs | where TargetResources has "{object_id}" '
        "| project TimeGenerated, OperationName, Result, InitiatedBy, TargetResources | take 200"
    )


def run_query(clients: Clients, workspace: str, query: str, start: Any, end: Any) -> list[dict[str, Any]]:
    """Rows as dicts; a partial result is an error (evidence must be complete or say it is not)."""
    from azure.monitor.query import LogsQueryStatus

    result = clients.logs().query_workspace(workspace, query, timespan=(start, end))
    if result.status != LogsQueryStatus.SUCCESS:
        raise RuntimeError(f"Log Analytics returned a partial result: {getattr(result, 'partial_error', '')}")
    rows: list[dict[str, Any]] = []
    for table in result.tables:
        columns = list(table.columns)
        rows += [dict(zip(columns, [_plain(v) for v in row], strict=False)) for row in table.rows]
    return rows


def query_error(exc: BaseException) -> str:
    """The innermost message of a Log Analytics error body (e.g. the table it could not resolve:
    BadArgumentError > SemanticError > SEM0100), which the SDK's own message leaves out."""
    response = getattr(exc, "response", None)
    try:
        body = response.json() if response is not None else None
    except Exception:  # not JSON: nothing more to say than the status
        body = None
    inner = body.get("error") if isinstance(body, dict) else None
    messages = []
    while isinstance(inner, dict) and len(messages) < 5:
        if inner.get("message"):
            messages.append(str(inner["message"]))
        inner = inner.get("innererror")
    return messages[-1][:300] if messages else ""


def _plain(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else value


def _ip(address: object) -> str:
    text = str(address or "")
    if text.startswith("["):
        return text[1:].split("]")[0]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Callers (by IP and auth type), operations, bytes out, first and last time."""
    callers: dict[tuple[str, str], dict[str, Any]] = {}
    auth_types: Counter[str] = Counter()
    total = 0
    for row in rows:
        ip, auth = _ip(row.get("CallerIpAddress")), str(row.get("AuthenticationType") or "")
        auth_types[auth] += 1
        size = int(row.get("ResponseBodySize") or 0)
        total += size
        entry = callers.setdefault(
            (ip, auth),
            {
                "ip": ip,
                "auth": auth,
                "operations": Counter(),
                "bytes_out": 0,
                "first": row.get("TimeGenerated"),
                "last": row.get("TimeGenerated"),
                "accounts": set(),
                "object_id": str(row.get("RequesterObjectId") or ""),
            },
        )
        entry["operations"][str(row.get("OperationName") or "")] += 1
        entry["bytes_out"] += size
        entry["last"] = row.get("TimeGenerated")
        entry["accounts"].add(str(row.get("AccountName") or ""))
    listed = [
        {**c, "operations": dict(c["operations"]), "accounts": sorted(c["accounts"])}
        for c in sorted(callers.values(), key=lambda c: -c["bytes_out"])
    ]
    return {
        "rows": len(rows),
        "callers": listed,
        "auth_types": dict(auth_types),
        "bytes_out": total,
        "error": "",
    }


def window(plan: Plan, now: str) -> tuple[Any, Any]:
    end = parse_time(now)
    first = parse_time(plan.signal.occurred_at) or end
    return (min(first, end) - LOOKBACK, end)  # type: ignore[type-var, operator]


def collect_storage(
    clients: Clients, workspace: str, plan: Plan, now: str, since: str = ""
) -> tuple[dict[str, Any], list[dict]]:
    """StorageBlobLogs for the accounts of the plan (or of the signal when nothing was planned);
    with `since`, only what was logged from then on (the after-containment view)."""
    accounts = sorted({ref.account for ref in (parse_storage_id(a) for a in _accounts(plan)) if ref})
    if not accounts:
        return {"rows": 0, "callers": [], "auth_types": {}, "bytes_out": 0, "error": ""}, []
    start, end = window(plan, now)
    start = parse_time(since) or start
    rows = run_query(clients, workspace, storage_query(accounts), start, end)
    return summarise(rows), rows


def collect_audit(clients: Clients, workspace: str, plan: Plan, now: str) -> list[dict[str, Any]]:
    """AuditLogs entries about the service principals the plan names."""
    start, end = window(plan, now)
    entries: list[dict[str, Any]] = []
    for object_id in sorted(
        {a.target for a in plan.actions if a.kind == "identity.disable_service_principal"}
    ):
        for row in run_query(clients, workspace, audit_query(object_id), start, end):
            entries.append(
                {
                    "time": row.get("TimeGenerated"),
                    "operation": row.get("OperationName"),
                    "result": row.get("Result"),
                    "initiated_by": str(row.get("InitiatedBy", ""))[:500],
                    "target": object_id,
                }
            )
    return entries


def access_by_account(
    clients: Clients, workspace: str, accounts: list[str], since: str, now: str
) -> dict[str, dict[str, int]]:
    """Authentication types of the requests logged per account from a day before `since` until now.
    Every account asked about gets an entry, so an empty one means "logged no access"."""
    refs = {ref.account: a for a in accounts if (ref := parse_storage_id(a))}
    end = parse_time(now)
    start = (parse_time(since) or end) - LOOKBACK  # type: ignore[operator]
    names = ", ".join(f'"{name}"' for name in sorted(refs) if _ACCOUNT.match(name))
    query = (
        f"StorageBlobLogs | where AccountName in ({names}) "
        f"| project AccountName, AuthenticationType, OperationName | take {MAX_ROWS * 5}"
    )
    access: dict[str, dict[str, int]] = {account_id: {} for account_id in refs.values()}
    for row in run_query(clients, workspace, query, min(start, end), end):  # type: ignore[type-var]
        account_id = refs.get(str(row.get("AccountName", "")).lower())
        if account_id is not None:
            for kind in access_kinds(row.get("AuthenticationType"), row.get("OperationName")):
                access[account_id][kind] = access[account_id].get(kind, 0) + 1
    return access


def resources_from_search(clients: Clients, workspace: str, query: str, start: str, end: str) -> list[str]:
    """Follow a log-search alert's query to the storage resources its results name (immutable ids)."""
    begin, finish = parse_time(start), parse_time(end)
    if not begin or not finish:
        raise ValueError("log search alert without a usable time window")
    found: list[str] = []
    for row in run_query(clients, workspace, query, begin, finish):
        for key in ("_ResourceId", "ResourceId", "resourceId"):
            ref = parse_storage_id(str(row.get(key) or ""))
            if ref:
                found.append(ref.account_id.lower())
    return list(dict.fromkeys(found))


def _accounts(plan: Plan) -> list[str]:
    targets = [a.target for a in plan.actions if a.kind.startswith("storage.")]
    return targets or list(plan.signal.accounts) or list(plan.verdict.synthetic_accounts)


def by_account(summary: dict[str, Any]) -> dict[str, list[str]]:
    """IPs per account, for the incident comment."""
    out: dict[str, list[str]] = defaultdict(list)
    for caller in summary.get("callers", []):
        for account in caller["accounts"]:
            out[account].append(f"{caller['ip']} ({caller['auth']})")
    return dict(out)
