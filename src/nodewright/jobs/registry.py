"""Handlers registered by job kind, with per-kind retry policy, and periodic schedules.

A handler is a plain function ``(ctx: JobContext) -> dict | None`` living at module level, so a
process-mode worker can import it again in a child process by its dotted name.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodewright.jobs.backoff import DEFAULT_BASE_SECONDS, DEFAULT_CAP_SECONDS

if TYPE_CHECKING:
    from nodewright.jobs.context import JobContext

Handler = Callable[["JobContext"], "Mapping[str, Any] | None"]

DEFAULT_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: Handler
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout_seconds: float | None = None
    backoff_base: float = DEFAULT_BASE_SECONDS
    backoff_cap: float = DEFAULT_CAP_SECONDS

    @property
    def handler_path(self) -> str:
        return f"{self.handler.__module__}:{self.handler.__qualname__}"


@dataclass(frozen=True)
class PeriodicSchedule:
    """Enqueue ``kind`` every ``interval_seconds``; at most one pending instance across all workers."""

    kind: str
    interval_seconds: float
    args: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 0

    @property
    def dedup_key(self) -> str:
        return f"periodic:{self.kind}"


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: dict[str, JobKind] = {}
        self._periodic: dict[str, PeriodicSchedule] = {}

    def register(
        self,
        kind: str,
        handler: Handler,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout_seconds: float | None = None,
        backoff_base: float = DEFAULT_BASE_SECONDS,
        backoff_cap: float = DEFAULT_CAP_SECONDS,
    ) -> JobKind:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        spec = JobKind(kind, handler, max_attempts, timeout_seconds, backoff_base, backoff_cap)
        with self._lock:
            self._kinds[kind] = spec
        return spec

    def handler(self, kind: str, **options: Any) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register`."""

        def decorate(fn: Handler) -> Handler:
            self.register(kind, fn, **options)
            return fn

        return decorate

    def periodic(
        self, kind: str, interval_seconds: float, *, args: Mapping[str, Any] | None = None, priority: int = 0
    ) -> PeriodicSchedule:
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be positive")
        schedule = PeriodicSchedule(kind, interval_seconds, dict(args or {}), priority)
        with self._lock:
            self._periodic[kind] = schedule
        return schedule

    def get(self, kind: str) -> JobKind | None:
        return self._kinds.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    def schedules(self) -> list[PeriodicSchedule]:
        return list(self._periodic.values())

    def max_attempts_for(self, kind: str) -> int:
        spec = self._kinds.get(kind)
        return spec.max_attempts if spec else DEFAULT_MAX_ATTEMPTS


registry = Registry()
"""The process-wide registry: modules that define handlers register into it at import time."""


def job_handler(kind: str, **options: Any) -> Callable[[Handler], Handler]:
    """``@job_handler("node_provision", max_attempts=3)`` registers into the process-wide registry."""
    return registry.handler(kind, **options)


def load_handler(path: str) -> Handler:
    """Import ``module:qualname`` (as produced by ``JobKind.handler_path``) in a child process."""
    module_name, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{path} is not callable")
    handler: Handler = target
    return handler


# Modules whose import registers the product's handlers into ``registry``; a worker imports them all
# before it claims anything, so every process knows every kind. Missing ones are skipped (a domain
# package that is not built yet).
HANDLER_MODULES: tuple[str, ...] = (
    "nodewright.jobs.builtin",
    "nodewright.nodes.handlers",
    "nodewright.nodes.reconcile",
    "nodewright.nodes.idempotency",
    "nodewright.nodes.snapshots",
    "nodewright.watching.sweep",
    "nodewright.watching.remediate",
    "nodewright.alerts.delivery_job",
)


def load_handler_modules(modules: tuple[str, ...] = HANDLER_MODULES) -> list[str]:
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise
            continue
        loaded.append(name)
    return loaded
