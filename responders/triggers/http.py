"""HTTP triggers: the webhook for Sentinel, Azure Monitor and Event Grid/CloudEvents, and the playbook."""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("alerts")
@bp.route(route="alerts", methods=["POST", "OPTIONS"], auth_level=func.AuthLevel.FUNCTION)
def alerts(req: func.HttpRequest) -> func.HttpResponse:
    """Sentinel incident/alert, Azure Monitor alert, Event Grid or CloudEvents events (also arrays)."""
    from responders.triggers.handlers import handle_alerts

    return handle_alerts(req)


@bp.function_name("evidence")
@bp.route(route="evidence/{incident}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def evidence(req: func.HttpRequest) -> func.HttpResponse:
    """The audit evidence pack of an incident (?format=md|json)."""
    from responders.triggers.handlers import handle_evidence

    return handle_evidence(req)


@bp.function_name("playbook")
@bp.route(route="playbook", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def playbook(req: func.HttpRequest) -> func.HttpResponse:
    """Manual containment of a resource id or a captured event; dry-run unless asked to execute."""
    from responders.triggers.handlers import handle_playbook

    return handle_playbook(req)
