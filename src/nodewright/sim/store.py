"""The shared store of the simulated cloud: every record, the id counters and the one lock.

The per-resource modules in :mod:`nodewright.sim.resources` add the API operations on top; they
all go through this store, so handlers, the ticker thread and the control API see one consistent
cloud. Every public operation takes the lock and first lets time advance (see
:mod:`nodewright.sim.resources.actions`).
"""

from __future__ import annotations

import collections
import hashlib
import threading
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

from nodewright.sim import catalog, legacy
from nodewright.sim.actions import Action
from nodewright.sim.addresses import AddressPool
from nodewright.sim.config import SimConfig
from nodewright.sim.errors import ApiError, invalid_input, not_found
from nodewright.sim.labels import SelectorError, parse_selector
from nodewright.sim.models import Capacity, ProjectImage, RequestRecord, Server, SshKey
from nodewright.sim.validation import check_labels, raise_if

TokenMode = Literal["read_write", "read_only", "revoked"]
Query = dict[str, list[str]]
JSON = dict[str, Any]


class Nodes(Protocol):
    """What the state needs from the node supervisor (absent when SSH nodes are off)."""

    def boot(self, spec: Any, restart: bool = False, reset_disk: bool = False) -> None: ...
    def stop(self, server_id: int) -> None: ...
    def destroy(self, server_id: int) -> None: ...
    def state(self, server_id: int) -> str: ...
    def info(self, server_id: int) -> dict[str, object]: ...
    def snapshot(self, server_id: int, image_id: int) -> None: ...
    def snapshot_state(self, image_id: int) -> str | None: ...
    def snapshot_size(self, image_id: int) -> int: ...
    def delete_image(self, image_id: int) -> None: ...


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def default_project(token: str) -> str:
    """A project id derived from the token by a one-way hash: logs can carry it, never the token."""
    return "p-" + token_hash(token)[:16]


class Store:
    def __init__(self, config: SimConfig, nodes: Nodes | None = None) -> None:
        self.config = config
        self.nodes = nodes
        # (server, rescue) -> the node spec to boot, or None for a server without a node
        self.node_spec_factory: Callable[[Server, bool], Any] | None = None
        self.lock = threading.RLock()
        self.tokens: dict[str, tuple[str, TokenMode]] = {}
        self.servers: dict[int, Server] = {}
        self.ssh_keys: dict[int, SshKey] = {}
        self.images: dict[int, ProjectImage] = {}  # snapshots and backups; system images: catalog
        self.actions: dict[int, Action] = {}
        self.running: list[Action] = []
        self.capacity: list[Capacity] = []
        self.server_limits: dict[str, int] = {}
        self.requests: collections.deque[RequestRecord] = collections.deque(maxlen=config.request_log_size)
        network = getattr(nodes, "network", None)
        self.pool = AddressPool(network.address_range if network is not None else config.ssh_address_range)
        self.next_server_id = 4_200_001
        self.next_action_id = 91_000_001
        self.next_key_id = 1_800_001
        self.next_ip_id = 55_000_001
        self.next_image_id = 330_000_001  # above the catalog's system image ids
        self.changed = False

    def advance(self) -> None:
        """Let simulated time progress; the actions module implements it."""

    def locked(self, server_id: int) -> bool:
        return any(a.server_id == server_id for a in self.running)

    # -- lookup helpers -----------------------------------------------------------------------
    def _server(self, project: str, server_id: int) -> Server:
        server = self.servers.get(server_id)
        if server is None or server.project != project:
            raise not_found("server")
        return server

    def _server_json(self, server: Server) -> JSON:
        rendered = server.to_json(self.locked(server.id), self._image_json(server.image_id))
        if self.config.legacy_datacenter:
            rendered["datacenter"] = legacy.datacenter(server.location)
        return rendered

    def _image_json(self, image_id: int) -> JSON | None:
        own = self.images.get(image_id)
        if own is not None:
            return own.to_json()
        found = catalog.find_images(image_id)
        return found[0].to_json() if found else None

    def _key_by_ref(self, project: str, ref: object) -> SshKey | None:
        ref_id = int(ref) if isinstance(ref, str) and ref.isdigit() else ref
        for key in self.ssh_keys.values():
            if key.project == project and (key.id == ref_id or key.name == ref):
                return key
        return None

    def _key(self, project: str, key_id: int) -> SshKey:
        key = self.ssh_keys.get(key_id)
        if key is None or key.project != project:
            raise not_found("SSH key")
        return key

    @staticmethod
    def _selector(query: Query) -> Callable[[dict[str, str]], bool]:
        raw = query.get("label_selector", [])
        if not raw:
            return lambda _labels: True
        try:
            selector = parse_selector(raw[-1])
        except SelectorError as exc:
            raise invalid_input({"label_selector": [str(exc)]}, "label_selector is invalid") from None
        return selector.matches

    def _rename_and_relabel(
        self,
        record: Server | SshKey,
        body: dict[str, Any],
        siblings: Iterable[Server | SshKey],
        name_problem: Callable[[Any], str | None],
        taken_message: str,
    ) -> None:
        """The update shared by servers and SSH keys: validate name and labels, keep names unique in
        the project, then apply. Call with the state lock held."""
        problems: dict[str, list[str]] = {}
        if "name" in body:
            problem = name_problem(body["name"])
            if problem:
                problems["name"] = [problem]
        check_labels(body, problems)
        raise_if(problems)
        if "name" in body and any(
            other.project == record.project and other.name == body["name"] and other.id != record.id
            for other in siblings
        ):
            raise ApiError("uniqueness_error", taken_message, {"fields": [{"name": "name"}]})
        if "name" in body:
            record.name = body["name"]
        if body.get("labels") is not None:
            record.labels = dict(body["labels"])
        self.changed = True

    def record(self, entry: RequestRecord) -> None:
        self.requests.append(entry)
