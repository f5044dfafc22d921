"""ARM Microsoft.Insights diagnostic settings of a storage account's blob service (list only), in the
shape of the azure-rest-api-specs 2021-05-01-preview listDiagnosticSettings example
(tests/data/azure/arm_diagnostic_settings_list_example.json). Seeded per account in the tenant file
as `diagnosticSettings`: [{"name": ..., "properties": {"workspaceId": ..., "logs": [...]}}]."""

from __future__ import annotations

import copy
from typing import Any

from rehearsal.simulator.routing import ARM, Call, Context, Reply, Route, route
from rehearsal.simulator.storage import ACCOUNT, _find

TYPE = "Microsoft.Insights/diagnosticSettings"
BLOB_SETTINGS = ACCOUNT + r"/blobServices/default/providers/Microsoft\.Insights/diagnosticSettings"


def setting_view(account: dict[str, Any], seed: dict[str, Any]) -> dict[str, Any]:
    name = str(seed.get("name", "setting"))
    properties = copy.deepcopy(seed.get("properties") or {})
    properties.setdefault("workspaceId", "")
    properties.setdefault("metrics", [])
    properties.setdefault("logs", [])
    return {
        "id": f"{account['id']}/blobServices/default/providers/microsoft.insights/diagnosticSettings/{name}",
        "type": TYPE,
        "name": name,
        "properties": properties,
    }


def list_blob_settings(ctx: Context, call: Call) -> Reply:
    with ctx.state.lock:
        account = _find(ctx, call)
        if isinstance(account, Reply):
            return account
        seeds = account.get("diagnosticSettings") or []
        return Reply(200, {"value": [setting_view(account, s) for s in seeds]})


ROUTES: list[Route] = [route("GET", BLOB_SETTINGS, list_blob_settings, ARM)]
