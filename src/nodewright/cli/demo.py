"""``nodewright demo``: the control plane on its embedded defaults beside the Hetzner Cloud simulator,
and the product doing its job at once: the simulator connected as a provider, the node ``demo-1``
created through the API on the first start (its stages shown as they happen), then the dashboard's
address, the first login and the command that logs in to the node.

Both ports are bound before anything starts, so a taken one is a line naming the option to change.
Ctrl-C and SIGTERM stop both servers in order (the simulator last: it takes its nodes' sshd with it)
and end with status 0.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from nodewright.cli.errors import fail, friendly_errors, say

if TYPE_CHECKING:
    import socket

    import uvicorn

    from nodewright.cli.demo_story import Plan
    from nodewright.config import Settings
    from nodewright.context import AppContext
    from nodewright.demo.operator_key import OperatorKey
    from nodewright.security.secret import Secret
    from nodewright.sim.server import SimServer

DEFAULT_PORT, DEFAULT_SIM_PORT = 8400, 8480
CONTEXT_NAME = "demo"
DEMO_SHUTDOWN_SECONDS = 3.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Ctrl-C and SIGTERM are noted, never raised: start-up runs to a point where it can stop in order
    (half a simulator would leave a network namespace behind), and once uvicorn hands the signal
    back after its graceful shutdown, the rest of the shutdown is not cut short either."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.server: uvicorn.Server | None = None  # told to stop when a signal comes outside its own
        for number in STOP_SIGNALS:
            signal.signal(number, self._note)

    def _note(self, signum: int, _frame: FrameType | None) -> None:
        self.received = self.received or signum
        if self.server is not None:
            self.server.should_exit = True


@dataclass
class Running:
    settings: Settings
    sim: SimServer
    sock: socket.socket
    stop: StopSignals


@friendly_errors
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = DEFAULT_PORT,
    sim_port: Annotated[
        int, typer.Option(help="Port of the Hetzner Cloud simulator (0: any).", min=0, max=65535)
    ] = DEFAULT_SIM_PORT,
) -> None:
    """Run nodewright on its embedded defaults (SQLite in the data directory, an embedded worker, the
    Hetzner Cloud simulator with real SSH nodes as the provider) and, on the first start, create the
    node demo-1 through the API and print how to reach it."""
    from nodewright.cli.ports import bind_or_explain
    from nodewright.config import load_settings

    stop = StopSignals()
    settings = load_settings(host=host, port=port)
    if "log_level" not in settings.model_fields_set:
        settings.log_level = "WARNING"  # the terminal tells the demo's story; NODEWRIGHT_LOG_LEVEL=INFO
    if "embedded_worker_shutdown_seconds" not in settings.model_fields_set:
        # Ctrl-C is not kept waiting for a node half provisioned: its job goes back to the queue.
        settings.embedded_worker_shutdown_seconds = DEMO_SHUTDOWN_SECONDS
    sock = bind_or_explain(host, port, flag="--port", make_var="PORT")
    try:
        if sim_port:  # tried first, so a taken one is told at once, before the nodes' network is made
            bind_or_explain("127.0.0.1", sim_port, flag="--sim-port", make_var="SIM_PORT").close()
        sim = _start_simulator(settings, sim_port)
    except BaseException:
        sock.close()
        raise
    try:
        _run(Running(settings, sim, sock, stop))
    finally:
        sock.close()
        sim.stop()
        say("Hetzner Cloud simulator stopped.")


def _start_simulator(settings: Settings, sim_port: int) -> SimServer:
    from nodewright.cli.ports import PortUnavailable, unavailable
    from nodewright.sim.config import SimConfig
    from nodewright.sim.server import SimServer

    config = SimConfig(protected_paths=(str(settings.data_dir),))
    sim = SimServer(host="127.0.0.1", port=sim_port, config=config)
    try:
        sim.start()
    except OSError as exc:
        sim.stop()
        # Taken since it was tried (start() binds last; what fails before is no OSError).
        raise PortUnavailable(
            unavailable(exc, "127.0.0.1", sim_port, flag="--sim-port", make_var="SIM_PORT")
        ) from None
    except ValueError as exc:  # SSH nodes refused (a data directory they could read), in one line
        sim.stop()
        fail(str(exc))
    except BaseException:
        sim.stop()
        raise
    nodes = "on" if sim.ssh_nodes else f"off ({sim.ssh_nodes_reason})"
    say(f"Hetzner Cloud simulator: {sim.api_url} (SSH nodes: {nodes})")
    settings.allow_provider_endpoint(sim.base_url + "/")
    return sim


def _run(running: Running) -> None:
    from nodewright.cli.demo_story import Story
    from nodewright.cli.server import build_server, open_installation, run_server, welcome

    settings = running.settings
    ctx, bootstrap = open_installation(settings)
    try:
        plan = _prepare(ctx, running.sim)
        lines = welcome(settings, bootstrap, "nodewright demo is running at")
        server = build_server(settings, ctx)
    except BaseException:
        ctx.close()
        raise
    running.stop.server = server
    if running.stop.received is not None:  # stopped while starting: nothing was served
        ctx.close()
        for line in lines[1:]:  # a first login is shown all the same: it is shown only once
            say(line)
        say("nodewright stopped.")
        return
    story = Story(plan, lines, server)
    teller = threading.Thread(target=story.tell, name="nodewright-demo-story", daemon=True)
    teller.start()
    try:
        run_server(server, ctx, running.sock)
    finally:
        story.stopping.set()
        teller.join(10)
        story.finish()
        say("nodewright stopped.")


def _prepare(ctx: AppContext, sim: SimServer) -> Plan:
    """Everything the story needs that is made before serving: the provider connection (and its
    reconcile job), the token the API requests are made with (saved as the CLI context), the
    operator's SSH key, and whether ``demo-1`` is still to be made."""
    from nodewright.cli.demo_story import Plan
    from nodewright.cli.server import public_url
    from nodewright.demo import access, first_node
    from nodewright.demo.connection import connect_simulator

    url = public_url(ctx.settings)
    connected = connect_simulator(ctx, sim.api_url, sim.config.ssh_port)
    say(connected.line)
    plan = Plan(url=url, provider_id=connected.provider_id, data_dir=ctx.settings.data_dir)
    if connected.provider_id is not None:
        plan.reconcile_job = first_node.queue_reconcile(ctx, connected.provider_id)
    try:
        token, username, role = access.demo_token(ctx)
    except access.NoAccess as exc:
        say(f"No API token for the demo ({exc}): demo-1 is not created; sign in to create nodes.")
        return plan
    plan.token = token
    say(_save_context(url, token, username, role))
    plan.existing = first_node.existing(ctx)
    plan.create = plan.existing is None and connected.provider_id is not None
    if plan.create and not sim.ssh_nodes:
        say("demo-1 is not created: without SSH nodes it could not be provisioned.")
        plan.create = False
    if plan.create or plan.existing is not None:
        plan.key = _key_for_node(ctx.settings.data_dir)
    return plan


def _save_context(url: str, token: Secret, username: str, role: str) -> str:
    """The demo's token as the active CLI context, so the printed commands need no login."""
    from nodewright.cli import contexts
    from nodewright.cli.client import ApiError

    try:
        saved = contexts.remember(url, token, username, role, CONTEXT_NAME)
    except ApiError as exc:
        return f"CLI context not saved ({exc.message}): `nodewright login {url}` with a token of your own."
    except OSError as exc:
        return f"CLI context not saved ({exc.strerror}): `nodewright login {url}` with a token of your own."
    return (f"CLI context '{CONTEXT_NAME}' ({url}, as {username}) saved in {saved.path} and made active "
            "(`nodewright context use NAME` switches back).")  # fmt: skip


def _key_for_node(data_dir: Path) -> OperatorKey:
    from nodewright.cli.nodes import read_public_key
    from nodewright.demo.operator_key import operator_key

    key = operator_key(Path.home(), data_dir, read_public_key)
    if key.made:
        say(f"No SSH key in ~/.ssh, so one was made for you (ed25519): {key.identity}, "
                   f"public half {key.public_file}")  # fmt: skip
    else:
        say(f"SSH key for demo-1: {key.public_file}")
    return key
