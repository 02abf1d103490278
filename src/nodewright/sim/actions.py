"""Actions: the API's unit of asynchronous work.

An action's progress is derived from time, so that every poll sees a plausible, monotonic value
without a thread per action; the state's ticker only decides *when* an action begins and ends.
Finished actions are kept forever because hcloud-go fails a whole wait when one id is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

ActionStatus = Literal["running", "success", "error"]


def iso(ts: float) -> str:
    """RFC 3339 with a ``+00:00`` offset, the form the real API uses."""
    return datetime.fromtimestamp(ts, UTC).replace(microsecond=0).isoformat()


@dataclass
class Action:
    id: int
    command: str
    project: str
    server_id: int
    started: float  # wall clock, shown to clients
    duration: float
    after: int | None = None  # id of an action that must finish before this one begins
    began: float | None = None  # monotonic time at which the work began
    status: ActionStatus = "running"
    finished: float | None = None  # wall clock
    error: dict[str, str] | None = None
    planned_error: dict[str, str] | None = None
    outcome: str | None = None  # fault-driven variations, e.g. "left_off"
    resources: list[dict[str, Any]] = field(default_factory=list)

    def progress(self, now: float) -> int:
        if self.status != "running":
            return 100
        if self.began is None or self.duration <= 0:
            return 0
        return max(0, min(99, int(100 * (now - self.began) / self.duration)))

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "command": self.command,
            "status": self.status,
            "progress": self.progress(now),
            "started": iso(self.started),
            "finished": iso(self.finished) if self.finished is not None else None,
            "resources": self.resources or [{"id": self.server_id, "type": "server"}],
            "error": self.error,
        }

    def to_state(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "command": self.command,
            "project": self.project,
            "server_id": self.server_id,
            "started": self.started,
            "duration": self.duration,
            "status": self.status,
            "finished": self.finished,
            "error": self.error,
            "resources": self.resources,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Action:
        action = cls(
            id=data["id"],
            command=data["command"],
            project=data["project"],
            server_id=data["server_id"],
            started=data["started"],
            duration=data["duration"],
        )
        # An action interrupted by a restart is reported as finished: the work it stood for is done
        # or abandoned, and a forever-running action would lock its server.
        action.status = data["status"] if data["status"] != "running" else "success"
        action.finished = data["finished"] if data["finished"] is not None else data["started"]
        action.error = data["error"]
        action.resources = list(data.get("resources", []))
        return action
