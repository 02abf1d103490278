"""Watching ready nodes: periodic checks as cheap jobs, health (ready <-> degraded), history,
maintenance pauses. See docs/watching.md."""
