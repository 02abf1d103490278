"""The demo's first node, ``demo-1``: made once per data directory, on the first start.

The record is a file in the data directory (``demo-node.json``), written once the API has accepted
the node. A later start makes no other node: not when the record is there, and not when a node named
``demo-1`` exists in any status (the record may have been lost, or the node made by hand).

A restarted demo runs a new simulator, which keeps no servers: a node stored as ``ready`` would be a
ghost with the addresses of a machine that is gone. Before the operator is shown anything, a reconcile
job (the periodic one, queued at once) settles such nodes to ``lost``.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from nodewright.context import AppContext
from nodewright.db.models import Node
from nodewright.demo.connection import ACTOR
from nodewright.jobs.enqueue import enqueue
from nodewright.nodes.states import RECONCILE_KIND

NODE_NAME = "demo-1"
RECORD_FILE = "demo-node.json"


@dataclass(frozen=True)
class Existing:
    """Why no node is made: the record of an earlier start, or a node of that name."""

    node_id: int | None
    status: str | None


def record_path(data_dir: Path) -> Path:
    return data_dir / RECORD_FILE


def existing(ctx: AppContext) -> Existing | None:
    """What stops this start from making ``demo-1``; None when it is to be made."""
    with ctx.database.session() as session:
        row = session.execute(
            select(Node.id, Node.status).where(Node.name == NODE_NAME).order_by(Node.id.desc()).limit(1)
        ).first()
    if row is not None:
        return Existing(int(row[0]), str(row[1]))
    recorded = read_record(ctx.settings.data_dir)
    if recorded is not None:
        node_id = recorded.get("node_id")
        return Existing(node_id if isinstance(node_id, int) else None, None)
    return None


def read_record(data_dir: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(record_path(data_dir).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # there, but unreadable: it still says a node was made
    return body if isinstance(body, dict) else {}


def write_record(data_dir: Path, node_id: int, job_id: int) -> None:
    """Written whole (temporary file, then renamed), mode 0600 like everything in the data directory."""
    path = record_path(data_dir)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"name": NODE_NAME, "node_id": node_id, "job_id": job_id}, handle)
            handle.write("\n")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def queue_reconcile(ctx: AppContext, provider_id: int) -> int:
    """Queue the connection's reconcile job (or find the one already pending); returns its id."""
    with ctx.database.session(write=True) as session:
        job = enqueue(
            session,
            RECONCILE_KIND,
            {"provider_id": provider_id},
            dedup_key=f"reconcile:{provider_id}",  # the periodic job's key: never two at once
            created_by=ACTOR,
        )
        return int(job.id)
