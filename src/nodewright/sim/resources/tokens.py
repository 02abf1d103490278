"""Tokens: which project a bearer token belongs to and what it may do."""

from __future__ import annotations

from nodewright.sim.store import Store, TokenMode, default_project, token_hash


class TokensResource(Store):
    def register_token(self, token: str, mode: TokenMode, project: str | None) -> str:
        with self.lock:
            project_id = project or default_project(token)
            self.tokens[token_hash(token)] = (project_id, mode)
            self.changed = True
            return project_id

    def resolve_token(self, token: str) -> tuple[str, TokenMode]:
        with self.lock:
            known = self.tokens.get(token_hash(token))
        return known if known is not None else (default_project(token), "read_write")
