"""The HTTP client the CLI's API commands use: the server's URL and an API token, problems as messages.

Where the URL and token come from is ``cli.options``; never from a command-line argument.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx

from nodewright.security.secret import Secret
from nodewright.security.text import clean_line, for_terminal

DEFAULT_URL = "http://127.0.0.1:8400"
# What an HTTP header can carry as one bearer token (the tokens nodewright issues are of this kind).
_TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")


class ApiError(Exception):
    """A problem response (or no answer), rendered for a terminal."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        usage: bool = False,
        foreign: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.usage = usage  # the command was called wrongly (no token, unreadable file): exit 2
        self.foreign = foreign  # the answer was not a nodewright problem document


def load_token(token_file: Path) -> Secret:
    try:
        text = token_file.read_text()
    except OSError as exc:
        raise ApiError(f"cannot read the token file {token_file}: {exc.strerror}", usage=True) from None
    return checked_token(text, f"the token file {token_file}")


def checked_token(text: str, where: str) -> Secret:
    """One API token from ``where`` (a file, stdin, a prompt): printable ASCII, no spaces."""
    value = text.strip()
    if not value:
        raise ApiError(f"{where} is empty", usage=True)
    if not _TOKEN_RE.match(value):
        raise ApiError(f"{where} must hold one API token (printable ASCII, no spaces)", usage=True)
    return Secret(value)


def token_from_environment() -> Secret | None:
    """``NODEWRIGHT_TOKEN``, checked; None when it is not set."""
    value = os.environ.get("NODEWRIGHT_TOKEN", "").strip()
    if not value:
        return None
    return checked_token(value, "NODEWRIGHT_TOKEN")


_CODE_RE = re.compile(r"^[a-z0-9_.-]{1,64}$")


def _problem_text(response: httpx.Response) -> ApiError:
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        # Not nodewright's own answer (a proxy's page, a wrong --url): no problem code, so a 404 here
        # is not "not found" (scripts branch on that).
        return ApiError(f"HTTP {response.status_code} from the server (not a nodewright answer)",
                        status=response.status_code, foreign=True)  # fmt: skip
    # The detail can quote a provider or a node: shown cleaned, its continuation lines indented.
    text = for_terminal(str(problem.get("detail") or problem.get("title") or f"HTTP {response.status_code}"))
    for error in problem.get("errors") or []:
        if isinstance(error, dict) and error.get("field") and str(error["field"]) not in text:
            text += f"\n  {clean_line(str(error['field']))}: {clean_line(str(error.get('message')))}"
    if problem.get("hint"):
        text += f"\nhint: {for_terminal(str(problem['hint']))}"
    code = problem.get("code")
    # The code is printed in brackets: only a plain taxonomy word (no newline, no escape) is kept.
    return ApiError(
        text,
        status=response.status_code,
        code=code if isinstance(code, str) and _CODE_RE.match(code) else None,
    )


class ApiClient:
    def __init__(self, url: str, token: Secret, *, timeout: float = 30.0) -> None:
        try:
            self._client = httpx.Client(
                base_url=url.rstrip("/"),
                headers={"Authorization": f"Bearer {token.reveal()}", "Accept": "application/json"},
                timeout=timeout,
            )
        except httpx.InvalidURL as exc:
            raise ApiError(
                f"--url {clean_line(url)!r} is not a usable URL: {clean_line(str(exc))}", usage=True
            ) from None

    @property
    def base_url(self) -> str:
        """The server's URL as one safe line (what the operator is told a change was made on)."""
        return clean_line(str(self._client.base_url).rstrip("/"))

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.InvalidURL as exc:
            raise ApiError(f"--url is not a usable URL: {clean_line(str(exc))}", usage=True) from None
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach {self._client.base_url}: {exc.__class__.__name__}") from None
        if response.status_code >= 400:
            raise _problem_text(response)
        if not 200 <= response.status_code < 300:  # a redirect (httpx does not follow): not the API
            raise ApiError(
                f"HTTP {response.status_code} from {self._client.base_url} (a redirect? give --url the "
                f"address nodewright serves on{', e.g. https://' if response.is_redirect else ''})",
                status=response.status_code,
                foreign=True,
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"the server at {self._client.base_url} did not answer with JSON "
                f"(HTTP {response.status_code}): "
                "is --url a nodewright server?",
                status=response.status_code,
                foreign=True,
            ) from None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)
