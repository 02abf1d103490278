"""The ``data`` of node events: the node's id, name, status, reason and links (never a secret)."""

from __future__ import annotations

from typing import Any

from nodewright.db.models import Node


def node_data(node: Node, reason: str | None, public_url: str | None = None) -> dict[str, Any]:
    base = (public_url or "").rstrip("/")
    return {
        "node": {"id": node.id, "name": node.name, "status": node.status},
        "reason": reason,
        "links": {"node": f"{base}/nodes/{node.id}", "api": f"{base}/api/nodes/{node.id}"},
    }
