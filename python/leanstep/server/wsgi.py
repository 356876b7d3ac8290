"""``leanstep serve``: build the services (``server.services``), and serve the app over them with waitress.

SIGTERM and SIGINT shut the server down promptly without losing answers: it
stops listening at once, lets the requests in flight run for
``--shutdown-grace`` seconds, then kills every REPL, so each check still
running is answered ``server shutting down``; waitress's I/O loop runs until
those answers are sent, and the process exits within the grace plus about two
seconds, every REPL reaped (no orphans). A second signal ends the grace early.

The waitress server is hardened against clients that hold connections open
(see ``make_server``) and answers its own refusals with the app's JSON errors.
"""

from __future__ import annotations

import errno
import json
import logging
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import waitress
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer
from waitress.task import ErrorTask

from leanstep.api.common import error_json
from leanstep.cluster.router import RayTarget
from leanstep.config import Config
from leanstep.server.app import AppState, close_app, create_app
from leanstep.server.jsonio import BODY_TOO_LARGE, body_limit_bytes, body_too_large_detail
from leanstep.server.services import build_services

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 1000  # open connections at once (fewer when the open-file limit is low: see connection_limit)
MAINTENANCE_INTERVAL_S = 1  # how often waitress looks for idle connections to close


LOOP_POLL_S = 0.1  # how often serve()'s I/O loop looks for a stop signal
STOP_REPLS_S = 0.7  # after the grace: for the stopped checks to release their REPLs
FLUSH_S = 0.7  # then: for their answers to reach the clients
DISPATCHER_STOP_S = 0.3  # then: for waitress's idle request threads to exit


class _StopSignal:
    """What the signal handlers saw: the first SIGTERM/SIGINT starts the shutdown, a second one ends its grace."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.forced = False

    def __call__(self, signum: int, _frame: Any) -> None:
        if self.name is None:
            self.name = signal.Signals(signum).name
        else:
            self.forced = True


class ListenError(RuntimeError):
    """The server cannot listen where it was told to (a port in use, an unknown host); says what to change."""


def bind_listeners(config: Config, port: int | None = None) -> list[socket.socket]:
    """Sockets bound to every address ``config.host`` resolves to, at ``port`` (default ``config.port``).

    ``leanstep serve`` binds before anything else, so a port in use is one line and no REPL starts.
    """
    port = config.port if port is None else port
    where = f"{config.host}:{port}"
    try:
        addresses = Adjustments(host=config.host, port=port).listen
    except ValueError as exc:
        raise ListenError(f"cannot listen on {where}: {exc}") from None
    bound: list[socket.socket] = []
    try:
        for family, socktype, proto, sockaddr in addresses:
            sock = socket.socket(family, socktype, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
    except OSError as exc:
        for sock in bound:
            sock.close()
        hint = ("another server is using that port: stop it or pick another --port" if exc.errno == errno.EADDRINUSE
                else "check --host and --port")
        raise ListenError(f"cannot listen on {where}: {exc.strerror or exc}; {hint}") from None
    return bound


def connection_limit() -> int:
    """Connections to hold at once: ``MAX_CONNECTIONS``, or half the open-file limit when that is lower.

    waitress stops accepting at this count, so it must stay well above what idle or slow
    clients can hold before ``request_read_timeout`` drops them; the other half of the
    file descriptors stays for REPL pipes, logs and the spill files of large bodies.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft // 2))


class _JsonErrorTask(ErrorTask):
    """waitress's own refusals (a body over the limit, a request it cannot parse) as the app's JSON errors."""

    def execute(self) -> None:
        error = self.request.error
        if error.code == 413:  # waitress's limit is the app's plus one byte: see make_server
            name, detail = BODY_TOO_LARGE, body_too_large_detail(self.channel.adj.max_request_body_size - 1)
        else:
            name, detail = error.reason.lower(), error.body
        body = json.dumps(error_json(name, detail)).encode("utf-8")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    """waitress's connection, with JSON error answers and a deadline for each request to arrive.

    waitress closes a connection only after ``channel_timeout`` seconds without a byte, so a
    client that trickles a byte every few seconds (slow loris) would hold it for ever. Here a
    request must also be complete within ``channel_timeout`` of its first byte.
    """

    error_task_class = _JsonErrorTask
    request_started = 0.0

    def received(self, data: bytes) -> bool:
        partial = self.request
        accepted = super().received(data)
        if self.request is not None and self.request is not partial:
            self.request_started = time.monotonic()
        return accepted

    def readable(self) -> bool:
        # The loop asks every connection at every turn, at most asyncore_loop_timeout apart.
        if not super().readable():  # answering, or already closing: not waiting for the client
            return False
        if self.request is not None and time.monotonic() - self.request_started > self.adj.channel_timeout:
            log.debug("closing the connection from %s: its request took over %g s to arrive",
                      self.addr, self.adj.channel_timeout)
            self.will_close = True  # writable() is then true, and the loop closes the socket
            return False
        return True


