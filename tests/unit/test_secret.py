"""``Secret`` never renders, and the logging filter scrubs registered values everywhere."""

from __future__ import annotations

import json
import logging
import pickle

import pytest
from pydantic import BaseModel

from nodewright.security.redaction import REDACTED, RedactingFilter, redact, register_secret
from nodewright.security.secret import Secret

CANARY = "canary-7f3a9c2e-secret-value"


class Holder(BaseModel):
    token: Secret


def test_secret_renders_as_redacted_everywhere() -> None:
    secret = Secret(CANARY)
    assert str(secret) == REDACTED
    assert CANARY not in repr(secret)
    assert f"{secret}" == REDACTED
    assert "%s" % secret == REDACTED  # noqa: UP031
    assert secret.reveal() == CANARY


def test_secret_in_pydantic_json_and_dump() -> None:
    holder = Holder(token=CANARY)  # type: ignore[arg-type]
    assert CANARY not in holder.model_dump_json()
    assert json.loads(holder.model_dump_json())["token"] == REDACTED
    assert CANARY not in repr(holder)
    assert CANARY not in str(holder.model_dump())
    assert holder.token.reveal() == CANARY


def test_secret_cannot_be_pickled_or_mutated() -> None:
    secret = Secret(CANARY)
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(AttributeError):
        secret._value = "x"  # type: ignore[misc]


def test_secret_equality_compares_plaintext() -> None:
    assert Secret(CANARY) == Secret(CANARY)
    assert Secret(CANARY) != Secret(CANARY + "x")


def test_redact_recurses_into_structures() -> None:
    register_secret(CANARY)
    data = {"a": [f"x {CANARY} y", ("t", CANARY)], CANARY: 1, "n": 3, "s": Secret("other-secret-value")}
    cleaned = redact(data)
    assert CANARY not in json.dumps(cleaned, default=str)
    assert cleaned["a"][0] == f"x {REDACTED} y"
    assert cleaned["n"] == 3
    assert cleaned["s"] == REDACTED


def test_short_values_are_not_registered() -> None:
    register_secret("abc")
    assert redact("abc def") == "abc def"


def test_logging_filter_scrubs_message_args_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    Secret(CANARY)  # constructing registers the value
    logger = logging.getLogger("nodewright.test.redaction")
    caplog.handler.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info("token is %s", CANARY)
            logger.info(f"inline {CANARY}")
            logger.info("secret object %s", Secret(CANARY))
            try:
                raise RuntimeError(f"failed with {CANARY}")
            except RuntimeError:
                logger.exception("boom")
    finally:
        caplog.handler.filters.clear()
    assert CANARY not in caplog.text
    assert caplog.text.count(REDACTED) >= 3
