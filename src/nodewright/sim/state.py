"""The simulated cloud: every API resource over one shared store, behind one lock.

Handlers, the ticker thread and the control API all go through :class:`SimState`, which composes
the per-resource modules (hcloud-python's layout: servers, actions, SSH keys, catalog, tokens).
"""

from __future__ import annotations

from nodewright.sim.resources.catalog import CatalogResource
from nodewright.sim.resources.servers import ServersResource
from nodewright.sim.resources.ssh_keys import SshKeysResource
from nodewright.sim.resources.tokens import TokensResource
from nodewright.sim.store import JSON, Nodes, Query, TokenMode, default_project, token_hash

__all__ = ["JSON", "Nodes", "Query", "SimState", "TokenMode", "default_project", "token_hash"]


class SimState(ServersResource, SshKeysResource, CatalogResource, TokensResource):
    def reset(self) -> None:
        with self.lock:
            for server in list(self.servers.values()):
                self._remove(server)
            self.ssh_keys.clear()
            for image_id in list(self.images):
                self._drop_image(self.images[image_id])
            self.actions.clear()
            self.running.clear()
            self.tokens.clear()
            self.capacity.clear()
            self.server_limits.clear()
            self.requests.clear()
            self.changed = True