def make_server(app: Any, config: Config, *, listeners: list[socket.socket] | None = None, port: int | None = None,
                **adjustments: Any) -> Any:
    """A waitress server for ``app`` on ``listeners`` (bound here when not given; ``port=0`` picks a free port).

    A request must arrive within ``request_read_timeout`` of its first byte and a connection
    may idle that long, so clients that hold connections open are dropped; up to
    ``connection_limit()`` are polled at once (``select`` cannot watch descriptors past 1023).
    A body over ``max_body_mb`` is refused from its Content-Length, before it is buffered.
    """
    socket_map: dict[int, Any] = {}
    server = waitress.create_server(
        app, map=socket_map, sockets=bind_listeners(config, port) if listeners is None else listeners,
        threads=config.threads, ident="leanstep",
        # waitress refuses Content-Length >= its limit, the app > MAX_CONTENT_LENGTH: the same bodies
        max_request_body_size=body_limit_bytes(config.max_body_mb) + 1,
        channel_timeout=config.request_read_timeout, cleanup_interval=MAINTENANCE_INTERVAL_S,
        connection_limit=connection_limit(), asyncore_use_poll=True,
        # read on while a request runs, so a client that hangs up is noticed (the WSGI environ's
        # `waitress.client_disconnected`) and its queued generation dropped
        channel_request_lookahead=1, **adjustments,
    )
    for dispatcher in socket_map.values():
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = _Channel
    return server


@contextmanager
def serve_in_thread(app: Any, config: Config | None = None) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a background thread; yields its base URL.

    Used by tests and benchmarks. Stopping empties waitress's socket map so its
    loop ends by itself before the sockets are closed (closing them under a
    running ``select`` would fail in the server thread).
    """
    config = config or Config(host="127.0.0.1")
    server = make_server(app, config, port=0, asyncore_loop_timeout=0.05)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://{config.host}:{server.effective_port}"
    finally:
        server.task_dispatcher.shutdown(timeout=5)
        channels = list(server._map.values())
        server._map.clear()
        thread.join(5)
        for channel in channels:
            channel.close()
        close_app(app)


def _socket_map(server: Any) -> dict[int, Any]:
    """waitress's map of listeners, connections and its wake-up pipe (one listener or several)."""
    return server.map if isinstance(server, MultiSocketServer) else server._map


def _busy_connections(socket_map: dict[int, Any]) -> int:
    """Connections with a request arriving, running, or not yet fully answered (waitress's channel state)."""
    return sum(1 for channel in list(socket_map.values()) if isinstance(channel, HTTPChannel)
               and (channel.requests or channel.request is not None or channel.total_outbufs_len))


def _run_loop(server: Any, socket_map: dict[int, Any], until: Callable[[], bool],
              deadline: float = float("inf")) -> None:
    """waitress's I/O loop (accept, read, send) in this thread, until ``until()`` or ``deadline``."""
    while not until() and time.monotonic() < deadline:
        wasyncore.loop(timeout=LOOP_POLL_S, map=socket_map, use_poll=server.adj.asyncore_use_poll, count=1)


def _shut_down(server: Any, socket_map: dict[int, Any], state: AppState, grace: float, stop: _StopSignal) -> None:
    """Stop listening, give the requests in flight ``grace`` seconds, then kill the REPLs and send the answers.

    Killing the REPLs makes every check still running answer ``server shutting down``;
    the I/O loop keeps running here until those answers are sent (closing connections
    under a request thread that is still writing loses its answer).
    """
    for listener in [d for d in socket_map.values() if isinstance(d, BaseWSGIServer)]:
        wasyncore.dispatcher.close(listener)  # new connections are refused; open ones are still served
    state.closing = True  # /health says so, and new requests on open connections get 503

    def idle() -> bool:
        return not _busy_connections(socket_map)

    _run_loop(server, socket_map, lambda: idle() or stop.forced, time.monotonic() + grace)
    busy = _busy_connections(socket_map)
    if busy:
        log.warning("%d request(s) still running after the %g s shutdown grace: stopping their REPLs", busy, grace)
    state.services.pool.shutdown(timeout=STOP_REPLS_S)
    _run_loop(server, socket_map, idle, time.monotonic() + FLUSH_S)


def serve(config: Config, *, cluster: RayTarget | None = None, listeners: list[socket.socket] | None = None) -> None:
    """Run the server until SIGTERM/SIGINT, then shut it down within ``--shutdown-grace`` + 2 s (``_shut_down``).

    ``cluster``: verify on that Ray cluster (``--ray``). ``listeners``: sockets from
    ``bind_listeners``, bound before this starts any REPL.
    """
    services = build_services(config, cluster=cluster)  # raises SetupError with what to fix
    try:
        app = create_app(services)
        server = make_server(app, config, listeners=listeners)
        socket_map = _socket_map(server)
        stop = _StopSignal()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, stop)
        log.info("leanstep listening on http://%s:%s (%d REPLs max, %d HTTP threads)",
                 config.host, server.effective_port, config.max_repls, config.threads)
        try:
            _run_loop(server, socket_map, lambda: stop.name is not None)
            log.info("stopping (%s): no new connections; %g s for the requests in flight",
                     stop.name, config.shutdown_grace)
            _shut_down(server, socket_map, app.extensions["leanstep"], config.shutdown_grace, stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            wasyncore.close_all(socket_map, ignore_all=True)
            server.task_dispatcher.shutdown(timeout=DISPATCHER_STOP_S)
            close_app(app)
    finally:
        services.close()
        log.info("all REPLs stopped")
