"""``leanstep serve``: build the pool, start it, and serve the app with waitress.

SIGTERM and SIGINT stop accepting requests and shut the pool down, so every
REPL process is closed and reaped before the server exits (no orphans).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import waitress

from leanstep.config import Config
from leanstep.repl.launch import make_pool
from leanstep.server.app import create_app

log = logging.getLogger(__name__)


class _Stop(Exception):
    """Raised in the main thread by the signal handler to leave waitress's loop."""


def build_suggester(config: Config, pool: Any) -> Any:
    """The model-backed suggester (imports the generation stack only here).

    The model loads and warms up in the background, so the server answers
    /verify and /health at once and the first /suggest does not pay the load.
    """
    from leanstep.generate import make_generator, settings_from_config
    from leanstep.suggest import Suggester

    generator = make_generator(settings_from_config(config))
    warmup = getattr(generator, "warmup", None)
    if warmup is not None:
        def warm() -> None:
            try:
                warmup()
                log.info("model %s loaded and warmed up", config.hf_model)
            except Exception as exc:  # noqa: BLE001 - the server still verifies; /suggest reports the error
                log.error("model %s could not be loaded (%s); /suggest answers 503 until it can", config.hf_model, exc)

        threading.Thread(target=warm, name="model-warmup", daemon=True).start()
    return Suggester(generator, pool, config)


def make_server(app: Any, config: Config, *, port: int | None = None, **adjustments: Any) -> Any:
    """A waitress server for ``app`` (``port=0`` picks a free port: see ``server.effective_port``)."""
    return waitress.create_server(
        app, host=config.host, port=config.port if port is None else port, threads=config.threads,
        # a backstop above the app's own limit, which answers 413 with a JSON message
        max_request_body_size=max(64, 4 * int(config.max_body_mb)) * 1024 * 1024,
        channel_timeout=3600, connection_limit=max(100, 4 * config.threads), ident="leanstep", **adjustments,
    )


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


def serve(config: Config, with_model: bool = False, suggester: Any = None, verifier: Any = None) -> None:
    """Run the server until SIGTERM/SIGINT, then stop it and every REPL cleanly."""
    pool = make_pool(config)  # raises SetupError with what to fix before anything starts
    pool.start()
    app = None
    try:
        if suggester is None and with_model:
            suggester = build_suggester(config, pool)
        app = create_app(config, pool=pool, suggester=suggester, verifier=verifier)
        server = make_server(app, config)
        previous = {}

        def stop(signum: int, _frame: Any) -> None:
            raise _Stop(signal.Signals(signum).name)

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, stop)
        log.info("leanstep listening on http://%s:%s (%d REPLs max, %d HTTP threads)",
                 config.host, server.effective_port, config.max_repls, config.threads)
        try:
            server.run()
        except (_Stop, KeyboardInterrupt) as exc:
            log.info("stopping (%s)", exc or "interrupt")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            try:
                server.task_dispatcher.shutdown(timeout=5)
                server.close()
            except Exception:  # noqa: BLE001 - best effort; the pool shutdown below matters more
                log.debug("waitress shutdown", exc_info=True)
    finally:
        if app is not None:
            app.extensions["leanstep"].close()
        pool.shutdown()
        log.info("all REPLs stopped")
