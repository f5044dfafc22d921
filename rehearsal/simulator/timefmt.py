"""Timestamps in the formats Azure sends, and a tolerant parser for the ones clients send."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_FRACTION = re.compile(r"\.(\d+)")
_DURATION = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


def arm_time(moment: datetime) -> str:
    """ARM's 7-digit fractional UTC form, e.g. 2021-03-18T04:42:22.4322836Z."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z"


def parse_time(text: str) -> datetime:
    """Parse ISO 8601 with any number of fractional digits; naive values are taken as UTC."""
    cleaned = text.strip().replace("z", "Z")
    cleaned = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], cleaned, count=1)
    if cleaned.endswith("Z"):
        cleaned = cleaned[:-1] + "+00:00"
    moment = datetime.fromisoformat(cleaned)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_duration(text: str) -> timedelta:
    """ISO 8601 duration (PnWnDTnHnMnS), as Log Analytics timespans use."""
    match = _DURATION.match(text.strip())
    if not match or text.strip().upper() in ("P", "PT"):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return timedelta(
        weeks=parts.get("w", 0),
        days=parts.get("d", 0),
        hours=parts.get("h", 0),
        minutes=parts.get("m", 0),
        seconds=parts.get("s", 0),
    )


def parse_interval(text: str, now: datetime) -> tuple[datetime, datetime]:
    """An ISO 8601 interval: duration (ending now), start/end, start/duration or duration/end."""
    if "/" not in text:
        return now - parse_duration(text), now
    left, right = (part.strip() for part in text.split("/", 1))
    if left.upper().startswith("P"):
        end = parse_time(right)
        return end - parse_duration(left), end
    start = parse_time(left)
    if right.upper().startswith("P"):
        return start, start + parse_duration(right)
    return start, parse_time(right)
