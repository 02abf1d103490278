"""The simulated cloud: projects, servers, SSH keys and actions, behind one lock.

Handlers, the ticker thread and the control API all go through :class:`SimState`. Every public
method takes the lock and first lets time advance, so a client always sees statuses consistent
with the actions it polls, whether or not the ticker has run since.
"""

from __future__ import annotations

import collections
import hashlib
import secrets
import socket
import string
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

from nodewright.sim import catalog
from nodewright.sim.actions import Action
from nodewright.sim.addresses import AddressPool
from nodewright.sim.cloudinit import parse_user_data
from nodewright.sim.config import SimConfig
from nodewright.sim.errors import ApiError, invalid_input, not_found
from nodewright.sim.labels import SelectorError, parse_selector
from nodewright.sim.listing import bool_param, paginate, sort_items
from nodewright.sim.models import Capacity, RequestRecord, Server, SshKey
from nodewright.sim.validation import (
    USER_DATA_LIMIT,
    check_labels,
    fingerprint,
    is_ref,
    public_key_problem,
    raise_if,
    require_object,
    server_name_problem,
    ssh_key_name_problem,
)

TokenMode = Literal["read_write", "read_only", "revoked"]
Query = dict[str, list[str]]
JSON = dict[str, Any]


class Nodes(Protocol):
    """What the state needs from the node supervisor (absent when SSH nodes are off)."""

    def boot(self, spec: Any, restart: bool = False) -> None: ...
    def stop(self, server_id: int) -> None: ...
    def destroy(self, server_id: int) -> None: ...
    def state(self, server_id: int) -> str: ...
    def info(self, server_id: int) -> dict[str, object]: ...


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def default_project(token: str) -> str:
    """A project id derived from the token by a one-way hash: logs can carry it, never the token."""
    return "p-" + token_hash(token)[:16]


def _generate_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(20))


