"""Fault injection: the failures that real Hetzner produces rarely but the product must survive.

A fault matches requests by method and path glob and fires on the nth matching call or with a
probability, a limited number of times. What it does is its ``kind``; kinds that must act on the
outcome of an operation (``action_error``, ``left_off``, ``lost_response``) are carried to the
handler rather than short-circuiting the request.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from nodewright.sim.errors import DEFAULT_MESSAGES, status_for

FaultKind = Literal["error", "non_json", "lost_response", "slow", "action_error", "left_off"]
KINDS: tuple[str, ...] = ("error", "non_json", "lost_response", "slow", "action_error", "left_off")


class FaultSpecError(ValueError):
    pass


@dataclass
class Fault:
    id: int
    kind: FaultKind
    method: str = "*"
    path: str = "*"
    nth: int | None = None
    probability: float | None = None
    count: int | None = 1  # None: fire forever
    code: str | None = None
    message: str | None = None
    details: dict[str, Any] | None = None
    status: int | None = None
    delay: float = 0.0
    hits: int = 0
    fired: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method == method) and fnmatch.fnmatchcase(path, self.path)

    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count

    def error_status(self) -> int:
        if self.status is not None:
            return self.status
        if self.kind == "non_json":
            return 502
        return status_for(self.code or "server_error")

    def error_body(self) -> dict[str, Any]:
        code = self.code or "server_error"
        return {
            "error": {
                "code": code,
                "message": self.message or DEFAULT_MESSAGES.get(code, code),
                "details": self.details,
            }
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "nth": self.nth,
            "probability": self.probability,
            "count": self.count,
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "status": self.status,
            "delay": self.delay,
            "hits": self.hits,
            "fired": self.fired,
        }


def parse_fault(spec: dict[str, Any], fault_id: int) -> Fault:
    """Validate a control-API fault spec; errors name the offending field."""
    kind = spec.get("kind", "error")
    if kind not in KINDS:
        raise FaultSpecError(f"kind must be one of {', '.join(KINDS)}")
    # Outcome faults only mean something for a create: left unscoped, they would be spent on the
    # first request of any kind (the CLI looks up images and keys before it creates).
    outcome = kind in {"action_error", "left_off"}
    method = str(spec.get("method", "POST" if outcome else "*")).upper()
    path = str(spec.get("path", "/v1/servers" if outcome else "*"))
    nth = spec.get("nth")
    if nth is not None and (not isinstance(nth, int) or nth < 1):
        raise FaultSpecError("nth must be a positive integer")
    probability = spec.get("probability")
    if probability is not None and (not isinstance(probability, int | float) or not 0 <= probability <= 1):
        raise FaultSpecError("probability must be between 0 and 1")
    count = spec.get("count", 1)
    if count is not None and (not isinstance(count, int) or count < 1):
        raise FaultSpecError("count must be a positive integer or null (forever)")
    code = spec.get("code")
    if kind == "error" and not code:
        raise FaultSpecError("an error fault needs a code")
    status = spec.get("status")
    if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
        raise FaultSpecError("status must be an HTTP error status")
    if kind == "non_json" and status is None:
        status = 502
    delay = spec.get("delay", 0.0)
    if not isinstance(delay, int | float) or delay < 0:
        raise FaultSpecError("delay must be a non-negative number of seconds")
    details = spec.get("details")
    if details is not None and not isinstance(details, dict):
        raise FaultSpecError("details must be an object")
    fault = Fault(
        id=fault_id,
        kind=kind,
        method=method,
        path=path,
        nth=nth,
        probability=float(probability) if probability is not None else None,
        count=count,
        code=code,
        message=spec.get("message"),
        details=details,
        status=status,
        delay=float(delay),
    )
    if "seed" in spec:
        fault.rng.seed(spec["seed"])
    return fault


class FaultRegistry:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._next_id = 1
        self._lock = threading.Lock()

    def add(self, spec: dict[str, Any]) -> Fault:
        with self._lock:
            fault = parse_fault(spec, self._next_id)
            self._next_id += 1
            self._faults.append(fault)
            return fault

    def all(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def refund(self, fault: Fault) -> None:
        """Give back a firing that had nothing to act on (the operation it was to change failed)."""
        with self._lock:
            fault.fired = max(0, fault.fired - 1)

    def fire(self, method: str, path: str) -> list[Fault]:
        """Faults that fire for this request, in the order they were added."""
        fired: list[Fault] = []
        with self._lock:
            if not self._faults:
                return fired
            for fault in self._faults:
                if fault.exhausted() or not fault.matches(method, path):
                    continue
                fault.hits += 1
                if fault.nth is not None and fault.hits < fault.nth:
                    continue
                if fault.probability is not None and fault.rng.random() >= fault.probability:
                    continue
                fault.fired += 1
                fired.append(fault)
        return fired
