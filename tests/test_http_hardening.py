"""The HTTP layer as an attacker meets it: raw sockets and ``requests`` against a real waitress server.

Connections held open (a request left half sent, a slow loris, silence) must not lock
other clients out and must be dropped; a web page's cross-site request must not run
code; whatever a body holds, the answer is a JSON 4xx, never a 500 or waitress's
text/plain; without the API key, /health shows no client's text.
"""

from __future__ import annotations

import json
import resource
import select
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests
from server_fixtures import assert_error, assert_json_error, running_server

from leanstep.config import load

READ_TIMEOUT_S = 2.0  # the module server's request_read_timeout
BODY_LIMIT = 2**20  # the module server's max_body_mb=1, in bytes
ALLOWED_ORIGIN = "https://notebook.example"
HALF_OPEN = b"POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # request line and one header, then silence
EVAL = {"snippets": [{"id": "x", "code": "#eval 6 * 7"}]}
HELD = 200


@pytest.fixture(scope="module")
def file_room():
    """Room in the open-file limit for HELD client sockets and the server's HELD in this one process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 1024
    if soft == resource.RLIM_INFINITY or soft >= needed:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the open-file limit is {hard}; holding {HELD} connections both ways needs {needed}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def server(file_room):
    with running_server(request_read_timeout=READ_TIMEOUT_S, max_body_mb=1,
                        allow_origin=(ALLOWED_ORIGIN,)) as srv:
        yield srv


def connect(server, first_bytes: bytes = b"") -> socket.socket:
    parts = urlsplit(server.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True once the server has closed ``sock`` (EOF or reset), False if it is still open after ``within`` s."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            continue
        try:
            if sock.recv(65536) == b"":
                return True
        except ConnectionResetError:
            return True
    return False


def exchange(server, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a fresh connection and read the answer until the server closes it.

    A server that refuses a request before reading all of it closes with bytes unread, so
    the answer may be followed by a reset rather than an orderly end: both end the answer.
    """
    with connect(server, raw) as sock:
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def checked_so_far(server) -> int:
    return server.pool.stats().counters.requests


# --------------------------------------------------------------------------- connections held open


def test_held_connections_do_not_lock_out_a_new_client_and_are_dropped(server):
    held = [connect(server, HALF_OPEN) for _ in range(HELD)]
    try:
        started = time.monotonic()
        health = requests.get(server.url + "/health", timeout=1)
        assert time.monotonic() - started < 1.0
        assert health.status_code == 200 and health.json()["status"] == "ok"
        still_open = [s for s in held if not closed_by_server(s, within=READ_TIMEOUT_S + 10)]
        assert still_open == [], f"{len(still_open)} of {HELD} half-open connections were never dropped"
    finally:
        for sock in held:
            sock.close()


def test_a_slow_loris_is_dropped_although_it_is_never_idle(server):
    started = time.monotonic()  # before the connection opens: the server's clock starts at its accept
    with connect(server, HALF_OPEN + b"X-Slow: ") as sock:
        dropped = False
        while not dropped and time.monotonic() - started < READ_TIMEOUT_S + 10:
            try:
                sock.sendall(b"a")  # a byte every 0.2 s: busy, but never a whole request
            except OSError:
                dropped = True
                break
            dropped = closed_by_server(sock, within=0.2)
        assert dropped, "a header trickled a byte at a time was never cut off"
        assert time.monotonic() - started >= READ_TIMEOUT_S  # ... and not before its time was up


def test_a_silent_connection_is_dropped(server):
    with connect(server) as sock:
        assert closed_by_server(sock, within=READ_TIMEOUT_S + 10)


