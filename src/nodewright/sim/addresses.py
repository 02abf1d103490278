"""Addresses for the IPv4s of simulated servers, from the test range 198.18.0.0/15."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable, Iterator

from nodewright.sim.errors import ApiError


class AddressPool:
    """Hands out loopback addresses for node IPv4s, never reusing one while a server holds it and
    cycling through the range before reusing, so stale known_hosts entries do not collide.

    Several simulators may share a machine (a demo and a test run): each starts at a random point
    of the range, and ``available`` lets it skip addresses another one's nodes already listen on.
    """

    def __init__(self, cidr: str, available: Callable[[str], bool] | None = None) -> None:
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.used: set[str] = set()
        self.available = available
        first = int(self.network.network_address) + 2
        span = max(1, int(self.network.broadcast_address) - 1 - first + 1)
        self.cursor = first + secrets.randbelow(span)

    def _candidates(self) -> Iterator[int]:
        first = int(self.network.network_address) + 2
        last = int(self.network.broadcast_address) - 1
        span = last - first + 1
        for offset in range(span):
            yield first + (self.cursor - first + offset) % span

    def allocate(self) -> str:
        for value in self._candidates():
            if value & 0xFF in (0, 255):
                continue
            address = str(ipaddress.ip_address(value))
            if address not in self.used and (self.available is None or self.available(address)):
                self.used.add(address)
                self.cursor = value + 1
                return address
        raise ApiError("resource_unavailable", "no IPv4 address available in the simulator's range")

    def release(self, address: str | None) -> None:
        if address:
            self.used.discard(address)
