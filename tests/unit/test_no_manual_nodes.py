"""Nodes come only from providers: no host/IP, "manual", "local" or "self" node shape anywhere.

The seed removed every local/manual acquisition path; this test greps the whole tree (code, tests,
docs, dashboard templates, playbooks) so such a path never comes back unnoticed.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("src", "tests", "docs", "bench", "scripts", "README.md")
SUFFIXES = {".py", ".md", ".html", ".yml", ".yaml", ".toml", ".js", ".txt", ".sh", ""}

# Spelled out in pieces so this file does not match itself.
SHAPES = [
    r"\b(manual|local|self)[-_ ]?(node|nodes)\b",
    r"\b(manual|self)[-_ ]?(host|hosts)\b",
    r"\blocal[-_](host|hosts)\b",  # not "localhost"
    r"\bnodes?[-_ ](manual|local|self)\b",
    r"\b(register|add|bring)[-_ ](an? )?(existing|own|your)[-_ ](server|host|machine)s?\b",
    r"\bbyo[-_ ]?(server|host|node)s?\b",
    r"/api/nodes/(manual|local|self|register|adopt-host)\b",
    r"[\"'](acquisition|source|mode|kind)[\"']\s*:\s*[\"'](manual|local|self|static)[\"']",
]
PATTERN = re.compile("|".join(SHAPES), re.IGNORECASE)


def scanned_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts
            )
    return [f for f in files if f.resolve() != Path(__file__).resolve()]


def test_the_pattern_catches_what_it_must() -> None:
    must = ("create a manual node", "local_node", "self-host", '"source": "manual"', "/api/nodes/register")
    for text in (*must, "node_local", "BYO server", "local_host"):
        assert PATTERN.search(text), text
    for text in ("localhost", "local socket", "node_provision", "self.node", "nodes/handlers.py"):
        assert not PATTERN.search(text), text


def test_no_deprecated_node_shape_anywhere() -> None:
    files = scanned_files()
    assert len(files) > 50  # the scan saw the tree
    hits = []
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if PATTERN.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert hits == [], "deprecated node shapes:\n" + "\n".join(hits)
