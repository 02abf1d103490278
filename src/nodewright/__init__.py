"""nodewright: a control plane that acquires, provisions and watches fleets of servers."""

__version__ = "0.1.0"
