"""SSH keys: the project's public keys, referenced by servers at create time."""

from __future__ import annotations

import time
from typing import Any

from nodewright.sim.errors import ApiError
from nodewright.sim.listing import paginate, sort_items
from nodewright.sim.models import SshKey
from nodewright.sim.store import JSON, Query, Store
from nodewright.sim.validation import (
    check_labels,
    fingerprint,
    public_key_problem,
    raise_if,
    require_object,
    ssh_key_name_problem,
)


class SshKeysResource(Store):
    def list_ssh_keys(self, project: str, query: Query) -> JSON:
        with self.lock:
            matches = self._selector(query)
            names = query.get("name", [])
            fingerprints = query.get("fingerprint", [])
            items = [
                k
                for k in self.ssh_keys.values()
                if k.project == project
                and (not names or k.name == names[-1])
                and (not fingerprints or k.fingerprint == fingerprints[-1])
                and matches(k.labels)
            ]
            items = sort_items(
                sorted(items, key=lambda k: k.id),
                query.get("sort", []),
                {"id": lambda k: k.id, "name": lambda k: k.name},
            )
            page, meta = paginate(items, query)
            return {"ssh_keys": [k.to_json() for k in page], "meta": meta}

    def get_ssh_key(self, project: str, key_id: int) -> JSON:
        with self.lock:
            return {"ssh_key": self._key(project, key_id).to_json()}

    def create_ssh_key(self, project: str, body: Any) -> JSON:
        body = require_object(body)
        problems: dict[str, list[str]] = {}
        name_problem = ssh_key_name_problem(body.get("name"))
        if name_problem:
            problems["name"] = [name_problem]
        key_problem = public_key_problem(body.get("public_key"))
        if key_problem:
            problems["public_key"] = [key_problem]
        check_labels(body, problems)
        raise_if(problems)
        public_key = body["public_key"].strip()
        fp = fingerprint(public_key)
        with self.lock:
            mine = [k for k in self.ssh_keys.values() if k.project == project]
            if any(k.name == body["name"] for k in mine):
                raise ApiError(
                    "uniqueness_error", "SSH key name is already used", {"fields": [{"name": "name"}]}
                )
            if any(k.fingerprint == fp for k in mine):
                raise ApiError(
                    "uniqueness_error",
                    "SSH key with the same fingerprint already exists",
                    {"fields": [{"name": "public_key"}]},
                )
            key = SshKey(
                id=self.next_key_id,
                project=project,
                name=body["name"],
                public_key=public_key,
                fingerprint=fp,
                labels=dict(body.get("labels") or {}),
                created=time.time(),
            )
            self.next_key_id += 1
            self.ssh_keys[key.id] = key
            self.changed = True
            return {"ssh_key": key.to_json()}

    def update_ssh_key(self, project: str, key_id: int, body: Any) -> JSON:
        body = require_object(body)
        with self.lock:
            key = self._key(project, key_id)
            self._rename_and_relabel(
                key, body, self.ssh_keys.values(), ssh_key_name_problem, "SSH key name is already used"
            )
            return {"ssh_key": key.to_json()}

    def delete_ssh_key(self, project: str, key_id: int) -> None:
        with self.lock:
            key = self._key(project, key_id)
            del self.ssh_keys[key.id]
            self.changed = True
