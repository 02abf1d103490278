"""Acquiring a node's server from a stored connection: what a ``node_provision`` handler calls.

    result = acquire_server(ctx, database, box, NodeServerSpec(...), host_key)

``ctx`` is the handler's ``JobContext``; the server id and action ids are checkpointed as its steps.
The host key pair is made by the caller (``generate_host_key``) and kept as a stored secret by it;
nodewright's own client key is made once per connection here, its private half encrypted in
``stored_secrets`` (``load_client_private_key`` gives it to the SSH stage). Errors are
``ProviderError``; the handler raises ``error.to_job_error()``.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nodewright.db.database import Database
from nodewright.db.models import AppMeta, ProviderConnection
from nodewright.providers import connections
from nodewright.providers.base import (
    AcquireRequest,
    AcquireResult,
    Catalog,
    Checkpoints,
    ClientKey,
    HostKeyPair,
    ProviderAdapter,
)
from nodewright.providers.connections import connection_info, get_catalog, record_outcome
from nodewright.providers.errors import ErrorCode, ProviderError
from nodewright.providers.registry import make_adapter
from nodewright.security.secret import Secret
from nodewright.security.secretbox import SecretBox

INSTALLATION_META = "installation_id"
CLIENT_KEY_PURPOSE = "provider_client_ssh_key"


def installation_id(database: Database) -> str:
    """A random id made once per installation: the ownership label on every server we create."""
    with database.session() as session:
        row = session.get(AppMeta, INSTALLATION_META)
        if row is not None:
            return row.value
    try:
        with database.session(write=True) as session:
            session.add(AppMeta(key=INSTALLATION_META, value=uuid.uuid4().hex))
    except IntegrityError:
        pass  # another process made it first: read the winner's
    with database.session() as session:
        row = session.get(AppMeta, INSTALLATION_META)
        assert row is not None
        return row.value


def generate_host_key() -> HostKeyPair:
    """A fresh ed25519 key pair in OpenSSH format (the private half as a ``Secret``)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return HostKeyPair(private_openssh=Secret(private), public_openssh=public.decode())


def md5_fingerprint(public_openssh: str) -> str:
    """The fingerprint Hetzner shows for an SSH key (MD5 of the key blob, colon-separated)."""
    blob = base64.b64decode(public_openssh.split()[1])
    return ":".join(f"{b:02x}" for b in hashlib.md5(blob, usedforsecurity=False).digest())


def client_key(database: Database, box: SecretBox, connection_id: int) -> tuple[ClientKey, int | None]:
    """nodewright's client key for this connection (made on first use) and its id at the provider."""
    with database.session(write=True) as session:
        # Locked: concurrent first acquisitions must agree on one key (PostgreSQL would let each
        # transaction make its own; SQLite's BEGIN IMMEDIATE serialises them anyway).
        row = session.get(ProviderConnection, connection_id, with_for_update=True)
        if row is None:
            raise ProviderError(
                ErrorCode.not_found, f"no provider connection {connection_id}", retryable=False
            )
        if row.client_key_public is None or row.client_key_secret_id is None:
            pair = generate_host_key()
            stored = box.store(session, CLIENT_KEY_PURPOSE, pair.private_openssh)
            row.client_key_secret_id = stored.id
            row.client_key_public = pair.public_openssh.strip()
            row.client_key_fingerprint = md5_fingerprint(pair.public_openssh)
            row.client_key_provider_id = None
        return (
            ClientKey(row.client_key_public, str(row.client_key_fingerprint)),
            row.client_key_provider_id,
        )


def load_client_private_key(database: Database, box: SecretBox, connection_id: int) -> Secret:
    """The private half of the connection's client key, for the SSH stage (never logged)."""
    with database.session() as session:
        row = session.get(ProviderConnection, connection_id)
        if row is None or row.client_key_secret_id is None:
            raise KeyError(f"provider connection {connection_id} has no client key yet")
        return box.load(session, row.client_key_secret_id)


@dataclass(frozen=True)
class NodeServerSpec:
    connection_id: int
    node_id: int
    server_name: str
    location: str
    server_type: str
    image: str
    labels: Mapping[str, str] = field(default_factory=dict)
    extra_authorized_keys: tuple[str, ...] = ()


