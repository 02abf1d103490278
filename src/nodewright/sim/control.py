"""The ``/_sim`` control and inspection API: tokens, faults, request log, out-of-band changes.

It sits outside ``/v1`` so that no real client can reach it by accident, and it needs no token:
the simulator is a local test fixture, bound to loopback by default.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nodewright.sim.faults import FaultSpecError
from nodewright.sim.models import Capacity

if TYPE_CHECKING:
    from nodewright.sim.runtime import SimRuntime

Endpoint = Callable[[Request], Awaitable[Response]]
DURATIONS = ("create_duration", "start_duration", "stop_duration", "delete_duration", "action_duration")


def _ok(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, media_type="application/json")


def _bad(message: str, status: int = 400) -> Response:
    return _ok({"error": {"code": "invalid_input", "message": message, "details": None}}, status)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


def control_routes(rt: SimRuntime) -> list[Route]:
    async def status(_request: Request) -> Response:
        return _ok(rt.status())

    async def tokens(request: Request) -> Response:
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return _bad(str(exc))
        token = body.get("token")
        mode = body.get("mode", "read_write")
        if not isinstance(token, str) or len(token) != 64:
            return _bad("token must be a 64-character string")
        if mode not in {"read_write", "read_only", "revoked"}:
            return _bad("mode must be read_write, read_only or revoked")
        project = body.get("project")
        if project is not None and not isinstance(project, str):
            return _bad("project must be a string")
        project_id = rt.state.register_token(token, mode, project)
        return _ok({"project": project_id, "mode": mode}, 201)

    async def faults(request: Request) -> Response:
        if request.method == "GET":
            return _ok({"faults": [f.to_json() for f in rt.faults.all()]})
        if request.method == "DELETE":
            rt.faults.clear()
            return Response(status_code=204)
        try:
            fault = rt.faults.add(await _json_body(request))
        except (ValueError, FaultSpecError) as exc:
            return _bad(str(exc))
        return _ok({"fault": fault.to_json()}, 201)

    async def fault(request: Request) -> Response:
        if rt.faults.remove(int(request.path_params["id"])):
            return Response(status_code=204)
        return _bad("no such fault", 404)

    async def requests_log(request: Request) -> Response:
        if request.method == "DELETE":
            with rt.state.lock:
                rt.state.requests.clear()
            return Response(status_code=204)
        raw_limit = request.query_params.get("limit", "1000")
        if not raw_limit.lstrip("-").isdigit():
            return _bad("limit must be an integer")
        limit = int(raw_limit)
        with rt.state.lock:
            entries = list(rt.state.requests)[-limit:] if limit > 0 else []
        return _ok({"requests": [e.to_json() for e in entries]})

    async def servers(_request: Request) -> Response:
        return _ok({"servers": rt.state.all_servers(rt.config.ssh_port)})

    async def server(request: Request) -> Response:
        if rt.state.force_delete(int(request.path_params["id"])):
            return Response(status_code=204)
        return _bad("no such server", 404)

    async def server_poweroff(request: Request) -> Response:
        if rt.state.force_power_off(int(request.path_params["id"])):
            return _ok({"status": "off"})
        return _bad("no such server", 404)

    async def capacity(request: Request) -> Response:
        if request.method == "DELETE":
            with rt.state.lock:
                rt.state.capacity.clear()
            return Response(status_code=204)
        if request.method == "POST":
            try:
                body = await _json_body(request)
            except ValueError as exc:
                return _bad(str(exc))
            location = body.get("location")
            server_type = body.get("server_type")
            message = body.get("message") or (
                "we are unable to provision servers for this location, try with a different location "
                "or try later"
                if server_type is None
                else "error during placement"
            )
            with rt.state.lock:
                rt.state.capacity.append(Capacity(location, server_type, message))
        with rt.state.lock:
            rules = [c.__dict__.copy() for c in rt.state.capacity]
        return _ok({"capacity": rules}, 201 if request.method == "POST" else 200)

    async def limits(request: Request) -> Response:
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return _bad(str(exc))
        max_servers = body.get("max_servers")
        if max_servers is not None and (not isinstance(max_servers, int) or max_servers < 0):
            return _bad("max_servers must be a non-negative integer or null")
        project = body.get("project") or "*"
        token = body.get("token")
        if isinstance(token, str):
            project = rt.state.resolve_token(token)[0]
        with rt.state.lock:
            if max_servers is None:
                rt.state.server_limits.pop(project, None)
            else:
                rt.state.server_limits[project] = max_servers
            return _ok({"server_limits": dict(rt.state.server_limits)})

    async def config(request: Request) -> Response:
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return _bad(str(exc))
        for name in DURATIONS:
            if name in body:
                value = body[name]
                if not isinstance(value, int | float) or value < 0:
                    return _bad(f"{name} must be a non-negative number")
                setattr(rt.config, name, float(value))
        if "legacy_datacenter" in body:
            if not isinstance(body["legacy_datacenter"], bool):
                return _bad("legacy_datacenter must be a boolean")
            rt.config.legacy_datacenter = body["legacy_datacenter"]
        capacity_value = body.get("rate_limit_capacity")
        refill = body.get("rate_limit_refill_per_second")
        if capacity_value is not None or refill is not None:
            if capacity_value is not None and (not isinstance(capacity_value, int) or capacity_value < 1):
                return _bad("rate_limit_capacity must be a positive integer")
            if refill is not None and (not isinstance(refill, int | float) or refill <= 0):
                return _bad("rate_limit_refill_per_second must be positive")
            rt.limiter.configure(capacity_value, float(refill) if refill is not None else None)
        return _ok(rt.status()["config"])

    async def reset(_request: Request) -> Response:
        rt.state.reset()
        rt.faults.clear()
        rt.limiter.configure(rt.config.rate_limit_capacity, rt.config.rate_limit_refill_per_second)
        return Response(status_code=204)

    return [
        Route("/_sim/status", status, methods=["GET"]),
        Route("/_sim/tokens", tokens, methods=["POST"]),
        Route("/_sim/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sim/faults/{id:int}", fault, methods=["DELETE"]),
        Route("/_sim/requests", requests_log, methods=["GET", "DELETE"]),
        Route("/_sim/servers", servers, methods=["GET"]),
        Route("/_sim/servers/{id:int}", server, methods=["DELETE"]),
        Route("/_sim/servers/{id:int}/poweroff", server_poweroff, methods=["POST"]),
        Route("/_sim/capacity", capacity, methods=["GET", "POST", "DELETE"]),
        Route("/_sim/limits", limits, methods=["POST"]),
        Route("/_sim/config", config, methods=["POST"]),
        Route("/_sim/reset", reset, methods=["POST"]),
    ]
