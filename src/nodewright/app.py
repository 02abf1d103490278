"""FastAPI app factory: API routers, dashboard pages, problem handlers, embedded workers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from nodewright import __version__
from nodewright.api import accounts as accounts_api
from nodewright.api import audit as audit_api
from nodewright.api import gates as gates_api
from nodewright.api import health
from nodewright.api import jobs as jobs_api
from nodewright.api import nodes as nodes_api
from nodewright.api import orphans as orphans_api
from nodewright.api import providers as providers_api
from nodewright.api import watching as watching_api
from nodewright.api import webhooks as webhooks_api
from nodewright.api.deps import audit_denied
from nodewright.api.middleware import BodyLimitMiddleware, NulGuardMiddleware, SecurityHeadersMiddleware
from nodewright.api.problems import install_problem_handlers
from nodewright.api.streams import StreamHub
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.dashboard import account as account_pages
from nodewright.dashboard import audit as audit_pages
from nodewright.dashboard import bulk as bulk_pages
from nodewright.dashboard import home, login
from nodewright.dashboard import jobs as jobs_pages
from nodewright.dashboard import maintenance as maintenance_pages
from nodewright.dashboard import nodes as nodes_pages
from nodewright.dashboard import providers as providers_pages
from nodewright.dashboard import users as users_pages
from nodewright.dashboard import webhooks as webhooks_pages
from nodewright.dashboard.errors import install_html_errors
from nodewright.dashboard.rendering import (
    LoginRequired,
    PageError,
    PasswordChangeRequired,
    current_user,
    render,
)
from nodewright.jobs.worker import WorkerPool

log = logging.getLogger(__name__)


def _start_workers(ctx: AppContext) -> WorkerPool | None:
    """Start the embedded job workers, unless the settings want none."""
    if ctx.settings.embedded_workers <= 0:
        return None
    pool = WorkerPool(
        ctx.database, ctx.settings, concurrency=ctx.settings.embedded_workers, mode=ctx.settings.worker_mode
    )
    pool.start()
    return pool


def create_app(settings: Settings, *, ctx: AppContext | None = None, start_workers: bool = True) -> FastAPI:
    """Build the app. Raises ``SecretKeyError`` when the secret keys do not fit the database."""
    context = ctx or AppContext.open(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        pool = _start_workers(context) if start_workers else None
        try:
            yield
        finally:
            await streams.stop()
            if pool is not None:
                pool.stop(timeout=context.settings.embedded_worker_shutdown_seconds)
            if ctx is None:
                context.close()

    app = FastAPI(
        title="nodewright",
        version=__version__,
        description="Control plane for server fleets: providers, nodes and the jobs that change them.",
        openapi_url="/api/openapi.json",
        # Swagger UI would load scripts from a CDN, which the CSP (rightly) forbids: no docs page.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.ctx = context
    streams = StreamHub(
        context.database,
        max_streams=settings.sse_max_streams,
        max_per_user=settings.sse_max_streams_per_user,
    )
    app.state.streams = streams
    install_problem_handlers(app)
    install_html_errors(app)  # after the problem handlers: it wraps them
    _install_page_handlers(app)

    app.include_router(health.router)
    app.include_router(accounts_api.router)
    app.include_router(audit_api.router)
    app.include_router(jobs_api.router)
    app.include_router(gates_api.router)
    app.include_router(providers_api.router)
    app.include_router(nodes_api.router)
    app.include_router(watching_api.router)
    app.include_router(orphans_api.router)
    app.include_router(webhooks_api.router)
    app.include_router(login.router)
    app.include_router(home.router)
    app.include_router(jobs_pages.router)
    app.include_router(bulk_pages.router)  # POST /nodes/delete, before /nodes/{id} routes
    app.include_router(nodes_pages.router)
    app.include_router(maintenance_pages.router)
    app.include_router(providers_pages.router)
    app.include_router(webhooks_pages.router)
    app.include_router(account_pages.router)
    app.include_router(users_pages.router)
    app.include_router(audit_pages.router)
    app.mount(
        "/static",
        StaticFiles(directory=str(resources.files("nodewright.dashboard") / "static")),
        name="static",
    )

    app.add_middleware(NulGuardMiddleware)
    # Inside the security headers (its answer gets them), outside everything else.
    app.add_middleware(login.LoginShedMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, https=settings.cookie_secure)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app


def _install_page_handlers(app: FastAPI) -> None:
    def login_required(_request: Request, _exc: Exception) -> Response:
        return RedirectResponse("/login", status_code=303)

    def password_change_required(_request: Request, _exc: Exception) -> Response:
        return RedirectResponse("/account/password", status_code=303)

    def page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        user = current_user(request)
        if exc.status == 403 and user is not None:
            # A signed-in user's refused form post (role too low, CSRF check failed) is audited.
            audit_denied(request.app.state.ctx, request, user.actor, exc.title.lower().replace(" ", "_"))
        return render(
            request,
            "error.html",
            status_code=exc.status,
            title=exc.title,
            message=exc.message,
            user=user,
        )

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(PasswordChangeRequired, password_change_required)
    app.add_exception_handler(PageError, page_error)
