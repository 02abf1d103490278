"""Servers: create (with its validation), read, update, delete, power actions, control ops."""

from __future__ import annotations

import ipaddress
import re
import secrets
import string
import time
from collections.abc import Callable
from typing import Any

from nodewright.sim import catalog
from nodewright.sim.actions import Action
from nodewright.sim.errors import ApiError, invalid_input
from nodewright.sim.listing import paginate, sort_items
from nodewright.sim.models import ProjectImage, Server, SshKey
from nodewright.sim.nodes.cloudinit import parse_user_data
from nodewright.sim.nodes.network import SLOT_PREFIX, TEST_NET, slot_ipv6_prefix
from nodewright.sim.resources.images import ImageRecord, ImagesResource
from nodewright.sim.store import JSON, Query
from nodewright.sim.validation import (
    check_labels,
    is_ref,
    raise_if,
    require_object,
    server_name_problem,
    user_data_problem,
)


def _generate_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(20))


def ipv6_net(ipv4: str | None, server_id: int) -> str:
    """A server's /64, derived from its IPv4 in the test range so that simulators holding disjoint
    IPv4 ranges also hand out disjoint /64s (``2001:db8:<slot + 1>:<offset>::/64``)."""
    if ipv4 is None:
        return f"2001:db8:0:{server_id % 0xFFFF:x}::/64"
    offset = int(ipaddress.IPv4Address(ipv4)) - int(TEST_NET.network_address)
    slot, index = divmod(offset, 2 ** (32 - SLOT_PREFIX))
    return f"{slot_ipv6_prefix(slot)}:{index:x}::/64"


# Create fields for resources the simulator does not model: refused rather than silently dropped,
# so a client never believes a server sits in a network or has a volume that does not exist.
UNMODELLED = {
    "networks": "private networks are not simulated",
    "volumes": "volumes are not simulated",
    "firewalls": "firewalls are not simulated",
    "placement_group": "placement groups are not simulated",
}


def unmodelled_fields(body: JSON, problems: dict[str, list[str]]) -> None:
    for name, reason in UNMODELLED.items():
        if body.get(name) not in (None, [], ""):
            problems[name] = [reason]
    public_net = body.get("public_net")
    if isinstance(public_net, dict):
        for name in ("ipv4", "ipv6"):
            if public_net.get(name) is not None:
                problems[f"public_net.{name}"] = ["primary IPs are not simulated; leave it out"]


# The windows Hetzner's backup_window takes (UTC, four hours each).
BACKUP_WINDOWS = ("22-02", "02-06", "06-10", "10-14", "14-18", "18-22")
FQDN_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
ServerChange = Callable[[Server], float | None]


