"""ISO-8601 handling for the timestamps Azure sends (7 fractional digits, Z or +00:00)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: object) -> datetime | None:
    """Parse an Azure timestamp to an aware UTC datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    text = _FRACTION.sub(r"\1", value.strip().replace("Z", "+00:00"))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def is_after(later: object, earlier: object) -> bool:
    """True when both parse and `later` is strictly after `earlier`."""
    a, b = parse_time(later), parse_time(earlier)
    return bool(a and b and a > b)
