"""The MCP server over streamable HTTP, for ``leanstep serve`` to mount at ``/mcp``.

Stateless: every POST is answered on its own (a JSON-RPC request in; the answer
as an SSE stream, or JSON when the client accepts only that), with no MCP
session kept on the server. Clients of both protocol eras are served: the
handshake era (an ``initialize`` first; its ``Mcp-Session-Id`` is not needed)
and the 2026 per-request envelope. Keeping no transport sessions means nothing
to expire, nothing to leak between callers and no open stream holding one of
the HTTP server's threads: there is no standalone GET stream (``GET /mcp`` is
405, which clients read as "no server-initiated messages"), and an answer's
stream lasts as long as its tool call. What must persist between calls (proof
sessions) lives in the services, owned by the caller's API key, and is named
in the tools' arguments.

The caller's identity comes from the HTTP layer, which checked the API key: it
is put in the ASGI scope's ``state`` under :data:`OWNER_STATE`, and the tools
read it there (:func:`owner_of`).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError

from leanstep.mcp.server import build_server
from leanstep.server.services import Services

OWNER_STATE = "leanstep_owner"


def owner_of(ctx: ServerRequestContext[Any, Any]) -> str:
    """The owner the HTTP layer put in the request's scope (a request without one is refused)."""
    request = ctx.request
    state = getattr(request, "scope", {}).get("state") or {}
    owner = state.get(OWNER_STATE)
    if not isinstance(owner, str):
        raise MCPError(types.INTERNAL_ERROR, "the request reached the MCP server without a caller")
    return owner


class StreamableHttp:
    """The SDK's streamable HTTP transport over the MCP server: ``asgi_app`` serves requests while ``lifespan()``
    is entered (the transport's task group)."""

    def __init__(self, services: Services, *, max_body_bytes: int) -> None:
        self._manager = StreamableHTTPSessionManager(build_server(services, owner_of), stateless=True,
                                                     max_request_body_size=max_body_bytes)

    async def asgi_app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._manager.handle_request(scope, receive, send)

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        return self._manager.run()
