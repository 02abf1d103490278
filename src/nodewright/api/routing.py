"""``OneHopRoute``: a plain ``def`` route costs one trip to the thread pool, not two.

FastAPI runs a plain ``def`` endpoint in the thread pool and then, because the endpoint was not a
coroutine, validates its return value in the thread pool again: two hand-offs between the event loop
and a worker thread, each of which waits for the loop (and for the GIL) when the loop is busy, for
instance answering a flood of refused sign-ins. Under such a flood every hand-off added several
milliseconds to an authenticated ``GET /api/jobs``.

This route class wraps a plain ``def`` endpoint in a coroutine that runs it in the thread pool, so
FastAPI sees a coroutine: the endpoint's work (database access included) still runs in a worker
thread, never on the loop, and the return value, already a model instance in our routes, is checked
on the loop, where checking an instance of the declared model is an ``isinstance`` and no hand-off.
The signature FastAPI reads (parameters, dependencies) is the wrapped function's.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool


def in_thread_pool(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """A coroutine function that runs ``endpoint`` (a plain function) in the thread pool."""

    @functools.wraps(endpoint)
    async def run(*args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(endpoint, *args, **kwargs)

    return run


def _plain_function(endpoint: Callable[..., Any]) -> bool:
    # A callable object counts by its __call__ (an object with an async __call__ is no plain one).
    call = endpoint if inspect.isroutine(endpoint) else getattr(endpoint, "__call__", endpoint)  # noqa: B004
    return not (
        inspect.iscoroutinefunction(call)
        or inspect.isasyncgenfunction(call)
        or inspect.isgeneratorfunction(call)
    )


class OneHopRoute(APIRoute):
    """An ``APIRoute`` whose plain ``def`` endpoint runs in the thread pool in a single hand-off."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if _plain_function(endpoint):
            endpoint = in_thread_pool(endpoint)
        super().__init__(path, endpoint, **kwargs)
