"""Pagination, sorting and query-parameter parsing shared by every list endpoint.

hcloud-python builds ``Pagination(**meta["pagination"])``, so the meta object must have exactly
the six documented keys: one more or one fewer and the SDK raises.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from nodewright.sim.errors import invalid_input

T = TypeVar("T")
MAX_PER_PAGE = 50
DEFAULT_PER_PAGE = 25


def int_param(values: Sequence[str], name: str, default: int, minimum: int = 1) -> int:
    if not values:
        return default
    raw = values[-1]
    try:
        value = int(raw)
    except ValueError:
        raise invalid_input({name: [f"must be an integer, got '{raw}'"]}) from None
    if value < minimum:
        raise invalid_input({name: [f"must be at least {minimum}"]})
    return value


def bool_param(values: Sequence[str], name: str, default: bool) -> bool:
    if not values:
        return default
    raw = values[-1].lower()
    if raw in {"true", "1"}:
        return True
    if raw in {"false", "0"}:
        return False
    raise invalid_input({name: ["must be true or false"]})


def paginate(items: Sequence[T], query: dict[str, list[str]]) -> tuple[list[T], dict[str, Any]]:
    page = int_param(query.get("page", []), "page", 1)
    # The real API caps per_page at 50; SDKs never ask for more, so clamp rather than reject.
    per_page = min(int_param(query.get("per_page", []), "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
    total = len(items)
    last_page = max(1, math.ceil(total / per_page))
    start = (page - 1) * per_page
    meta = {
        "pagination": {
            "page": page,
            "per_page": per_page,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last_page else None,
            "last_page": last_page,
            "total_entries": total,
        }
    }
    return list(items[start : start + per_page]), meta


def sort_items(
    items: list[T],
    sorts: Sequence[str],
    keys: dict[str, Callable[[T], Any]],
) -> list[T]:
    """Apply ``field[:asc|:desc]`` sorts; the first one given is the most significant."""
    result = list(items)
    for spec in reversed(list(sorts)):
        name, _, direction = spec.partition(":")
        if name not in keys or direction not in {"", "asc", "desc"}:
            raise invalid_input({"sort": [f"invalid sort '{spec}'"]})
        result.sort(key=keys[name], reverse=direction == "desc")
    return result
