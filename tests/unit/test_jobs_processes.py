"""Job process markers: which database a job id belongs to."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodewright.jobs.processes import Marker, child_name, database_tag


def test_one_database_has_one_tag_whatever_the_url_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    same = {
        database_tag("sqlite:///jobs.db"),
        database_tag("sqlite+pysqlite:///./jobs.db"),
        database_tag(f"sqlite:///{tmp_path / 'jobs.db'}"),
    }
    assert len(same) == 1
    assert database_tag("sqlite:///other.db") not in same
    # A password is not part of a database's identity (and never reaches the tag's input).
    assert database_tag("postgresql+psycopg://app:one@db/nw") == database_tag(
        "postgresql+psycopg://app:two@db/nw"
    )
    assert database_tag("postgresql+psycopg://app@db/nw") != database_tag(
        "postgresql+psycopg://app@db/staging"
    )


def test_markers_and_child_names_name_the_database() -> None:
    marker = Marker("0e2c", 7, 2, 1234, 99)
    assert Marker.parse(str(marker)) == marker
    assert Marker.parse("7:2:1234:99") is None  # no database: not a marker of this format
    assert child_name("0e2c", 7) != child_name("baad", 7)
    assert len(child_name("0e2c", 36**8 - 1)) <= 15
    assert child_name("0e2c", 36**8 - 1) != child_name("0e2c", 36**8 - 2)
