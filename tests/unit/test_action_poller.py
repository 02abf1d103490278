"""The action poller settles a wait whose actions another wait already saw finish, without a poll
and without waiting for its deadline."""

from __future__ import annotations

import time
from typing import Any

from nodewright.providers.hetzner.poller import ActionPoller, ActionState


class NoCalls:
    """The transport: nothing may be asked, every action's outcome is already known."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def request(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((args, kwargs))
        raise AssertionError("no poll is needed")


def test_a_wait_on_actions_already_seen_finished_ends_at_once() -> None:
    transport = NoCalls()
    poller = ActionPoller(transport, learned={"create:k": 0.0})  # type: ignore[arg-type]
    # Another wait (the attempt before a retry) holds action 5 and saw it succeed.
    poller._actions[5] = ActionState(5, status="success", command="create_server", waiters=1)
    started = time.monotonic()
    result = poller.wait([5], "create:k", timeout=5.0)
    assert time.monotonic() - started < 2.0  # it used to hang until the deadline (600 s by default)
    assert result[0]["id"] == 5 and result[0]["status"] == "success"
    assert transport.calls == []
