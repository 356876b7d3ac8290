"""``/mcp`` on ``leanstep serve``'s waitress server: admission, streaming, and the ASGI mount under it.

The SDK's transport is an ASGI app; ``AsgiMount`` serves it from the WSGI server. These tests use real
waitress servers and ``requests``: answers stream chunk by chunk, a client that goes away cancels the
app's work, and ``/mcp`` is admitted like every route (API key, ``Origin``) plus a ``Host`` check.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from contextlib import asynccontextmanager
from typing import Any

import pytest
import requests

from leanstep.server.app import close_app, create_app, mcp_host_names
from leanstep.server.asgi import AsgiMount
from leanstep.server.services import build_services
from leanstep.server.wsgi import serve_in_thread
from server_fixtures import running_server, sim_config

ACCEPT = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
LIST_TOOLS = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}


def sse_data(text: str) -> list[Any]:
    """The JSON of every ``data:`` line of an SSE body."""
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


@asynccontextmanager
async def no_lifespan():
    yield


# --------------------------------------------------------------------------- the mount


def test_an_answer_streams_through_waitress_chunk_by_chunk():
    produced_second = threading.Event()
    read_first = threading.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await asyncio.get_running_loop().run_in_executor(None, read_first.wait, 10)
        produced_second.set()
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": False})

    mount = AsgiMount(app, no_lifespan)
    try:
        with serve_in_thread(mount) as url, requests.post(url, stream=True, timeout=10) as answer:
            chunks = answer.iter_content(chunk_size=None)
            started = time.monotonic()
            first = next(chunks)
            assert first == b"data: 1\n\n" and not produced_second.is_set()
            read_first.set()
            assert b"".join(chunks) == b"data: 2\n\n"
            assert time.monotonic() - started < 5
    finally:
        mount.close()


def test_a_client_that_goes_away_mid_answer_cancels_the_apps_work():
    cancelled = threading.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        try:
            while True:  # a stream that never ends by itself, as a keep-alive ping would
                await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    mount = AsgiMount(app, no_lifespan)
    try:
        with serve_in_thread(mount) as url:
            answer = requests.post(url, stream=True, timeout=10)
            assert next(answer.iter_content(chunk_size=None)).startswith(b": ping")
            answer.close()
            assert cancelled.wait(10), "the app kept streaming to a client that was gone"
    finally:
        mount.close()


def test_the_lifespan_runs_from_the_first_request_to_close_and_then_requests_are_refused():
    events: list[str] = []

    @asynccontextmanager
    async def lifespan():
        events.append("entered")
        yield
        events.append("left")

    async def app(scope, receive, send):
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-owner", scope["state"]["who"])]})
        await send({"type": "http.response.body", "body": body[::-1]})

    mount = AsgiMount(lambda s, r, w: app(s, r, w), lifespan)
    with serve_in_thread(lambda environ, start: mount(environ, start, {"who": b"me"})) as url:
        assert events == []
        answer = requests.post(url, data=b"abc", timeout=10)
        assert (answer.status_code, answer.content, answer.headers["x-owner"]) == (200, b"cba", "me")
        assert events == ["entered"]
        mount.close()
        assert events == ["entered", "left"]
        refused = requests.post(url, data=b"abc", timeout=10)
        assert refused.status_code == 503 and refused.json()["error"] == "service unavailable"


def test_an_app_that_fails_before_answering_gets_a_json_500():
    async def app(scope, receive, send):
        raise RuntimeError("broken app")

    mount = AsgiMount(app, no_lifespan)
    try:
        with serve_in_thread(mount) as url:
            answer = requests.post(url, timeout=10)
            assert answer.status_code == 500
            assert answer.json() == {"error": "internal server error", "detail": "RuntimeError: broken app"}
    finally:
        mount.close()


# --------------------------------------------------------------------------- /mcp on the server


@pytest.fixture(scope="module")
def server():
    with running_server(suggest=True, backend="hint", api_key="k", allow_origin=("https://ok.example",),
                        max_body_mb=0.05) as running:
        yield running


def post(server, body: Any, **headers: str) -> requests.Response:
    return requests.post(server.url + "/mcp", json=body, headers={**ACCEPT, "Authorization": "Bearer k", **headers},
                         timeout=30)


def test_a_tool_call_is_answered_as_a_server_sent_event(server):
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "verify", "arguments": {"code": "theorem a : True := trivial"}}}
    answer = post(server, call)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "text/event-stream"
    [message] = sse_data(answer.text)
    assert message["id"] == 3 and message["result"]["structuredContent"]["verdict"] == "valid"


def test_only_post_is_routed(server):
    for method in ("GET", "DELETE", "PUT"):
        answer = requests.request(method, server.url + "/mcp", headers={"Authorization": "Bearer k", **ACCEPT},
                                  timeout=10)
        assert answer.status_code == 405 and answer.json()["error"] == "method not allowed"


def test_a_foreign_page_and_a_rebound_host_are_refused_before_the_key_is_looked_at(server):
    page = post(server, LIST_TOOLS, Origin="https://evil.example")
    assert page.status_code == 403 and page.json()["error"] == "origin not allowed"
    assert post(server, LIST_TOOLS, Origin="https://ok.example").status_code == 200
    rebound = post(server, LIST_TOOLS, Host="evil.example:6000")
    assert rebound.status_code == 421 and rebound.json()["error"] == "host not allowed"
    assert "--allow-host" in rebound.json()["detail"]
    for host in ("localhost:1", "127.0.0.1", "[::1]:6000"):
        assert post(server, LIST_TOOLS, Host=host).status_code == 200, host


def test_a_body_over_the_limit_is_refused_before_the_mcp_server_sees_it(server):
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "verify", "arguments": {"code": "-- " + "x" * 60_000}}}
    answer = post(server, call)
    assert answer.status_code == 413 and answer.json()["error"] == "request body too large"


def test_the_hosts_mcp_answers_to():
    assert mcp_host_names("0.0.0.0", ()) is None  # listening everywhere: any name may be the server's
    assert mcp_host_names("127.0.0.1", ()) == {"127.0.0.1", "localhost", "::1"}
    assert mcp_host_names("::1", ("Lean.Example:443",)) == {"::1", "127.0.0.1", "localhost", "lean.example"}
    assert mcp_host_names("10.0.0.5", ("lean.example",)) == {"lean.example"}


def test_a_stopping_server_refuses_new_mcp_requests_with_503():
    services = build_services(sim_config(backend="hint"))
    try:
        app = create_app(services)
        app.extensions["leanstep"].closing = True
        answer = app.test_client().post("/mcp", json=LIST_TOOLS, headers=ACCEPT)
        assert answer.status_code == 503 and answer.get_json()["error"] == "server shutting down"
        close_app(app)
    finally:
        services.close()
