"""The one place an ``hcloud.Client`` is built: no blind retries, a budget, and evidence per call.

hcloud-python retries ``conflict``, ``rate_limit_exceeded``, ``timeout``, 502/504 and client
timeouts up to five times (POST /servers included), sleeping up to a minute, without reading
``RateLimit-Reset``. Those retries are turned off (``_retry_max_retries = 0``): a retry is the job
engine's decision, with ``retry_after`` taken from the rate-limit headers. Every HTTP request goes
through ``_RecordingSession``, which asks the shared rate budget before sending and records the
answer (status, error code, correlation id, duration -- never a header value or a body) afterwards.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import hcloud
import requests
from hcloud import APIException
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from nodewright.providers.base import ConnectionInfo, ProviderCall
from nodewright.providers.errors import ProviderError
from nodewright.providers.hetzner.errors import map_api_error, map_network_error

T = TypeVar("T")

DEFAULT_ENDPOINT = "https://api.hetzner.cloud/v1"
# (connect, read) seconds: a provider that does not answer is an outage, not a reason to hang a worker.
DEFAULT_TIMEOUT = (5.0, 30.0)


class Budget(Protocol):
    """The project's shared rate-limit budget (``ratebudget.RateBudget``)."""

    def take(self) -> None: ...

    def observe(self, headers: dict[str, str], status: int) -> None: ...


class _RecordingSession(requests.Session):
    def __init__(self, transport: HetznerTransport) -> None:
        super().__init__()
        self._transport = transport
        # One reconnect for reads only: a kept-alive connection the server closed while idle fails
        # at once on reuse. A GET is safe to send again; a POST or DELETE never is (it may have
        # been acted on), so those failures go to the job engine like any other.
        retry = Retry(
            total=1,
            connect=1,
            read=1,
            status=0,
            other=0,
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
        )
        self.mount("http://", HTTPAdapter(max_retries=retry))
        self.mount("https://", HTTPAdapter(max_retries=retry))

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        method_s = method.decode() if isinstance(method, bytes) else method
        url_s = url.decode() if isinstance(url, bytes) else url
        if self._transport.budget is not None:
            self._transport.budget.take()
        started = time.time()
        t0 = time.monotonic()
        try:
            response = super().request(method_s, url_s, *args, **kwargs)
        except requests.RequestException:
            self._transport.record(method_s, url_s, None, None, None, started, t0, {})
            raise
        headers = {
            k.lower(): v
            for k, v in response.headers.items()
            if k.lower().startswith(("ratelimit-", "x-correlation-id"))
        }
        error_code = None
        if not response.ok and response.headers.get("content-type", "").startswith("application/json"):
            try:
                error_code = str(response.json().get("error", {}).get("code"))
            except ValueError:
                error_code = None
        self._transport.record(
            method_s,
            url_s,
            response.status_code,
            error_code,
            headers.get("x-correlation-id"),
            started,
            t0,
            headers,
        )
        if self._transport.budget is not None:
            self._transport.budget.observe(headers, response.status_code)
        return response


class HetznerTransport:
    def __init__(
        self,
        connection: ConnectionInfo,
        *,
        budget: Budget | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.connection = connection
        self.budget = budget
        self.endpoint = (connection.api_endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self._base_path = urlsplit(self.endpoint).path.rstrip("/")
        self.client = hcloud.Client(
            token=connection.token.reveal(),
            api_endpoint=self.endpoint,
            application_name="nodewright",
            timeout=timeout,
            poll_interval=1.0,
            poll_max_retries=1,  # our own poller waits; the SDK's waiter is never used
        )
        inner = self.client._client
        inner._retry_max_retries = 0
        inner._session = _RecordingSession(self)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.calls: list[ProviderCall] = []

    # --- evidence ---------------------------------------------------------------------------------

    def record(
        self,
        method: str,
        url: str,
        status: int | None,
        error_code: str | None,
        correlation_id: str | None,
        started: float,
        t0: float,
        headers: dict[str, str],
    ) -> None:
        path = urlsplit(url).path
        if path.startswith(self._base_path):
            path = path[len(self._base_path) :] or "/"
        call = ProviderCall(
            method=method.upper(),
            endpoint=path,
            status=status,
            error_code=error_code,
            correlation_id=correlation_id,
            started_at=started,
            duration_ms=(time.monotonic() - t0) * 1000,
        )
        self._local.last_headers = headers
        self._local.last_status = status
        with self._lock:
            self.calls.append(call)

    def take_calls(self) -> list[ProviderCall]:
        """The calls recorded since the last take (for per-step evidence)."""
        with self._lock:
            calls, self.calls = self.calls, []
        return calls

    # --- calls ------------------------------------------------------------------------------------

    def call(self, step: str, fn: Callable[[hcloud.Client], T]) -> T:
        """Run ``fn`` (one logical provider operation); map any failure to a ``ProviderError``."""
        self._local.last_headers = {}
        self._local.last_status = None
        try:
            return fn(self.client)
        except APIException as exc:
            headers: dict[str, str] = getattr(self._local, "last_headers", {}) or {}
            status = getattr(self._local, "last_status", None)
            raise map_api_error(
                exc.code,
                exc.message,
                step=step,
                http_status=status
                if status is not None
                else (exc.code if isinstance(exc.code, int) else None),
                correlation_id=exc.correlation_id,
                details=exc.details if isinstance(exc.code, str) else None,
                headers=headers,
                now=dt.datetime.now(dt.UTC),
            ) from None
        except requests.RequestException as exc:
            raise map_network_error(exc, step=step) from None
        except ProviderError:
            raise

    def request(self, step: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A raw API request (batched action polls, the write probe) with the same mapping."""
        return self.call(step, lambda client: client.request(method, path, **kwargs))

    def close(self) -> None:
        self.client._client._session.close()
