"""``leanstep mcp``: the MCP server over stdio, for a client that starts it as a subprocess.

The client owns the process: it writes JSON-RPC to stdin and reads stdout (the
SDK's transport keeps stray writes off that channel and gives child processes
an empty stdin; logs go to stderr). The warm REPLs start importing in the
background as the server starts, so ``initialize`` is answered at once. The
server stops when stdin closes or at SIGTERM/SIGINT, and every REPL is stopped
before the process exits.

The SDK reads stdin in a worker thread that a cancellation cannot interrupt, so
a signal could not end an event loop that waits for it. The loop therefore runs
in a daemon thread (its worker threads are daemons too), and the main thread
waits for either the end of stdin or a signal, stops the REPLs, and exits
without waiting for a read that may never return.

Over stdio there is one caller, the process that started the server, so
everything a caller keeps on the server belongs to it.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import anyio
from mcp.server.stdio import stdio_server

from leanstep.config import Config
from leanstep.mcp.server import build_server
from leanstep.server.services import build_services

log = logging.getLogger(__name__)

STDIO_OWNER = "stdio"  # the one caller of a stdio server


class _Stop:
    """Set when stdin ended or a signal arrived (``signum`` then says which)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.failure: BaseException | None = None

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.signum = self.signum or signum
        self.event.set()


def run_stdio(config: Config) -> int:
    """Serve MCP on stdin/stdout until stdin closes (exit status 0) or a signal arrives (128 + its number).

    Raises :class:`leanstep.repl.launch.SetupError` (before reading stdin) when the pool cannot start.
    """
    services = build_services(config)
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server = build_server(services, owner_of=lambda _ctx: STDIO_OWNER)

        async def serve() -> None:
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())

        def loop() -> None:
            try:
                anyio.run(serve)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
                stop.failure = exc
            finally:
                stop.event.set()

        threading.Thread(target=loop, name="mcp-stdio", daemon=True).start()
        log.info("leanstep MCP server on stdio (%d REPLs max)", config.max_repls)
        stop.event.wait()
        if stop.signum is not None:
            log.info("stopping (%s)", signal.Signals(stop.signum).name)
            return 128 + stop.signum
        if stop.failure is not None:
            raise stop.failure
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        services.close()
        log.info("all REPLs stopped")
