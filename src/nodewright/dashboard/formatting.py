"""How the dashboard writes values for people: money with two decimals and its currency, moments
as "3 min ago" with the exact UTC time on hover. Registered as Jinja filters (``money``, ``ago``)
so that every page writes them the same way.

Prices are stored as the provider sends them (``"4.5101000000000000"``, a decimal string): they are
rounded for display only, half up to the cent, never truncated."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from markupsafe import Markup, escape

from nodewright.db.types import utcnow

CENT = Decimal("0.01")
NO_VALUE = "—"


def to_decimal(value: str | Decimal | float | int | None) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def money(value: str | Decimal | float | int | None, currency: str | None = "EUR") -> str:
    """``4.51 EUR``; a dash for an unknown price."""
    number = to_decimal(value)
    if number is None:
        return NO_VALUE
    text = f"{number.quantize(CENT, rounding=ROUND_HALF_UP):,.2f}"
    return f"{text} {currency}" if currency else text


def total(values: Iterable[str | Decimal | None]) -> Decimal:
    """The sum of the known prices among ``values`` (unknown ones count as nothing)."""
    return sum((n for n in (to_decimal(v) for v in values) if n is not None), Decimal(0))


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'}"


def relative(moment: dt.datetime, now: dt.datetime | None = None) -> str:
    """``just now``, ``45 s ago``, ``3 min ago``, ``2 h ago``, ``4 days ago``; ``in 3 min`` ahead."""
    now = now or utcnow()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    seconds = (now - moment).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    if seconds < 60:
        text = f"{int(seconds)} s"
    elif seconds < 3600:
        text = f"{int(seconds // 60)} min"
    elif seconds < 86400:
        text = f"{int(seconds // 3600)} h"
    elif seconds < 86400 * 60:
        text = _plural(int(seconds // 86400), "day")
    else:
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%d")
    return f"in {text}" if ahead else f"{text} ago"


def absolute(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def clock(moment: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """``21:30 UTC`` today, ``2026-12-08 09:00 UTC`` on another day."""
    if moment is None:
        return NO_VALUE
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    today = (now or utcnow()).astimezone(dt.UTC).date()
    return moment.strftime("%H:%M UTC" if moment.date() == today else "%Y-%m-%d %H:%M UTC")


def ago(moment: dt.datetime | None, empty: str = NO_VALUE) -> Markup:
    """``<time datetime="…" title="2026-12-07 20:14:47 UTC">3 min ago</time>``."""
    if moment is None:
        return escape(empty)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    iso = moment.astimezone(dt.UTC).isoformat(timespec="seconds")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, absolute(moment), relative(moment))
