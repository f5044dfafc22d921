"""An Event Grid custom topic's publish API (POST /api/events, aeg-sas-key), delivering each event to
a subscriber as Event Grid does: one event per delivery, retried when the subscriber fails."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from typing import Any

from rehearsal.simulator.routing import Reply

logger = logging.getLogger(__name__)
PATH = "/api/events"
MAX_BATCH_BYTES = 1_048_576  # Event Grid takes at most 1 MB per publish request
ATTEMPTS = 3
EVENTGRID_REQUIRED = ("id", "subject", "eventType", "eventTime")  # dataVersion is optional
CLOUD_REQUIRED = ("id", "source", "type", "specversion")


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message}})


class Topic:
    """The key, the subscriber and the delivery loop of one simulated custom topic."""

    def __init__(self) -> None:
        self.key = secrets.token_urlsafe(32)
        self.subscriber: Callable[[dict[str, Any]], None] | None = None
        self.delivered = 0
        self.failed = 0

    def publish(self, headers: dict[str, str], body: Any, raw_size: int) -> Reply:
        given = {k.lower(): v for k, v in headers.items()}.get("aeg-sas-key", "")
        if not given or not hmac.compare_digest(given.encode(), self.key.encode()):
            return _error(401, "Unauthorized", "The request authorization key is not authorized.")
        if raw_size > MAX_BATCH_BYTES:
            return _error(413, "RequestEntityTooLarge", "The maximum size for a publish request is 1 MB.")
        if not isinstance(body, list) or not all(isinstance(e, dict) for e in body):
            return _error(400, "BadRequest", "The request body must be a JSON array of events.")
        for event in body:
            required = CLOUD_REQUIRED if "specversion" in event else EVENTGRID_REQUIRED
            missing = [f for f in required if not isinstance(event.get(f), str) or not event.get(f)]
            if missing:
                return _error(400, "BadRequest", f"An event is missing required properties: {missing}.")
        for event in body:
            self._deliver(event)
        return Reply(200, None)

    def _deliver(self, event: dict[str, Any]) -> None:
        if self.subscriber is None:
            return
        for attempt in range(1, ATTEMPTS + 1):
            try:
                self.subscriber(event)
                self.delivered += 1
                return
            except Exception as exc:  # the subscriber failed: Event Grid retries, then dead-letters
                logger.warning("topic delivery attempt %d failed: %s", attempt, type(exc).__name__)
        self.failed += 1
