"""Building provider requests for tests: real key pairs, a simulator connection."""

from __future__ import annotations

from nodewright.providers.acquisition import generate_host_key, md5_fingerprint
from nodewright.providers.base import AcquireRequest, ClientKey, ConnectionInfo


def acquire_request(
    connection: ConnectionInfo,
    *,
    node_id: int,
    name: str,
    installation_id: str = "testinstall",
    location: str = "fsn1",
    server_type: str = "cx23",
    image: str = "ubuntu-24.04",
) -> AcquireRequest:
    client = generate_host_key()
    return AcquireRequest(
        connection=connection,
        node_id=node_id,
        server_name=name,
        location=location,
        server_type=server_type,
        image=image,
        host_key=generate_host_key(),
        client_key=ClientKey(client.public_openssh, md5_fingerprint(client.public_openssh)),
        installation_id=installation_id,
    )
