"""Health at a glance for the dashboard: the badge of a node (state, colour class, the title that says
what failed and since when) and the marker of a maintenance pause covering it.

Computed here rather than in the templates so that the list page, the node page and the live list
(``/nodes/live``) say the same thing. Every string from a node (check names, details) goes into the
result as plain text: the templates escape it (autoescape), the live list's script sets it with
``textContent`` and ``title``, never as HTML.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from nodewright.db.models import MaintenanceWindow
from nodewright.watching.service import HealthFilter, HealthView

HEALTH_FILTERS = [h.value for h in HealthFilter]
MAX_TITLE_FAILURES = 3


def when(moment: dt.datetime | None) -> str:
    """A moment as the dashboard writes it (UTC, to the second); an empty string for none."""
    if moment is None:
        return ""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def failures_text(failures: list[dict[str, Any]]) -> str:
    """``name: detail; name: detail`` for the first few failed checks (plain text, unescaped)."""
    parts = [f"{f.get('name', '?')}: {f.get('detail', '')}" for f in failures[:MAX_TITLE_FAILURES]]
    more = len(failures) - MAX_TITLE_FAILURES
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def pause_title(window: MaintenanceWindow) -> str:
    target = f"node {window.node_id}" if window.node_id is not None else selector_text(window.selector)
    return (
        f"maintenance pause #{window.id} ({target}) until {when(window.ends_at)} by "
        f"{window.created_by}: {window.reason}"
    )


def selector_text(selector: dict[str, str] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((selector or {}).items()))


@dataclass(frozen=True)
class Badge:
    state: str  # passing | failing | degraded | unknown | unwatched
    title: str
    paused: bool
    pause_title: str

    def as_json(self) -> dict[str, Any]:
        return {"state": self.state, "title": self.title, "paused": self.paused, "pause": self.pause_title}


def badge(status: str, view: HealthView) -> Badge:
    """The badge of a node of ``status`` whose watcher's view is ``view``.

    The title is stable between checks while the state does not change (no "last checked at"),
    so that the live list sends a node again only when something an operator would see changed."""
    state = view.health
    if state == "degraded":
        since = view.degraded_since or view.failing_since
        title = f"degraded since {when(since)}" if since else "degraded"
        if view.last_failure:
            title += f": {failures_text(view.last_failure)}"
    elif state == "failing":
        title = f"failing since {when(view.failing_since)}" if view.failing_since else "failing"
        title += f" ({view.consecutive_failures} in a row)"
        if view.last_failure:
            title += f": {failures_text(view.last_failure)}"
    elif state == "passing":
        title = "passing: the last check passed"
    elif state == "unknown":
        title = "not checked yet"
    else:
        title = f"not watched while the node is {status}"
    window = view.maintenance
    return Badge(
        state=state,
        title=title,
        paused=window is not None,
        pause_title=pause_title(window) if window is not None else "",
    )
