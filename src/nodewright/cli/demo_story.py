"""What ``nodewright demo`` shows once its server answers, told from a thread beside uvicorn: the
reconcile that settles the previous run's nodes, then ``demo-1`` created through the API (the same
``POST /api/nodes`` and durable job the dashboard and ``nodewright nodes create`` use) with its stages
as they happen, and last the dashboard's address, the first login and how to log in to the node.

Every request goes over HTTP with the demo's own token, as any client's would.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodewright.cli.client import ApiClient, ApiError
from nodewright.cli.errors import say
from nodewright.cli.nodes import SETTLED, describe, follow, read_public_key, request_node
from nodewright.cli.options import resolve
from nodewright.demo import first_node
from nodewright.demo.operator_key import OperatorKey
from nodewright.security.text import clean_line

if TYPE_CHECKING:
    import uvicorn

    from nodewright.security.secret import Secret

NODE = first_node.NODE_NAME
READY_WAIT_SECONDS = 30.0
RECONCILE_WAIT_SECONDS = 30.0
NODE_WAIT_SECONDS = 900.0
POLL_SECONDS = 0.25
STAGE_WORDS: dict[tuple[str, str | None], str] = {
    ("pending", "acquire"): "waiting for a worker…",
    ("acquiring", "acquire"): "acquiring server…",
    ("provisioning", "connect"): "connecting over SSH…",
    ("provisioning", "provision"): "provisioning…",
    ("verifying", "verify"): "verifying…",
}


@dataclass
class Plan:
    """What was settled before serving (``nodewright.cli.demo``)."""

    url: str
    provider_id: int | None
    data_dir: Path
    token: Secret | None = None
    reconcile_job: int | None = None
    existing: first_node.Existing | None = None
    create: bool = False
    key: OperatorKey | None = None


def ssh_command(key: OperatorKey | None) -> str:
    identity = f" --identity {key.identity}" if key is not None and key.identity is not None else ""
    return f"nodewright nodes ssh {NODE}{identity}"


class Story:
    def __init__(self, plan: Plan, welcome: list[str], server: uvicorn.Server) -> None:
        self.plan = plan
        self.welcome = welcome
        self.server = server
        self.stopping = threading.Event()  # set when the servers stop: the story ends, silently
        self._lock = threading.Lock()
        self._welcomed = False

    def _over(self) -> bool:
        return self.stopping.is_set() or self.server.should_exit

    def _say(self, line: str) -> None:
        with self._lock:
            if not self._over():
                say(line)

    def tell(self) -> None:
        if not self._wait_until_served():
            return
        last: list[str] = []
        try:
            if self.plan.token is not None:
                with ApiClient(self.plan.url, self.plan.token, timeout=10.0) as api:
                    self._reconciled(api)
                    last = self._create(api) if self.plan.create else self._earlier(api)
        except ApiError as exc:
            self._say(f"{NODE}: {exc.message}")
        except Exception as exc:  # the story must not take the servers down with it
            self._say(f"demo: could not finish ({exc.__class__.__name__}); the servers go on")
        with self._lock:
            if self._over():
                return
            for line in [*self.welcome, *last]:
                say(line)
            self._welcomed = True

    def finish(self) -> None:
        """At shutdown: a first login not shown yet (stopped before demo-1 was ready) is shown now,
        once, as it would otherwise be lost."""
        self.stopping.set()
        with self._lock:
            if not self._welcomed:
                for line in self.welcome[1:]:  # not "running at": it no longer is
                    say(line)
                self._welcomed = True

    def _wait_until_served(self) -> bool:
        deadline = time.monotonic() + READY_WAIT_SECONDS
        while not self.server.started:
            if self._over() or time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return not self._over()

    def _reconciled(self, api: ApiClient) -> None:
        """Wait for the reconcile queued at start: the previous run's nodes are settled first."""
        if self.plan.reconcile_job is None:
            return
        deadline = time.monotonic() + RECONCILE_WAIT_SECONDS
        while not self._over():
            job: dict[str, Any] = api.get(f"/api/jobs/{self.plan.reconcile_job}")
            if job["state"] in ("succeeded", "failed", "canceled"):
                lost = (job.get("result") or {}).get("lost") or []
                if lost:
                    self._say(f"Reconciled with the new simulator: {len(lost)} node(s) of the previous run "
                              "are lost (a restarted simulator keeps no servers).")  # fmt: skip
                elif job["state"] != "succeeded":
                    self._say(f"Reconcile job {job['id']} {job['state']}: see /jobs/{job['id']}.")
                return
            if time.monotonic() > deadline:
                self._say(f"Reconcile job {job['id']} is still {job['state']}; it goes on in the background.")
                return
            time.sleep(POLL_SECONDS)

    def _create(self, api: ApiClient) -> list[str]:
        key = self.plan.key
        keys = [read_public_key(key.public_file)] if key is not None else []
        accepted = request_node(api, name=NODE, provider=str(self.plan.provider_id), keys=keys)
        node, job = accepted["node"], accepted["job"]
        first_node.write_record(self.plan.data_dir, int(node["id"]), int(job["id"]))
        self._say(f"Creating node {NODE} through the API (job {job['id']}): {node['location']}, "
                  f"{node['server_type']}, {node['image']}, profile {node['profile']}")  # fmt: skip
        began = time.monotonic()

        def report(change: dict[str, Any]) -> None:
            words = STAGE_WORDS.get((change["status"], change.get("stage")))
            if words is not None:
                self._say(f"  [{time.monotonic() - began:4.0f} s] {words}")

        final = follow(api, int(node["id"]), until=SETTLED, timeout=NODE_WAIT_SECONDS, report=report,
                       interval=POLL_SECONDS)  # fmt: skip
        seconds = time.monotonic() - began
        if final["status"] == "ready":
            address = clean_line(str((final.get("ssh") or {}).get("address", "-")))
            self._say(f"  {NODE} is ready in {seconds:.0f} s at {address}")
            return [f"Log in to it: {ssh_command(key)}"]
        self._say(describe(final))
        return [f"{NODE} did not become ready: `nodewright nodes retry {NODE}` tries again from the "
                "stage that failed."]  # fmt: skip

    def _earlier(self, api: ApiClient) -> list[str]:
        """A later start: the node the first one made, as it is now (never a new one)."""
        try:
            node: dict[str, Any] = api.get(f"/api/nodes/{resolve(api, NODE)}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            node = {}
        if not node:
            if self.plan.existing is None:
                return []
            return [f"A demo node was made from this data directory before: no other is made. Create "
                    f"one at {self.plan.url}/nodes."]  # fmt: skip
        status = clean_line(str(node["status"]))
        self._say(f"{NODE} (made on the first start) is {status}.")
        if status == "ready":
            return [f"Log in to it: {ssh_command(self.plan.key)}"]
        if status == "lost":
            return [f"Its server went with the previous simulator. `nodewright nodes delete {NODE}` "
                    f"clears it; `nodewright nodes create --name demo-2 --ssh-key {self._public()} --wait` "
                    "makes another."]  # fmt: skip
        return [f"`nodewright nodes show {NODE}` has the details."]

    def _public(self) -> Path | str:
        return self.plan.key.public_file if self.plan.key is not None else "~/.ssh/id_ed25519.pub"
