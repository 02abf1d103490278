"""What ``nodewright demo`` sets up beside the control plane: its simulator as a provider connection
(``connection``), an API token for its own requests and the operator's CLI (``access``), an SSH key
for the operator (``operator_key``), and its first node, once per data directory (``first_node``).
The command itself, which starts the servers and tells the story, is ``nodewright.cli.demo``."""

from nodewright.demo.connection import CONNECTION_NAME, Connected, connect_simulator

__all__ = ["CONNECTION_NAME", "Connected", "connect_simulator"]
