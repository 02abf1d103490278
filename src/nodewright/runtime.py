"""What job handlers of this process may use beyond their ``JobContext``: settings and secret box.

Every process that runs handlers opens an ``AppContext`` (``serve``, ``demo``, ``worker``), which
installs its box here; a handler asks for it instead of opening the key ring again (the keys may
have come from the environment, which is scrubbed once the ring is open).
"""

from __future__ import annotations

import threading

from nodewright.config import Settings
from nodewright.security.secretbox import SecretBox

_lock = threading.Lock()
_box: SecretBox | None = None
_settings: Settings | None = None


class RuntimeNotReady(RuntimeError):
    pass


def install(settings: Settings, box: SecretBox) -> None:
    global _box, _settings
    with _lock:
        _box, _settings = box, settings


def settings() -> Settings:
    """The settings the process was opened with (handlers fall back to the environment's)."""
    if _settings is not None:
        return _settings
    from nodewright.config import load_settings

    return load_settings()


def secret_box() -> SecretBox:
    box = _box
    if box is None:
        raise RuntimeNotReady(
            "this process has no open key ring: job handlers that read secrets run in `serve`, `demo` "
            "or `worker` (thread mode)"
        )
    return box
