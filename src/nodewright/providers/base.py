"""The provider contract: what nodes/ and jobs/ may ask of any cloud provider, in their own terms.

A second provider implements ``ProviderAdapter`` (and registers a factory in ``registry``) without
touching nodes/ or jobs/. Everything that crosses this boundary is provider-agnostic: requests and
results are the dataclasses below, failures are ``ProviderError`` with a taxonomy code.

``acquire`` runs inside a job handler. It checkpoints what it created (server id, action ids) with
``Checkpoints.step`` -- a ``JobContext`` satisfies that protocol -- so that an attempt resuming after
a crash continues with the same server instead of creating a second one. Step outputs refuse
registered secrets: the host private key and the token never go into a checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from nodewright.security.secret import Secret

T = TypeVar("T")

# Ownership labels every provider puts on the servers it creates for nodewright (nodewright's own
# convention, not a provider's): which installation made it, for which node.
LABEL_INSTALLATION = "nodewright.io/installation"
LABEL_NODE = "nodewright.io/node"
# On a server made to replace a node's server (watching.remediate): the remediation step's id.
LABEL_REPLACEMENT = "nodewright.io/replacement"


class Checkpoints(Protocol):
    """What ``acquire``/``release`` need from the job that runs them (``JobContext`` has it all)."""

    @property
    def canceled(self) -> bool: ...

    @property
    def attempt(self) -> int:
        """1 for a job's first run; more when an earlier attempt may have left work behind."""
        ...

    def step(self, name: str, fn: Callable[[], T]) -> T: ...

    def log(self, message: str, level: str = "info", **data: Any) -> int: ...


@dataclass(frozen=True)
class ConnectionInfo:
    """One provider connection as an adapter needs it: the token is a ``Secret`` (never printed)."""

    id: int
    kind: str
    token: Secret
    api_endpoint: str | None
    ssh_port: int = 22
    ssh_user: str = "root"


@dataclass(frozen=True)
class HostKeyPair:
    """The node's SSH host key, made by the caller: cloud-init installs it, the first SSH pins it."""

    private_openssh: Secret
    public_openssh: str  # "ssh-ed25519 AAAA... " (no comment needed)


@dataclass(frozen=True)
class ClientKey:
    """nodewright's own SSH login key for a provider project (private half stays a stored secret)."""

    public_openssh: str
    fingerprint_md5: str  # as Hetzner shows it: "aa:bb:..."


@dataclass(frozen=True)
class AcquireRequest:
    connection: ConnectionInfo
    node_id: int
    server_name: str  # deterministic (derived from the node), the first guard against duplicates
    location: str
    server_type: str
    image: str
    host_key: HostKeyPair
    client_key: ClientKey
    labels: Mapping[str, str] = field(default_factory=dict)
    extra_authorized_keys: tuple[str, ...] = ()
    installation_id: str = "nodewright"


@dataclass(frozen=True)
class SshTarget:
    """Everything the SSH stage needs; nothing provider-specific."""

    address: str
    port: int
    user: str
    host_public_key: str  # OpenSSH format; connect with strict checking against exactly this

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "host_public_key": self.host_public_key,
        }


@dataclass(frozen=True)
class ProviderCall:
    """One HTTP call to the provider, as evidence (never a header or a body)."""

    method: str
    endpoint: str  # path template with ids, e.g. "/servers/42"
    status: int | None  # None: no answer (network error)
    error_code: str | None
    correlation_id: str | None
    started_at: float  # epoch seconds
    duration_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "endpoint": self.endpoint,
            "status": self.status,
            "error_code": self.error_code,
            "correlation_id": self.correlation_id,
            "started_at": self.started_at,
            "duration_ms": round(self.duration_ms, 2),
        }


@dataclass
class AcquisitionEvidence:
    server_id: int | None = None
    server_name: str | None = None
    adopted: bool = False
    addresses: dict[str, str | None] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)  # id, command, status, seconds
    calls: list[ProviderCall] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "server_id": self.server_id,
            "server_name": self.server_name,
            "adopted": self.adopted,
            "addresses": dict(self.addresses),
            "actions": list(self.actions),
            "calls": [c.to_dict() for c in self.calls],
            "call_count": len(self.calls),
        }


@dataclass
class ReleaseEvidence:
    """What a release did at the provider: its calls and the delete action, in order."""

    actions: list[dict[str, Any]] = field(default_factory=list)  # id, command, status, seconds
    calls: list[ProviderCall] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "actions": list(self.actions),
            "calls": [c.to_dict() for c in self.calls],
            "call_count": len(self.calls),
        }


