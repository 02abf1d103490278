"""A node's evidence (provider calls, actions, host key, Ansible recap, checks) as something to read:
nested sections, lists of records as small tables, Unix timestamps as moments, durations in
seconds. The evidence is free-form JSON written by the stages; this only changes how it is shown.

Every string stays plain text: the template escapes it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

MAX_TABLE_COLUMNS = 8
MAX_ITEMS = 200
# Unix times between 2001 and 2096: a float there under a key that names a moment is one.
EPOCH_RANGE = (1_000_000_000, 4_000_000_000)
MOMENT_HINTS = ("at", "time", "started", "finished", "ended", "when", "ts", "timestamp", "created")


@dataclass
class Item:
    """One value to show: ``kind`` is text, moment, seconds, empty, fields (label/value pairs),
    table (a list of records) or items (a list of values)."""

    kind: str
    text: str = ""
    moment: dt.datetime | None = None
    fields: list[tuple[str, Item]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[Item]] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    more: int = 0


def _label(key: str) -> str:
    return key.replace("_", " ")


def _is_moment(key: str, value: float) -> bool:
    words = key.lower().replace("-", "_").split("_")
    return EPOCH_RANGE[0] <= value <= EPOCH_RANGE[1] and any(w in MOMENT_HINTS for w in words)


def readable(value: Any, key: str = "") -> Item:
    if value is None or value == "" or value == [] or value == {}:
        return Item("empty", text="—")
    if isinstance(value, bool):
        return Item("text", text="yes" if value else "no")
    if isinstance(value, int | float):
        if _is_moment(key, float(value)):
            return Item("moment", moment=dt.datetime.fromtimestamp(float(value), tz=dt.UTC))
        if key.lower() in ("seconds", "duration", "elapsed") or key.lower().endswith("_seconds"):
            return Item("seconds", text=f"{float(value):.1f} s")
        return Item("text", text=str(value))
    if isinstance(value, str):
        if key.lower().endswith("_at") or key.lower() in ("at", "started", "finished"):
            try:
                return Item("moment", moment=dt.datetime.fromisoformat(value))
            except ValueError:
                pass
        return Item("text", text=value)
    if isinstance(value, dict):
        return Item("fields", fields=[(_label(str(k)), readable(v, str(k))) for k, v in value.items()])
    if isinstance(value, list | tuple):
        shown = list(value)[:MAX_ITEMS]
        more = max(0, len(value) - MAX_ITEMS)
        if shown and all(isinstance(v, dict) for v in shown):
            columns: list[str] = []
            for record in shown:
                for k in record:
                    if k not in columns:
                        columns.append(str(k))
            flat = all(not isinstance(v, dict | list) for record in shown for v in record.values())
            if len(columns) <= MAX_TABLE_COLUMNS and flat:
                rows = [[readable(record.get(c), c) for c in columns] for record in shown]
                return Item("table", columns=[_label(c) for c in columns], rows=rows, more=more)
        return Item("items", items=[readable(v, key) for v in shown], more=more)
    return Item("text", text=str(value))


def sections(evidence: dict[str, Any] | None) -> list[tuple[str, Item]]:
    """The top-level keys, each a section to open (stages first: they sum the run up)."""
    data = dict(evidence or {})
    order = sorted(data, key=lambda k: (k != "stages", k))
    return [(_label(k), readable(data[k], k)) for k in order]
