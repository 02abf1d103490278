"""``OneHopRoute``: a plain ``def`` route runs in a worker thread in one hand-off; FastAPI reads its
parameters and response model from the function itself; anything asynchronous is left alone."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from nodewright.api.routing import OneHopRoute


class Out(BaseModel):
    thread: str
    n: int


class AsyncCallable:
    async def __call__(self) -> dict[str, str]:
        return {"thread": threading.current_thread().name}


def _app() -> FastAPI:
    router = APIRouter(route_class=OneHopRoute)

    @router.get("/plain/{n}")
    def plain(n: int) -> Out:
        return Out(thread=threading.current_thread().name, n=n)

    @router.get("/untyped")
    def untyped() -> Any:
        return {"extra": "kept", "thread": threading.current_thread().name}

    @router.get("/loop")
    async def on_loop() -> dict[str, str]:
        return {"thread": threading.current_thread().name}

    router.add_api_route("/callable", AsyncCallable(), methods=["GET"])
    app = FastAPI()
    app.include_router(router)
    return app


def test_plain_routes_run_in_a_worker_thread_and_keep_their_signature() -> None:
    with TestClient(_app()) as client:
        loop_thread = client.get("/loop").json()["thread"]
        answer = client.get("/plain/7")
        assert answer.status_code == 200
        assert answer.json()["n"] == 7 and answer.json()["thread"] != loop_thread
        assert client.get("/plain/x").status_code == 422  # the parameter's type is still checked
        assert client.get("/untyped").json()["extra"] == "kept"
        # An async callable object is awaited on the loop, not wrapped into an unawaited coroutine.
        assert client.get("/callable").json() == {"thread": loop_thread}
        schema = client.get("/openapi.json").json()
        assert schema["paths"]["/plain/{n}"]["get"]["responses"]["200"]["content"]["application/json"][
            "schema"
        ] == {"$ref": "#/components/schemas/Out"}
