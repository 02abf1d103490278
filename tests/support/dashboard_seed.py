"""Nodes written straight into the database for the dashboard's tests: every status, with prices as
the provider sends them, SSH targets and evidence, without acquiring or provisioning anything."""

from __future__ import annotations

import datetime as dt
from typing import Any

from nodewright.context import AppContext
from nodewright.db.models import Node
from nodewright.db.types import utcnow
from nodewright.jobs.enqueue import enqueue

# What the catalog sends: a decimal string with sixteen places (4.51 EUR once rounded).
PRICE_MONTHLY = "4.5101000000000000"
PRICE_HOURLY = "0.0072000000000000"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZ0ZXN0a2V5dGVzdGtleXRlc3RrZXl0ZXN0a2V5 nodewright"
EVIDENCE = {
    "stages": {"acquire": {"ok": True, "seconds": 2.5}, "connect": {"ok": True, "seconds": 1.25}},
    "calls": [
        {"method": "POST", "path": "/servers", "status": 201, "at": 1_765_000_000.123},
        {"method": "GET", "path": "/actions/7", "status": 200, "at": 1_765_000_001.5},
    ],
    "host_key": {"fingerprint": "SHA256:abc", "pinned": True},
}


def seed_node(
    ctx: AppContext,
    provider_id: int,
    name: str,
    status: str = "ready",
    *,
    labels: dict[str, str] | None = None,
    location: str = "fsn1",
    server_type: str = "cx23",
    price: str | None = PRICE_MONTHLY,
    address: str | None = "203.0.113.7",
    evidence: dict[str, Any] | None = None,
    with_job: bool = False,
) -> int:
    """A node in ``status``; with ``with_job`` it points at a queued ``node_provision``-like job
    (kind ``test.seeded``, never run) whose log the node page follows."""
    now = utcnow()
    with ctx.database.session(write=True) as session:
        node = Node(
            name=name, contract="provider/v1", provider_id=provider_id, location=location,
            server_type=server_type, image="ubuntu-24.04", labels=labels or {}, profile="baseline",
            ssh_authorized_keys=[], status=status, evidence=evidence if evidence is not None else EVIDENCE,
            created_by="test", price_monthly=price, price_hourly=PRICE_HOURLY if price else None,
            server_id=4711 if address else None, server_name=name,
            server_status="running" if address else None,
            ssh_address=address, ssh_port=22 if address else None, ssh_user="nodewright" if address else None,
            host_public_key=HOST_KEY if address else None,
            host_key_fingerprint="SHA256:abc" if address else None,
            ready_at=now - dt.timedelta(hours=2) if status in ("ready", "released") else None,
            released_at=now - dt.timedelta(minutes=5) if status == "released" else None,
            stage="provision" if status in ("provisioning", "pending") else None,
        )  # fmt: skip
        session.add(node)
        session.flush()
        if with_job:
            job = enqueue(
                session, "test.seeded", {"node_id": node.id}, resource_key=f"node:{node.id}", max_attempts=3
            )
            session.flush()
            node.job_id = job.id
        return node.id
