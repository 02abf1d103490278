"""``POST /nodes/delete``: release several nodes at once from the list. The first post shows one
confirmation naming the count and every node; the second (``confirmed=yes``) releases each through
the same path as the node page (one ``nodes.release`` job per node) and says what it did."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from nodewright.api.routing import OneHopRoute
from nodewright.context import AppContext
from nodewright.dashboard.rendering import (
    PageError,
    PostedForm,
    checked_form,
    render,
    require_page_role,
    require_user,
)
from nodewright.db.models import Node
from nodewright.nodes import service
from nodewright.security.roles import Role

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)
CHOSEN = re.compile(r"node-([0-9]{1,12})")
MODES = {"delete": "delete their servers at the provider", "detach": "detach them and keep their servers"}
MAX_NODES = 500  # one list page


def _chosen(form: dict[str, str]) -> list[int]:
    ids = sorted({int(m.group(1)) for name in form if (m := CHOSEN.fullmatch(name))})
    if not ids:
        raise PageError(422, "Nothing selected", "Tick the nodes to delete in the list first.")
    if len(ids) > MAX_NODES:
        raise PageError(
            422, "Too many nodes", f"At most {MAX_NODES} nodes at once; {len(ids)} were selected."
        )
    return ids


@router.post("/nodes/delete", response_class=HTMLResponse)
def bulk_delete(request: Request, form: PostedForm) -> Response:
    user = require_user(request)
    require_page_role(user, Role.operator)
    fields = checked_form(form, user)
    ids = _chosen(fields)
    mode = fields.get("mode") or ""
    if mode not in MODES:
        raise PageError(
            422, "Not confirmed",
            "Choose what happens to the servers: delete them at the provider, or detach them and keep them.",
        )  # fmt: skip
    ctx: AppContext = request.app.state.ctx
    with ctx.database.session() as session:
        nodes = list(session.scalars(select(Node).where(Node.id.in_(ids)).order_by(Node.id)))
        session.expunge_all()
    if len(nodes) != len(ids):
        missing = sorted(set(ids) - {n.id for n in nodes})
        raise PageError(404, "Not found", f"There is no node {', '.join(map(str, missing[:10]))}.")
    if fields.get("confirmed") != "yes":
        return render(request, "bulk_delete.html", user=user, nodes=nodes, mode=mode, action=MODES[mode],
                      done=None, refused=None)  # fmt: skip
    done: list[tuple[Node, int]] = []
    refused: list[tuple[Node, str]] = []
    for node in nodes:
        try:
            _node, job = service.release_node(ctx, node.id, actor=user.actor, keep_server=mode == "detach")
            done.append((node, job.id))
        except service.NodeNotFound:
            refused.append((node, "it no longer exists"))
        except service.NodeStateConflict as exc:
            refused.append((node, exc.message))
    if not refused:
        return RedirectResponse("/nodes", status_code=303)
    return render(request, "bulk_delete.html", status_code=409, user=user, nodes=nodes, mode=mode,
                  action=MODES[mode], done=done, refused=refused)  # fmt: skip
