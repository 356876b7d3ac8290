"""The HTTP server over real HTTP (waitress on 127.0.0.1) and a sim pool of real REPL processes.

Covers Kimina wire compatibility (the unmodified kimina-client package), the
bad-input suite (each a 4xx with a message, or an honest per-snippet result),
and that the server and every REPL keep working afterwards.
"""

from __future__ import annotations

import json

import pytest
import requests
from server_fixtures import assert_error, running_server

CLEAN = "import Mathlib\n\ntheorem clean : 2 + 2 = 4 := by norm_num"


@pytest.fixture(scope="module")
def server():
    with running_server(max_batch=1000, max_body_mb=16) as srv:
        yield srv


def post(server, path, payload=None, data=None, headers=None, timeout=60):
    """POST ``payload`` as JSON, or raw ``data`` declared as JSON unless ``headers`` say otherwise."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    return requests.post(server.url + path, json=payload, data=data, headers=headers, timeout=timeout)


def assert_still_healthy(server, pids_before):
    """A valid proof still verifies and the pool is the same warm processes (or fully warm again)."""
    resp = post(server, "/api/check", {"snippets": [{"id": "after", "code": CLEAN}], "timeout": 10})
    assert resp.status_code == 200
    assert resp.json()["results"][0]["verdict"] == "valid"
    assert server.pool.wait_warm(10)
    stats = server.pool.stats()
    assert stats.workers_by_state["idle"] == len(server.pool.pids())
    assert set(pids_before) <= set(server.pool.pids()) or len(server.pool.pids()) == stats.max_repls


# --------------------------------------------------------------------------- Kimina compatibility


def test_kimina_client_verifies_a_batch(server, kimina):
    client = kimina.KiminaClient(api_url=server.url, n_retries=1)
    snippets = [
        kimina.Snippet(id="valid", code=CLEAN),
        kimina.Snippet(id="error", code="theorem e : 1 + 1 = 3 := by norm_num"),
        kimina.Snippet(id="sorry", code="theorem s : True := by sorry"),
        kimina.Snippet(id="hang", code="theorem h : True := by\n  sim_hang"),
        kimina.Snippet(id="comment", code="-- starts like a comment\ntheorem c : 1 = 1 := rfl"),
    ]
    response = client.check(snippets, timeout=1, batch_size=2, max_workers=3, show_progress=False)
    status = {r.id: r.analyze().status.value for r in response.results}
    assert status == {"valid": "valid", "error": "lean_error", "sorry": "sorry", "hang": "timeout_error",
                      "comment": "valid"}
    sorry = next(r for r in response.results if r.id == "sorry")
    assert sorry.response["sorries"][0]["pos"] == {"line": 1, "column": 23}
    assert client.health()["status"] == "ok"


def test_kimina_response_models_parse_our_answers(server, kimina):
    resp = post(server, "/api/check", {"snippets": [{"id": "a", "code": CLEAN}, {"id": "b", "code": "#eval 1 + 1"}],
                                       "timeout": 10, "debug": True, "infotree": "original"})
    parsed = kimina.CheckResponse.model_validate(resp.json())
    assert [r.id for r in parsed.results] == ["a", "b"]
    assert all(r.analyze().status.value == "valid" for r in parsed.results)
    raw = resp.json()["results"]
    assert raw[0]["verdict"] == "valid" and raw[0]["diagnostics"]["repl_uuid"].startswith("repl-")

    verify = post(server, "/verify", {"codes": [{"custom_id": 7, "proof": CLEAN},
                                                 {"custom_id": "x", "code": "theorem t : 1 = 2 := rfl"}]})
    parsed_v = kimina.VerifyResponse.model_validate(verify.json())
    first, second = verify.json()["results"]
    assert first["custom_id"] == "7" and "time" in first["response"] and first["verdict"] == "valid"
    assert second["verdict"] == "invalid" and second["response"]["messages"][0]["severity"] == "error"
    assert len(parsed_v.results) == 2


def test_trust_is_per_request_and_strict_is_its_alias(server):
    code = "theorem nd : 3 = 3 := by native_decide"

    def verify(**fields):
        return post(server, "/verify", {"codes": [{"custom_id": "p", "proof": code}], **fields}).json()["results"][0]

    default = verify()  # the server's --trust: strict unless changed
    assert default["trust"] == "strict" and default["verdict"] == "invalid"
    assert [r["code"] for r in default["reasons"]] == ["forbidden:native_decide"]
    assert verify(trust="lenient")["verdict"] == "valid" and verify(trust="lenient")["trust"] == "lenient"
    assert verify(strict=False)["trust"] == "lenient" and verify(strict=False)["verdict"] == "valid"
    assert verify(strict=True)["trust"] == "strict" and verify(strict=True, trust="strict")["verdict"] == "invalid"


@pytest.mark.parametrize("path,listed", [("/api/check", "snippets"), ("/verify", "codes")])
def test_strict_and_trust_that_disagree_are_422_naming_both(server, path, listed):
    item = {"id": "a", "code": "theorem t : True := trivial"} if listed == "snippets" else \
        {"custom_id": "a", "proof": "theorem t : True := trivial"}
    for strict, trust in ((True, "lenient"), (True, "sealed"), (False, "strict")):
        assert_error(post(server, path, {listed: [item], "strict": strict, "trust": trust}), 422, "`strict`", "`trust`",
                     "disagree")


def test_reasons_are_codes_and_messages(server):
    result = post(server, "/api/check", {"snippets": [{"id": "e", "code": "theorem e : 1 = 2 := rfl"}]}).json()
    (reason,) = result["results"][0]["reasons"]
    assert reason == {"code": "lean_error", "message": "type mismatch", "line": 1, "column": 21}
    assert result["results"][0]["response"]["messages"][0]["pos"] == {"line": 1, "column": 21}


def test_a_snippet_may_carry_its_statement(server):
    proof = "theorem t : 1 + 1 = 2 := by norm_num"
    body = {"snippets": [{"id": "same", "code": proof, "statement": "theorem t : 1 + 1 = 2"},
                         {"id": "dataset", "code": proof, "formal_statement": "theorem t : 1 + 1 = 2 := by sorry"},
                         {"id": "other", "code": proof, "statement": "theorem t : 2 + 2 = 4"}]}
    results = {r["id"]: r for r in post(server, "/api/check", body).json()["results"]}
    assert results["same"]["verdict"] == results["dataset"]["verdict"] == "valid"
    assert results["other"]["verdict"] == "invalid"
    assert [r["code"] for r in results["other"]["reasons"]] == ["statement_mismatch"]
    verify = post(server, "/verify", {"codes": [{"custom_id": 1, "proof": proof,
                                                 "formal_statement": "theorem t : 2 + 2 = 4"}]}).json()
    assert [r["code"] for r in verify["results"][0]["reasons"]] == ["statement_mismatch"]


def test_two_different_statements_for_one_snippet_are_422(server):
    body = {"snippets": [{"id": "a", "code": "theorem t : True := trivial", "statement": "theorem t : True",
                          "formal_statement": "theorem t : False"}]}
    assert_error(post(server, "/api/check", body), 422, "snippets.0", "`statement`", "`formal_statement`")


def test_timeout_and_crash_in_one_batch_over_http(server):
    pids = server.pool.pids()
    codes = [{"custom_id": "ok1", "proof": CLEAN},
             {"custom_id": "hang", "proof": "theorem h : True := by\n  sim_hang"},
             {"custom_id": "crash", "proof": "theorem c : True := by\n  sim_crash"},
             {"custom_id": "ok2", "proof": "theorem ok2 : 1 + 2 = 3 := by norm_num"}]
    results = {r["custom_id"]: r for r in post(server, "/verify", {"codes": codes, "timeout": 1}).json()["results"]}
    assert results["hang"]["verdict"] == "timeout" and "timed out" in results["hang"]["error"]
    assert results["crash"]["verdict"] == "error" and "lost" in results["crash"]["error"]
    assert results["ok1"]["verdict"] == results["ok2"]["verdict"] == "valid"
    assert_still_healthy(server, [])
    assert len(server.pool.pids()) == 2 and set(pids) != set(server.pool.pids())


# --------------------------------------------------------------------------- bad input


def test_malformed_json_is_400(server):
    pids = server.pool.pids()
    assert_error(post(server, "/api/check", data=b'{"snippets": ['), 400, "malformed JSON", "line 1")
    assert_error(post(server, "/verify", data=b"\xff\xfe{}"), 400, "malformed JSON", "UTF-8")
    assert_error(post(server, "/verify", data=b""), 400, "empty")
    assert_still_healthy(server, pids)


@pytest.mark.parametrize("payload,field", [
    ({"snippets": [{"id": 1, "code": "x"}]}, "snippets.0.id"),
    ({"snippets": [{"id": "a", "code": ["x"]}]}, "snippets.0.code"),
    ({"snippets": [{"id": "a", "code": "x"}], "timeout": "30"}, "timeout"),
    ({"snippets": [{"id": "a", "code": "x"}], "timeout": -1}, "timeout"),
    ({"snippets": [{"id": "a", "code": "x"}], "infotree": "everything"}, "infotree"),
    ({"snippets": [{"id": "a", "code": "x"}], "reuse": "yes"}, "reuse"),
    ({"snippets": [{"id": "a", "code": "x"}], "trust": "paranoid"}, "trust"),
    ({"snippets": [{"id": "a", "code": "x"}], "strict": "yes"}, "strict"),
    ({"snippets": [{"id": "a", "code": "x", "statement": 3}]}, "snippets.0.statement"),
    ({"snippets": "theorem"}, "snippets"),
    ([{"id": "a", "code": "x"}], "JSON object"),
])
def test_wrong_types_are_422_naming_the_field(server, payload, field):
    assert_error(post(server, "/api/check", payload), 422, field)


@pytest.mark.parametrize("path,payload,field", [
    ("/api/check", {}, "snippets: field required"),
    ("/api/check", {"snippets": [{"id": "a"}]}, "snippets.0.code: field required"),
    ("/api/check", {"snippets": []}, "snippets: must be non empty"),
    ("/verify", {"codes": []}, "codes: must be non empty"),
    ("/api/check", {"snippets": [{"id": "a", "code": "x"}, {"id": "a", "code": "y"}]}, "unique"),
    ("/verify", {"codes": [{"proof": "x"}]}, "codes.0.custom_id: field required"),
    ("/verify", {"codes": [{"custom_id": "a"}]}, "neither `proof` nor `code`"),
    ("/verify", {"codes": [{"custom_id": True, "proof": "x"}]}, "codes.0.custom_id"),
])
def test_missing_fields_are_422(server, path, payload, field):
    assert_error(post(server, path, payload), 422, field)


def test_oversized_body_is_413(server):
    pids = server.pool.pids()
    big = json.dumps({"codes": [{"custom_id": "big", "proof": "-- " + "x" * (20 * 1024 * 1024)}]})
    assert_error(post(server, "/verify", data=big), 413, "too large", "max_body_mb")
    assert_still_healthy(server, pids)


def test_too_many_snippets_is_413(server):
    pids = server.pool.pids()
    payload = {"snippets": [{"id": str(i), "code": "theorem t : True := trivial"} for i in range(100_000)]}
    assert_error(post(server, "/api/check", payload), 413, "too many snippets", "100000", "1000")
    assert_still_healthy(server, pids)


def test_odd_text_gets_an_honest_per_snippet_result(server):
    pids = server.pool.pids()
    body = ('{"snippets": ['
            '{"id": "nul", "code": "theorem a : True := trivial\\u0000"},'
            '{"id": "surrogate", "code": "theorem b\\ud800 : True := trivial"},'
            '{"id": "hash", "code": "#eval 2 + 2"},'
            '{"id": "dashes", "code": "--comment\\ntheorem c : 1 = 1 := rfl"},'
            '{"id": "unicode", "code": "theorem ℕ𝔸 (n : ℕ) : n = n := rfl -- 😀"},'  # noqa: RUF001
            '{"id": "crlf", "code": "import Mathlib\\r\\ntheorem d : 1 = 1 := rfl\\r\\n"},'
            '{"id": "empty", "code": ""},'
            '{"id": "\\ud83d", "code": "theorem e : True := trivial"}'
            '], "timeout": 10, "trust": "lenient"}')
    resp = post(server, "/api/check", data=body.encode())
    assert resp.status_code == 200
    results = {r["id"]: r for r in resp.json()["results"]}
    assert results["nul"]["verdict"] == "error" and "NUL" in results["nul"]["error"]
    assert results["surrogate"]["verdict"] == "error" and "Unicode" in results["surrogate"]["error"]
    assert results["hash"]["response"]["messages"][0]["data"] == "4"
    assert [r["code"] for r in results["hash"]["reasons"]] == ["nothing_to_check"]  # it runs, but proves nothing
    assert results["dashes"]["verdict"] == "valid"
    assert results["unicode"]["verdict"] == "valid"
    assert results["crlf"]["verdict"] == "valid"
    assert results["empty"]["verdict"] == "invalid" and results["empty"]["reasons"][0]["code"] == "nothing_to_check"
    assert results["\ud83d"]["verdict"] == "valid"  # a lone surrogate id is echoed, escaped
    assert_still_healthy(server, pids)


def test_unknown_route_and_method_are_json(server):
    assert_error(requests.get(server.url + "/nope", timeout=10), 404, "not found")
    assert_error(requests.get(server.url + "/verify", timeout=10), 405, "method")


# --------------------------------------------------------------------------- health, metrics, auth


def test_health_reports_the_pool(server):
    health = requests.get(server.url + "/health", timeout=10).json()
    assert health["status"] == "ok" and health["ready"] is True
    assert requests.get(server.url + "/", timeout=10).json()["status"] == "ok"  # Kimina's alias
    assert health["pool"]["max_repls"] == 2
    assert set(health["pool"]["workers"]) >= {"idle", "busy", "starting"}
    assert sum(health["pool"]["warm_headers"].values()) >= len(server.pool.pids())  # a REPL may hold several
    assert "hits" in health["cache"]


def test_metrics_expose_pool_cache_and_latency(server):
    code = "theorem metric_dup : 7 + 7 = 14 := by norm_num"
    post(server, "/api/check", {"snippets": [{"id": "1", "code": code}, {"id": "2", "code": code}]})
    text = requests.get(server.url + "/metrics", timeout=10).text
    for name in ("leanstep_pool_queue_depth", 'leanstep_pool_workers{state="idle"}', "leanstep_cache_hits_total",
                 "leanstep_cache_misses_total", "leanstep_repl_timeouts_total", "leanstep_repl_restarts_total",
                 'leanstep_http_requests_total{route="/api/check",status="200"}',
                 "leanstep_http_request_seconds_bucket", 'leanstep_snippets_total{verdict="valid"}'):
        assert name in text, name
    hits = next(line for line in text.splitlines() if line.startswith("leanstep_cache_hits_total"))
    assert float(hits.split()[-1]) >= 1


def test_api_key(kimina):
    with running_server(api_key="s3cret") as srv:
        assert requests.get(srv.url + "/health", timeout=10).status_code == 200
        payload = {"snippets": [{"id": "a", "code": "theorem t : True := trivial"}]}
        assert_error(requests.post(srv.url + "/api/check", json=payload, timeout=10), 401, "missing API key")
        assert_error(requests.post(srv.url + "/api/check", json=payload, timeout=10,
                                   headers={"Authorization": "Bearer wrong"}), 401, "invalid API key")
        assert_error(requests.get(srv.url + "/metrics", timeout=10), 401, "API key")
        for header in ({"Authorization": "Bearer s3cret"}, {"Authorization": "s3cret"}, {"X-API-Key": "s3cret"}):
            resp = requests.post(srv.url + "/api/check", json=payload, headers=header, timeout=10)
            assert resp.status_code == 200 and resp.json()["results"][0]["verdict"] == "valid"
        client = kimina.KiminaClient(api_url=srv.url, api_key="s3cret", n_retries=1)
        checked = client.check("theorem t : True := trivial", show_progress=False)
        assert checked.results[0].analyze().status.value == "valid"
