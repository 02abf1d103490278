"""Request validation rules of the simulated API (names, keys, tokens, user data, pagination)."""

from __future__ import annotations

import pytest

from nodewright.sim.addresses import AddressPool
from nodewright.sim.errors import ApiError, status_for
from nodewright.sim.listing import paginate, sort_items
from nodewright.sim.validation import (
    fingerprint,
    public_key_problem,
    server_name_problem,
    well_formed_token,
)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGnTGBbBWHhQFvu2DRhR+0/l8dAvJHfZb0bkk0R+DUhn test@example"


@pytest.mark.parametrize("name", ["web-1", "a", "node.example.com", "x" * 63, "A1-b2"])
def test_valid_server_names(name: str) -> None:
    assert server_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "-web", "web-", "web_1", "a b", "x" * 64, "a..b", None, 5])
def test_invalid_server_names(name: object) -> None:
    assert server_name_problem(name) is not None


def test_public_keys_and_fingerprints() -> None:
    assert public_key_problem(KEY) is None
    assert (
        public_key_problem("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGnTGBbBWHhQFvu2DRhR+0/l8dAvJHfZb0bkk0R+DUhn")
        is not None
    )
    assert public_key_problem("ssh-ed25519 not-base64!") is not None
    assert public_key_problem("hello") is not None
    fp = fingerprint(KEY)
    assert len(fp.split(":")) == 16 and all(len(p) == 2 for p in fp.split(":"))


def test_tokens() -> None:
    assert well_formed_token("a" * 64)
    assert not well_formed_token("a" * 63)
    assert not well_formed_token("a" * 63 + "-")


def test_error_statuses_match_the_api_table() -> None:
    expected = {
        "invalid_input": 422,
        "uniqueness_error": 409,
        "locked": 423,
        "rate_limit_exceeded": 429,
        "resource_unavailable": 412,
        "resource_limit_exceeded": 403,
        "token_readonly": 401,
        "not_found": 404,
        "conflict": 409,
        "timeout": 504,
        "deprecated_api_endpoint": 410,
    }
    assert {code: status_for(code) for code in expected} == expected
    body = ApiError("not_found").body()
    assert set(body["error"]) == {"code", "message", "details"}


def test_pagination_meta_has_exactly_six_keys() -> None:
    items, meta = paginate(list(range(60)), {"page": ["2"], "per_page": ["25"]})
    assert items == list(range(25, 50))
    assert meta == {
        "pagination": {
            "page": 2,
            "per_page": 25,
            "previous_page": 1,
            "next_page": 3,
            "last_page": 3,
            "total_entries": 60,
        }
    }
    _, meta = paginate([], {})
    assert meta["pagination"]["last_page"] == 1 and meta["pagination"]["next_page"] is None
    assert paginate(list(range(100)), {"per_page": ["500"]})[1]["pagination"]["per_page"] == 50
    with pytest.raises(ApiError):
        paginate([], {"page": ["0"]})


def test_sorting() -> None:
    rows = [(2, "b"), (1, "b"), (3, "a")]
    keys = {"id": lambda r: r[0], "name": lambda r: r[1]}
    assert sort_items(rows, ["name", "id:desc"], keys) == [(3, "a"), (2, "b"), (1, "b")]
    with pytest.raises(ApiError):
        sort_items(rows, ["bogus"], keys)


def test_address_pool_skips_held_and_busy_addresses() -> None:
    busy = {"198.18.0.3"}
    pool = AddressPool("198.18.0.0/29", available=lambda address: address not in busy)
    pool.cursor = int(pool.network.network_address) + 2
    first, second = pool.allocate(), pool.allocate()
    assert (first, second) == ("198.18.0.2", "198.18.0.4")
    pool.release(first)
    assert pool.allocate() == "198.18.0.5"  # cycles through the range before reusing
    assert pool.allocate() == "198.18.0.6"
    assert pool.allocate() == "198.18.0.2"
    with pytest.raises(ApiError):
        pool.allocate()
