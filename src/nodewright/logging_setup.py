"""Logging for every entry point: one format, and the redacting filter on every handler."""

from __future__ import annotations

import logging
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT)
    from nodewright.security.redaction import install_logging_filter

    install_logging_filter()


def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    """Uvicorn's loggers, routed through the same redacting filter as ours."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "nodewright.security.redaction.RedactingFilter"}},
        "formatters": {"default": {"format": FORMAT}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["default"], "level": level.upper(), "propagate": False},
        },
    }
