"""The Python client against a real server: order, duplicates, retries with backoff, failures per snippet."""

from __future__ import annotations

import threading

import pytest
from flask import Flask, jsonify, request
from server_fixtures import running_server

from leanstep.check.verdict import Reason, Trust
from leanstep.check.verify import Snippet
from leanstep.client import Client, ClientError
from leanstep.server.wsgi import serve_in_thread


@pytest.fixture(scope="module")
def server():
    with running_server() as srv:
        yield srv


def test_verify_mixed_inputs_in_order(server):
    snippets = [
        "theorem a : 1 + 1 = 2 := by norm_num",
        ("b", "theorem b : 1 = 2 := by simp"),
        {"id": "c", "code": "theorem c : True := by sorry"},
        {"custom_id": "d", "proof": "theorem d : True := by\n  sim_hang"},
        ("b", "theorem b2 : True := trivial"),  # a repeated id is fine: results follow input order
    ] + [f"theorem t{i} : {i} = {i} := rfl" for i in range(20)]
    with Client(server.url) as client:
        results = client.verify(snippets, timeout=1, batch_size=3, max_workers=4, progress=True)
    assert [r.id for r in results[:5]] == ["0", "b", "c", "d", "b"]
    assert [r.verdict for r in results[:5]] == ["valid", "invalid", "invalid", "timeout", "valid"]
    assert all(r.verdict == "valid" for r in results[5:])
    assert results[2].sorries and results[1].messages[0].is_error
    assert all(r.trust is Trust.STRICT for r in results)  # the server's --trust
    assert [r.code for r in results[1].reasons] == ["lean_error"]
    assert [r.code for r in results[2].reasons] == ["uses_sorry"]


def test_trust_and_statements_reach_the_server(server):
    proof = "theorem nd : 3 = 3 := by native_decide"
    with Client(server.url) as client:
        lenient, = client.verify([proof], trust="lenient")
        strict, = client.verify([proof], strict=True)
        stated = client.verify([
            Snippet("s", "theorem t : 1 = 1 := rfl", statement="theorem t : 2 = 2"),
            {"id": "r", "code": "theorem t : 1 = 1 := rfl", "formal_statement": "theorem t : 1 = 1"},
        ], trust=Trust.LENIENT)
        with pytest.raises(ValueError, match="strict=True means trust 'strict'"):
            client.verify([proof], trust="sealed", strict=True)
    assert (lenient.verdict, lenient.trust) == ("valid", Trust.LENIENT)
    assert (strict.verdict, strict.trust) == ("invalid", Trust.STRICT)
    assert isinstance(strict.reasons[0], Reason) and strict.reasons[0].code == "forbidden:native_decide"
    assert strict.reasons[0].pos is not None and strict.reasons[0].pos.line == 1
    assert [r.code for r in stated[0].reasons] == ["statement_mismatch"] and stated[1].verdict == "valid"


def test_health(server):
    with Client(server.url) as client:
        assert client.health()["pool"]["max_repls"] == 2


def test_retries_429_and_5xx_then_succeeds():
    app = Flask("flaky")
    calls = []
    lock = threading.Lock()

    @app.post("/api/check")
    def check():
        with lock:
            calls.append(1)
            n = len(calls)
        if n == 1:
            return jsonify(error="overloaded", detail=None), 429
        if n == 2:
            return jsonify(error="boom", detail=None), 503
        snippets = request.get_json()["snippets"]
        return jsonify(results=[{"id": s["id"], "time": 0.1, "response": {"env": 0}, "verdict": "valid",
                                 "reasons": [{"code": "a_code_from_a_newer_server", "message": "ignored"}]}
                                for s in snippets])

    with serve_in_thread(app) as url, Client(url, backoff=0.01) as client:
        results = client.verify(["theorem x : True := trivial"] * 3, batch_size=10)
    assert len(calls) == 3
    assert [r.verdict for r in results] == ["valid"] * 3 and [r.id for r in results] == ["0", "1", "2"]
    assert all(r.reasons == () and r.trust is None for r in results)  # what this version cannot read is left out


def test_unreachable_server_gives_per_snippet_errors_after_bounded_attempts():
    failures = []
    with Client("http://127.0.0.1:9", max_retries=2, backoff=0.01, timeout=2) as client:
        results = client.verify(["a", "b"], batch_size=1, on_failure=failures.append)
        with pytest.raises(ConnectionError, match="3 attempts"):
            client.health()
    assert [r.verdict for r in results] == ["error", "error"]
    assert all("request failed" in r.error and r.trust is None for r in results)
    assert [f.snippets for f in failures] == [1, 1] and all(isinstance(f.error, ConnectionError) for f in failures)


def test_a_refusal_is_reported_as_a_failure_not_a_verdict():
    failures = []
    with running_server(api_key="s3cret") as srv, Client(srv.url, api_key="wrong") as client:
        results = client.verify(["theorem t : True := trivial"] * 3, batch_size=2, on_failure=failures.append)
    assert [r.verdict for r in results] == ["error"] * 3
    assert sorted(f.snippets for f in failures) == [1, 2]
    assert all(isinstance(f.error, ClientError) and f.error.status == 401 for f in failures)


def test_checked_snippets_are_no_failure(server):
    failures = []
    with Client(server.url) as client:
        results = client.verify(["theorem t : 1 = 2 := rfl"], on_failure=failures.append)
    assert results[0].verdict == "invalid" and failures == []


def test_client_errors_are_not_retried(server):
    with Client(server.url, backoff=5) as client, pytest.raises(ClientError, match="422"):
        client.request("POST", "/api/check", {"snippets": [{"id": 1, "code": "x"}]})
