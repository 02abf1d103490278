"""How much of a node's output the controller keeps, and how a cut is marked: the one place for it.

A node is not trusted to be brief: its login shell, a check command or an Ansible module can print
hundreds of MiB, and every copy of that would cost the worker (and ``ansible-playbook``) memory. So
each stream is read incrementally and only a bounded head and tail are kept; what is dropped in
between is replaced by :func:`cut_marker`, which says how much was cut. The caps (docs/nodes.md):

- ``SSH_STREAM_CAP``: stdout and stderr of each command nodewright runs over SSH itself (connect,
  the readiness checks), per stream;
- ``ANSIBLE_STREAM_CAP``: stdout and stderr of each ``ssh`` that ``ansible-playbook`` runs (a
  module's result travels in it: a result larger than the tail fails the task as ``MODULE FAILURE``
  whose output shows the cut);
- ``EVENT_RESULT_CAP``: a task result larger than this (as text) is dropped from its event by
  ansible-runner's own display callback, in ansible-playbook (``MAX_EVENT_RES``, which we set); the
  job log then says the result was cut;
- ``EVENT_TEXT_CAP``: each string taken from an Ansible event into the job log or an error;
- ``JOB_LOG_CAP``: the node output (Ansible events) one attempt writes to the job log; past it the
  events are counted, not written, and one closing line says how many were cut.

Stdlib only: ``provisioning/ssh_output_cap.py`` runs it in an isolated interpreter.
"""

from __future__ import annotations

from collections import deque

MiB = 1 << 20

SSH_STREAM_CAP = 1 * MiB
ANSIBLE_STREAM_CAP = 2 * MiB
EVENT_RESULT_CAP = 700_000  # ansible-runner's default, set explicitly so that it is ours to document
EVENT_TEXT_CAP = 500
JOB_LOG_CAP = 4 * MiB

MARKER_PREFIX = "[output cut: "


def cut_marker(dropped: int, unit: str = "bytes") -> str:
    return f"{MARKER_PREFIX}{dropped} {unit} more]"


class CappedStream:
    """Keeps the first and the last ``cap // 2`` bytes of a stream fed in chunks, in bounded memory.

    The head is what a reader sees first (a prompt, the start of an error); the tail holds the end,
    where a command's result or last words are. ``head_sink``, when given, receives the head bytes
    as they arrive (a pass-through that must not delay the start of the stream).
    """

    def __init__(self, cap: int) -> None:
        self.head_cap = cap - cap // 2
        self.tail_cap = cap // 2
        self.head = bytearray()
        self._tail: deque[bytes] = deque()
        self._tail_len = 0
        self.total = 0

    def feed(self, chunk: bytes) -> bytes:
        """Take ``chunk``; return the part of it that went to the head (to pass on at once)."""
        self.total += len(chunk)
        room = self.head_cap - len(self.head)
        into_head = chunk[:room] if room > 0 else b""
        self.head += into_head
        rest = chunk[len(into_head) :]
        if rest and self.tail_cap > 0:
            self._tail.append(rest)
            self._tail_len += len(rest)
            # Whole chunks only: trimming a bytearray from the front would copy the tail every time.
            while self._tail and self._tail_len - len(self._tail[0]) >= self.tail_cap:
                self._tail_len -= len(self._tail.popleft())
        return into_head

    @property
    def tail(self) -> bytes:
        joined = b"".join(self._tail)
        return joined[-self.tail_cap :] if self.tail_cap else b""

    @property
    def dropped(self) -> int:
        return self.total - len(self.head) - len(self.tail)

    def rest(self) -> bytes:
        """What follows the head: the cut marker (on a line of its own) and the tail."""
        tail = self.tail
        if self.dropped <= 0:
            return tail
        return b"\n" + cut_marker(self.dropped).encode() + b"\n" + tail

    def value(self) -> bytes:
        return bytes(self.head) + self.rest()

    def text(self) -> str:
        return self.value().decode(errors="replace")


# How much of a long string is looked at (redacted, stripped) before it is cut to its cap: enough
# that a secret straddling the window's end cannot reach the kept part, however redaction shrinks it.
TEXT_WINDOW = 64 * 1024


def cap_text(text: str, limit: int = EVENT_TEXT_CAP, *, beyond: int = 0) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with how many characters were dropped
    (``beyond``: characters already dropped before ``text``, e.g. past a :data:`TEXT_WINDOW`)."""
    dropped = max(0, len(text) - limit) + beyond
    if dropped == 0:
        return text
    return text[:limit] + " " + cut_marker(dropped, "characters")