def preflight(catalog: Catalog, location: str, server_type: str, image: str) -> None:
    """Refuse a combination that cannot be created, naming the field, before any server is made."""

    def bad(field_name: str, message: str) -> ProviderError:
        return ProviderError(ErrorCode.invalid_combination, message, retryable=False, field=field_name)

    if location not in {loc.name for loc in catalog.locations}:
        raise bad("location", f"location {location!r} does not exist")
    st = next((t for t in catalog.server_types if t.name == server_type), None)
    if st is None:
        raise bad("server_type", f"server type {server_type!r} does not exist")
    if st.deprecated or location in st.deprecated_in:
        raise bad("server_type", f"server type {server_type!r} is deprecated in {location}")
    if location not in st.sold_in:
        raise bad("server_type", f"server type {server_type!r} is not sold in {location}")
    if location not in st.available_in:
        raise ProviderError(
            ErrorCode.capacity_unavailable,
            f"server type {server_type!r} is out of stock in {location}",
            retryable=False,
            field="location",
        )
    images = [i for i in catalog.images if i.name == image]
    if not images:
        raise bad("image", f"image {image!r} does not exist")
    fitting = [i for i in images if i.architecture == st.architecture]
    if not fitting:
        raise bad("image", f"image {image!r} has no {st.architecture} build for {server_type}")
    if all(i.deprecated for i in fitting):
        raise bad("image", f"image {image!r} is deprecated")


def acquire_server(
    checkpoints: Checkpoints,
    database: Database,
    box: SecretBox,
    spec: NodeServerSpec,
    host_key: HostKeyPair,
) -> AcquireResult:
    completed = getattr(checkpoints, "completed_steps", None) or {}
    if not any(str(name).startswith("provider.server.") for name in completed):
        # Before anything exists: a combination the catalog rules out fails at once, naming the
        # field. (Once a server exists, a later catalog change must not strand it.)
        try:
            catalog = get_catalog(database, box, spec.connection_id).catalog
        except connections.ConnectionError_ as exc:
            raise ProviderError(ErrorCode.not_found, exc.message, retryable=False) from None
        preflight(catalog, spec.location, spec.server_type, spec.image)
    key, key_provider_id = client_key(database, box, spec.connection_id)
    with database.session() as session:
        row = session.get(ProviderConnection, spec.connection_id)
        if row is None:
            raise ProviderError(
                ErrorCode.not_found, f"no provider connection {spec.connection_id}", retryable=False
            )
        info = connection_info(box, session, row)
    request = AcquireRequest(
        connection=info,
        node_id=spec.node_id,
        server_name=spec.server_name,
        location=spec.location,
        server_type=spec.server_type,
        image=spec.image,
        host_key=host_key,
        client_key=key,
        labels=dict(spec.labels),
        extra_authorized_keys=spec.extra_authorized_keys,
        installation_id=installation_id(database),
    )
    adapter = make_adapter(info, database=database, background=True)
    try:
        if key_provider_id is None:
            key_provider_id = _register_client_key(database, spec.connection_id, adapter, key)
        result = adapter.acquire(request, checkpoints, client_key_id=key_provider_id)
    except ProviderError as error:
        record_outcome(database, spec.connection_id, error)
        raise
    finally:
        adapter.close()
    return result


_register_locks: dict[int, threading.Lock] = {}
_register_guard = threading.Lock()


def _register_client_key(
    database: Database, connection_id: int, adapter: ProviderAdapter, key: ClientKey
) -> int:
    """Register the client key at the provider once: within a process the first acquisition does
    it and the others that started with it wait and reuse the id. (Across processes a second
    registration finds the first by fingerprint.) No database transaction is held over the call:
    the call itself takes from the rate budget in its own transaction."""
    with _register_guard:
        lock = _register_locks.setdefault(connection_id, threading.Lock())
    with lock:
        with database.session() as session:
            row = session.get(ProviderConnection, connection_id)
            if row is None:
                raise ProviderError(
                    ErrorCode.not_found, f"no provider connection {connection_id}", retryable=False
                )
            if row.client_key_provider_id is not None and row.client_key_fingerprint == key.fingerprint_md5:
                return row.client_key_provider_id
            name = f"nodewright-{installation_id_of(session)[:12]}"
        key_id = adapter.ensure_client_key(key, name)
        with database.session(write=True) as session:
            row = session.get(ProviderConnection, connection_id)
            if row is not None and row.client_key_fingerprint == key.fingerprint_md5:
                row.client_key_provider_id = key_id
        return key_id


def installation_id_of(session: Session) -> str:
    row = session.get(AppMeta, INSTALLATION_META)
    return row.value if row is not None else "installation"
