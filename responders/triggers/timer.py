"""Timer trigger: the periodic sweep (schedule in the RESPONDER_SWEEP_SCHEDULE app setting)."""

from __future__ import annotations

import logging
import os
import re

import azure.functions as func

DEFAULT_SCHEDULE = "0 */15 * * * *"  # NCRONTAB with seconds: every 15 minutes
_FIELD = re.compile(r"^[0-9*/,\-A-Za-z]+$")
log = logging.getLogger("responders.triggers")


def sweep_schedule(env: dict[str, str] | None = None) -> str:
    """The schedule from RESPONDER_SWEEP_SCHEDULE (six NCRONTAB fields), else every 15 minutes. A
    malformed value is logged and the default kept: a typo must not stop the event functions, which
    the host indexes with this one."""
    raw = ((env if env is not None else os.environ).get("RESPONDER_SWEEP_SCHEDULE") or "").strip()
    if not raw:
        return DEFAULT_SCHEDULE
    fields = raw.split()
    if len(fields) != 6 or not all(_FIELD.fullmatch(f) for f in fields):
        log.error("RESPONDER_SWEEP_SCHEDULE %r is not six NCRONTAB fields; sweeping every 15 minutes", raw)
        return DEFAULT_SCHEDULE
    return raw


bp = func.Blueprint()


@bp.function_name("sweep_timer")
@bp.timer_trigger(arg_name="timer", schedule=sweep_schedule(), run_on_startup=False, use_monitor=True)
@bp.retry(strategy="exponential_backoff", max_retry_count="3", minimum_interval="00:00:30",
          maximum_interval="00:05:00")  # fmt: skip
def sweep_timer(timer: func.TimerRequest) -> None:
    """Returns once the sweep is recorded; raises when it is incomplete, so the host runs it again."""
    from responders.triggers.handlers import handle_sweep

    handle_sweep(past_due=timer.past_due)
