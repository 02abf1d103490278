"""``nodewright sim``: run the Hetzner Cloud API simulator in the foreground.

A plain function with typer annotations, so the product's CLI can mount it (``app.command("sim")``)
and ``python -m nodewright.sim`` can run it on its own.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def sim_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8480,
    ssh_nodes: Annotated[
        bool, typer.Option("--ssh-nodes/--no-ssh-nodes", help="Run a real sshd per running server.")
    ] = True,
    state_file: Annotated[
        Path | None, typer.Option(help="Keep the simulated cloud in this JSON file across restarts.")
    ] = None,
    create_duration: Annotated[float, typer.Option(help="Seconds a create_server action takes.")] = 1.0,
    start_duration: Annotated[float, typer.Option(help="Seconds a start_server action takes.")] = 1.0,
    stop_duration: Annotated[float, typer.Option(help="Seconds a stop_server action takes.")] = 0.5,
    delete_duration: Annotated[float, typer.Option(help="Seconds a delete_server action takes.")] = 0.5,
    action_duration: Annotated[
        float, typer.Option(help="Seconds protection, backup, reverse DNS and ISO actions take.")
    ] = 0.2,
    rate_limit: Annotated[int, typer.Option(help="Rate-limit bucket capacity per project.")] = 3600,
    rate_refill: Annotated[float, typer.Option(help="Requests per second added back to the bucket.")] = 1.0,
    ssh_range: Annotated[
        str, typer.Option(help="Range for server IPv4s without SSH nodes (nodes take a /23 of their own).")
    ] = "198.18.0.0/15",
    ssh_port: Annotated[int, typer.Option(help="Port every simulated node's sshd listens on.")] = 22,
    legacy_datacenter: Annotated[
        bool,
        typer.Option(
            help="Add the removed `datacenter` back to servers, for clients older than its removal "
            "(e.g. the hetzner.hcloud Ansible collection 5.4)."
        ),
    ] = False,
    catalog: Annotated[
        Path | None,
        typer.Option(
            envvar="NODEWRIGHT_SIM_CATALOG",
            help="Serve this catalog instead of the built-in one: a JSON object with the real API's "
            '"server_types" and "locations" lists (and optionally "images").',
        ),
    ] = None,
) -> None:
    """Run a local Hetzner Cloud API simulator whose servers are real SSH hosts."""
    try:
        from nodewright.sim.config import SimConfig

        config = SimConfig(
            create_duration=create_duration,
            start_duration=start_duration,
            stop_duration=stop_duration,
            delete_duration=delete_duration,
            action_duration=action_duration,
            rate_limit_capacity=rate_limit,
            rate_limit_refill_per_second=rate_refill,
            ssh_address_range=ssh_range,
            ssh_port=ssh_port,
            ssh_nodes=ssh_nodes,
            legacy_datacenter=legacy_datacenter,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    if catalog is not None:
        from nodewright.sim import catalog as sim_catalog

        try:
            sim_catalog.load_snapshot(catalog)
        except sim_catalog.CatalogError as exc:
            print(f"error: catalog {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    from nodewright.sim.server import SimServer

    server = SimServer(host=host, port=port, ssh_nodes=ssh_nodes, state_file=state_file, config=config)
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server.start()
        except OSError as exc:
            print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        print(f"{server.base_url}/v1", flush=True)
        if not _is_loopback(host):
            print(
                f"warning: the control API ({server.base_url}/_sim) needs no token; "
                "listen on a loopback address unless the network is trusted",
                file=sys.stderr,
                flush=True,
            )
        if server.ssh_nodes:
            nodes = server.runtime.nodes if server.runtime is not None else None
            network = nodes.network.address_range if nodes is not None and nodes.network else ssh_range
            print(f"SSH nodes: on ({network}, port {ssh_port})", file=sys.stderr, flush=True)
        else:
            print(f"SSH nodes: off ({server.ssh_nodes_reason})", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
