"""Serve an ASGI app from the WSGI server: one event loop thread, the app's lifespan entered once.

The server is WSGI (Flask on waitress); the MCP SDK's streamable HTTP transport
is ASGI and needs a task group running for as long as the server does.
:class:`AsgiMount` runs an event loop in a thread of its own, enters the app's
lifespan there when the first request arrives, and hands each WSGI request to
the app on that loop: the request thread blocks on a queue of the app's ASGI
messages and yields each body chunk as it comes, so a streamed (SSE) answer
reaches the client chunk by chunk (waitress sends what is written at once).

Why not a general ASGI-to-WSGI adapter: those run the app per request but know
nothing of its lifespan, and when the client goes away mid-answer (WSGI learns
it only when a write fails and the response iterator is closed) they leave the
app's task waiting on ``send`` for ever. Here closing the iterator tells the app
``http.disconnect`` and cancels its task, and :meth:`AsgiMount.close` leaves the
lifespan, which cancels whatever the app still runs.

waitress has read the whole body before the app is called (it is bounded by
``--max-body-mb``), so the app receives it as one ``http.request`` message.
Hop-by-hop headers the app sets (an SSE answer's ``Connection: keep-alive``)
are the HTTP server's business under WSGI and are dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager
from http import HTTPStatus
from typing import Any
from wsgiref.util import is_hop_by_hop

from leanstep.api.common import error_json

log = logging.getLogger(__name__)

AsgiApp = Callable[[dict[str, Any], Callable[[], Any], Callable[[dict[str, Any]], Any]], Any]
Lifespan = Callable[[], AbstractAsyncContextManager[Any]]
START_TIMEOUT_S = 10.0
_FINISHED = object()  # the app's task ended (it may have failed before answering)


class AsgiMount:
    """``app`` served from WSGI; ``lifespan()`` is entered before the first request and left by :meth:`close`."""

    def __init__(self, app: AsgiApp, lifespan: Lifespan, *, name: str = "asgi") -> None:
        self._app = app
        self._lifespan = lifespan
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the loop ----------------------------------------------------------------

    def _start(self) -> asyncio.AbstractEventLoop:
        """The running loop, started (and the lifespan entered) by the first caller."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            if self._loop is not None:
                return self._loop
            ready: Future[asyncio.AbstractEventLoop] = Future()
            thread = threading.Thread(target=self._run, args=(ready,), name=f"{self._name}-loop", daemon=True)
            thread.start()
            self._loop = ready.result(START_TIMEOUT_S)  # raises what entering the lifespan raised
            self._thread = thread
            return self._loop

    def _run(self, ready: Future[asyncio.AbstractEventLoop]) -> None:
        """The loop thread: enter the lifespan, wait for :meth:`close`, leave it; ``asyncio.run`` then cancels
        whatever tasks are left."""
        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                async with self._lifespan():
                    ready.set_result(asyncio.get_running_loop())
                    await self._stop.wait()
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                    return
                raise

        try:
            asyncio.run(main())
        except Exception:
            log.exception("%s: leaving the lifespan failed", self._name)

    def close(self, timeout: float = 5.0) -> None:
        """Leave the lifespan (cancelling what the app still runs) and stop the loop; later requests get 503."""
        with self._lock:
            self._closed = True
            loop, thread, stop = self._loop, self._thread, self._stop
        if loop is None or thread is None or stop is None:
            return
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("%s: the event loop did not stop within %g s", self._name, timeout)

    # -- one request -------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any],
                 scope_state: dict[str, Any] | None = None) -> Iterable[bytes]:
        """The WSGI answer of ``app``; ``scope_state`` is the request's ASGI ``state`` (what the app may read)."""
        try:
            loop = self._start()
        except RuntimeError as exc:
            return _plain_error(start_response, "503 Service Unavailable", "service unavailable", str(exc))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        messages: queue.SimpleQueue[Any] = queue.SimpleQueue()
        disconnected = asyncio.Event()  # set on the loop when the client is gone (bound to the loop when awaited)
        sent_body = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            messages.put(message)

        task = asyncio.run_coroutine_threadsafe(self._app(_scope(environ, scope_state), receive, send), loop)
        task.add_done_callback(lambda _done: messages.put(_FINISHED))
        start = messages.get()
        if start is _FINISHED or start.get("type") != "http.response.start":
            failure = task.exception() if task.done() and not task.cancelled() else None
            log.error("%s: the app answered no response", self._name, exc_info=failure)
            return _plain_error(start_response, "500 Internal Server Error", "internal server error",
                                f"{type(failure).__name__}: {failure}" if failure else "no response")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", ())]
        start_response(_status_line(start["status"]), [(k, v) for k, v in headers if not is_hop_by_hop(k)])

        return _Answer(messages, lambda: (loop.call_soon_threadsafe(disconnected.set), task.cancel()))


class _Answer:
    """The body of one answer as the app sends it; closed before its end (the client went away), it tells the
    app so and cancels its task."""

    def __init__(self, messages: queue.SimpleQueue[Any], abandon: Callable[[], object]) -> None:
        self._messages = messages
        self._abandon = abandon
        self._complete = False

    def __iter__(self) -> _Answer:
        return self

    def __next__(self) -> bytes:
        while not self._complete:
            message = self._messages.get()
            if message is _FINISHED:  # the app stopped without ending its answer
                break
            if message.get("type") == "http.response.body":
                self._complete = not message.get("more_body", False)
                if message.get("body"):
                    return bytes(message["body"])
        self._complete = True
        raise StopIteration

    def close(self) -> None:
        if not self._complete:
            self._complete = True
            self._abandon()


def _scope(environ: dict[str, Any], state: dict[str, Any] | None) -> dict[str, Any]:
    """The ASGI HTTP scope of a WSGI request (PEP 3333 -> ASGI 3.0)."""
    headers = [(key[5:].replace("_", "-").lower().encode("latin-1"), value.encode("latin-1"))
               for key, value in environ.items() if key.startswith("HTTP_")]
    for key, name in (("CONTENT_TYPE", b"content-type"), ("CONTENT_LENGTH", b"content-length")):
        if environ.get(key):
            headers.append((name, environ[key].encode("latin-1")))
    script = environ.get("SCRIPT_NAME", "")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": environ.get("SERVER_PROTOCOL", "HTTP/1.1").partition("/")[2] or "1.1",
        "method": environ["REQUEST_METHOD"],
        "scheme": environ.get("wsgi.url_scheme", "http"),
        "path": (script + environ.get("PATH_INFO", "")).encode("latin-1").decode("utf-8", "replace"),
        "raw_path": None,
        "query_string": environ.get("QUERY_STRING", "").encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "server": (environ.get("SERVER_NAME", ""), int(environ.get("SERVER_PORT") or 0)),
        "state": dict(state or {}),
    }
    if environ.get("REMOTE_ADDR"):
        scope["client"] = (environ["REMOTE_ADDR"], int(environ.get("REMOTE_PORT") or 0))
    return scope


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def _plain_error(start_response: Callable[..., Any], status: str, error: str, detail: str) -> Iterable[bytes]:
    """The app's JSON error body, for a request the ASGI app could not answer."""
    body = json.dumps(error_json(error, detail)).encode("utf-8")
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
