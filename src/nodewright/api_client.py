"""The HTTP client the CLI's API commands use: the server's URL and an API token, problems as messages.

The token comes from ``NODEWRIGHT_TOKEN`` or a file (``--token-file``), never from a command-line
argument (other users of the machine can read those in ``ps``).
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
        self, message: str, *, status: int | None = None, code: str | None = None, usage: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.usage = usage  # the command was called wrongly (no token, unreadable file): exit 2


def load_token(token_file: Path | None) -> Secret:
    if token_file is not None:
        try:
            text = token_file.read_text().strip()
        except OSError as exc:
            raise ApiError(f"cannot read the token file {token_file}: {exc.strerror}", usage=True) from None
        if not text:
            raise ApiError(f"the token file {token_file} is empty", usage=True)
        if not _TOKEN_RE.match(text):
            raise ApiError(
                f"the token file {token_file} must hold one API token (printable ASCII, no spaces)",
                usage=True,
            )
        return Secret(text)
    value = os.environ.get("NODEWRIGHT_TOKEN", "").strip()
    if not value:
        raise ApiError(
            "no API token: set NODEWRIGHT_TOKEN or pass --token-file "
            "(create one with `nodewright tokens create`)",
            usage=True,
        )
    if not _TOKEN_RE.match(value):
        raise ApiError("NODEWRIGHT_TOKEN must be one API token (printable ASCII, no spaces)", usage=True)
    return Secret(value)


def _problem_text(response: httpx.Response) -> ApiError:
    try:
        problem = response.json()
    except ValueError:
        return ApiError(f"HTTP {response.status_code} from the server", status=response.status_code)
    if not isinstance(problem, dict):
        return ApiError(f"HTTP {response.status_code} from the server", status=response.status_code)
    # The detail can quote a provider or a node: shown cleaned, its continuation lines indented.
    text = for_terminal(str(problem.get("detail") or problem.get("title") or f"HTTP {response.status_code}"))
    for error in problem.get("errors") or []:
        if isinstance(error, dict) and error.get("field") and str(error["field"]) not in text:
            text += f"\n  {clean_line(str(error['field']))}: {clean_line(str(error.get('message')))}"
    if problem.get("hint"):
        text += f"\nhint: {for_terminal(str(problem['hint']))}"
    return ApiError(text, status=response.status_code, code=problem.get("code"))


class ApiClient:
    def __init__(self, url: str, token: Secret, *, timeout: float = 30.0) -> None:
        self._client = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token.reveal()}", "Accept": "application/json"},
            timeout=timeout,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach {self._client.base_url}: {exc.__class__.__name__}") from None
        if response.status_code >= 400:
            raise _problem_text(response)
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)
