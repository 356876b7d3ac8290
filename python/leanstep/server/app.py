"""The Flask app over ready-made :class:`~leanstep.server.services.Services`: what every route shares.

The routes are blueprints: ``server.verify_routes`` (``POST /verify`` and
``POST /api/check``, Kimina-compatible shapes plus a ``verdict`` per result),
``server.health_routes`` (``GET /health``, ``GET /metrics``),
``server.session_routes`` (``/sessions``: proof sessions), ``server.mcp_routes``
(``POST /mcp``, the MCP server) and, when the services have a suggester,
``server.suggest_routes``, ``server.leancopilot_routes`` (LeanCopilot's
``/generate``) and ``server.prove_routes`` (``POST /prove``). This module adds
what cuts across them: origin, host and API-key admission (each accepted key is
an owner, ``g.owner``, whose sessions no other key sees), CORS, the HTTP metrics,
JSON error answers, and stopping what routes run beside the requests
(:func:`close_app`).

Every error is JSON ``{"error": ..., "detail": ...}``: malformed JSON 400,
a body not sent as ``application/json`` 415, a wrong or missing field 422, a
body over ``max_body_mb`` or more snippets than ``max_batch`` 413, a missing or
wrong API key 401, a browser ``Origin`` not in ``allow_origin`` 403, a ``Host``
that ``/mcp`` does not answer to 421. Problems
with one snippet (a NUL byte, text that is not Unicode) become that snippet's
result, never a failed batch.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from werkzeug.exceptions import HTTPException

from leanstep.keys import matching_key, owner_of
from leanstep.server.health_routes import health_blueprint
from leanstep.server.jsonio import BODY_TOO_LARGE, body_limit_bytes, body_too_large_detail, error_response
from leanstep.server.mcp_routes import MCP_PATH, mcp_blueprint
from leanstep.server.services import Services
from leanstep.server.session_routes import session_blueprint
from leanstep.server.verify_routes import verify_blueprint

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health", "/health/"})  # not GET /, Kimina's health alias: it shares POST / with llmstep
PREFLIGHT_HEADERS = {  # what an allowed page's CORS preflight is told it may send
    "Access-Control-Allow-Methods": "GET, POST, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-API-Key",
    "Access-Control-Max-Age": "600",
}
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


@dataclass
class AppState:
    """What the routes share: the services they answer with, the metrics registry, and whether the server stops."""

    services: Services
    registry: CollectorRegistry
    closing: bool = False  # set at shutdown: /health says so, the batch routes answer 503
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run ``closer`` when the server stops (after the requests in flight were answered)."""
        self._closers.append(closer)

    def close(self) -> None:
        """Stop what the routes run beside the requests (the MCP transport's event loop), last added first."""
        while self._closers:
            self._closers.pop()()


def close_app(app: Any) -> None:
    """Stop what ``app`` (made by :func:`create_app`) runs beside its routes; nothing for any other WSGI app."""
    state = getattr(app, "extensions", {}).get("leanstep")
    if isinstance(state, AppState):
        state.close()


