"""Actions: the simulated clock that begins and finishes them, and the action endpoints."""

from __future__ import annotations

import time

from nodewright.sim.actions import Action
from nodewright.sim.errors import invalid_input, not_found
from nodewright.sim.listing import paginate, sort_items
from nodewright.sim.models import Server
from nodewright.sim.store import JSON, Query, Store


class ActionsResource(Store):
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
                        self._finish(action, action.planned_error or self._node_error(action))
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
        elif action.command == "rebuild_server":
            server.status = "rebuilding"
            self._boot(server, restart=True, reset_disk=True)
        elif action.command == "create_image" and self.nodes is not None:
            self.nodes.snapshot(server.id, self._action_image(action))

    @staticmethod
    def _action_image(action: Action) -> int:
        return int(next(r["id"] for r in action.resources if r["type"] == "image"))

    def _boot(self, server: Server, restart: bool = False, reset_disk: bool = False) -> None:
        """Boot the server's node: from its disk, from a new disk (rebuild), or into the rescue
        system when rescue is enabled (which the boot uses up)."""
        rescue = server.rescue_enabled and not reset_disk
        if rescue:
            server.rescue_enabled = False
            self.changed = True
        if self.nodes is not None and self.node_spec_factory is not None:
            spec = self.node_spec_factory(server, rescue)
            if spec is not None:
                self.nodes.boot(spec, restart=restart, reset_disk=reset_disk)

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
        if action.command == "rebuild_server":
            return action.server_id not in self.servers or node in {"ready", "failed", "absent"}
        if action.command == "create_image":
            return self.nodes.snapshot_state(self._action_image(action)) in {"done", "failed", None}
        if action.command == "delete_server":
            return node in {"gone", "absent"}
        return True

    def _node_error(self, action: Action) -> dict[str, str] | None:
        """A start (or reboot) whose node did not come up fails, as a server that does not boot
        would: a server is ``running`` only when its own node answers at its address."""
        if action.command == "create_image":
            if self.nodes is not None and self.nodes.snapshot_state(self._action_image(action)) == "failed":
                return {"code": "action_failed", "message": "the server's disk could not be copied"}
            return None
        if self.nodes is None or action.command not in {
            "start_server",
            "reboot_server",
            "reset_server",
            "rebuild_server",
        }:
            return None
        if action.outcome == "left_off" or action.server_id not in self.servers:
            return None
        info = self.nodes.info(action.server_id)
        if info.get("state") != "failed":
            return None
        reason = str(info.get("error") or "the node did not start")[-300:]
        return {"code": "action_failed", "message": f"server did not start: {reason}"}

    def _finish(self, action: Action, error: dict[str, str] | None) -> None:
        action.status = "error" if error else "success"
        action.error = error
        action.finished = time.time()
        self.running.remove(action)
        self.changed = True
        if action.command == "create_image":
            self._finish_image(action, error)
        server = self.servers.get(action.server_id)
        if server is None:
            return
        if action.command == "create_server":
            if error or not any(a.after == action.id for a in self.running):
                server.status = "off"
        elif action.command in {"start_server", "rebuild_server"}:
            server.status = "off" if (error or action.outcome == "left_off") else "running"
        elif action.command in {"stop_server", "shutdown_server"} or (
            action.command in {"reboot_server", "reset_server"} and error
        ):
            server.status = "off"

    def _finish_image(self, action: Action, error: dict[str, str] | None) -> None:
        image = self.images.get(self._action_image(action))
        if image is None:
            return
        if error is not None:  # a failed image is not kept, as on Hetzner
            del self.images[image.id]
            if self.nodes is not None:
                self.nodes.delete_image(image.id)
            return
        image.status = "available"
        size = self.nodes.snapshot_size(image.id) if self.nodes is not None else 0
        image.image_size = round(max(size, 1) / 1e9, 2) or 0.01

    # -- endpoints ----------------------------------------------------------------------------
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
