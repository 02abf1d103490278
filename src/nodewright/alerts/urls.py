"""Which URLs a webhook may be sent to: the provider-endpoint discipline, plus address checks.

nodewright's server makes the request, from inside the operator's network: a webhook URL naming
``127.0.0.1``, a private range, link-local (``169.254.169.254`` is the cloud metadata service) or
any other non-public address would turn the webhook into a way to reach what only the server can.
So every address the host resolves to must be public, unless the URL starts with a prefix of
``NODEWRIGHT_WEBHOOK_ENDPOINTS`` (same scheme and host, as for provider endpoints). The check runs
when the URL is saved and again before every attempt (DNS may have changed since), and the request
then goes to the address that was checked, never to a second lookup's answer (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
URL_RE = re.compile(r"https?://\S+", re.IGNORECASE)

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(Exception):
    """The URL may not be used; ``field`` is the input it came from, the message is safe to show."""

    def __init__(self, message: str, *, retryable: bool = False, field: str = "url") -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.field = field


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    scheme: str
    host: str  # as written (a name, or an address without brackets)
    port: int
    addresses: tuple[str, ...]  # what the host resolved to, each checked
    allowed_by_prefix: bool


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlRefused(f"the host {host!r} does not resolve ({exc})", retryable=True) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def non_public_reason(address: str) -> str | None:
    """Why ``address`` is not a public unicast address, or ``None`` when it is one."""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            inner = non_public_reason(str(embedded))
            if inner is not None:
                return f"{inner} (inside the IPv6 address {ip})"
    for test, reason in (
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local (cloud metadata lives here)"),
        (ip.is_private, "private"),
        (ip.is_multicast, "multicast"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_reserved, "reserved"),
    ):
        if test:
            return reason
    if not ip.is_global:
        return "not globally routable"
    return None


def _prefix_allows(url: str, scheme: str, host: str, allowed: tuple[str, ...]) -> bool:
    for prefix in allowed:
        try:
            parts = urlsplit(prefix)
            prefix_scheme, prefix_host = parts.scheme.lower(), parts.hostname
        except ValueError:
            continue
        if (
            url.startswith(prefix)
            and scheme == prefix_scheme
            and (prefix_host is None or host == prefix_host)
        ):
            return True
    return False


def check_url(url: str, allowed: tuple[str, ...], resolver: Resolver = system_resolver) -> CheckedUrl:
    """Refuse ``url`` (``UrlRefused``) unless it is an http(s) URL whose host resolves to public
    addresses only, or one that ``allowed`` names explicitly."""
    if len(url) > MAX_URL_LENGTH or not URL_RE.fullmatch(url) or not url.isascii() or not url.isprintable():
        raise UrlRefused(
            f"the URL must be an http(s) URL of at most {MAX_URL_LENGTH} characters, without spaces"
        )
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise UrlRefused("the URL is malformed (port or IPv6 brackets)") from None
    if "@" in parts.netloc or "\\" in parts.netloc or not host:
        raise UrlRefused("the URL must have a host and no user name or password")
    if parts.fragment:
        raise UrlRefused("the URL must not carry a #fragment")
    scheme = parts.scheme.lower()
    port = port or (443 if scheme == "https" else 80)
    by_prefix = _prefix_allows(url, scheme, host, allowed)
    addresses = tuple(resolver(host, port))
    if not addresses:
        raise UrlRefused(f"the host {host!r} does not resolve", retryable=True)
    if not by_prefix:
        for address in addresses:
            reason = non_public_reason(address)
            if reason is not None:
                named = host if host == address else f"{host} (resolves to {address})"
                raise UrlRefused(
                    f"the URL's host {named} is {reason}: webhooks go to public addresses only, unless "
                    "NODEWRIGHT_WEBHOOK_ENDPOINTS names the URL"
                )
    return CheckedUrl(url, scheme, host, port, addresses, by_prefix)
