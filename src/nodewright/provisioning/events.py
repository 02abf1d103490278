"""ansible-runner events -> job log lines, the play recap, and the first failing task.

Every string that leaves here is redacted (a task that failed while templating a secret may echo it)
and capped at ``EVENT_TEXT_CAP`` characters, the cut marked (``nodewright.output_limits``): an event
can carry a module's whole output, and only this much of it is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nodewright.output_limits import EVENT_RESULT_CAP, MARKER_PREFIX, TEXT_WINDOW, cap_text
from nodewright.security.redaction import redact, redact_text

LogSink = Callable[[str, str, Mapping[str, Any]], object]
"""``(level, message, data)``: what the job log receives."""


@dataclass(frozen=True)
class FailedTask:
    task: str
    host: str
    message: str
    unreachable: bool


@dataclass
class EventDigest:
    """Folds the event stream into what the job keeps."""

    sink: LogSink
    recap: dict[str, dict[str, int]] = field(default_factory=dict)
    failed: FailedTask | None = None
    tasks: int = 0
    last_task: str = ""

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = str(event.get("event", ""))
        data = event.get("event_data") or {}
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, data)
        return False  # ansible-runner writes no job_events/*.json files


def _short(value: Any) -> str:
    text = str(value)
    window = text[:TEXT_WINDOW]  # redacting all of a flood would cost what the cap saves
    return cap_text(redact_text(window).strip(), beyond=len(text) - len(window))


def _result_message(res: Mapping[str, Any]) -> str:
    if res.get("censored"):
        return "output hidden (no_log)"
    # A module that printed no result (its output was not JSON, or was cut) fails as "MODULE
    # FAILURE"; what it printed instead is the only clue.
    parts = [res.get("msg"), res.get("stderr"), res.get("module_stderr"), res.get("module_stdout")]
    message = "; ".join(_short(p) for p in parts if p)
    if not message and res.get("rc") is not None:
        message = f"exit status {res['rc']}"
    return message or "failed"


def _play(digest: EventDigest, data: Mapping[str, Any]) -> None:
    digest.sink("info", f"play: {_short(data.get('play', ''))}", {"ansible": "play"})


def _task(digest: EventDigest, data: Mapping[str, Any]) -> None:
    digest.tasks += 1
    digest.last_task = _short(data.get("task", ""))
    digest.sink("info", f"task: {digest.last_task}", {"ansible": "task"})


def _ok(digest: EventDigest, data: Mapping[str, Any]) -> None:
    res = data.get("res") or {}
    status = "changed" if res.get("changed") else "ok"
    digest.sink(
        "info", f"{status}: {_short(data.get('task', ''))}", {"ansible": status, "host": data.get("host")}
    )


def _skipped(digest: EventDigest, data: Mapping[str, Any]) -> None:
    digest.sink("info", f"skipped: {_short(data.get('task', ''))}", {"ansible": "skipped"})


RESULT_DROPPED = (
    f"{MARKER_PREFIX}the task's result was over {EVENT_RESULT_CAP} characters and was dropped] "
    "(a node or module printing without end?)"
)


def _failed(digest: EventDigest, data: Mapping[str, Any], *, unreachable: bool = False) -> None:
    res = data.get("res") or {}
    task = _short(data.get("task", ""))
    # ansible-runner's callback sends an empty result in place of one over MAX_EVENT_RES.
    message = _result_message(res) if res or "res" not in data else RESULT_DROPPED
    if data.get("ignore_errors"):
        digest.sink("info", f"failed (ignored): {task}: {message}", {"ansible": "ignored"})
        return
    label = "unreachable" if unreachable else "failed"
    digest.sink("error", f"{label}: {task}: {message}", {"ansible": label, "host": data.get("host")})
    if digest.failed is None:
        digest.failed = FailedTask(task, str(data.get("host", "")), message, unreachable)


def _unreachable(digest: EventDigest, data: Mapping[str, Any]) -> None:
    _failed(digest, data, unreachable=True)


def _stats(digest: EventDigest, data: Mapping[str, Any]) -> None:
    recap: dict[str, dict[str, int]] = {}
    for key in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored"):
        for host, count in (data.get(key) or {}).items():
            recap.setdefault(str(host), {})[key] = int(count)
    digest.recap = redact(recap)
    summary = ", ".join(
        f"{host}: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        for host, counts in recap.items()
    )
    digest.sink("info", f"recap: {summary or 'no hosts'}", {"ansible": "recap", "recap": digest.recap})


_HANDLERS: dict[str, Callable[[EventDigest, Mapping[str, Any]], None]] = {
    "playbook_on_play_start": _play,
    "playbook_on_task_start": _task,
    "runner_on_ok": _ok,
    "runner_on_skipped": _skipped,
    "runner_on_failed": _failed,
    "runner_on_unreachable": _unreachable,
    "playbook_on_stats": _stats,
}
