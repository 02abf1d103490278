"""Label validation and the full label-selector grammar of the Hetzner Cloud API."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodewright.sim.labels import SelectorError, label_problems, parse_selector

LABELS = {"env": "prod", "role": "web", "example.com/owner": "team-a", "empty": ""}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("   ", True),
        ("env=prod", True),
        ("env==prod", True),
        ("env = prod", True),
        ("env=dev", False),
        ("env!=dev", True),
        ("env!=prod", False),
        ("missing!=x", True),
        ("env", True),
        ("missing", False),
        ("!missing", True),
        ("!env", False),
        ("env in (prod, dev)", True),
        ("env in (dev)", False),
        ("missing in (x)", False),
        ("env notin (dev,test)", True),
        ("env notin (prod)", False),
        ("missing notin (x)", True),
        ("env=prod,role=web", True),
        ("env=prod,role=db", False),
        ("env=prod, role in (web,db), !missing, example.com/owner", True),
        ("example.com/owner=team-a", True),
        ("empty=", True),
        ("empty", True),
        ("empty in (,x)", True),
    ],
)
def test_selector_semantics(selector: str, expected: bool) -> None:
    assert parse_selector(selector).matches(LABELS) is expected


@pytest.mark.parametrize(
    "selector",
    [
        "=x",
        "env=prod,",
        ",env",
        "env in prod",
        "env in (a",
        "env in (a b)",
        "!",
        "env=prod role=web",
        "env=(x)",
        "-bad=x",
        "env=-bad",
        "a/b/c=x",
    ],
)
def test_invalid_selectors(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(selector).matches(LABELS)


def test_label_validation() -> None:
    assert label_problems({"env": "prod", "example.com/a_b.c": "", "x": "a-b_c.d"}) == []
    assert label_problems({"a" * 63: "b" * 63}) == []
    assert label_problems({"a" * 64: "x"})
    assert label_problems({"x": "b" * 64})
    assert label_problems({"-x": "y"})
    assert label_problems({"x": "-y"})
    assert label_problems({"hetzner.cloud/x": "y"})
    assert label_problems({"Bad_Prefix/x": "y"})
    assert label_problems({"x": 1})
    assert label_problems(["x"])


names = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True).filter(lambda s: s not in {"in", "notin"})
values = st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)


@given(st.dictionaries(names, values, max_size=5), names, values)
def test_equality_and_inequality_are_complements(labels: dict[str, str], key: str, value: str) -> None:
    eq = parse_selector(f"{key}={value}").matches(labels)
    ne = parse_selector(f"{key}!={value}").matches(labels)
    assert eq != ne
    assert parse_selector(f"{key} in ({value})").matches(labels) == eq
    assert parse_selector(key).matches(labels) != parse_selector(f"!{key}").matches(labels)


@given(st.dictionaries(names, values, min_size=1, max_size=5))
def test_a_server_matches_the_selector_built_from_its_labels(labels: dict[str, str]) -> None:
    selector = ",".join(f"{k}=={v}" for k, v in labels.items())
    assert parse_selector(selector).matches(labels)
