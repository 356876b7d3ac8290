"""``POST /mcp``: the MCP server (``leanstep.mcp.http``) behind the same admission as every route.

The app's ``_admit`` has already refused a foreign ``Origin`` (403), a missing
or wrong API key (401) and, for ``/mcp``, a ``Host`` the server does not answer
to (421, DNS rebinding). Here the request is handed to the SDK's ASGI transport
through :class:`~leanstep.server.asgi.AsgiMount`, with its owner (``g.owner``:
the API key it presented, ``leanstep.keys``) in the scope; while the server is shutting down it is refused with
503 like the batch routes. Only POST is routed: other methods get 405.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from flask import Blueprint, g

from leanstep.check.verify import SHUTTING_DOWN
from leanstep.mcp.http import OWNER_STATE, StreamableHttp
from leanstep.server.asgi import AsgiMount
from leanstep.server.jsonio import body_limit_bytes, error_response

if TYPE_CHECKING:
    from leanstep.server.app import AppState

MCP_PATH = "/mcp"


def mcp_blueprint(state: AppState) -> Blueprint:
    """The route, and the transport's event loop (started by the first request, stopped by ``state.close``)."""
    config = state.services.config
    transport = StreamableHttp(state.services, max_body_bytes=body_limit_bytes(config.max_body_mb))
    mount = AsgiMount(transport.asgi_app, transport.lifespan, name="mcp")
    state.on_close(mount.close)
    bp = Blueprint("mcp", __name__)

    @bp.post(MCP_PATH)
    def mcp() -> Any:
        if state.closing:
            return error_response(503, SHUTTING_DOWN, "the server is stopping and takes no new work; retry later")
        return partial(mount, scope_state={OWNER_STATE: g.owner})  # a WSGI app: Flask streams its answer

    return bp
