"""The MCP server over the services: the official SDK's low-level ``Server`` with leanstep's tools.

The low-level server, not the SDK's decorator layer, because the tools' input
schemas and validation must be the API's strict models (``"timeout": "30"`` is
refused, as on HTTP, not coerced), and a refusal must carry the HTTP error's
words (the decorator layer validates with its own lax models and prefixes its
own text). Tool calls block on REPLs, so each runs in a worker thread and the
event loop keeps serving other requests meanwhile. When the SDK cancels a call
(the client sent ``notifications/cancelled``), the thread is left to finish and
its ``Caller.abandoned`` turns true, which stops a proving at its next step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from importlib import metadata
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from leanstep.mcp.tools import INSTRUCTIONS, Caller, LeanTools
from leanstep.server.services import Services

SERVER_NAME = "leanstep"

OwnerOf = Callable[[ServerRequestContext[Any, Any]], str]
"""Who makes a request: derived by the transport (the API key over HTTP; the process over stdio)."""


def build_server(services: Services, owner_of: OwnerOf) -> Server[Any]:
    """The MCP server answering with ``services``; ``owner_of`` names the caller of each request."""
    tools = LeanTools(services)

    async def list_tools(_ctx: ServerRequestContext[Any, Any],
                         _params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools.listing())

    async def call_tool(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
                        ) -> types.CallToolResult:
        if params.name not in tools.names():
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}; the tools are "
                                                 f"{', '.join(tools.names())}")
        cancelled = threading.Event()
        caller = Caller(owner_of(ctx), abandoned=cancelled.is_set)
        try:
            return await anyio.to_thread.run_sync(partial(tools.call, params.name, params.arguments, caller),
                                                 abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    return Server(SERVER_NAME, version=_version(), title="leanstep",
                  description="Lean 4 proof checking on warm REPLs: verify, multi-attempt, proof sessions, suggest, "
                              "prove",
                  instructions=INSTRUCTIONS, on_list_tools=list_tools, on_call_tool=call_tool)


def _version() -> str:
    try:
        return metadata.version("leanstep")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return ""
