"""Resource Graph's per-user query quota (guidance-for-throttled-requests.md: e.g. 15 per 5 s)."""

from __future__ import annotations

import threading
import time


class Quota:
    """Per caller: `quota` queries per `window` seconds, the window starting at its first query."""

    def __init__(self, quota: int = 15, window: float = 5.0) -> None:
        self.quota, self.window = quota, window
        self._lock = threading.Lock()
        self._used: dict[str, tuple[float, int]] = {}

    def take(self, caller: str) -> tuple[bool, int, float]:
        """(allowed, remaining after this query, seconds until the window resets)."""
        now = time.monotonic()
        with self._lock:
            start, used = self._used.get(caller, (now, 0))
            if now - start >= self.window:
                start, used = now, 0
            allowed = used < self.quota
            used += allowed
            self._used[caller] = (start, used)
            return allowed, self.quota - used, max(0.0, start + self.window - now)
