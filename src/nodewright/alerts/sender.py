"""One HTTP attempt of a delivery: short timeouts, no redirects, a capped read, a pinned address.

The URL is checked again right before the request (``urls.check_url``) and the connection goes to
the address that check approved, with the original host in ``Host`` and in TLS SNI (so the
certificate is still verified against the name): a DNS answer that changes between check and
connect cannot steer the request to an internal address. No proxy from the environment is used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from nodewright.alerts.urls import Resolver, UrlRefused, check_url, system_resolver

CONNECT_TIMEOUT = 3.0
TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 16_384
USER_AGENT = "nodewright-webhooks/1"


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    latency_ms: int
    error: str | None
    retryable: bool = True

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allowed: tuple[str, ...],
    resolver: Resolver = system_resolver,
) -> AttemptResult:
    started = time.monotonic()
    try:
        checked = check_url(url, allowed, resolver)
    except UrlRefused as refused:
        return AttemptResult(None, 0, f"refused: {refused.message}", retryable=True)
    address = checked.addresses[0]
    target = httpx.URL(url).copy_with(host=address, port=checked.port)
    default_port = 443 if checked.scheme == "https" else 80
    host_header = checked.host if ":" not in checked.host else f"[{checked.host}]"
    if checked.port != default_port:
        host_header += f":{checked.port}"
    request_headers = {
        **headers,
        "Host": host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    extensions = {"sni_hostname": checked.host} if checked.scheme == "https" else {}
    timeout = httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            request = client.build_request(
                "POST", target, content=body, headers=request_headers, extensions=extensions
            )
            response = client.send(request, stream=True)
            try:
                read = 0
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES:
                        break
            finally:
                response.close()
    except httpx.HTTPError as exc:
        latency = int((time.monotonic() - started) * 1000)
        return AttemptResult(None, latency, f"no answer: {exc.__class__.__name__}")
    latency = int((time.monotonic() - started) * 1000)
    status = response.status_code
    if 200 <= status < 300:
        return AttemptResult(status, latency, None)
    if 300 <= status < 400:
        return AttemptResult(status, latency, f"HTTP {status}: redirects are not followed")
    if status == 410:
        return AttemptResult(status, latency, "HTTP 410 Gone: the endpoint was disabled", retryable=False)
    return AttemptResult(status, latency, f"HTTP {status}")