class SimState:
    def __init__(self, config: SimConfig, nodes: Nodes | None = None) -> None:
        self.config = config
        self.nodes = nodes
        self.node_spec_factory: Callable[[Server], Any] | None = None
        self.lock = threading.RLock()
        self.tokens: dict[str, tuple[str, TokenMode]] = {}
        self.servers: dict[int, Server] = {}
        self.ssh_keys: dict[int, SshKey] = {}
        self.actions: dict[int, Action] = {}
        self.running: list[Action] = []
        self.capacity: list[Capacity] = []
        self.server_limits: dict[str, int] = {}
        self.requests: collections.deque[RequestRecord] = collections.deque(maxlen=config.request_log_size)
        self.pool = AddressPool(config.ssh_address_range, self._address_free if nodes is not None else None)
        self.next_server_id = 4_200_001
        self.next_action_id = 91_000_001
        self.next_key_id = 1_800_001
        self.next_ip_id = 55_000_001
        self.changed = False

    def _address_free(self, address: str) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, self.config.ssh_port))
            except OSError:
                return False
        return True

    # -- identity -----------------------------------------------------------------------------
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

    # -- time ---------------------------------------------------------------------------------
    def _new_action(self, command: str, server: Server, duration: float, after: int | None = None) -> Action:
        action = Action(
            id=self.next_action_id,
            command=command,
            project=server.project,
            server_id=server.id,
            started=time.time(),
            duration=duration,
            after=after,
        )
        self.next_action_id += 1
        self.actions[action.id] = action
        self.running.append(action)
        self.changed = True
        return action

    def advance(self) -> None:
        """Begin and finish actions whose time has come; called by every request and the ticker."""
        with self.lock:
            if not self.running:
                return
            now = time.monotonic()
            progressed = True
            while progressed:  # a finished action may let its successor begin in the same pass
                progressed = False
                for action in list(self.running):
                    if action.after is not None:
                        before = self.actions.get(action.after)
                        if before is not None and before.status == "running":
                            continue
                        if before is not None and before.status == "error":
                            self._finish(action, {"code": "action_failed", "message": "Action failed"})
                            progressed = True
                            continue
                    if action.began is None:
                        action.began = now
                        self._begin(action)
                        progressed = True
                    if now - action.began >= action.duration and self._gate_open(action):
                        self._finish(action, action.planned_error)
                        progressed = True

    def _begin(self, action: Action) -> None:
        server = self.servers.get(action.server_id)
        if server is None:
            return
        if action.command == "start_server":
            server.status = "starting"
            if action.outcome != "left_off":
                self._boot(server)
        elif action.command in {"stop_server", "shutdown_server"}:
            server.status = "stopping"
            if self.nodes is not None:
                self.nodes.stop(server.id)
        elif action.command in {"reboot_server", "reset_server"} and server.status != "off":
            self._boot(server, restart=True)

    def _boot(self, server: Server, restart: bool = False) -> None:
        if self.nodes is not None and self.node_spec_factory is not None:
            spec = self.node_spec_factory(server)
            if spec is not None:
                self.nodes.boot(spec, restart=restart)

    def _gate_open(self, action: Action) -> bool:
        """Actions that stand for node work end only when the node has caught up, so that a server
        reported ``running`` really accepts SSH and a deleted one has no process left."""
        if self.nodes is None:
            return True
        node = self.nodes.state(action.server_id)
        if action.command == "start_server" and action.outcome != "left_off":
            return action.server_id not in self.servers or node in {"ready", "failed", "absent"}
        if action.command in {"stop_server", "shutdown_server"}:
            return node in {"stopped", "absent", "gone", "failed"}
        if action.command in {"reboot_server", "reset_server"}:
            return node in {"ready", "failed", "absent", "stopped"}
        if action.command == "delete_server":
            return node in {"gone", "absent"}
        return True

    def _finish(self, action: Action, error: dict[str, str] | None) -> None:
        action.status = "error" if error else "success"
        action.error = error
        action.finished = time.time()
        self.running.remove(action)
        self.changed = True
        server = self.servers.get(action.server_id)
        if server is None:
            return
        if action.command == "create_server":
            if error or not any(a.after == action.id for a in self.running):
                server.status = "off"
        elif action.command == "start_server":
            server.status = "off" if (error or action.outcome == "left_off") else "running"
        elif action.command in {"stop_server", "shutdown_server"}:
            server.status = "off"

    def locked(self, server_id: int) -> bool:
        return any(a.server_id == server_id for a in self.running)

    # -- lookup helpers -----------------------------------------------------------------------
    def _server(self, project: str, server_id: int) -> Server:
        server = self.servers.get(server_id)
        if server is None or server.project != project:
            raise not_found("server")
        return server

    def _server_json(self, server: Server) -> JSON:
        return server.to_json(self.locked(server.id))

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

    # -- servers ------------------------------------------------------------------------------
    def list_servers(self, project: str, query: Query) -> JSON:
        with self.lock:
            self.advance()
            matches = self._selector(query)
            names = query.get("name", [])
            statuses = set(query.get("status", []))
            items = [
                s
                for s in self.servers.values()
                if s.project == project
                and (not names or s.name == names[-1])
                and (not statuses or s.status in statuses)
                and matches(s.labels)
            ]
            items = sort_items(
                sorted(items, key=lambda s: s.id),
                query.get("sort", []),
                {"id": lambda s: s.id, "name": lambda s: s.name, "created": lambda s: (s.created, s.id)},
            )
            page, meta = paginate(items, query)
            return {"servers": [self._server_json(s) for s in page], "meta": meta}

    def get_server(self, project: str, server_id: int) -> JSON:
        with self.lock:
            self.advance()
            return {"server": self._server_json(self._server(project, server_id))}

    def _resolve_create(self, body: JSON) -> tuple[catalog.ServerType, catalog.Image, catalog.Location]:
        problems: dict[str, list[str]] = {}
        name_problem = server_name_problem(body.get("name"))
        if name_problem:
            problems["name"] = [name_problem]
        st: catalog.ServerType | None = None
        if not is_ref(body.get("server_type")):
            problems["server_type"] = ["is required"]
        else:
            st = catalog.find_server_type(body["server_type"])
            if st is None:
                problems["server_type"] = [f"server type {body['server_type']} not found"]
        images: list[catalog.Image] = []
        if not is_ref(body.get("image")):
            problems["image"] = ["is required"]
        else:
            images = catalog.find_images(body["image"])
            if not images:
                problems["image"] = [f"image {body['image']} not found"]
        location: catalog.Location | None = None
        if body.get("location") is not None:
            if not is_ref(body["location"]):
                problems["location"] = ["must be a location ID or name"]
            else:
                location = catalog.find_location(body["location"])
                if location is None:
                    problems["location"] = [f"location {body['location']} not found"]
        check_labels(body, problems)
        user_data = body.get("user_data")
        if user_data is not None:
            if not isinstance(user_data, str):
                problems["user_data"] = ["must be a string"]
            elif len(user_data.encode()) > USER_DATA_LIMIT:
                problems["user_data"] = ["is too long (limited to 32KiB)"]
        keys = body.get("ssh_keys")
        if keys is not None and (not isinstance(keys, list) or not all(is_ref(k) for k in keys)):
            problems["ssh_keys"] = ["must be a list of SSH key IDs or names"]
        for flag in ("start_after_create", "automount"):
            if flag in body and not isinstance(body[flag], bool):
                problems[flag] = ["must be a boolean"]
        public_net = body.get("public_net")
        if public_net is not None and (
            not isinstance(public_net, dict)
            or any(not isinstance(public_net.get(k, True), bool) for k in ("enable_ipv4", "enable_ipv6"))
        ):
            problems["public_net"] = ["enable_ipv4 and enable_ipv6 must be booleans"]
        raise_if(problems)
        assert st is not None
        if location is None:
            sold = [loc for loc in catalog.LOCATIONS if st.sold_in(loc.name)]
            location = sold[0] if sold else catalog.LOCATIONS[0]
        if st.deprecation is not None:
            raise invalid_input({"server_type": [f"server type {st.name} is deprecated"]})
        if location.name not in st.locations:
            raise invalid_input(
                {"server_type": [f"server type {st.name} is not available in location {location.name}"]}
            )
        if not st.sold_in(location.name):
            raise ApiError(
                "resource_unavailable",
                f"server type {st.name} is currently not available in location {location.name}",
            )
        matching = [img for img in images if img.architecture == st.architecture]
        if not matching:
            raise invalid_input(
                {"image": [f"image architecture does not match server type architecture {st.architecture}"]}
            )
        return st, matching[0], location

    def create_server(self, project: str, body: Any, outcome: str | None = None) -> JSON:
        """``outcome`` carries injected faults: ``action_error`` or ``left_off``."""
        body = require_object(body)
        with self.lock:
            self.advance()
            st, image, location = self._resolve_create(body)
            keys: list[SshKey] = []
            missing: list[str] = []
            for ref in body.get("ssh_keys") or []:
                key = self._key_by_ref(project, ref)
                if key is None:
                    missing.append(f"SSH key {ref} not found")
                else:
                    keys.append(key)
            if missing:
                raise invalid_input({"ssh_keys": missing})
            name = body["name"]
            if any(s.project == project and s.name == name for s in self.servers.values()):
                raise ApiError(
                    "uniqueness_error", "server name is already used", {"fields": [{"name": "name"}]}
                )
            limit = self.server_limits.get(
                project, self.server_limits.get("*", self.config.max_servers_per_project)
            )
            if limit is not None and sum(1 for s in self.servers.values() if s.project == project) >= limit:
                raise ApiError(
                    "resource_limit_exceeded",
                    "server limit exceeded",
                    {"limits": [{"name": "server_limit"}]},
                )
            for rule in self.capacity:
                if rule.blocks(location.name, st.name):
                    raise ApiError("resource_unavailable", rule.message)
            public_net = body.get("public_net") or {}
            ipv4 = self.pool.allocate() if public_net.get("enable_ipv4", True) else None
            server = Server(
                id=self.next_server_id,
                project=project,
                name=name,
                status="initializing",
                created=time.time(),
                server_type=st.name,
                image_id=image.id,
                location=location.name,
                labels=dict(body.get("labels") or {}),
                ipv4=ipv4,
                ipv4_id=self._ip_id() if ipv4 else None,
                ipv6_net=f"2001:db8:{self.next_server_id % 0xFFFF:x}::/64"
                if public_net.get("enable_ipv6", True)
                else None,
                ipv6_id=None,
                user_data=body.get("user_data"),
                authorized_keys=[k.public_key for k in keys]
                + parse_user_data(body.get("user_data")).authorized_keys,
            )
            if server.ipv6_net is not None:
                server.ipv6_id = self._ip_id()
            self.next_server_id += 1
            self.servers[server.id] = server
            create = self._new_action("create_server", server, self.config.create_duration)
            create.began = time.monotonic()
            next_actions: list[Action] = []
            if body.get("start_after_create", True):
                start = self._new_action("start_server", server, self.config.start_duration, after=create.id)
                next_actions.append(start)
                if outcome == "left_off":
                    start.outcome = "left_off"
            if outcome == "action_error":
                create.planned_error = {"code": "unknown_error", "message": "Unknown Error"}
            now = time.monotonic()
            return {
                "server": self._server_json(server),
                "action": create.to_json(now),
                "next_actions": [a.to_json(now) for a in next_actions],
                "root_password": None if keys else _generate_password(),
            }

    def _ip_id(self) -> int:
        self.next_ip_id += 1
        return self.next_ip_id - 1

    def update_server(self, project: str, server_id: int, body: Any) -> JSON:
        body = require_object(body)
        with self.lock:
            self.advance()
            server = self._server(project, server_id)
            self._rename_and_relabel(
                server, body, self.servers.values(), server_name_problem, "server name is already used"
            )
            return {"server": self._server_json(server)}

    def _require_unlocked(self, server: Server) -> None:
        if self.locked(server.id):
            # The wording of real captures, e.g. thetechnick/hcloud-ansible#30, terraform-provider-hcloud#492.
            raise ApiError("locked", "cannot perform operation because server is locked")

    def delete_server(self, project: str, server_id: int) -> JSON:
        with self.lock:
            self.advance()
            server = self._server(project, server_id)
            self._require_unlocked(server)
            action = self._new_action("delete_server", server, self.config.delete_duration)
            action.began = time.monotonic()
            self._remove(server)
            return {"action": action.to_json(time.monotonic())}

    def _remove(self, server: Server) -> None:
        del self.servers[server.id]
        self.pool.release(server.ipv4)
        self.changed = True
        if self.nodes is not None:
            self.nodes.destroy(server.id)

    def power(self, project: str, server_id: int, on: bool) -> JSON:
        return self.server_action(project, server_id, "start_server" if on else "stop_server")

    def server_action(self, project: str, server_id: int, command: str) -> JSON:
        """Power actions: ``start_server``, ``stop_server``, ``shutdown_server`` (graceful stop)
        and ``reboot_server``/``reset_server`` (the node restarts, its disk is kept)."""
        durations = {
            "start_server": self.config.start_duration,
            "stop_server": self.config.stop_duration,
            "shutdown_server": self.config.stop_duration,
            "reboot_server": self.config.start_duration,
            "reset_server": self.config.start_duration,
        }
        with self.lock:
            self.advance()
            server = self._server(project, server_id)
            self._require_unlocked(server)
            action = self._new_action(command, server, durations[command])
            self.advance()
            return {"action": action.to_json(time.monotonic())}

    # -- actions ------------------------------------------------------------------------------
    def get_action(self, project: str, action_id: int, server_id: int | None = None) -> JSON:
        with self.lock:
            self.advance()
            action = self.actions.get(action_id)
            if (
                action is None
                or action.project != project
                or (server_id is not None and action.server_id != server_id)
            ):
                raise not_found("action")
            return {"action": action.to_json(time.monotonic())}

    def _list_actions(self, items: list[Action], query: Query) -> JSON:
        statuses = set(query.get("status", []))
        items = [a for a in items if not statuses or a.status in statuses]
        items = sort_items(
            sorted(items, key=lambda a: a.id),
            query.get("sort", []),
            {
                "id": lambda a: a.id,
                "command": lambda a: a.command,
                "status": lambda a: a.status,
                "started": lambda a: (a.started, a.id),
                "finished": lambda a: (a.finished or 0.0, a.id),
                "progress": lambda a: a.progress(time.monotonic()),
            },
        )
        page, meta = paginate(items, query)
        now = time.monotonic()
        return {"actions": [a.to_json(now) for a in page], "meta": meta}

    def list_actions(self, project: str, query: Query) -> JSON:
        raw_ids = query.get("id", [])
        if not raw_ids:
            raise invalid_input({"id": ["is required: listing all actions is no longer supported"]})
        try:
            ids = {int(v) for v in raw_ids}
        except ValueError:
            raise invalid_input({"id": ["must be integers"]}) from None
        with self.lock:
            self.advance()
            items = [a for i in ids if (a := self.actions.get(i)) is not None and a.project == project]
            return self._list_actions(items, query)

    def server_actions(self, project: str, server_id: int, query: Query) -> JSON:
        with self.lock:
            self.advance()
            self._server(project, server_id)
            items = [a for a in self.actions.values() if a.server_id == server_id and a.project == project]
            return self._list_actions(items, query)

    # -- SSH keys -----------------------------------------------------------------------------
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

    def delete_ssh_key(self, project: str, key_id: int) -> None:
        with self.lock:
            key = self._key(project, key_id)
            del self.ssh_keys[key.id]
            self.changed = True

    # -- catalog ------------------------------------------------------------------------------
    @staticmethod
    def list_server_types(query: Query) -> JSON:
        names = query.get("name", [])
        items = [st for st in catalog.SERVER_TYPES if not names or st.name == names[-1]]
        page, meta = paginate(items, query)
        return {"server_types": [st.to_json() for st in page], "meta": meta}

    @staticmethod
    def list_locations(query: Query) -> JSON:
        names = query.get("name", [])
        items = [loc for loc in catalog.LOCATIONS if not names or loc.name == names[-1]]
        items = sort_items(items, query.get("sort", []), {"id": lambda x: x.id, "name": lambda x: x.name})
        page, meta = paginate(items, query)
        return {"locations": [loc.to_json() for loc in page], "meta": meta}

    def list_images(self, query: Query) -> JSON:
        names = query.get("name", [])
        types = set(query.get("type", []))
        architectures = set(query.get("architecture", []))
        statuses = set(query.get("status", []))
        include_deprecated = bool_param(query.get("include_deprecated", []), "include_deprecated", False)
        matches = self._selector(query)
        items = [
            img
            for img in catalog.IMAGES
            if (not names or img.name == names[-1])
            and (not types or "system" in types)
            and (not architectures or img.architecture in architectures)
            and (not statuses or "available" in statuses)
            and (include_deprecated or img.deprecated is None)
            and matches(img.labels)
        ]
        items = sort_items(
            sorted(items, key=lambda i: i.id),
            query.get("sort", []),
            {"id": lambda x: x.id, "name": lambda x: x.name, "created": lambda x: (x.created, x.id)},
        )
        page, meta = paginate(items, query)
        return {"images": [img.to_json() for img in page], "meta": meta}

    # -- control ------------------------------------------------------------------------------
    def all_servers(self, ssh_port: int) -> list[JSON]:
        with self.lock:
            self.advance()
            result = []
            for server in sorted(self.servers.values(), key=lambda s: s.id):
                node = self.nodes.info(server.id) if self.nodes is not None else {"state": "disabled"}
                result.append(
                    {
                        "id": server.id,
                        "name": server.name,
                        "project": server.project,
                        "status": server.status,
                        "locked": self.locked(server.id),
                        "labels": dict(server.labels),
                        "server_type": server.server_type,
                        "location": server.location,
                        "hostname": server.hostname(),
                        "ssh": {
                            "host": server.ipv4,
                            "port": ssh_port,
                            "user": "root",
                            "node": node,
                        },
                    }
                )
            return result

    def force_delete(self, server_id: int) -> bool:
        with self.lock:
            server = self.servers.get(server_id)
            if server is None:
                return False
            for action in [a for a in self.running if a.server_id == server_id]:
                self._finish(action, {"code": "server_deleted", "message": "server was deleted"})
            self._remove(server)
            return True

    def force_power_off(self, server_id: int) -> bool:
        with self.lock:
            server = self.servers.get(server_id)
            if server is None:
                return False
            server.status = "off"
            self.changed = True
            if self.nodes is not None:
                self.nodes.stop(server.id)
            return True

    def reset(self) -> None:
        with self.lock:
            for server in list(self.servers.values()):
                self._remove(server)
            self.ssh_keys.clear()
            self.actions.clear()
            self.running.clear()
            self.tokens.clear()
            self.capacity.clear()
            self.server_limits.clear()
            self.requests.clear()
            self.changed = True

    def resume_nodes(self) -> None:
        """After loading persisted state, bring back the nodes of servers that are running."""
        with self.lock:
            for server in self.servers.values():
                if server.status == "running":
                    self._boot(server)

    def record(self, entry: RequestRecord) -> None:
        self.requests.append(entry)
