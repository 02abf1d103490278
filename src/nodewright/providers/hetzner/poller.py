"""One action poller per connection and process: every in-flight action in one batched GET.

``GET /actions?id=1&id=2...`` answers for up to 50 actions at once, so fifty servers being created
together cost one poll per tick instead of fifty. The schedule learns: it keeps, per kind of wait
(e.g. "create:cx23:fsn1", create and start actions together), an average of how long such waits
took, sends the first poll when the wait is expected to be over, then polls at a short, slowly
growing interval until it is. A kind never seen starts at one second with the same backoff. What
is learned is written to the connection row, so other processes (and restarts) start from it.
Waits that are not due yet ride along in a due wait's batch for free; those due within the next
fast interval count it as their own poll, so that waits registered moments apart share one
schedule instead of setting off one poll each.

A failed batch is handed to every waiter of that batch as the mapped ``ProviderError``; none of them
is retried here: the job engine retries, and the next attempt resumes from the checkpointed action
ids.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nodewright.providers.errors import ErrorCode, ProviderError
from nodewright.providers.hetzner.errors import map_action_error
from nodewright.providers.hetzner.transport import HetznerTransport

log = logging.getLogger(__name__)

BATCH_SIZE = 50  # the API's per_page maximum
FAST_INTERVAL = 0.2  # once an action is due
FIRST_GUESS = 1.0  # unknown kind: first poll after this, then backoff
MAX_INTERVAL = 5.0
IDLE_EXIT = 5.0  # the thread ends after this long with nothing to wait for
EWMA_WEIGHT = 0.5


@dataclass
class ActionState:
    id: int
    status: str = "running"
    command: str | None = None
    error: dict[str, Any] | None = None
    finished_at: float | None = None  # monotonic, when we learned of it
    waiters: int = 0


@dataclass
class Wait:
    ids: list[int]
    kind: str
    registered: float  # monotonic
    expected: float | None
    polls: int = 0
    last_polled: float = 0.0
    last_running_at: float | None = None  # the latest poll that still saw an action running
    event: threading.Event = field(default_factory=threading.Event)
    error: ProviderError | None = None

    def due(self) -> float:
        if self.polls == 0:
            return self.registered + (self.expected if self.expected is not None else FIRST_GUESS)
        return self.last_polled + min(FAST_INTERVAL * 1.25 ** (self.polls - 1), MAX_INTERVAL)


class ActionPoller:
    def __init__(
        self,
        transport: HetznerTransport,
        *,
        on_learned: Callable[[dict[str, float]], None] | None = None,
        learned: dict[str, float] | None = None,
    ) -> None:
        self._transport = transport
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._actions: dict[int, ActionState] = {}
        self._waits: list[Wait] = []
        self._thread: threading.Thread | None = None
        self._learned: dict[str, float] = dict(learned or {})
        self._on_learned = on_learned
        self.polls = 0  # batched requests made (for benchmarks and evidence)

    @property
    def learned(self) -> dict[str, float]:
        with self._lock:
            return dict(self._learned)

    def wait(
        self,
        action_ids: list[int],
        kind: str,
        *,
        canceled: Callable[[], bool] = lambda: False,
        timeout: float = 600.0,
    ) -> list[dict[str, Any]]:
        """Block until every action finished (or one failed); return {id, command, status,
        seconds, polls} for each.

        Raises the mapped ``ProviderError`` for a failed poll or an action that ended in error, and
        ``deadline_exceeded`` after ``timeout`` (the actions keep running; a retry resumes them).
        """
        if not action_ids:
            return []
        now = time.monotonic()
        wait = Wait(list(action_ids), kind, now, None)
        with self._lock:
            wait.expected = self._learned.get(kind)
            for action_id in action_ids:
                state = self._actions.setdefault(action_id, ActionState(action_id))
                state.waiters += 1
            self._waits.append(wait)
            self._ensure_thread()
            self._wake.notify_all()
        deadline = now + timeout
        try:
            while not wait.event.wait(0.2):
                if canceled():
                    raise ProviderError(
                        ErrorCode.deadline_exceeded,
                        "canceled while waiting for provider actions",
                        retryable=False,
                    )
                if time.monotonic() > deadline:
                    raise ProviderError(
                        ErrorCode.deadline_exceeded,
                        f"provider actions {action_ids} did not finish within {timeout:.0f} s",
                        retryable=True,
                    )
            if wait.error is not None:
                raise wait.error
            with self._lock:
                result = []
                for action_id in action_ids:
                    state = self._actions[action_id]
                    if state.status == "error":
                        raise map_action_error(action_id, state.command, state.error, step="poll")
                    result.append(
                        {
                            "id": action_id,
                            "command": state.command,
                            "status": state.status,
                            "seconds": round((state.finished_at or now) - wait.registered, 3),
                            "polls": wait.polls,
                        }
                    )
                return result
        finally:
            with self._lock:
                if wait in self._waits:
                    self._waits.remove(wait)
                for action_id in action_ids:
                    held = self._actions.get(action_id)
                    if held is not None:
                        held.waiters -= 1
                        if held.waiters <= 0:
                            del self._actions[action_id]

    # --- the polling thread -----------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="nodewright-action-poller", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        idle_since: float | None = None
        while True:
            with self._lock:
                now = time.monotonic()
                pending = [w for w in self._waits if not w.event.is_set()]
                if not pending:
                    idle_since = idle_since or now
                    if now - idle_since > IDLE_EXIT:
                        self._thread = None
                        return
                    self._wake.wait(0.5)
                    continue
                idle_since = None
                due = min(w.due() for w in pending)
                if due > now:
                    self._wake.wait(min(due - now, 1.0))
                    continue
                # Every running action goes in the batch: a poll costs one call whatever it carries.
                ids = sorted({i for w in pending for i in w.ids if self._actions[i].status == "running"})
                settled: dict[str, float] | None = None
                if not ids:
                    # A wait on actions another wait already saw finish (a retry resuming an action
                    # the attempt before it still waits for): nothing to ask, settle it now.
                    settled = dict(self._learned) if self._settle(now, []) else {}
                # A wait due within the next fast interval takes this poll as its own, a little
                # early: otherwise waits registered a few milliseconds apart (fifty servers created
                # together) each set off a poll of their own, back to back.
                polled = [w for w in pending if w.due() <= now + FAST_INTERVAL]
            if settled is not None:
                self._store_learned(settled or None)
                continue
            for start in range(0, len(ids), BATCH_SIZE):
                self._poll_batch(ids[start : start + BATCH_SIZE])
            with self._lock:
                now = time.monotonic()
                for w in polled:
                    w.polls += 1
                    w.last_polled = now

    def _learn(self, wait: Wait, now: float) -> float:
        """The new expected duration for the wait's kind.

        The wait ended between the last poll that saw it running and this one: the midpoint is the
        estimate. Done at the very first poll says only "no later than expected": try a little
        earlier next time (the schedule then homes in from both sides).
        """
        old = self._learned.get(wait.kind)
        if wait.last_running_at is not None:
            sample = (wait.last_running_at + now) / 2 - wait.registered
        elif wait.expected is not None:
            sample = wait.expected * 0.9
        else:
            sample = now - wait.registered
        sample = max(0.0, sample)
        return sample if old is None else old + EWMA_WEIGHT * (sample - old)

    def _fail(self, ids: list[int], error: ProviderError) -> None:
        with self._lock:
            for wait in self._waits:
                if not wait.event.is_set() and set(wait.ids) & set(ids):
                    wait.error = error
                    wait.event.set()

    def _poll_batch(self, ids: list[int]) -> None:
        if not ids:
            return
        try:
            data = self._transport.request(
                "poll", "GET", "/actions", params={"id": ids, "per_page": BATCH_SIZE}
            )
        except ProviderError as error:
            self._fail(ids, error)
            return
        except Exception:
            log.exception("action poll failed unexpectedly")
            self._fail(
                ids,
                ProviderError(
                    ErrorCode.provider_unavailable, "the action poll failed unexpectedly", retryable=True
                ),
            )
            return
        self.polls += 1
        now = time.monotonic()
        seen = {int(a["id"]): a for a in data.get("actions", []) if isinstance(a, dict) and "id" in a}
        with self._lock:
            for action_id in ids:
                state = self._actions.get(action_id)
                action = seen.get(action_id)
                if state is None or action is None:
                    continue
                state.command = action.get("command")
                status = str(action.get("status"))
                if status in ("success", "error"):
                    state.status = status
                    state.error = action.get("error")
                    state.finished_at = now
            missing = [i for i in ids if i not in seen]
            learned_changed = self._settle(now, missing)
            learned = dict(self._learned) if learned_changed else None
        self._store_learned(learned)

    def _settle(self, now: float, missing: list[int]) -> bool:
        """Under the lock: end every wait whose actions all finished (or one failed or went
        missing); returns whether a timing was learned."""
        learned_changed = False
        for wait in self._waits:
            if wait.event.is_set():
                continue
            if any(i in missing for i in wait.ids):
                wait.error = ProviderError(
                    ErrorCode.provider_error,
                    f"Hetzner did not return actions {sorted(set(wait.ids) & set(missing))}",
                    retryable=True,
                )
                wait.event.set()
                continue
            states = [self._actions[i] for i in wait.ids]
            if any(s.status == "error" for s in states):
                wait.event.set()
            elif all(s.status == "success" for s in states):
                self._learned[wait.kind] = self._learn(wait, now)
                learned_changed = True
                wait.event.set()
            else:
                wait.last_running_at = now
        return learned_changed

    def _store_learned(self, learned: dict[str, float] | None) -> None:
        if learned is not None and self._on_learned is not None:
            try:
                self._on_learned(learned)
            except Exception:
                log.warning("could not store learned action timings", exc_info=True)


_registry_lock = threading.Lock()
_registry: dict[tuple[int, str, str], ActionPoller] = {}


def poller_for(key: tuple[int, str, str], factory: Callable[[], ActionPoller]) -> ActionPoller:
    """The process's poller for (connection id, token fingerprint, endpoint): one per project,
    token and endpoint."""
    with _registry_lock:
        poller = _registry.get(key)
        if poller is None:
            poller = factory()
            _registry[key] = poller
        return poller
