"""Event Grid trigger (Event Grid schema, one event per invocation)."""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("eventgrid_trigger")
@bp.event_grid_trigger(arg_name="event")
def eventgrid_trigger(event: func.EventGridEvent) -> None:
    """Returns normally once the ledger holds the outcome; raises so Event Grid redelivers."""
    from responders.triggers.handlers import handle_eventgrid

    handle_eventgrid(event)
