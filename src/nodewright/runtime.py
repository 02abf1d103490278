"""What job handlers of this process may use beyond their ``JobContext``: settings and secret box.

Every process that runs handlers opens an ``AppContext`` (``serve``, ``demo``, ``worker``), which
installs its box here; a handler asks for it instead of opening the key ring again (the keys may
have come from the environment, which is scrubbed once the ring is open).
"""

from __future__ import annotations

import threading
from typing import Any

from nodewright.config import Settings
from nodewright.security.secretbox import KeyRing, SecretBox

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


ChildPayload = tuple[dict[str, Any], tuple[str, ...]]


def export_for_child() -> ChildPayload | None:
    """What a process-mode job child needs to rebuild this runtime: the settings and the keys.

    It travels in the arguments of the spawned child (pickled over the pipe multiprocessing opens
    to it), never in an environment variable or on a command line."""
    box, settings_ = _box, _settings
    if box is None:
        return None
    fields = settings_.model_dump(exclude={"secret_keys"}) if settings_ is not None else {}
    return fields, tuple(box.ring.keys)


def restore(payload: ChildPayload | None) -> None:
    """In a job child: install what the parent exported (nothing when it had no key ring)."""
    if payload is None:
        return
    fields, keys = payload
    install(Settings.model_construct(**fields), SecretBox(KeyRing(keys, "env")))
