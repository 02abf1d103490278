"""Times as an operator reads them in a table: relative (``3m ago``, ``in 2h``), the absolute UTC
time in ``-o json``/``yaml`` and in ``show``."""

from __future__ import annotations

import datetime as dt


def parse(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None
    return when


def relative(value: object, now: dt.datetime | None = None) -> str:
    """``12s ago``, ``5m ago``, ``3h ago``, ``2d ago`` (or ``in ...`` for a time ahead); ``-`` for none."""
    when = parse(value)
    if when is None:
        return "-"
    try:
        seconds = ((now or dt.datetime.now(dt.UTC)) - when).total_seconds()
    except OverflowError:
        return "-"
    ahead, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            amount = f"{int(seconds // size)}{unit}"
            break
    else:
        amount = f"{int(seconds)}s"
    return f"in {amount}" if ahead else f"{amount} ago"


def absolute(value: object) -> str:
    when = parse(value)
    return "-" if when is None else when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
