"""The Hetzner Cloud adapter: validate, catalog, acquire, inspect, release, list owned servers.

Acquire is create server -> poll actions -> fetch server, written to survive a crash or a lost
answer at any point without making a second server:

- the server name is deterministic and the server carries ownership labels (installation, node);
- before creating, the adapter looks the server up by those labels and adopts it if it exists;
- a create that fails ambiguously (no answer, 5xx) is followed by the same lookup at once;
- ``uniqueness_error`` adopts the server of that name only when its labels are ours, otherwise it
  is ``name_conflict`` (someone else's server);
- the server id and the action ids are checkpointed (job steps) before any waiting, and a resumed
  attempt continues from them.

A server whose actions failed (or that vanished) is deleted and the failure recorded as a
``cleanup.<n>`` step, so the next attempt starts generation n+1 with a fresh create.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import hcloud
from hcloud.servers.client import BoundServer

from nodewright.providers.base import (
    LABEL_INSTALLATION,
    LABEL_NODE,
    AcquireRequest,
    AcquireResult,
    AcquisitionEvidence,
    Catalog,
    CatalogImage,
    CatalogLocation,
    CatalogPrice,
    CatalogServerType,
    Checkpoints,
    ClientKey,
    ConnectionInfo,
    ProviderCall,
    ReleaseEvidence,
    ServerInfo,
    SnapshotImage,
    SshTarget,
    ValidationResult,
)
from nodewright.providers.errors import ErrorCode, ProviderError
from nodewright.providers.hetzner.cloudinit import user_data
from nodewright.providers.hetzner.poller import ActionPoller
from nodewright.providers.hetzner.transport import Budget, HetznerTransport

log = logging.getLogger(__name__)

WRITE_PROBE_KEY_NAME = "nodewright-write-probe"
AMBIGUOUS = (ErrorCode.provider_unavailable,)  # the create may or may not have happened
STATUS_MAP = {
    "running": "running",
    "initializing": "starting",
    "starting": "starting",
    "off": "off",
    "stopping": "off",
    "deleting": "deleting",
}


def ownership_labels(installation_id: str, node_id: int) -> dict[str, str]:
    return {LABEL_INSTALLATION: installation_id, LABEL_NODE: str(node_id)}


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}=={v}" for k, v in sorted(labels.items()))


def server_info(server: BoundServer) -> ServerInfo:
    ipv4 = server.public_net.ipv4.ip if server.public_net and server.public_net.ipv4 else None
    ipv6 = None
    if server.public_net and server.public_net.ipv6 and server.public_net.ipv6.ip:
        # Hetzner gives the /64; by convention the server answers on ::1 of it.
        ipv6 = server.public_net.ipv6.ip.split("/")[0] + "1"
    return ServerInfo(
        id=int(server.id or 0),
        name=str(server.name),
        status=STATUS_MAP.get(str(server.status), "unknown"),
        labels=dict(server.labels or {}),
        ipv4=ipv4,
        ipv6=ipv6,
        location=server.location.name if server.location else None,
        server_type=server.server_type.name if server.server_type else None,
    )


class HetznerAdapter:
    def __init__(
        self,
        connection: ConnectionInfo,
        *,
        budget: Budget | None = None,
        poller: ActionPoller | None = None,
        action_timeout: float = 600.0,
    ) -> None:
        self.connection = connection
        self.transport = HetznerTransport(connection, budget=budget)
        # A private poller when none is shared (tests of one call); acquisitions share the process's.
        self.poller = poller or ActionPoller(HetznerTransport(connection, budget=budget))
        self.action_timeout = action_timeout

    def close(self) -> None:
        self.transport.close()

    # --- validate ---------------------------------------------------------------------------------

    def validate(self) -> ValidationResult:
        """A read (list one location) proves the token; a write that cannot succeed (an SSH key with
        an invalid public key) tells a read-only token (401 token_readonly) from a read-write one
        (422 invalid_input): nothing is ever created by it."""
        self.transport.request("validate", "GET", "/locations", params={"per_page": 1})
        try:
            self.transport.request(
                "validate",
                "POST",
                "/ssh_keys",
                json={"name": WRITE_PROBE_KEY_NAME, "public_key": "not-a-key (nodewright write probe)"},
            )
        except ProviderError as error:
            if error.code is ErrorCode.permission_denied:
                raise ProviderError(
                    ErrorCode.permission_denied,
                    "The token is read-only: nodewright must create servers.",
                    retryable=False,
                    hint="Read-only token: create a Read & Write token.",
                    provider_code=error.provider_code,
                    http_status=error.http_status,
                ) from None
            if error.code is not ErrorCode.invalid_combination:
                raise
        else:
            # The probe was accepted (a provider that does not validate keys): remove what it made.
            self._delete_probe_key()
        self.transport.take_calls()
        return ValidationResult(can_read=True, can_write=True)

    def _delete_probe_key(self) -> None:
        found = self.transport.request("validate", "GET", "/ssh_keys", params={"name": WRITE_PROBE_KEY_NAME})
        for key in found.get("ssh_keys", []):
            self.transport.request("validate", "DELETE", f"/ssh_keys/{int(key['id'])}")

    # --- catalog ----------------------------------------------------------------------------------

    def catalog(self) -> Catalog:
        def fetch(client: hcloud.Client) -> Catalog:
            locations = client.locations.get_all()
            types = client.server_types.get_all()
            images = client.images.get_all(type=["system"])
            # Filtered here: hcloud-python sends per_page's value as `status` (its images quirk).
            snapshots = [i for i in client.images.get_all(type=["snapshot"]) if i.status == "available"]
            return Catalog(
                locations=tuple(
                    CatalogLocation(
                        name=str(loc.name),
                        description=str(loc.description or ""),
                        country=str(loc.country or ""),
                        city=str(loc.city or ""),
                        network_zone=str(loc.network_zone or ""),
                    )
                    for loc in locations
                ),
                server_types=tuple(_server_type(st) for st in types),
                images=tuple(
                    CatalogImage(
                        name=str(img.name),
                        description=str(img.description or ""),
                        architecture=str(img.architecture or ""),
                        os_flavor=str(img.os_flavor or ""),
                        deprecated=getattr(img, "deprecation", None) is not None,
                    )
                    for img in images
                    if img.name and img.status == "available"
                )
                + tuple(
                    CatalogImage(
                        name=str(img.id),
                        description=f"snapshot: {img.description or ''}".strip(),
                        architecture=str(img.architecture or ""),
                        os_flavor=str(img.os_flavor or ""),
                        deprecated=False,
                        kind="snapshot",
                    )
                    for img in snapshots
                ),
            )

        return self.transport.call("catalog", fetch)

    # --- client key -------------------------------------------------------------------------------

    def ensure_client_key(self, key: ClientKey, name: str) -> int:
        """Find the key by fingerprint, else register it; Hetzner refuses a second copy anyway."""
        found = self.transport.request(
            "client_key", "GET", "/ssh_keys", params={"fingerprint": key.fingerprint_md5}
        )
        for item in found.get("ssh_keys", []):
            return int(item["id"])
        try:
            created = self.transport.request(
                "client_key", "POST", "/ssh_keys", json={"name": name, "public_key": key.public_openssh}
            )
        except ProviderError as error:
            if error.provider_code != "uniqueness_error":
                raise
            again = self.transport.request(
                "client_key", "GET", "/ssh_keys", params={"fingerprint": key.fingerprint_md5}
            )
            for item in again.get("ssh_keys", []):
                return int(item["id"])
            raise ProviderError(
                ErrorCode.name_conflict,
                f"an SSH key named {name!r} with another fingerprint exists in the project",
                retryable=False,
                hint="Delete or rename that SSH key at Hetzner.",
            ) from None
        return int(created["ssh_key"]["id"])

    # --- the lifecycle steps (each one call or one wait; tests drive them one by one) -------------

    def find_owned(self, labels: Mapping[str, str], step: str = "lookup") -> list[BoundServer]:
        selector = _selector(labels)
        return self.transport.call(
            step, lambda c: c.servers.get_list(label_selector=selector, per_page=50).servers
        )

    def create_server(
        self, request: AcquireRequest, key_id: int, labels: Mapping[str, str]
    ) -> tuple[int, list[int]]:
        data = self.transport.request(
            "create",
            "POST",
            "/servers",
            json={
                "name": request.server_name,
                "server_type": request.server_type,
                "image": request.image,
                "location": request.location,
                "start_after_create": True,
                "ssh_keys": [key_id],
                "labels": dict(labels),
                "user_data": user_data(request),
                "public_net": {"enable_ipv4": True, "enable_ipv6": True},
            },
        )
        server_id = int(data["server"]["id"])
        action_ids = [int(data["action"]["id"])] + [int(a["id"]) for a in data.get("next_actions") or []]
        return server_id, action_ids

    def wait_actions(
        self, action_ids: list[int], kind: str, canceled: Callable[[], bool] = lambda: False
    ) -> list[dict[str, Any]]:
        return self.poller.wait(action_ids, kind, canceled=canceled, timeout=self.action_timeout)

    def fetch_server(self, server_id: int, step: str = "fetch") -> BoundServer:
        return self.transport.call(step, lambda c: c.servers.get_by_id(server_id))

    def delete_server(self, server_id: int) -> int | None:
        """Start the delete; the action id, or None when the server is already gone."""
        try:
            data = self.transport.request("delete", "DELETE", f"/servers/{server_id}")
        except ProviderError as error:
            if error.code is ErrorCode.not_found:
                return None
            raise
        action = data.get("action") or {}
        return int(action["id"]) if action.get("id") else None

    # --- acquire ----------------------------------------------------------------------------------

    def acquire(
        self, request: AcquireRequest, checkpoints: Checkpoints, *, client_key_id: int | None = None
    ) -> AcquireResult:
        labels = {**request.labels, **ownership_labels(request.installation_id, request.node_id)}
        self.transport.take_calls()  # evidence starts here
        done = _completed(checkpoints)
        generation = 1
        while f"provider.cleanup.{generation}" in done:
            generation += 1
        g = generation

        def key_step() -> dict[str, Any]:
            key_id = client_key_id or self.ensure_client_key(
                request.client_key, f"nodewright-{request.installation_id[:12]}"
            )
            return {"key_id": key_id, "calls": self._calls()}

        key = checkpoints.step("provider.client_key", key_step)
        key_id = int(key["key_id"])

        # A first attempt cannot have created anything: the create's name uniqueness (adopting on
        # uniqueness_error when the labels are ours) guards it, and the lookup call is saved. A
        # resumed attempt, or a new generation after a cleanup, looks up by labels first.
        resuming = checkpoints.attempt > 1 or g > 1

        def server_step() -> dict[str, Any]:
            return {**self._find_or_create(request, key_id, labels, resuming), "calls": self._calls()}

        server = checkpoints.step(f"provider.server.{g}", server_step)
        server_id = int(server["server_id"])
        checkpoints.log(
            f"server {server_id} {'adopted' if server['adopted'] else 'created'}",
            server_id=server_id,
            action_ids=server["action_ids"],
        )

        def actions_step() -> dict[str, Any]:
            ids = list(server["action_ids"])
            if server["adopted"]:
                ids = self._running_actions(server_id)
            kind = f"create:{request.server_type}:{request.location}"
            try:
                waited = self.wait_actions(ids, kind, lambda: checkpoints.canceled)
            except ProviderError as error:
                if error.code is ErrorCode.action_failed:
                    self._cleanup(checkpoints, g, server_id, error)
                raise
            return {"actions": waited, "calls": self._calls()}

        actions = checkpoints.step(f"provider.actions.{g}", actions_step)

        def fetch_step() -> dict[str, Any]:
            try:
                found = self.fetch_server(server_id)
            except ProviderError as error:
                if error.code is ErrorCode.not_found:
                    self._cleanup(checkpoints, g, server_id, error)
                    raise ProviderError(
                        ErrorCode.provider_unavailable,
                        f"server {server_id} vanished at Hetzner before it was ready; a new one will be made",
                        retryable=True,
                    ) from None
                raise
            info = server_info(found)
            if info.status == "off":
                # Hetzner sometimes leaves a new server off (CAPH works around the same): power it on.
                data = self.transport.request("poweron", "POST", f"/servers/{server_id}/actions/poweron")
                self.wait_actions([int(data["action"]["id"])], "poweron", lambda: checkpoints.canceled)
                info = server_info(self.fetch_server(server_id))
            if info.status != "running":
                raise ProviderError(
                    ErrorCode.provider_busy,
                    f"server {server_id} is {info.status}, not running yet",
                    retryable=True,
                )
            if info.labels.get(LABEL_NODE) != str(request.node_id):
                raise ProviderError(
                    ErrorCode.name_conflict, f"server {server_id} is not this node's", retryable=False
                )
            return {
                "ipv4": info.ipv4,
                "ipv6": info.ipv6,
                "status": info.status,
                "name": info.name,
                "calls": self._calls(),
            }

        fetched = checkpoints.step(f"provider.fetch.{g}", fetch_step)
        address = fetched["ipv4"] or fetched["ipv6"]
        if not address:
            raise ProviderError(
                ErrorCode.provider_error, f"server {server_id} has no public address", retryable=False
            )
        target = SshTarget(
            address=str(address),
            port=self.connection.ssh_port,
            user=self.connection.ssh_user,
            host_public_key=request.host_key.public_openssh.strip(),
        )
        evidence = AcquisitionEvidence(
            server_id=server_id,
            server_name=str(fetched["name"]),
            adopted=bool(server["adopted"]),
            addresses={"ipv4": fetched["ipv4"], "ipv6": fetched["ipv6"]},
            actions=list(actions["actions"]),
        )
        evidence.calls.extend(_calls_of(_completed(checkpoints), "provider."))
        return AcquireResult(target=target, evidence=evidence)

    def _calls(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.transport.take_calls()]

    def _find_or_create(
        self, request: AcquireRequest, key_id: int, labels: Mapping[str, str], look_first: bool
    ) -> dict[str, Any]:
        owned = self._owned_by(labels) if look_first else None
        if owned is not None:
            return {"server_id": owned, "action_ids": [], "adopted": True}
        try:
            server_id, action_ids = self.create_server(request, key_id, labels)
        except ProviderError as error:
            if error.code in AMBIGUOUS:
                # The answer was lost: the server may exist. Look once before giving up this attempt.
                owned = self._owned_by(labels)
                if owned is not None:
                    return {"server_id": owned, "action_ids": [], "adopted": True}
                raise
            if error.provider_code == "uniqueness_error":
                return self._adopt_by_name(request, labels, error)
            raise
        return {"server_id": server_id, "action_ids": action_ids, "adopted": False}

    def _owned_by(self, labels: Mapping[str, str]) -> int | None:
        servers = [s for s in self.find_owned(labels) if s.status != "deleting"]
        if len(servers) > 1:
            raise ProviderError(
                ErrorCode.provider_error,
                f"{len(servers)} servers carry this node's labels: {[s.id for s in servers]}",
                retryable=False,
                hint="Delete the extra servers at Hetzner, then retry the node.",
            )
        return int(servers[0].id or 0) if servers else None

    def _adopt_by_name(
        self, request: AcquireRequest, labels: Mapping[str, str], error: ProviderError
    ) -> dict[str, Any]:
        named = self.transport.call("lookup", lambda c: c.servers.get_by_name(request.server_name))
        if named is not None and all(
            (named.labels or {}).get(k) == v
            for k, v in ownership_labels(request.installation_id, request.node_id).items()
        ):
            return {"server_id": int(named.id or 0), "action_ids": [], "adopted": True}
        raise ProviderError(
            ErrorCode.name_conflict,
            f"a server named {request.server_name!r} exists at Hetzner and is not this node's",
            retryable=False,
            hint="A server not made by nodewright has this name: choose another name or delete it.",
            provider_code=error.provider_code,
            http_status=error.http_status,
            correlation_id=error.correlation_id,
            field="name",
        )

    def _running_actions(self, server_id: int) -> list[int]:
        data = self.transport.request(
            "poll", "GET", f"/servers/{server_id}/actions", params={"status": "running", "per_page": 50}
        )
        return [int(a["id"]) for a in data.get("actions", [])]

    def _cleanup(
        self, checkpoints: Checkpoints, generation: int, server_id: int, error: ProviderError
    ) -> None:
        """Delete a server that cannot become this node (failed actions, gone) and mark the
        generation done, so the next attempt creates afresh instead of resuming a dead server."""

        def cleanup() -> dict[str, Any]:
            action_id = self.delete_server(server_id)
            if action_id is not None:
                try:
                    self.wait_actions([action_id], "delete", lambda: checkpoints.canceled)
                except ProviderError as wait_error:
                    if wait_error.code is not ErrorCode.action_failed:
                        raise
            return {"server_id": server_id, "reason": error.code.value, "calls": self._calls()}

        checkpoints.step(f"provider.cleanup.{generation}", cleanup)

    # --- inspect, release, list -------------------------------------------------------------------

    def inspect(self, server_id: int) -> ServerInfo | None:
        try:
            return server_info(self.fetch_server(server_id, step="inspect"))
        except ProviderError as error:
            if error.code is ErrorCode.not_found:
                return None
            raise

    def release(self, server_id: int, checkpoints: Checkpoints) -> ReleaseEvidence:
        self.transport.take_calls()  # evidence starts here

        def delete_step() -> dict[str, Any]:
            return {"action_id": self.delete_server(server_id), "calls": self._calls()}

        started = checkpoints.step("provider.release.delete", delete_step)
        waited: dict[str, Any] = {}
        if started["action_id"] is not None:
            waited = checkpoints.step(
                "provider.release.wait",
                lambda: {
                    "actions": self.wait_actions(
                        [int(started["action_id"])], "delete", lambda: checkpoints.canceled
                    )
                },
            )

        def confirm() -> dict[str, Any]:
            if self.inspect(server_id) is not None:
                raise ProviderError(
                    ErrorCode.provider_busy,
                    f"server {server_id} still exists after its delete",
                    retryable=True,
                )
            return {"gone": True, "calls": self._calls()}

        confirmed = checkpoints.step("provider.release.confirm", confirm)
        steps = {"provider.release.delete": started, "provider.release.confirm": confirmed}
        return ReleaseEvidence(actions=list(waited.get("actions") or []), calls=_calls_of(steps, "provider."))

    def reboot(self, server_id: int, checkpoints: Checkpoints) -> None:
        """``POST /servers/{id}/actions/reboot`` (ACPI reboot), then wait for its action. A server
        that is off is powered on instead (a reboot of a server that is off does nothing at Hetzner)."""

        def start() -> dict[str, Any]:
            info = self.inspect(server_id)
            if info is None:
                raise ProviderError(
                    ErrorCode.not_found, f"server {server_id} does not exist", retryable=False
                )
            verb = "poweron" if info.status == "off" else "reboot"
            data = self.transport.request(verb, "POST", f"/servers/{server_id}/actions/{verb}")
            return {"action_id": int(data["action"]["id"]), "verb": verb, "calls": self._calls()}

        started = checkpoints.step("provider.reboot.start", start)
        checkpoints.step(
            "provider.reboot.wait",
            lambda: {
                "actions": self.wait_actions(
                    [int(started["action_id"])], str(started["verb"]), lambda: checkpoints.canceled
                ),
                "calls": self._calls(),
            },
        )

    def snapshot(self, server_id: int, description: str, checkpoints: Checkpoints) -> SnapshotImage:
        """``POST /servers/{id}/actions/create_image`` (type snapshot), wait for its action, then
        read the image (its size is known once it is available). Each step is a checkpoint: a
        retried job never makes a second image."""

        def start() -> dict[str, Any]:
            body = {"type": "snapshot", "description": description[:200]}
            data = self.transport.request(
                "snapshot", "POST", f"/servers/{server_id}/actions/create_image", json=body
            )
            return {
                "image_id": int(data["image"]["id"]),
                "action_id": int(data["action"]["id"]),
                "calls": self._calls(),
            }

        started = checkpoints.step("provider.snapshot.start", start)
        # Named at once: if the job ends before the image is done, the log still says which it is.
        checkpoints.log(f"image {int(started['image_id'])} is being made from server {server_id}")
        checkpoints.step(
            "provider.snapshot.wait",
            lambda: {
                "actions": self.wait_actions(
                    [int(started["action_id"])], "create_image", lambda: checkpoints.canceled
                ),
                "calls": self._calls(),
            },
        )
        image = self.transport.request("snapshot", "GET", f"/images/{int(started['image_id'])}")["image"]
        size, disk = image.get("image_size"), image.get("disk_size")
        return SnapshotImage(
            id=int(image["id"]),
            description=str(image.get("description") or ""),
            size_gb=float(size) if isinstance(size, int | float) else None,
            disk_gb=float(disk) if isinstance(disk, int | float) else None,
        )

    def list_owned(self, installation_id: str) -> list[ServerInfo]:
        selector = f"{LABEL_INSTALLATION}=={installation_id}"
        servers = self.transport.call("list", lambda c: c.servers.get_all(label_selector=selector))
        return [server_info(s) for s in servers]


def _completed(checkpoints: Checkpoints) -> dict[str, Any]:
    completed = getattr(checkpoints, "completed_steps", None)
    return dict(completed) if isinstance(completed, dict) else {}


def _calls_of(steps: Mapping[str, Any], prefix: str) -> list[ProviderCall]:
    """The provider calls recorded in the outputs of the steps named ``prefix...``, in the order
    they were made (the steps' names do not sort in that order: "actions" before "server")."""
    calls = [
        _call_from_dict(c)
        for name, value in steps.items()
        if name.startswith(prefix) and isinstance(value, dict)
        for c in value.get("calls") or []
    ]
    return sorted(calls, key=lambda c: c.started_at)


def _call_from_dict(data: dict[str, Any]) -> ProviderCall:
    return ProviderCall(
        method=data["method"],
        endpoint=data["endpoint"],
        status=data["status"],
        error_code=data["error_code"],
        correlation_id=data["correlation_id"],
        started_at=data["started_at"],
        duration_ms=data["duration_ms"],
    )


def _server_type(st: Any) -> CatalogServerType:
    available: list[str] = []
    sold: list[str] = []
    deprecated_in: list[str] = []
    for entry in st.locations or []:
        name = entry.location.name if getattr(entry, "location", None) else None
        if name is None:
            continue
        sold.append(name)
        if entry.deprecation is not None:
            deprecated_in.append(name)
        if entry.available and entry.deprecation is None:
            available.append(name)
    prices = tuple(
        CatalogPrice(
            location=str(p["location"]),
            hourly_net=str(p["price_hourly"]["net"]),
            hourly_gross=str(p["price_hourly"]["gross"]),
            monthly_net=str(p["price_monthly"]["net"]),
            monthly_gross=str(p["price_monthly"]["gross"]),
        )
        for p in (st.prices or [])
    )
    return CatalogServerType(
        name=str(st.name),
        description=str(st.description or ""),
        cores=int(st.cores or 0),
        memory_gb=float(st.memory or 0),
        disk_gb=int(st.disk or 0),
        architecture=str(st.architecture or ""),
        deprecated=bool(sold) and set(deprecated_in) >= set(sold),
        available_in=tuple(available),
        sold_in=tuple(sold),
        deprecated_in=tuple(deprecated_in),
        prices=prices,
    )
