"""Text from nodes and providers, made safe to store and to show.

A node's output and a provider's error message are written by someone else: they can carry
terminal escapes (``\\x1b]0;title\\x07``, ``\\x1b[2J``), a carriage return that overwrites the line
before it, or bidi overrides that make text read differently than it is. Such text is cleaned where
it is stored (job events, job and node errors, evidence, provider errors) and again where the CLI
writes to a terminal, so that nothing but newline and tab reaches a reader raw.

Cleaning shows what was there instead of dropping it: a control character becomes its escape
(``\\x1b``, ``\\r``, ``\\u202e``), visible and inert. Newlines stay in multi-line text (a task's
stderr); a one-line field (a provider's message) gets them escaped too, and the CLI indents every
continuation line of foreign text under a ``|`` margin, so a line that node output starts can never
pass for one of nodewright's own.
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls except tab and newline, DEL, C1 controls, the bidi marks, embeddings, overrides and
# isolates (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069), the Unicode line and paragraph
# separators (a line break to some terminals and editors), and lone surrogates (JSON's "\ud800" is
# one: no UTF-8 terminal or file can take it, so printing it would fail).
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[{_CONTROLS}]")
_UNSAFE_OR_NEWLINE = re.compile(f"[{_CONTROLS}\n]")
_NAMED = {"\r": "\\r", "\n": "\\n"}
MARGIN = "| "


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def clean(text: str) -> str:
    """Multi-line text with every control character but newline and tab shown escaped.

    A CRLF line end is a newline (Windows tools, some modules); a lone carriage return is escaped,
    since on a terminal it would overwrite the line it ends."""
    text = text.replace("\r\n", "\n")
    return _UNSAFE.sub(_escape, text)


def clean_line(text: str) -> str:
    """One-line text: as :func:`clean`, with newlines escaped as well."""
    return _UNSAFE_OR_NEWLINE.sub(_escape, text.replace("\r\n", "\n"))


def clean_value(value: Any) -> Any:
    """``value`` with :func:`clean` applied to every string in it (keys included)."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(clean_value(v) for v in value)
    return value


def for_terminal(text: str, indent: str = "  ") -> str:
    """Foreign (possibly multi-line) text for a terminal: cleaned, and every line after the first
    set under ``indent`` and a ``|`` margin, so it cannot start a line that looks like ours."""
    first, *rest = clean(text).split("\n")
    return "\n".join([first, *(f"{indent}{MARGIN}{line}" for line in rest)])
