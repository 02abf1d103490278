"""What a node's name may be: a hostname label, because it is also the server's name at the provider.
Shared by the API (which refuses others) and the CLI (which tells a name from an id)."""

from __future__ import annotations

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"

# The account the profiles make for the operator's keys (``nw_admin_user`` in their playbooks): the
# login of a node's SSH command and of ``nodewright nodes ssh``.
ADMIN_USER = "nodewright"
