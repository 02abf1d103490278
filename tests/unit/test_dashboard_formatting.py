"""Money and moments as the dashboard writes them, and evidence made readable."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from nodewright.dashboard import evidence, formatting


def test_money_rounds_half_up_to_the_cent_with_its_currency() -> None:
    assert formatting.money("4.5101000000000000") == "4.51 EUR"
    assert formatting.money("4.5150000000000000") == "4.52 EUR"  # rounded, not truncated
    assert formatting.money("0.0072000000000000", "EUR") == "0.01 EUR"
    assert formatting.money(Decimal("1234.5")) == "1,234.50 EUR"
    assert formatting.money(None) == "—" and formatting.money("") == "—" and formatting.money("NaN") == "—"
    assert formatting.total(["4.5101", None, "not a price", "1.2"]) == Decimal("5.7101")


def test_relative_moments_with_the_absolute_time_on_hover() -> None:
    now = dt.datetime(2026, 12, 7, 20, 0, tzinfo=dt.UTC)
    assert formatting.relative(now - dt.timedelta(seconds=2), now) == "just now"
    assert formatting.relative(now - dt.timedelta(minutes=3, seconds=10), now) == "3 min ago"
    assert formatting.relative(now - dt.timedelta(hours=5), now) == "5 h ago"
    assert formatting.relative(now - dt.timedelta(days=1), now) == "1 day ago"
    assert formatting.relative(now + dt.timedelta(minutes=10), now) == "in 10 min"
    markup = str(formatting.ago(dt.datetime(2026, 12, 7, 19, 57, tzinfo=dt.UTC)))
    assert markup.startswith('<time datetime="2026-12-07T19:57:00+00:00" title="2026-12-07 19:57:00 UTC">')
    assert str(formatting.ago(None, "never")) == "never"
    assert formatting.clock(now + dt.timedelta(minutes=30), now) == "20:30 UTC"
    assert formatting.clock(now + dt.timedelta(days=1), now) == "2026-12-08 20:00 UTC"
    assert str(formatting.ago(None, "<b>")) == "&lt;b&gt;"


def test_evidence_timestamps_become_moments_and_records_tables() -> None:
    shown = dict(evidence.sections({"calls": [{"method": "POST", "at": 1_765_000_000.5}], "seconds": 2.5}))
    calls = shown["calls"]
    assert calls.kind == "table" and calls.columns == ["method", "at"]
    assert calls.rows[0][1].kind == "moment"
    assert calls.rows[0][1].moment == dt.datetime.fromtimestamp(1_765_000_000.5, tz=dt.UTC)
    assert shown["seconds"].text == "2.5 s"
    assert evidence.readable({"count": 1_765_000_000}).fields[0][1].kind == "text"  # not a moment key
