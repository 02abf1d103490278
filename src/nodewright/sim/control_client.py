"""A typed client for the ``/_sim`` control API, for tests and tools written in Python.

Other parts of the product drive fault injection from their own tests; a typed client keeps them
from spelling endpoint paths and spec keys by hand (and from breaking silently when they change).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Literal

import httpx

FaultKind = Literal["error", "non_json", "lost_response", "slow", "action_error", "left_off"]


class SimControl:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        """``base_url`` is the simulator root (``http://127.0.0.1:PORT``), without ``/v1``."""
        self._http = httpx.Client(base_url=base_url.rstrip("/") + "/_sim", timeout=timeout)

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.post(path, json=body or {})
        response.raise_for_status()
        return response.json() if response.content else None

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = self._http.get("/status").raise_for_status().json()
        return data

    def register_token(
        self,
        token: str,
        mode: Literal["read_write", "read_only", "revoked"] = "read_write",
        project: str | None = None,
    ) -> str:
        """Returns the project id the token now belongs to."""
        body: dict[str, Any] = {"token": token, "mode": mode}
        if project is not None:
            body["project"] = project
        project_id: str = self._post("/tokens", body)["project"]
        return project_id

    def add_fault(
        self,
        kind: FaultKind,
        *,
        method: str = "*",
        path: str = "*",
        code: str | None = None,
        nth: int | None = None,
        probability: float | None = None,
        count: int | None = 1,
        status: int | None = None,
        delay: float = 0.0,
        message: str | None = None,
        details: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "kind": kind,
            "method": method,
            "path": path,
            "code": code,
            "nth": nth,
            "probability": probability,
            "count": count,
            "status": status,
            "delay": delay,
            "message": message,
            "details": details,
        }
        if seed is not None:
            spec["seed"] = seed
        fault: dict[str, Any] = self._post("/faults", spec)["fault"]
        return fault

    def faults(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._http.get("/faults").raise_for_status().json()["faults"]
        return data

    def clear_faults(self) -> None:
        self._http.delete("/faults").raise_for_status()

    def requests(self, limit: int = 1000) -> list[dict[str, Any]]:
        response = self._http.get("/requests", params={"limit": limit}).raise_for_status()
        data: list[dict[str, Any]] = response.json()["requests"]
        return data

    def clear_requests(self) -> None:
        self._http.delete("/requests").raise_for_status()

    def servers(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._http.get("/servers").raise_for_status().json()["servers"]
        return data

    def delete_server(self, server_id: int) -> None:
        """Out of band, as if someone deleted it in the Hetzner console."""
        self._http.delete(f"/servers/{server_id}").raise_for_status()

    def power_off(self, server_id: int) -> None:
        """Out of band, as if the machine crashed or was stopped in the console."""
        self._post(f"/servers/{server_id}/poweroff")

    def add_capacity_rule(
        self, location: str | None = None, server_type: str | None = None, message: str | None = None
    ) -> None:
        body: dict[str, Any] = {"location": location, "server_type": server_type}
        if message is not None:
            body["message"] = message
        self._post("/capacity", body)

    def clear_capacity(self) -> None:
        self._http.delete("/capacity").raise_for_status()

    def set_server_limit(
        self, max_servers: int | None, *, project: str | None = None, token: str | None = None
    ) -> None:
        """``None`` removes the limit; without project or token it applies to every project."""
        body: dict[str, Any] = {"max_servers": max_servers}
        if project is not None:
            body["project"] = project
        if token is not None:
            body["token"] = token
        self._post("/limits", body)

    def configure(self, **settings: float) -> dict[str, Any]:
        """Durations (``create_duration`` ...) and ``rate_limit_capacity``/``_refill_per_second``."""
        data: dict[str, Any] = self._post("/config", dict(settings))
        return data

    def reset(self) -> None:
        self._post("/reset")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
