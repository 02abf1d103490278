"""What a node's name may be: a hostname label, because it is also the server's name at the provider.
Shared by the API (which refuses others) and the CLI (which tells a name from an id)."""

from __future__ import annotations

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