@dataclass(frozen=True)
class AcquireResult:
    target: SshTarget
    evidence: AcquisitionEvidence


@dataclass(frozen=True)
class ServerInfo:
    """A server as the provider sees it now (for inspect, reconcile and orphan listings)."""

    id: int
    name: str
    status: str  # provider-agnostic: "starting", "running", "off", "deleting", "unknown"
    labels: Mapping[str, str]
    ipv4: str | None
    ipv6: str | None
    location: str | None
    server_type: str | None


@dataclass(frozen=True)
class ValidationResult:
    """A token proven by a read call and a harmless write probe."""

    can_read: bool
    can_write: bool
    rate_limit: int | None = None
    rate_remaining: int | None = None
    rate_reset: float | None = None


@dataclass(frozen=True)
class CatalogLocation:
    name: str
    description: str
    country: str
    city: str
    network_zone: str


@dataclass(frozen=True)
class CatalogPrice:
    location: str
    hourly_net: str
    hourly_gross: str
    monthly_net: str
    monthly_gross: str


@dataclass(frozen=True)
class CatalogServerType:
    name: str
    description: str
    cores: int
    memory_gb: float
    disk_gb: int
    architecture: str
    deprecated: bool
    available_in: tuple[str, ...]  # locations where it can be ordered now
    sold_in: tuple[str, ...]  # locations where it is listed (perhaps out of stock)
    deprecated_in: tuple[str, ...]
    prices: tuple[CatalogPrice, ...]


@dataclass(frozen=True)
class CatalogImage:
    name: str  # a system image's name; a snapshot's id (snapshots have no name)
    description: str
    architecture: str
    os_flavor: str
    deprecated: bool
    kind: str = "system"  # system | snapshot


@dataclass(frozen=True)
class SnapshotImage:
    """An image made from a server's disk (``ProviderAdapter.snapshot``)."""

    id: int
    description: str
    size_gb: float | None
    disk_gb: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_id": self.id,
            "description": self.description,
            "size_gb": self.size_gb,
            "disk_gb": self.disk_gb,
        }


@dataclass(frozen=True)
class Catalog:
    locations: tuple[CatalogLocation, ...]
    server_types: tuple[CatalogServerType, ...]
    images: tuple[CatalogImage, ...]

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Catalog:
        return cls(
            locations=tuple(CatalogLocation(**loc) for loc in data["locations"]),
            server_types=tuple(
                CatalogServerType(
                    **{
                        **st,
                        "available_in": tuple(st["available_in"]),
                        "sold_in": tuple(st["sold_in"]),
                        "deprecated_in": tuple(st["deprecated_in"]),
                        "prices": tuple(CatalogPrice(**p) for p in st["prices"]),
                    }
                )
                for st in data["server_types"]
            ),
            images=tuple(CatalogImage(**img) for img in data["images"]),
        )


class ProviderAdapter(Protocol):
    """One provider connection's operations. Every method raises ``ProviderError`` on failure."""

    def validate(self) -> ValidationResult:
        """Prove the token with a read call, and tell read-only from read-write with a harmless write."""
        ...

    def catalog(self) -> Catalog: ...

    def acquire(
        self, request: AcquireRequest, checkpoints: Checkpoints, *, client_key_id: int | None = None
    ) -> AcquireResult:
        """Create (or adopt, or resume) the node's server and wait until it runs."""
        ...

    def inspect(self, server_id: int) -> ServerInfo | None:
        """The server now, or None when the provider says it does not exist."""
        ...

    def release(self, server_id: int, checkpoints: Checkpoints) -> ReleaseEvidence:
        """Delete, wait for the action, confirm it is gone. Already gone counts as done. The calls
        and actions of every step, a resumed attempt's checkpointed ones included."""
        ...

    def reboot(self, server_id: int, checkpoints: Checkpoints) -> None:
        """Reboot the server (the provider's reboot action) and wait for the action to finish."""
        ...

    def snapshot(self, server_id: int, description: str, checkpoints: Checkpoints) -> SnapshotImage:
        """Make an image of the server's disk and wait until it is available."""
        ...

    def list_owned(self, installation_id: str) -> list[ServerInfo]:
        """Every server carrying this installation's ownership label (for reconcile and orphans)."""
        ...

    def ensure_client_key(self, key: ClientKey, name: str) -> int:
        """Register nodewright's client key once per project (reused by fingerprint); its id."""
        ...

    def close(self) -> None:
        """Release the HTTP session."""
        ...
