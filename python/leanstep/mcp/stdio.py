"""``leanstep mcp``: the MCP server over stdio, for a client that starts it as a subprocess.

The client owns the process: it writes JSON-RPC to stdin and reads stdout (the
SDK's transport keeps stray writes off that channel; logs go to stderr). The
server starts its REPL pool before it answers, so the first tool call finds warm
REPLs, and when stdin closes or SIGTERM/SIGINT arrives it stops every REPL
before it exits. Over stdio there is one caller, so every proof session belongs
to the process.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import anyio
from mcp.server.stdio import stdio_server

from leanstep.config import Config
from leanstep.mcp.server import build_server
from leanstep.server.services import build_services

log = logging.getLogger(__name__)

STDIO_OWNER = "stdio"  # the one caller of a stdio server


def run_stdio(config: Config) -> None:
    """Serve MCP on stdin/stdout until the client closes stdin or a signal arrives; no REPL outlives it.

    Raises :class:`leanstep.repl.launch.SetupError` (before reading stdin) when the pool cannot start.
    """
    services = build_services(config)
    previous = {sig: signal.signal(sig, _exit_on) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server = build_server(services, owner_of=lambda _ctx: STDIO_OWNER)

        async def serve() -> None:
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())

        log.info("leanstep MCP server on stdio (%d REPLs max)", config.max_repls)
        anyio.run(serve)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        services.close()
        log.info("all REPLs stopped")


def _exit_on(signum: int, _frame: Any) -> None:
    """SIGTERM/SIGINT end the loop through ``finally``, so the REPLs are stopped (not left to PDEATHSIG)."""
    sys.exit(128 + signum)