def test_a_request_sent_in_pieces_within_the_deadline_is_answered(server):
    body = json.dumps({"snippets": [{"id": "a", "code": "theorem t : True := trivial"}]}).encode()
    head = (f"POST /api/check HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with connect(server, head) as sock:
        assert not closed_by_server(sock, within=READ_TIMEOUT_S / 4)  # a pause well inside the deadline
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["results"][0]["verdict"] == "valid"


# --------------------------------------------------------------------------- browsers


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_a_body_not_declared_json_is_415_and_nothing_runs(server, content_type):
    """What a web page can send cross-site without a CORS preflight: none of it reaches a REPL."""
    before = checked_so_far(server)
    headers = {"Content-Type": content_type} if content_type else {}
    for path in ("/api/check", "/verify"):
        resp = requests.post(server.url + path, data=json.dumps(EVAL), headers=headers, timeout=10)
        assert_error(resp, 415, "application/json", repr(content_type or "none"))
    assert checked_so_far(server) == before


def test_json_with_a_charset_is_json(server):
    resp = requests.post(server.url + "/api/check", data=json.dumps(EVAL).encode(),
                         headers={"Content-Type": "application/json; charset=utf-8"}, timeout=10)
    assert resp.status_code == 200 and resp.json()["results"][0]["response"]["messages"][0]["data"] == "42"


@pytest.mark.parametrize("origin", ["http://evil.example", "null", ALLOWED_ORIGIN + ".evil.example",
                                    "http://notebook.example"])
def test_a_page_not_allowed_is_403_and_nothing_runs(server, origin):
    before = checked_so_far(server)
    resp = requests.post(server.url + "/api/check", json=EVAL, headers={"Origin": origin}, timeout=10)
    assert_error(resp, 403, origin, "--allow-origin")
    assert "Access-Control-Allow-Origin" not in resp.headers
    preflight = requests.options(server.url + "/api/check", timeout=10,
                                 headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 403 and "Access-Control-Allow-Origin" not in preflight.headers
    assert checked_so_far(server) == before


def test_an_allowed_page_passes_its_preflight_and_reads_the_answer(server):
    preflight = requests.options(server.url + "/api/check", timeout=10, headers={
        "Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert {"content-type", "authorization"} <= {h.strip().lower() for h in
                                                 preflight.headers["Access-Control-Allow-Headers"].split(",")}
    resp = requests.post(server.url + "/api/check", json=EVAL, headers={"Origin": ALLOWED_ORIGIN}, timeout=10)
    assert resp.status_code == 200 and resp.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert resp.json()["results"][0]["response"]["messages"][0]["data"] == "42"


def test_a_keyed_server_still_passes_an_allowed_pages_preflight():
    """A preflight never carries the key; the page's real request does."""
    with running_server(api_key="s3cret", allow_origin=(ALLOWED_ORIGIN,)) as srv:
        preflight = requests.options(srv.url + "/api/check", timeout=10, headers={
            "Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
        assert_error(requests.post(srv.url + "/api/check", json=EVAL, headers={"Origin": ALLOWED_ORIGIN},
                                   timeout=10), 401, "API key")


# --------------------------------------------------------------------------- /health without the key


def test_without_the_key_health_shows_liveness_and_counts_only():
    secret_header = "import Alice.UnpublishedProof"
    with running_server(api_key="s3cret") as srv:
        keyed = {"Authorization": "Bearer s3cret"}
        code = f"{secret_header}\n\ntheorem t : 1 + 1 = 2 := by norm_num"
        resp = requests.post(srv.url + "/verify", json={"codes": [{"custom_id": "a", "proof": code}]},
                             headers=keyed, timeout=30)
        assert resp.json()["results"][0]["verdict"] == "valid"

        full = requests.get(srv.url + "/health", headers=keyed, timeout=10).json()
        assert secret_header in full["pool"]["warm_headers"]
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            public = requests.get(srv.url + "/health", headers=headers, timeout=10)
            assert public.status_code == 200
            assert "Alice" not in public.text
            body = public.json()
            assert body["status"] == "ok" and body["suggest"] is False
            assert set(body["pool"]) == {"max_repls", "workers", "queue_depth"}
            assert all(isinstance(n, int) for n in body["pool"]["workers"].values())


# --------------------------------------------------------------------------- malformed values


HUGE = "9" * 5000  # past Python's 4300-digit conversion limit


@pytest.mark.parametrize("path,body,status,words", [
    ("/verify", '{"codes": [{"custom_id": ' + HUGE + ', "proof": "x"}]}', 400, ["5000 digits"]),
    ("/verify", '{"codes": [{"custom_id": "a", "proof": "x"}], "timeout": ' + HUGE + "}", 400, ["5000 digits"]),
    ("/api/check", '{"snippets": [{"id": "a", "code": "x"}], "timeout": -' + HUGE + "}", 400, ["5000 digits"]),
    ("/verify", '{"codes": [{"custom_id": ' + "9" * 101 + ', "proof": "x"}]}', 400, ["101 digits", "at most 100"]),
    ("/api/check", '{"snippets": [{"id": "a", "code": "x"}], "timeout": NaN}', 400, ["NaN"]),
    ("/api/check", '{"snippets": [{"id": "a", "code": "x"}], "timeout": -Infinity}', 400, ["Infinity"]),
    ("/api/check", '{"snippets": [{"id": "a", "code": "x"}], "timeout": 1e999}', 422, ["timeout"]),
    ("/verify", '{"codes": [{"custom_id": 1e999, "proof": "x"}]}', 422, ["custom_id"]),
    ("/verify", '{"codes": [{"custom_id": %s, "proof": "#eval 6 * 7"}]}' % ("9" * 100), 200, []),
    ("/api/check", "[" * 100_000, 400, ["nested too deeply"]),
    ("/api/check", '{"snippets": [{"id": "a", "code": "x"}], "infotree": {"a": [1]}}', 422, ["infotree"]),
    ("/verify", '{"codes": {"0": {"custom_id": "a", "proof": "x"}}}', 422, ["codes"]),
    ("/verify", '{"codes": []}', 422, ["codes: must be non empty"]),
    ("/api/check", '{"snippets": []}', 422, ["snippets: must be non empty"]),
    ("/api/check", "\ufeff" + '{"snippets": [{"id": "a", "code": "#eval 6 * 7"}]}', 200, []),
])
def test_malformed_values_are_4xx_never_500(server, path, body, status, words):
    resp = requests.post(server.url + path, data=body.encode("utf-8"), timeout=30,
                         headers={"Content-Type": "application/json"})
    if status == 200:
        assert resp.status_code == 200, resp.text[:300]
        return
    assert_error(resp, status, *words)


# --------------------------------------------------------------------------- bodies too large


def test_a_body_one_byte_over_the_limit_is_413_and_one_at_the_limit_is_not(server):
    payload = json.dumps({"snippets": [{"id": "a", "code": "theorem t : True := trivial"}]})
    at_limit = payload + " " * (BODY_LIMIT - len(payload))
    resp = requests.post(server.url + "/api/check", data=at_limit, timeout=30,
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == 200 and resp.json()["results"][0]["verdict"] == "valid"
    over = requests.post(server.url + "/api/check", data=at_limit + " ", timeout=30,
                         headers={"Content-Type": "application/json"})
    assert_error(over, 413, "request body too large", f"{BODY_LIMIT} bytes", "max_body_mb=1")


def test_a_huge_declared_body_is_refused_from_its_header_alone(server):
    """No byte of the 100 GiB is sent: the JSON 413 comes back at once and the connection closes."""
    head = (b"POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 107374182400\r\n\r\n")
    assert_json_error(*exchange(server, head), 413, "request body too large", f"{BODY_LIMIT} bytes")


def test_a_chunked_body_over_the_limit_is_413(server):
    def chunks():
        for _ in range(3):
            yield b" " * (BODY_LIMIT // 2)

    resp = requests.post(server.url + "/verify", data=chunks(), timeout=30,
                         headers={"Content-Type": "application/json"})
    assert resp.request.headers["Transfer-Encoding"] == "chunked"
    assert_error(resp, 413, "request body too large")


@pytest.mark.parametrize("raw,status,words", [
    (b"POST /verify HTTP/1.1\r\nHost: x\r\nContent-Length: twelve\r\n\r\n", 400, ["bad request", "content-length"]),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 300_000 + b"\r\n\r\n", 431, ["header"]),
    (b"POST /verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, ["not implemented"]),
])
def test_requests_the_http_server_itself_refuses_get_json_errors(server, raw, status, words):
    assert_json_error(*exchange(server, raw), status, *words)


def test_allow_origin_is_a_comma_separated_list_of_exact_origins():
    config = load({}, environ={"LEANSTEP_ALLOW_ORIGIN": "https://a.example, http://localhost:8888"})
    assert config.allow_origin == ("https://a.example", "http://localhost:8888")
    assert load({}, environ={}).allow_origin == ()
    for wrong in ("https://a.example/", "a.example", "*"):
        with pytest.raises(ValueError, match="--allow-origin"):
            load({"allow_origin": wrong}, environ={})
