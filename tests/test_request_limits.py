"""The server owns its limits: over real HTTP, a client may ask for less than the server allows, never more.

``--timeout`` caps the client's ``timeout`` on ``/verify`` and ``/api/check`` (and
``--check-timeout`` the ``/suggest`` budget), and every answer's ``limits`` says
which applied; ``--min-timeout`` and ``--max-headers-per-request`` refuse the
cheap ways to make the server kill and restart REPLs (422, naming the flag).
"""

from __future__ import annotations

import threading

import pytest
import requests

from leanstep.generate.base import Candidate, GenerationRequest
from server_fixtures import running_server

SLOW = "theorem slow : True := by\n  -- sim: delay 5\n  trivial"
HANG = "theorem h : True := by\n  sim_hang"
QUICK = "theorem q : 1 + 1 = 2 := by norm_num"


def verify(server, codes, **fields):
    payload = {"codes": [{"custom_id": cid, "proof": code} for cid, code in codes], **fields}
    return requests.post(server.url + "/verify", json=payload, timeout=60)


def restarts(server):
    c = server.pool.stats().counters
    return c.timeouts + c.lost + c.recycled_memory + c.recycled_uses + c.evicted


@pytest.fixture(scope="module")
def capped():
    """A server whose proofs may run 2 s at most."""
    with running_server(timeout=2.0) as server:
        yield server


# --------------------------------------------------------------------------- the ceiling


def test_a_5_s_proof_under_a_2_s_server_limit_times_out_although_the_client_asked_for_300(capped):
    reply = verify(capped, [("slow", SLOW)], timeout=300).json()
    result = reply["results"][0]
    assert result["verdict"] == "timeout"
    assert "timed out in 2 seconds" in result["error"]
    assert "the server's limit --timeout 2 s; the request asked for 300 s" in result["error"]
    assert reply["limits"]["timeout"] == {"seconds": 2.0, "requested": 300.0, "source": "server", "max": 2.0,
                                          "min": 1.0}


def test_verify_without_a_timeout_runs_under_the_servers_limit_not_kiminas_300(capped):
    reply = verify(capped, [("q", QUICK)]).json()
    assert reply["results"][0]["verdict"] == "valid"
    assert reply["limits"]["timeout"]["seconds"] == 2.0 and reply["limits"]["timeout"]["source"] == "server"
    assert reply["limits"]["timeout"]["requested"] is None
    assert reply["limits"]["import_timeout"]["seconds"] == capped.config.import_timeout


def test_api_check_caps_the_timeout_and_keeps_kiminas_default_below_the_ceiling():
    with running_server(timeout=60.0) as server:
        default = requests.post(server.url + "/api/check", json={"snippets": [{"id": "q", "code": QUICK}]},
                                timeout=60).json()
        assert default["limits"]["timeout"]["seconds"] == 30.0 and default["limits"]["timeout"]["source"] == "default"
        asked = requests.post(server.url + "/api/check", json={"snippets": [{"id": "q", "code": QUICK}],
                                                               "timeout": 1000}, timeout=60).json()
        assert asked["limits"]["timeout"] == {"seconds": 60.0, "requested": 1000.0, "source": "server", "max": 60.0,
                                              "min": 1.0}
        assert asked["results"][0]["verdict"] == "valid"


def test_a_client_asking_less_gets_its_own_limit_and_is_told_so(capped):
    reply = verify(capped, [("hang", HANG)], timeout=1).json()
    assert reply["results"][0]["verdict"] == "timeout"
    assert "timed out in 1 seconds (the request's timeout" in reply["results"][0]["error"]
    assert reply["limits"]["timeout"]["source"] == "request"


def test_a_hanging_request_cannot_hold_the_only_repl_past_the_servers_limit():
    with running_server(timeout=2.0, max_repls=1) as server:
        answers = {}
        hanging = threading.Thread(target=lambda: answers.update(hang=verify(server, [("hang", HANG)], timeout=86400)))
        hanging.start()
        quick = verify(server, [("q", QUICK)], timeout=5).json()
        hanging.join(30)
        assert quick["results"][0]["verdict"] == "valid"
        assert answers["hang"].json()["results"][0]["verdict"] == "timeout"


# --------------------------------------------------------------------------- no cheap restarts


def test_twenty_nanosecond_timeouts_are_refused_and_restart_nothing(capped):
    before = restarts(capped)
    replies = [verify(capped, [(f"q{i}", QUICK)], timeout=1e-9, disable_cache=True) for i in range(20)]
    assert {r.status_code for r in replies} == {422}
    detail = replies[0].json()["detail"]
    assert "timeout" in detail and "--min-timeout" in detail and "1 s" in detail
    assert restarts(capped) == before


def test_forty_distinct_headers_in_one_request_are_refused_before_any_import():
    with running_server() as server:
        codes = [(f"h{i}", f"import Mod{i}\n{QUICK}") for i in range(40)]
        reply = verify(server, codes)
        assert reply.status_code == 422
        body = reply.json()
        assert body["error"] == "too many headers"
        assert "40 distinct headers" in body["detail"] and "--max-headers-per-request" in body["detail"]
        assert server.pool.stats().counters.started == 0
        within = verify(server, codes[:8]).json()  # the default allows 8
        assert [r["verdict"] for r in within["results"]] == ["valid"] * 8


def test_hanging_proofs_at_the_minimum_timeout_restart_repls_no_faster_than_the_budget():
    with running_server(timeout=2.0, max_repls=2, max_restarts_per_minute=3) as server:
        results = [verify(server, [(f"hang{i}", HANG)], timeout=1, disable_cache=True).json()["results"][0]
                   for i in range(12)]
        assert server.pool.stats().counters.started <= 2 + 3
        assert {r["verdict"] for r in results} <= {"timeout", "error"}
        limited = [r for r in results if r["verdict"] == "error"]
        assert limited and all("--max-restarts-per-minute" in r["error"] for r in limited)


# --------------------------------------------------------------------------- /suggest


class FixedGenerator:
    def __init__(self, texts):
        self.texts = texts

    def generate(self, request: GenerationRequest):
        return [Candidate(t, -0.1 * i) for i, t in enumerate(self.texts)]


def test_the_suggest_budget_is_capped_at_check_timeout():
    with running_server(generator=FixedGenerator(["sim_hang", "trivial"]), check_timeout=1.5) as srv:
        body = {"tactic_state": "⊢ True", "context": "theorem t : True := by\n  ", "include_invalid": True,
                "timeout": 30}
        reply = requests.post(srv.url + "/suggest", json=body, timeout=30).json()
    assert reply["limits"]["check_timeout"] == {"seconds": 1.5, "requested": 30.0, "source": "server", "max": 1.5}
    hang = next(s for s in reply["suggestions"] if s["text"] == "sim_hang")
    assert hang["status"] == "invalid" and "checking budget (1.5 s)" in hang["message"]
