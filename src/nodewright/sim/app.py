"""The HTTP face of the simulator: ``/v1`` (the Hetzner Cloud API) and ``/_sim`` (control).

Routing is a small table of regular expressions rather than a web framework's router because the
wire details are the product here: every answer, including 404/405 for unknown routes, must carry
the JSON envelope, ``Content-Type: application/json``, the rate-limit headers and a correlation id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nodewright.sim.control import control_routes
from nodewright.sim.errors import ApiError, invalid_input
from nodewright.sim.faults import Fault
from nodewright.sim.models import RequestRecord
from nodewright.sim.ratelimit import RateDecision
from nodewright.sim.runtime import SimRuntime
from nodewright.sim.state import Query
from nodewright.sim.validation import well_formed_token

JSON_TYPE = "application/json"
log = logging.getLogger(__name__)


@dataclass
class Call:
    """One authenticated API call, as handlers see it."""

    project: str
    params: dict[str, int]
    query: Query
    body: Any
    faults: list[Fault]

    def outcome(self) -> str | None:
        for fault in self.faults:
            if fault.kind in {"action_error", "left_off"}:
                return fault.kind
        return None


Handler = Callable[[SimRuntime, Call], tuple[int, dict[str, Any] | None]]


@dataclass(frozen=True)
class ApiRoute:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    operation: str


def _routes() -> list[ApiRoute]:
    def r(method: str, path: str, operation: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"
            table.append(ApiRoute(method, re.compile(regex), handler, operation))
            return handler

        return register

    table: list[ApiRoute] = []

    @r("GET", "/servers", "list_servers")
    def list_servers(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.list_servers(c.project, c.query)

    @r("POST", "/servers", "create_server")
    def create_server(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.create_server(c.project, c.body, c.outcome())

    @r("GET", "/servers/{id}", "get_server")
    def get_server(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.get_server(c.project, c.params["id"])

    @r("PUT", "/servers/{id}", "update_server")
    def update_server(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.update_server(c.project, c.params["id"], c.body)

    @r("DELETE", "/servers/{id}", "delete_server")
    def delete_server(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.delete_server(c.project, c.params["id"])

    @r("GET", "/servers/{id}/actions", "list_server_actions")
    def server_actions(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.server_actions(c.project, c.params["id"], c.query)

    @r("GET", "/servers/{id}/actions/{action_id}", "get_server_action")
    def server_action(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.get_action(c.project, c.params["action_id"], c.params["id"])

    @r("POST", "/servers/{id}/actions/poweron", "poweron_server")
    def poweron(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.power(c.project, c.params["id"], on=True)

    @r("POST", "/servers/{id}/actions/poweroff", "poweroff_server")
    def poweroff(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.power(c.project, c.params["id"], on=False)

    def power_action(command: str) -> Handler:
        def handler(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
            return 201, rt.state.server_action(c.project, c.params["id"], command)

        return handler

    for verb, command in (
        ("shutdown", "shutdown_server"),
        ("reboot", "reboot_server"),
        ("reset", "reset_server"),
    ):
        r("POST", f"/servers/{{id}}/actions/{verb}", f"{verb}_server")(power_action(command))

    @r("POST", "/servers/{id}/actions/change_protection", "change_server_protection")
    def change_protection(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.change_protection(c.project, c.params["id"], c.body)

    @r("POST", "/servers/{id}/actions/enable_backup", "enable_server_backup")
    def enable_backup(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.enable_backup(c.project, c.params["id"])

    @r("POST", "/servers/{id}/actions/disable_backup", "disable_server_backup")
    def disable_backup(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.disable_backup(c.project, c.params["id"])

    @r("POST", "/servers/{id}/actions/change_dns_ptr", "change_server_dns_ptr")
    def change_dns_ptr(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.change_dns_ptr(c.project, c.params["id"], c.body)

    @r("POST", "/servers/{id}/actions/attach_iso", "attach_server_iso")
    def attach_iso(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.attach_iso(c.project, c.params["id"], c.body)

    @r("POST", "/servers/{id}/actions/change_type", "change_server_type")
    def change_type(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.change_type(c.project, c.params["id"], c.body)

    @r("POST", "/servers/{id}/actions/detach_iso", "detach_server_iso")
    def detach_iso(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.detach_iso(c.project, c.params["id"])

    @r("POST", "/servers/{id}/actions/rebuild", "rebuild_server")
    def rebuild(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.rebuild(c.project, c.params["id"], c.body)

    @r("POST", "/servers/{id}/actions/enable_rescue", "enable_server_rescue")
    def enable_rescue(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.enable_rescue(c.project, c.params["id"], c.body if c.body is not None else {})

    @r("POST", "/servers/{id}/actions/disable_rescue", "disable_server_rescue")
    def disable_rescue(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.disable_rescue(c.project, c.params["id"])

    @r("POST", "/servers/{id}/actions/create_image", "create_server_image")
    def create_image(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.create_image(c.project, c.params["id"], c.body if c.body is not None else {})

    def not_simulated(what: str) -> Handler:
        def handler(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
            return 201, rt.state.not_simulated(c.project, c.params["id"], what)

        return handler

    # The document's other server actions: a clear unsupported_error rather than the 405 that the
    # GET /servers/{id}/actions/{action_id} route would otherwise give a POST to their paths.
    for verb, operation, what in (
        ("request_console", "request_server_console", "request_console (a VNC console)"),
        ("reset_password", "reset_server_password", "reset_password"),
        ("attach_to_network", "attach_server_to_network", "attach_to_network (private networks)"),
        ("detach_from_network", "detach_server_from_network", "detach_from_network (private networks)"),
        ("change_alias_ips", "change_server_alias_ips", "change_alias_ips (private networks)"),
        ("add_to_placement_group", "add_server_to_placement_group", "add_to_placement_group"),
        ("remove_from_placement_group", "remove_server_from_placement_group", "remove_from_placement_group"),
    ):
        r("POST", f"/servers/{{id}}/actions/{verb}", operation)(not_simulated(what))

    @r("GET", "/isos", "list_isos")
    def isos(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.list_isos(c.query)

    @r("GET", "/isos/{id}", "get_iso")
    def iso(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, _one(rt.state.list_isos({"per_page": ["50"]}), "isos", c.params["id"])

    @r("GET", "/actions", "get_actions")
    def actions(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.list_actions(c.project, c.query)

    @r("GET", "/actions/{id}", "get_action")
    def action(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.get_action(c.project, c.params["id"])

    @r("GET", "/server_types", "list_server_types")
    def server_types(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.list_server_types(c.query)

    @r("GET", "/server_types/{id}", "get_server_type")
    def server_type(_rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        # By id also a type no longer listed (past its deprecation): servers still name it.
        from nodewright.sim import catalog

        found = next((st for st in catalog.SERVER_TYPES if st.id == c.params["id"]), None)
        if found is None:
            raise ApiError("not_found", "server type not found")
        return 200, {"server_type": found.to_json()}

    @r("GET", "/locations", "list_locations")
    def locations(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.list_locations(c.query)

    @r("GET", "/locations/{id}", "get_location")
    def location(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, _one(rt.state.list_locations({"per_page": ["50"]}), "locations", c.params["id"])

    @r("GET", "/images", "list_images")
    def images(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.list_images(c.project, c.query)

    @r("GET", "/images/actions", "list_images_actions")
    def image_actions_all(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.image_actions(c.project, None, c.query)

    @r("GET", "/images/actions/{id}", "get_images_action")
    def image_action_any(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.get_image_action(c.project, c.params["id"], None)

    @r("GET", "/images/{id}", "get_image")
    def image(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.get_image(c.project, c.params["id"])

    @r("PUT", "/images/{id}", "update_image")
    def update_image(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.update_image(c.project, c.params["id"], c.body)

    @r("DELETE", "/images/{id}", "delete_image")
    def delete_image(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        rt.state.delete_image(c.project, c.params["id"])
        return 204, None

    @r("GET", "/images/{id}/actions", "list_image_actions")
    def image_actions(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.image_actions(c.project, c.params["id"], c.query)

    @r("POST", "/images/{id}/actions/change_protection", "change_image_protection")
    def image_protection(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.change_image_protection(c.project, c.params["id"], c.body)

    @r("GET", "/images/{id}/actions/{action_id}", "get_image_action")
    def image_action(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.get_image_action(c.project, c.params["action_id"], c.params["id"])

    @r("GET", "/pricing", "get_pricing")
    def pricing(_rt: SimRuntime, _c: Call) -> tuple[int, dict[str, Any] | None]:
        from nodewright.sim.catalog import pricing as catalog_pricing

        return 200, {"pricing": catalog_pricing()}

    def gone(_rt: SimRuntime, _c: Call) -> tuple[int, dict[str, Any] | None]:
        # Deprecated 2026-06-02 and "removed after 1 Oct. 2026. After this date, requests to these
        # endpoints will return HTTP 410 Gone" (changelog 2026-06-02-datacenters-deprecated, quoted
        # by hcloud-go v2.44.0, hcloud-python v2.22.0, hcloud CLI v1.66.0). 410 is
        # `deprecated_api_endpoint` in the document's error table; the message is ours (no answer
        # captured after the removal was found).
        raise ApiError(
            "deprecated_api_endpoint",
            "datacenters have been removed; use locations",
            {"announcement": "https://docs.hetzner.cloud/changelog#2026-06-02-datacenters-deprecated"},
        )

    r("GET", "/datacenters", "list_datacenters")(gone)
    r("GET", "/datacenters/{id}", "get_datacenter")(gone)

    @r("GET", "/ssh_keys", "list_ssh_keys")
    def ssh_keys(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.list_ssh_keys(c.project, c.query)

    @r("POST", "/ssh_keys", "create_ssh_key")
    def create_ssh_key(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 201, rt.state.create_ssh_key(c.project, c.body)

    @r("GET", "/ssh_keys/{id}", "get_ssh_key")
    def ssh_key(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.get_ssh_key(c.project, c.params["id"])

    @r("PUT", "/ssh_keys/{id}", "update_ssh_key")
    def update_ssh_key(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        return 200, rt.state.update_ssh_key(c.project, c.params["id"], c.body)

    @r("DELETE", "/ssh_keys/{id}", "delete_ssh_key")
    def delete_ssh_key(rt: SimRuntime, c: Call) -> tuple[int, dict[str, Any] | None]:
        rt.state.delete_ssh_key(c.project, c.params["id"])
        return 204, None

    return table


def _one(listing: dict[str, Any], key: str, item_id: int) -> dict[str, Any]:
    for item in listing[key]:
        if item["id"] == item_id:
            return {key[:-1]: item}
    raise ApiError("not_found", f"{key[:-1].replace('_', ' ')} not found")


ROUTES = _routes()
WRITE_METHODS = {"POST", "PUT", "DELETE", "PATCH"}


def _match(method: str, path: str) -> tuple[ApiRoute, dict[str, str]]:
    allowed = False
    for route in ROUTES:
        m = route.pattern.match(path)
        if m is None:
            continue
        if route.method == method:
            return route, m.groupdict()
        allowed = True
    if allowed:
        raise ApiError("method_not_allowed", "method not allowed")
    raise ApiError("not_found", "not found")


def _int_params(raw: dict[str, str]) -> dict[str, int]:
    params: dict[str, int] = {}
    for name, value in raw.items():
        if not value.isdigit() or not 1 <= int(value) <= 9007199254740991:
            raise invalid_input({name: ["must be a positive integer"]})
        params[name] = int(value)
    return params


def _rate_headers(decision: RateDecision) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset),
    }


def _json(status: int, body: Any, headers: dict[str, str]) -> Response:
    if body is None:
        return Response(status_code=status, headers=headers)
    return Response(json.dumps(body, separators=(",", ":")), status, headers, media_type=JSON_TYPE)


def _non_json(status: int, headers: dict[str, str]) -> Response:
    """What a load balancer in front of the API answers: HTML, not the error envelope."""
    reason = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Time-out"}.get(status, "Error")
    html = f"<html><body><h1>{status} {reason}</h1></body></html>\n"
    return Response(html, status, headers, media_type="text/html")


def make_api_endpoint(rt: SimRuntime) -> Callable[[Request], Awaitable[Response]]:
    async def api(request: Request) -> Response:
        started = time.monotonic()
        method = request.method
        path: str = request.scope["path"]
        correlation = secrets.token_hex(8)
        headers = {"X-Correlation-Id": correlation}
        project: str | None = None
        decision = rt.limiter.peek()
        faults: list[Fault] = []

        def finish(response: Response, error_code: str | None) -> Response:
            rt.state.record(
                RequestRecord(
                    time=datetime.now(UTC).isoformat(timespec="milliseconds"),
                    method=method,
                    path=path,
                    query=request.scope["query_string"].decode("latin-1"),
                    status=response.status_code,
                    error_code=error_code,
                    correlation_id=correlation,
                    project=project,
                    duration_ms=round((time.monotonic() - started) * 1000, 3),
                )
            )
            return response

        try:
            faults = rt.faults.fire(method, path)
            for fault in faults:
                if fault.kind == "slow" and fault.delay:
                    await asyncio.sleep(fault.delay)
            for fault in faults:
                if fault.kind == "non_json":
                    headers.update(_rate_headers(decision))
                    status = fault.error_status()
                    return finish(_non_json(status, headers), f"http_{status}")
                if fault.kind == "error":
                    message = fault.error_body()["error"]["message"]
                    raise ApiError(fault.code or "server_error", message, fault.details, fault.error_status())
            try:
                project, mode = _authenticate(rt, request)
            except ApiError:
                # The real API limits anonymous requests too; they share a bucket per client address.
                client = request.client.host if request.client else "unknown"
                decision = rt.limiter.take("anonymous:" + client)
                if not decision.allowed:
                    raise ApiError(
                        "rate_limit_exceeded", f"limit of {decision.limit} requests per hour reached"
                    ) from None
                raise
            if mode == "read_only" and method in WRITE_METHODS:
                raise ApiError("token_readonly", "token is read-only")
            decision = rt.limiter.take(project)
            if not decision.allowed:
                raise ApiError("rate_limit_exceeded", f"limit of {decision.limit} requests per hour reached")
            route, raw_params = _match(method, path.removeprefix("/v1"))
            call = Call(project, _int_params(raw_params), _query(request), await _body(request), faults)
            status, body = route.handler(rt, call)
            headers.update(_rate_headers(decision))
            for fault in faults:
                if fault.kind == "lost_response":
                    # The operation took effect; the client only sees what a proxy says on timeout.
                    if fault.delay:
                        await asyncio.sleep(fault.delay)
                    return finish(_non_json(fault.status or 504, headers), "lost_response")
            return finish(_json(status, body, headers), None)
        except ApiError as exc:
            for fault in faults:
                # These act on an operation that took effect; this one did not, so they stay armed.
                if fault.kind in {"lost_response", "action_error", "left_off"}:
                    rt.faults.refund(fault)
            headers.update(_rate_headers(decision))
            if exc.code == "rate_limit_exceeded":
                headers["RateLimit-Remaining"] = "0"
            return finish(_json(exc.status, exc.body(), headers), exc.code)
        except Exception:
            # A simulator bug must still look like the API's own 500, envelope and headers included.
            log.exception("simulator API failed on %s %s", method, path)
            headers.update(_rate_headers(decision))
            error = ApiError("server_error")
            return finish(_json(error.status, error.body(), headers), error.code)

    return api


def _authenticate(rt: SimRuntime, request: Request) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not well_formed_token(token):
        raise ApiError("unauthorized", "unable to authenticate")
    project, mode = rt.state.resolve_token(token)
    if mode == "revoked":
        raise ApiError("unauthorized", "unable to authenticate")
    return project, mode


def _query(request: Request) -> Query:
    query: Query = {}
    for key, value in request.query_params.multi_items():
        query.setdefault(key.removesuffix("[]"), []).append(value)
    return query


async def _body(request: Request) -> Any:
    if request.method not in WRITE_METHODS:
        return None
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError("json_error", "invalid JSON in request body") from None


def create_app(rt: SimRuntime) -> Starlette:
    api = make_api_endpoint(rt)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    routes = [  # /v1 first: it takes almost all the traffic
        Route("/v1/{rest:path}", api, methods=methods),
        Route("/v1", api, methods=methods),
        *control_routes(rt),
    ]
    return Starlette(routes=routes)
