"""security.text: what node and provider text keeps, and what it shows escaped."""

from __future__ import annotations

import pytest

from nodewright.security.text import clean, clean_line, clean_value, for_terminal


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;title\x07\x1b[2J", "\\x1b]0;title\\x07\\x1b[2J"),
        ("ok\r\nnext", "ok\nnext"),  # a CRLF line end is a line end
        ("50%\r100%", "50%\\r100%"),  # a lone CR would overwrite the line
        ("tab\tkept\nand newline", "tab\tkept\nand newline"),
        ("\x00\x7f\x85\x9b", "\\x00\\x7f\\x85\\x9b"),  # NUL, DEL, C1 (NEL, CSI)
        ("evil\u202etxt.exe\u2066x\u2069", "evil\\u202etxt.exe\\u2066x\\u2069"),  # bidi
        ("a\u2028b", "a\\u2028b"),
        ("ünïcödé ☃ is text", "ünïcödé ☃ is text"),
        ("lone \ud800 and \udfff", "lone \\ud800 and \\udfff"),  # JSON's "\ud800": no UTF-8 can hold it
        ("a pair 😀 is one character", "a pair 😀 is one character"),
    ],
)
def test_clean_escapes_controls_and_keeps_text(raw: str, shown: str) -> None:
    assert clean(raw) == shown
    assert clean(clean(raw)) == clean(raw)
    clean(raw).encode("utf-8")  # whatever came in can be printed and written


def test_clean_line_escapes_newlines_too() -> None:
    assert clean_line("refused\n[nodewright] node ready\r\n") == "refused\\n[nodewright] node ready\\n"


def test_clean_value_reaches_every_string() -> None:
    assert clean_value({"k\x1b": ["\x07", ("\r",)], "n": 3}) == {"k\\x1b": ["\\x07", ("\\r",)], "n": 3}


def test_for_terminal_sets_continuation_lines_under_a_margin() -> None:
    shown = for_terminal("failed: boom\n[nodewright] node ready\x1b[2J", "    ")
    assert shown == "failed: boom\n    | [nodewright] node ready\\x1b[2J"
