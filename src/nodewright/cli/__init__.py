"""The ``nodewright`` command line: one module per command group, ``errors`` and ``output`` shared."""

from nodewright.cli.app import app, main

__all__ = ["app", "main"]
