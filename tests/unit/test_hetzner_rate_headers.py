"""A 429 whose RateLimit-Reset header is no time (a proxy's, a bug) still maps to rate_limited."""

from __future__ import annotations

import pytest

from nodewright.providers.errors import ErrorCode
from nodewright.providers.hetzner.errors import map_api_error


@pytest.mark.parametrize("reset", ["nan", "inf", "1e300", "soon", ""])
def test_a_malformed_reset_header_still_maps_to_rate_limited(reset: str) -> None:
    error = map_api_error(
        "rate_limit_exceeded",
        "limit reached",
        step="create",
        http_status=429,
        correlation_id=None,
        headers={"ratelimit-reset": reset, "ratelimit-limit": "3600", "ratelimit-remaining": "0"},
    )
    assert error.code is ErrorCode.rate_limited
    assert error.retryable is True
    assert error.retry_after is None or 1.0 <= error.retry_after <= 3600.0
