"""ASGI middleware: body-size limit and security headers.

The size limit is enforced on the stream, not only on Content-Length, so a chunked upload cannot
slip past it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nodewright.api.problems import PROBLEM_MEDIA_TYPE, FieldError, problem_response


class BodyTooLarge(Exception):
    pass


def _problem_bytes(limit: int) -> bytes:
    return json.dumps(
        {
            "type": "urn:nodewright:problem:body_too_large",
            "title": "Request body too large",
            "status": 413,
            "detail": f"The request body exceeds the limit of {limit} bytes.",
            "code": "body_too_large",
            "retryable": False,
        }
    ).encode()


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send)
                    return
        received = 0
        exceeded = False
        replaced = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # The app may turn our exception into a response of its own (a 400 "error parsing the
            # body"); whatever it answers once the limit is crossed is replaced by the 413.
            # A response the app had already started cannot be replaced (a second response start is
            # a protocol error): its remaining messages are dropped and the server closes the
            # connection on the unfinished response.
            nonlocal replaced, started
            if exceeded:
                if not replaced and not started:
                    replaced = True
                    await self._reject(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not replaced and not started:
                replaced = True
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = _problem_bytes(self.max_bytes)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class NulGuardMiddleware:
    """Refuses a NUL character in the path or a query parameter with a 400 naming the parameter.

    PostgreSQL cannot store or compare text holding NUL: such a value used as a filter would end
    as a database error (a 500) instead of an answer about the input.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            field = _nul_field(scope)
            if field is not None:
                response = problem_response(
                    400,
                    "invalid_request",
                    "Invalid request",
                    f"Invalid value for: {field} (must not contain a NUL character).",
                    errors=[FieldError(field=field, message="must not contain a NUL character")],
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _nul_field(scope: Scope) -> str | None:
    if "\x00" in str(scope.get("path", "")):
        return "path"
    query = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "") or "query"
    return None


SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    ),
]
# Pages and API answers may carry a secret shown once (a new API token) or private data: no cache
# (browser, back/forward or proxy) may keep them. Static assets hold nothing private.
NO_STORE = (b"cache-control", b"no-store")


HSTS = (b"strict-transport-security", b"max-age=31536000")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, https: bool = False) -> None:
        """``https``: served over TLS (secure cookies), so browsers are told to stay on HTTPS."""
        self.app = app
        self.headers = [*SECURITY_HEADERS, HSTS] if https else SECURITY_HEADERS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        cacheable = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                present = {h[0].lower() for h in headers}
                headers.extend(h for h in self.headers if h[0] not in present)
                if not cacheable and NO_STORE[0] not in present:
                    headers.append(NO_STORE)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
