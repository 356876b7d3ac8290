"""Helpers shared by the server, client and CLI tests: a real waitress server on 127.0.0.1 over a sim pool."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import waitress

from leanstep.config import Config, load
from leanstep.repl.launch import make_pool
from leanstep.repl.pool import ReplPool
from leanstep.server.app import create_app


def import_kimina_client() -> Any:
    """Import the unmodified kimina-client 0.2.1.

    Its models use ``typing.TypedDict`` when ``typing.NotRequired`` exists (Python 3.11), which
    pydantic 2 refuses on Python < 3.12; users of that package on 3.11 need the same shim: the
    import sees ``typing_extensions.TypedDict`` and the package's own code is unchanged.
    """
    import sys
    import typing

    import typing_extensions

    if "kimina_client" in sys.modules or sys.version_info >= (3, 12):
        import kimina_client

        return kimina_client
    original = typing.TypedDict
    typing.TypedDict = typing_extensions.TypedDict  # type: ignore[misc]
    try:
        import kimina_client
    finally:
        typing.TypedDict = original  # type: ignore[misc]
    return kimina_client


def sim_config(**overrides: Any) -> Config:
    """A sim pool of 2 REPLs, no sandbox, zero simulated cost; environment variables ignored."""
    settings = {"repl": "sim", "max_repls": 2, "sandbox": "none", "queue_wait": 30, **overrides}
    return load(settings, environ={})


@dataclass
class RunningServer:
    url: str
    app: Any
    pool: ReplPool
    config: Config


@contextmanager
def serve_wsgi(app: Any, threads: int = 8) -> Iterator[str]:
    """Serve any WSGI app with waitress on a free port of 127.0.0.1 in a background thread."""
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.task_dispatcher.shutdown(timeout=2)
        server.close()


@contextmanager
def running_server(**overrides: Any) -> Iterator[RunningServer]:
    config = sim_config(**overrides)
    pool = make_pool(config)
    pool.start()
    app = create_app(config, pool=pool)
    try:
        with serve_wsgi(app) as url:
            yield RunningServer(url, app, pool, config)
    finally:
        app.extensions["leanstep"].close()
        pool.shutdown()