def _fqdn(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and len(labels) >= 2 and all(FQDN_LABEL.match(label) for label in labels)


def _disk_of(image: ImageRecord) -> float:
    return image.disk_size if isinstance(image, ProjectImage) else 5


class ServersResource(ImagesResource):
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

    def _resolve_create(
        self, project: str, body: JSON
    ) -> tuple[catalog.ServerType, ImageRecord, catalog.Location]:
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
        images: list[ImageRecord] = []
        if not is_ref(body.get("image")):
            problems["image"] = ["is required"]
        else:
            images = self.find_image(project, body["image"])
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
        user_data = user_data_problem(body.get("user_data"))
        if user_data:
            problems["user_data"] = [user_data]
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
        unmodelled_fields(body, problems)
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
        return st, self._image_for(images, st, st.disk), location

    @staticmethod
    def _image_for(images: list[ImageRecord], st: catalog.ServerType, disk: float) -> ImageRecord:
        matching = [img for img in images if img.architecture == st.architecture]
        if not matching:
            raise invalid_input(
                {"image": [f"image architecture does not match server type architecture {st.architecture}"]}
            )
        if _disk_of(matching[0]) > disk:
            raise invalid_input(
                {
                    "image": [
                        f"image disk ({_disk_of(matching[0]):g} GB) is bigger than "
                        f"the server's disk ({disk} GB)"
                    ]
                }
            )
        return matching[0]

    def create_server(self, project: str, body: Any, outcome: str | None = None) -> JSON:
        """``outcome`` carries injected faults: ``action_error`` or ``left_off``."""
        body = require_object(body)
        with self.lock:
            self.advance()
            st, image, location = self._resolve_create(project, body)
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
                ipv6_net=ipv6_net(ipv4, self.next_server_id) if public_net.get("enable_ipv6", True) else None,
                ipv6_id=None,
                user_data=body.get("user_data"),
                authorized_keys=[k.public_key for k in keys]
                + parse_user_data(body.get("user_data")).authorized_keys,
            )
            if server.ipv6_net is not None:
                server.ipv6_id = self._ip_id()
            server.root_password = None if keys else _generate_password()
            server.key_login = bool(keys)
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
                "root_password": server.root_password,
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
            if server.protect_delete:
                raise ApiError("protected", "server deletion is protected")
            action = self._new_action("delete_server", server, self.config.delete_duration)
            action.began = time.monotonic()
            self._remove(server)
            return {"action": action.to_json(time.monotonic())}

    def _remove(self, server: Server) -> None:
        del self.servers[server.id]
        for image in [i for i in self.images.values() if i.bound_to == server.id]:
            self._drop_image(image)  # backups go with their server; snapshots stay
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

    # -- other server actions -----------------------------------------------------------------
    def _quick_action(self, project: str, server_id: int, command: str, change: ServerChange) -> JSON:
        """An action whose effect is a change of the server's record: the server must be unlocked,
        the change is validated and applied at once, and the action then runs for
        ``action_duration`` (the server is locked meanwhile), as the power actions do."""
        with self.lock:
            self.advance()
            server = self._server(project, server_id)
            self._require_unlocked(server)
            duration = change(server)
            self.changed = True
            action = self._new_action(
                command, server, self.config.action_duration if duration is None else duration
            )
            self.advance()
            return {"action": action.to_json(time.monotonic())}

    def change_protection(self, project: str, server_id: int, body: Any) -> JSON:
        body = require_object(body)
        problems = {
            name: ["must be a boolean"]
            for name in ("delete", "rebuild")
            if name in body and not isinstance(body[name], bool)
        }

        def change(server: Server) -> float | None:
            raise_if(problems)
            if "delete" in body:
                server.protect_delete = body["delete"]
            if "rebuild" in body:
                server.protect_rebuild = body["rebuild"]
            return None

        return self._quick_action(project, server_id, "change_protection", change)

    def enable_backup(self, project: str, server_id: int) -> JSON:
        def change(server: Server) -> float | None:
            # Hetzner picks the window; the simulator picks one of its four-hour windows by id.
            server.backup_window = BACKUP_WINDOWS[server.id % len(BACKUP_WINDOWS)]
            return None

        return self._quick_action(project, server_id, "enable_backup", change)

    def disable_backup(self, project: str, server_id: int) -> JSON:
        def change(server: Server) -> float | None:
            server.backup_window = None
            return None

        return self._quick_action(project, server_id, "disable_backup", change)

    def change_dns_ptr(self, project: str, server_id: int, body: Any) -> JSON:
        body = require_object(body)

        def change(server: Server) -> float | None:
            raw_ip, dns_ptr = body.get("ip"), body.get("dns_ptr")
            problems: dict[str, list[str]] = {}
            if not isinstance(raw_ip, str) or not raw_ip:
                problems["ip"] = ["is required and must be an IP address"]
            if dns_ptr is not None and (not isinstance(dns_ptr, str) or not _fqdn(dns_ptr)):
                problems["dns_ptr"] = ["must be a fully qualified domain name without trailing dot, or null"]
            raise_if(problems)
            try:
                ip = ipaddress.ip_address(raw_ip)
            except ValueError:
                raise invalid_input({"ip": ["is not a valid IP address"]}) from None
            if isinstance(ip, ipaddress.IPv4Address) and server.ipv4 == str(ip):
                server.ipv4_dns_ptr = dns_ptr
            elif (
                isinstance(ip, ipaddress.IPv6Address)
                and server.ipv6_net
                and ip in ipaddress.ip_network(server.ipv6_net)
            ):
                if dns_ptr is None:
                    server.ipv6_dns_ptr.pop(ip.compressed, None)
                else:
                    server.ipv6_dns_ptr[ip.compressed] = dns_ptr
            else:
                raise invalid_input({"ip": ["is not an IP address of this server"]})
            return None

        return self._quick_action(project, server_id, "change_dns_ptr", change)

    def attach_iso(self, project: str, server_id: int, body: Any) -> JSON:
        body = require_object(body)
        st_arch = {st.name: st.architecture for st in catalog.SERVER_TYPES}

        def change(server: Server) -> float | None:
            ref = body.get("iso")
            if not isinstance(ref, str | int) or isinstance(ref, bool) or ref == "":
                raise invalid_input({"iso": ["is required"]})
            found = catalog.find_iso(ref)
            if found is None:
                raise ApiError("not_found", "iso not found")
            if found.architecture not in {None, st_arch.get(server.server_type)}:
                raise invalid_input({"iso": ["is not compatible with the server type's architecture"]})
            server.iso = found.name
            return None

        return self._quick_action(project, server_id, "attach_iso", change)

    def detach_iso(self, project: str, server_id: int) -> JSON:
        def change(server: Server) -> float | None:
            attached = server.iso is not None
            server.iso = None
            return None if attached else 0.0  # nothing attached: the action succeeds at once

        return self._quick_action(project, server_id, "detach_iso", change)

    def change_type(self, project: str, server_id: int, body: Any) -> JSON:
        """Resize a stopped server: the new type must have the same architecture and storage type
        and a disk at least the server's; ``upgrade_disk`` false keeps the disk (so a later
        downgrade stays possible). As the document says, the server starts again afterwards."""
        body = require_object(body)
        with self.lock:
            self.advance()
            server = self._server(project, server_id)
            problems: dict[str, list[str]] = {}
            if not isinstance(body.get("upgrade_disk"), bool):
                problems["upgrade_disk"] = ["is required and must be a boolean"]
            ref = body.get("server_type")
            # The document says string; hcloud-python sends a known type's id as a number.
            if not isinstance(ref, str | int) or isinstance(ref, bool) or ref == "":
                problems["server_type"] = ["is required and must be the name or id of a server type"]
            raise_if(problems)
            self._require_unlocked(server)
            if server.status != "off":
                raise ApiError("server_not_stopped", "server must be stopped before changing its type")
            new = catalog.find_server_type(ref)
            old = catalog.find_server_type(server.server_type)
            assert old is not None
            disk = server.disk or old.disk
            if new is None:
                raise ApiError("invalid_server_type", f"server type {str(ref)[:64]!r} not found")
            if new.deprecation is not None:
                raise ApiError("invalid_server_type", f"server type {new.name} is deprecated")
            if (new.architecture, new.storage_type) != (old.architecture, old.storage_type):
                raise ApiError(
                    "invalid_server_type",
                    f"server type {new.name} does not fit this server (architecture or storage type differs)",
                )
            if new.disk < disk:
                raise ApiError(
                    "invalid_server_type",
                    f"server type {new.name} has a {new.disk} GB disk, smaller than the server's {disk} GB",
                )
            server.server_type = new.name
            server.disk = None if body["upgrade_disk"] or new.disk == disk else disk
            self.changed = True
            action = self._new_action("change_server_type", server, self.config.action_duration)
            self._new_action("start_server", server, self.config.start_duration, after=action.id)
            self.advance()
            return {"action": action.to_json(time.monotonic())}

    def rebuild(self, project: str, server_id: int, body: Any) -> JSON:
        """Overwrite the server's disk with an image (system, snapshot or backup): the node is
        powered off, its disk replaced, and it boots as a new instance (cloud-init runs again
        with the given or the previous user data; new host keys unless the user data names
        them). A server created without SSH keys gets a new root password."""
        body = require_object(body)
        with self.lock:
            self.advance()
            server = self._server(project, server_id)
            problems: dict[str, list[str]] = {}
            if not is_ref(body.get("image")):
                problems["image"] = ["is required and must be an image ID or name"]
            user_data = body.get("user_data")
            problem = user_data_problem(user_data)
            if problem:
                problems["user_data"] = [problem]
            raise_if(problems)
            if server.protect_rebuild:
                raise ApiError("protected", "server rebuild is protected")
            self._require_unlocked(server)
            images = self.find_image(project, body["image"])
            if not images:
                raise invalid_input({"image": [f"image {str(body['image'])[:64]} not found"]})
            st = catalog.find_server_type(server.server_type)
            assert st is not None
            image = self._image_for(images, st, server.disk or st.disk)
            if user_data is not None:
                old = set(parse_user_data(server.user_data).authorized_keys)
                kept = [k for k in server.authorized_keys if k not in old]
                server.authorized_keys = kept + list(parse_user_data(user_data).authorized_keys)
                server.user_data = user_data
            server.image_id = image.id
            server.rescue_enabled = False
            server.root_password = None if server.key_login else _generate_password()
            self.changed = True
            action = self._new_action("rebuild_server", server, self.config.start_duration)
            self.advance()
            return {"action": action.to_json(time.monotonic()), "root_password": server.root_password}

    def enable_rescue(self, project: str, server_id: int, body: Any) -> JSON:
        """The rescue system boots at the server's next boot (a reboot is the caller's), with
        the password returned here and the given keys; the boot into it uses it up."""
        body = require_object(body)
        with self.lock:
            self.advance()
            server = self._server(project, server_id)
            problems: dict[str, list[str]] = {}
            if body.get("type") not in (None, "linux64"):  # hcloud-python sends null
                problems["type"] = ["must be linux64"]
            refs = body.get("ssh_keys") or []
            if not isinstance(refs, list) or not all(
                isinstance(r, int) and not isinstance(r, bool) for r in refs
            ):
                problems["ssh_keys"] = ["must be a list of SSH key IDs"]
            raise_if(problems)
            keys = [self._key_by_ref(project, ref) for ref in refs]
            missing = [f"SSH key {ref} not found" for ref, key in zip(refs, keys, strict=True) if key is None]
            if missing:
                raise invalid_input({"ssh_keys": missing})
            self._require_unlocked(server)
            password = _generate_password()

            def change(target: Server) -> float | None:
                target.rescue_enabled = True
                target.rescue_keys = [k.public_key for k in keys if k is not None]
                target.rescue_password = password
                return None

            result = self._quick_action(project, server_id, "enable_rescue", change)
            return {**result, "root_password": password}

    def disable_rescue(self, project: str, server_id: int) -> JSON:
        def change(server: Server) -> float | None:
            server.rescue_enabled = False
            server.rescue_keys, server.rescue_password = [], None
            return None

        return self._quick_action(project, server_id, "disable_rescue", change)

    def create_image(self, project: str, server_id: int, body: Any) -> JSON:
        """Copy the server's disk into a new image: a snapshot (independent of the server) or a
        backup (bound to it, deleted with it; only with backups enabled). The image is
        ``creating`` until the copy is done."""
        body = require_object(body)
        with self.lock:
            self.advance()
            server = self._server(project, server_id)
            problems: dict[str, list[str]] = {}
            kind = body.get("type", "snapshot")
            kind = "snapshot" if kind is None else kind  # null (hcloud-python's default): the default
            if kind not in ("snapshot", "backup"):
                problems["type"] = ["must be snapshot or backup"]
            if body.get("description") is not None and not isinstance(body["description"], str):
                problems["description"] = ["must be a string"]
            check_labels(body, problems)
            raise_if(problems)
            if kind == "backup" and server.backup_window is None:
                raise invalid_input({"type": ["backups are not enabled for this server (enable_backup)"]})
            self._require_unlocked(server)
            st = catalog.find_server_type(server.server_type)
            source = self._image_json(server.image_id) or {}
            assert st is not None
            created = time.time()
            image = ProjectImage(
                id=self.next_image_id,
                project=project,
                type=kind,
                status="creating",
                description=body.get("description")
                or f"{server.name}-{time.strftime('%Y%m%d%H%M%S', time.gmtime(created))}",
                created=created,
                created_from={"id": server.id, "name": server.name},
                bound_to=server.id if kind == "backup" else None,
                os_flavor=str(source.get("os_flavor") or "unknown"),
                os_version=source.get("os_version"),
                architecture=st.architecture,
                disk_size=server.disk or st.disk,
                labels=dict(body.get("labels") or {}),
            )
            self.next_image_id += 1
            self.images[image.id] = image
            action = self._new_action("create_image", server, self.config.action_duration)
            action.resources = [{"id": server.id, "type": "server"}, {"id": image.id, "type": "image"}]
            self.advance()
            return {"image": image.to_json(), "action": action.to_json(time.monotonic())}

    def not_simulated(self, project: str, server_id: int, what: str) -> JSON:
        """A server action the simulator does not model: 404 for an unknown server, else 422
        ``unsupported_error``."""
        with self.lock:
            self.advance()
            self._server(project, server_id)
        raise ApiError("unsupported_error", f"{what} is not simulated")

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

    def sync_nodes(self) -> None:
        """A node that stopped by itself (in-node ``poweroff``, a crashed init) leaves its server
        ``off``, as a VM that powered off or crashed; called by the ticker."""
        if self.nodes is None:
            return
        with self.lock:
            for server in self.servers.values():
                if server.status != "running" or self.locked(server.id):
                    continue
                if self.nodes.state(server.id) == "stopped":
                    server.status = "off"
                    self.changed = True

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

    def resume_nodes(self) -> None:
        """After loading persisted state, bring back the nodes of servers that are running."""
        with self.lock:
            for server in self.servers.values():
                if server.status == "running":
                    self._boot(server)