def _host_name(host: str) -> str:
    """The name in a ``Host`` header, without the port (``[::1]:6000`` -> ``::1``), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def mcp_host_names(host: str, allow_host: tuple[str, ...]) -> frozenset[str] | None:
    """The ``Host`` names /mcp answers to, or None for any: a server on a loopback address answers only to
    loopback names (and ``allow_host``), so a page whose name was rebound to 127.0.0.1 cannot reach it."""
    try:
        loopback = host in LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_host:
        return None
    return frozenset({_host_name(h) for h in allow_host} | ({host.lower()} | LOOPBACK_NAMES if loopback else set()))


def _presented_key() -> str | None:
    given = request.headers.get("Authorization")
    if given is not None:
        given = given.strip()
        if given[:7].lower() == "bearer ":
            given = given[7:].strip()
    else:
        given = request.headers.get("X-API-Key")
    return given or None


def create_app(services: Services) -> Flask:
    """The app answering with ``services`` (built by ``server.services.build_services``; their owner closes them).

    ``app.extensions["leanstep"]`` is its :class:`AppState`.
    """
    config = services.config
    app = Flask("leanstep")
    app.config["MAX_CONTENT_LENGTH"] = body_limit_bytes(config.max_body_mb)
    allowed_origins = frozenset(config.allow_origin)
    mcp_hosts = mcp_host_names(config.host, config.allow_host)
    registry = CollectorRegistry(auto_describe=True)
    state = AppState(services, registry)
    app.extensions["leanstep"] = state
    http_requests = Counter("leanstep_http_requests", "HTTP requests by route and status",
                            ["route", "status"], registry=registry)
    latency = Histogram("leanstep_http_request_seconds", "HTTP request latency by route", ["route"],
                        buckets=LATENCY_BUCKETS, registry=registry)

    # -- cross-cutting --------------------------------------------------------

    @app.before_request
    def _admit() -> Response | None:
        """403 for a web page not in ``allow_origin``, 421 for /mcp under a ``Host`` it does not answer to, then
        401 without the key (/health answers a public view).

        Browsers send ``Origin`` with every cross-site POST and CORS request, so a page a user
        happens to visit cannot drive a local server; the ``Host`` check also holds when a page's
        own name was rebound to this address (MCP's DNS rebinding guidance). A CORS preflight
        (OPTIONS) carries no key by design and gets only Flask's empty answer, so it needs none.
        """
        g.started = time.monotonic()
        origin = request.headers.get("Origin")
        if origin is not None and origin not in allowed_origins:
            return error_response(403, "origin not allowed",
                                  f"requests from web pages at {origin!r} are refused; start the server with "
                                  "`--allow-origin ORIGIN` for a page that should call it")
        if request.path == MCP_PATH and mcp_hosts is not None \
                and _host_name(request.headers.get("Host", "")) not in mcp_hosts:
            return error_response(421, "host not allowed",
                                  f"/mcp does not answer to Host {request.headers.get('Host', '')!r}; it answers to "
                                  f"{', '.join(sorted(mcp_hosts))} (add a name with `--allow-host NAME`)")
        g.authenticated, g.owner = True, owner_of(None)
        if config.api_key and request.method != "OPTIONS":
            given = _presented_key()
            key = matching_key(given, config.api_key)
            g.authenticated, g.owner = key is not None, owner_of(key)
            if key is None and request.path not in OPEN_PATHS:
                why = "invalid API key" if given else "missing API key: send `Authorization: Bearer <key>`"
                return error_response(401, "unauthorized", why)
        return None

    @app.after_request
    def _cors(response: Response) -> Response:
        """Let the pages of ``allow_origin`` read answers (and pass their preflight)."""
        origin = request.headers.get("Origin")
        if origin is not None and origin in allowed_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.vary.add("Origin")
            if request.method == "OPTIONS":
                response.headers.update(PREFLIGHT_HEADERS)
        return response

    @app.after_request
    def _observe(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        http_requests.labels(route, str(response.status_code)).inc()
        started = g.get("started")
        if started is not None:
            latency.labels(route).observe(time.monotonic() - started)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if exc.code == 413:
            return error_response(413, BODY_TOO_LARGE, body_too_large_detail(app.config["MAX_CONTENT_LENGTH"]))
        return error_response(exc.code or 500, (exc.name or "error").lower(), exc.description)

    @app.errorhandler(Exception)
    def _internal(exc: Exception) -> Response:
        log.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
        return error_response(500, "internal server error", f"{type(exc).__name__}: {exc}")

    app.register_blueprint(verify_blueprint(state))
    app.register_blueprint(health_blueprint(state))
    app.register_blueprint(session_blueprint(services.sessions))
    app.register_blueprint(mcp_blueprint(state))
    if services.suggester is not None:  # imported only then: the verification path needs none of it
        from leanstep.server.leancopilot_routes import leancopilot_blueprint
        from leanstep.server.suggest_routes import suggest_blueprint

        app.register_blueprint(suggest_blueprint(services.suggester))
        app.register_blueprint(leancopilot_blueprint(services.suggester))
    if services.prover is not None:
        from leanstep.server.prove_routes import prove_blueprint

        app.register_blueprint(prove_blueprint(state, services.prover))
    return app
