"""The remediation hook: called once when a node becomes degraded, in the transition's transaction.

It does nothing yet. The remediation ladder (reboot -> reprovision -> replace) and the fleet brake
plug in here: enqueue a remediation job in ``session`` (so it commits with the transition), never
act on the provider inline. It is not called during maintenance (no transition happens then).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from nodewright.db.models import Node, NodeHealth


def on_degraded(session: Session, node: Node, health: NodeHealth) -> None:
    """Remediation hook (no remediation yet): see the module docstring."""
    del session, node, health
