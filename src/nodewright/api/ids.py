"""Path ids parsed strictly: only plain decimal digits name a row.

Pydantic's lax mode turns ``"1.0"`` (or ``"1e0"``, ``" 1"``) into the integer 1, so
``DELETE /api/tokens/1.0`` used to revoke token 1. An id that is not written as the id is bad input.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BeforeValidator

MAX_ID = 2**31 - 1  # ids are 32-bit columns; larger numbers are bad input, not a database error


def strict_decimal(value: Any) -> Any:
    """Refuse anything but ASCII digits (no sign, point, exponent, spaces or other scripts' digits)."""
    if isinstance(value, str) and not (value.isascii() and value.isdecimal()):
        raise ValueError("must be a whole number written with the digits 0-9")
    return value


JobId = Annotated[int, BeforeValidator(strict_decimal), Path(ge=1, le=MAX_ID, description="Job id")]
TokenId = Annotated[int, BeforeValidator(strict_decimal), Path(ge=1, le=MAX_ID, description="Token id")]
NodeId = Annotated[int, BeforeValidator(strict_decimal), Path(ge=1, le=MAX_ID, description="Node id")]
OrphanId = Annotated[int, BeforeValidator(strict_decimal), Path(ge=1, le=MAX_ID, description="Orphan id")]
MaintenanceId = Annotated[
    int, BeforeValidator(strict_decimal), Path(ge=1, le=MAX_ID, description="Maintenance window id")
]
