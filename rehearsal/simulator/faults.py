"""Fault injection: latency, error statuses with Retry-After, dropped connections; seeded and counted."""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass
from typing import Any

_KEYS = {"method", "path", "latency_ms", "status", "retry_after", "drop", "rate", "count", "after"}


@dataclass
class FaultRule:
    """One rule; `path` is a regex searched (case-insensitively) in the normalized path."""

    method: str
    path: re.Pattern[str]
    latency_ms: int = 0
    status: int | None = None
    retry_after: float | None = None
    drop: bool = False
    rate: float = 1.0
    count: int | None = None
    after: bool = False
    fired: int = 0

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> FaultRule:
        """Validate a rule dict so that a typo fails loudly instead of silently never firing."""
        if not isinstance(raw, dict):
            raise ValueError(f"a fault rule must be an object, not {raw!r}")
        if set(raw) - _KEYS:
            raise ValueError(f"unknown fault rule fields: {sorted(set(raw) - _KEYS)}")
        status = raw.get("status")
        if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
            raise ValueError(f"fault status must be an int 400..599, not {status!r}")
        rate = float(raw.get("rate", 1.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError("fault rate must be within 0..1")
        try:
            pattern = re.compile(str(raw.get("path", "")), re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"bad fault path regex: {exc}") from exc
        count = raw.get("count")
        return cls(
            method=str(raw.get("method", "*")).upper(),
            path=pattern,
            latency_ms=int(raw.get("latency_ms", 0)),
            status=status,
            retry_after=raw.get("retry_after"),
            drop=bool(raw.get("drop", False)),
            rate=rate,
            count=None if count is None else int(count),
            after=bool(raw.get("after", False)),
        )

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method.upper()) and self.path.search(path) is not None

    @property
    def fails(self) -> bool:
        return self.drop or self.status is not None


@dataclass(frozen=True)
class Fault:
    """The failure chosen for one request."""

    status: int | None
    drop: bool
    retry_after: float | None
    after: bool


class FaultPlan:
    """Decides, before a request is handled, how long to delay it and whether it fails."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._rng = random.Random(seed)

    def set(self, rules: list[dict[str, Any]], seed: int | None = None) -> None:
        """Replace all rules (an empty list clears them); a seed restarts the random sequence."""
        parsed = [FaultRule.parse(r) for r in rules]
        with self._lock:
            self._rules = parsed
            if seed is not None:
                self._rng = random.Random(seed)

    def decide(self, method: str, path: str) -> tuple[float, Fault | None]:
        """Seconds of latency (max over matching rules) and the first failing rule that fires."""
        latency, chosen = 0.0, None
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path):
                    continue
                latency = max(latency, rule.latency_ms / 1000)
                if chosen or not rule.fails or (rule.count is not None and rule.fired >= rule.count):
                    continue
                if rule.rate >= 1.0 or self._rng.random() < rule.rate:
                    rule.fired += 1
                    chosen = Fault(rule.status, rule.drop, rule.retry_after, rule.after)
        return latency, chosen
