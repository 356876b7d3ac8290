"""``POST /suggest`` and llmstep's ``POST /`` end to end, over real HTTP on 127.0.0.1.

Two kinds of model: a tiny random Hugging Face model built locally and served by
``leanstep serve --hf-model DIR --repl sim`` (a real server process), and a
deterministic generator that returns fixed candidates (a test double for the
model only) so that the simulated REPL's semantics decide the verdicts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from leanstep.config import load
from leanstep.generate.base import Candidate, GenerationRequest
from leanstep.suggest import Suggester, SuggestRequest

ROOT = Path(__file__).resolve().parent.parent
from server_fixtures import running_server, spawn_server, stop_server

FIXTURE = ROOT / "tests" / "fixtures" / "tactic_request.json"
STATUSES = {"closes_goal", "valid", "unchecked", "invalid"}

SOURCE = """import Mathlib

namespace Demo

theorem helper (n : ℕ) : n + 0 = n := by
  simp

theorem target (a b : ℕ) (h : a < b) : a ≤ b ∧ 0 < b := by
  llmstep ""
  all_goals omega

end Demo
"""
CALL_LINE, CALL_COLUMN = 9, 2
CONTEXT = SOURCE[: SOURCE.index("llmstep")]
GOAL = "a b : ℕ\nh : a < b\n⊢ a ≤ b ∧ 0 < b"

# Model order (best score first); the simulator decides what each one does.
CANDIDATES = [
    "exact nonsense",         # recovered error -> invalid
    "constructor",            # two goals left -> valid
    "blah blah",              # unknown tactic -> invalid
    "constructor <;> omega",  # closes the goal
    "skip",                   # valid, but no progress
    "sim_hang",               # never answers -> invalid (timeout)
    "refine ⟨?_, ?_⟩",        # leaves the goal -> valid, no progress
]


class FixedGenerator:
    """Returns the same ranked candidates for every request (those starting with the prefix)."""

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.requests: list[GenerationRequest] = []
        self._lock = threading.Lock()

    def generate(self, request: GenerationRequest) -> list[Candidate]:
        with self._lock:
            self.requests.append(request)
        picked = [t for t in self.texts if t.startswith(request.prefix)]
        return [Candidate(t, -0.1 * i) for i, t in enumerate(picked)][: request.num_samples]


@pytest.fixture(scope="module")
def served():
    """An in-process app with the fixed generator, served by waitress on a free port."""
    generator = FixedGenerator(CANDIDATES)
    with running_server(generator=generator, max_repls=4, check_timeout=3.0, num_samples=16, threads=8,
                        warm_headers="import Mathlib") as srv:
        yield srv.url, generator, srv.services.suggester


def post(url: str, path: str, body, timeout: float = 30) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(url + path, data=data, headers={"Content-Type": "application/json"}, timeout=timeout)


def test_suggest_ranks_checked_candidates_and_reports_timings(served):
    url, generator, _ = served
    started = time.monotonic()
    r = post(url, "/suggest", {"tactic_state": GOAL, "prefix": "", "source": SOURCE,
                               "position": {"line": CALL_LINE, "column": CALL_COLUMN}, "file_name": "Demo.lean",
                               "timeout": 2.0})
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    out = r.json()
    texts = [s["text"] for s in out["suggestions"]]
    # closes_goal first, then valid (progress before no-op, then by score); invalid ones dropped.
    assert texts == ["constructor <;> omega", "constructor", "skip", "refine ⟨?_, ?_⟩"]
    statuses = [s["status"] for s in out["suggestions"]]
    assert statuses == ["closes_goal", "valid", "valid", "valid"]
    first, second = out["suggestions"][:2]
    assert first["goals"] == [] and "message" not in first
    assert second["goals"] == ["case left\na b : ℕ\nh : a < b\n⊢ a ≤ b", "case right\na b : ℕ\nh : a < b\n⊢ 0 < b"]
    assert all(set(s) >= {"text", "status", "goals", "score", "time_ms"} for s in out["suggestions"])
    assert out["counts"] == {"closes_goal": 1, "valid": 3, "unchecked": 0, "invalid": 3}
    assert out["goal"] == GOAL and out["checked"] is True
    assert set(out["timings"]) >= {"generation_ms", "checking_ms", "total_ms"}
    # The hanging candidate is cut at the 2 s budget; the answer is not later than that.
    assert 1.5 < out["timings"]["checking_ms"] / 1000 < 2.6
    assert elapsed < 3.5
    assert generator.requests[-1].tactic_state == GOAL and generator.requests[-1].num_samples == 16


def test_include_invalid_keeps_them_last_with_leans_message(served):
    url, _, _ = served
    r = post(url, "/suggest", {"tactic_state": GOAL, "context": CONTEXT, "include_invalid": True, "timeout": 1.0})
    assert r.status_code == 200, r.text
    suggestions = r.json()["suggestions"]
    assert [s["status"] for s in suggestions][-3:] == ["invalid"] * 3
    invalid = {s["text"]: s["message"] for s in suggestions if s["status"] == "invalid"}
    assert "Unknown identifier `nonsense`" in invalid["exact nonsense"]
    assert "unknown tactic" in invalid["blah blah"]
    assert invalid["sim_hang"].startswith("timeout:")


def test_prefix_and_n_reach_the_generator(served):
    url, generator, _ = served
    r = post(url, "/suggest", {"tactic_state": GOAL, "prefix": "cons", "context": CONTEXT, "n": 1})
    assert r.status_code == 200, r.text
    assert [s["text"] for s in r.json()["suggestions"]] == ["constructor"]
    assert generator.requests[-1].prefix == "cons" and generator.requests[-1].num_samples == 1


def test_without_context_or_with_check_off_everything_is_unchecked(served):
    url, _, _ = served
    r = post(url, "/suggest", {"tactic_state": GOAL, "prefix": "constructor"})
    assert r.status_code == 200
    out = r.json()
    assert [s["status"] for s in out["suggestions"]] == ["unchecked", "unchecked"]
    assert [s["text"] for s in out["suggestions"]] == ["constructor", "constructor <;> omega"]  # model order
    assert out["checked"] is False and "no context" in out["context_error"]
    r = post(url, "/suggest", {"tactic_state": GOAL, "context": CONTEXT, "check": False, "prefix": "skip"})
    assert [s["status"] for s in r.json()["suggestions"]] == ["unchecked"]


def test_a_context_that_cannot_be_located_still_answers(served):
    url, _, _ = served
    r = post(url, "/suggest", {"tactic_state": GOAL, "prefix": "skip", "context": "import Mathlib\n\n#eval 1 + "})
    assert r.status_code == 200
    out = r.json()
    assert out["suggestions"][0]["status"] == "unchecked"
    assert "no goal found" in out["context_error"]


@pytest.mark.parametrize("body, status, field", [
    ({"prefix": ""}, 422, "tactic_state"),
    ({"tactic_state": GOAL, "n": "3"}, 422, "n"),
    ({"tactic_state": GOAL, "n": 0}, 422, "n"),
    ({"tactic_state": GOAL, "check": "yes"}, 422, "check"),
    ({"tactic_state": GOAL, "timeout": -1}, 422, "timeout"),
    ({"tactic_state": GOAL, "source": SOURCE}, 422, "position"),
    ({"tactic_state": GOAL, "source": SOURCE, "position": {"line": 0, "column": 2}}, 422, "position.line"),
    ({"tactic_state": GOAL, "position": {"line": 1, "column": 2}}, 422, "source"),
    ("{not json", 400, None),
    ([1, 2], 422, None),
    ('{"tactic_state": "x", "n": %s}' % ("9" * 5000), 400, "5000 digits"),
    ('{"tactic_state": "x", "timeout": NaN}', 400, "NaN"),
])
def test_bad_requests_name_the_field(served, body, status, field):
    url, _, _ = served
    r = post(url, "/suggest", body)
    assert r.status_code == status, r.text
    out = r.json()
    assert set(out) == {"error", "detail"}
    if field is not None:
        assert field in out["detail"]


@pytest.mark.parametrize("path", ["/suggest", "/prove", "/sessions"])
@pytest.mark.parametrize("body, missing", [({"source": SOURCE}, "position"),
                                           ({"position": {"line": 1, "column": 2}}, "source")])
def test_every_route_that_takes_a_place_in_a_file_needs_source_and_position_together(served, path, body, missing):
    url, _, _ = served
    r = post(url, path, {"tactic_state": GOAL, **body})
    assert r.status_code == 422, r.text
    assert f"`source` and `position` go together: `{missing}` is missing" in r.json()["detail"]


NUL_IN_CONTEXT = CONTEXT.replace("namespace", "name\x00space")


@pytest.mark.parametrize("path, body, detail", [
    ("/suggest", {"tactic_state": GOAL, "context": NUL_IN_CONTEXT}, "context: contains a NUL character"),
    ("/suggest", {"tactic_state": GOAL, "source": SOURCE.replace("namespace", "name\x00space"),
                  "position": {"line": CALL_LINE, "column": CALL_COLUMN}}, "source: contains a NUL character"),
    ("/suggest", {"tactic_state": GOAL, "context": CONTEXT.replace("namespace", "name\ud800space")},
     "context: is not valid Unicode text"),
    ("/", {"tactic_state": GOAL, "context": NUL_IN_CONTEXT}, "context: contains a NUL character"),
    ("/prove", {"statement": "theorem t : True\x00"}, "statement: contains a NUL character"),
    ("/prove", {"statement": "theorem t : True", "header": "import Mathlib\ud800"},
     "header: is not valid Unicode text"),
    ("/prove", {"tactic_state": "⊢ True\x00", "context": CONTEXT}, "tactic_state: contains a NUL character"),
    ("/sessions", {"statement": "theorem t : True", "header": "import Mathlib\x00"},
     "header: contains a NUL character"),
])
def test_file_text_the_repl_refuses_is_422_before_any_generation(served, path, body, detail):
    url, generator, _ = served
    generated = len(generator.requests)
    r = post(url, path, body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(detail)
    assert len(generator.requests) == generated


def test_llmstep_compatible_root(served):
    url, _, _ = served
    r = post(url, "/", {"tactic_state": GOAL, "prefix": "", "context": CONTEXT})
    assert r.status_code == 200, r.text
    out = r.json()
    assert list(out) == ["suggestions"]
    assert all(isinstance(s, str) for s in out["suggestions"])
    assert out["suggestions"][0] == "constructor <;> omega"  # checked, goal-closing first
    assert "blah blah" not in out["suggestions"] and "sim_hang" not in out["suggestions"]
    # Without context llmstep's servers just answer the model's candidates.
    r = post(url, "/", {"tactic_state": GOAL, "prefix": "c"})
    assert r.json() == {"suggestions": ["constructor", "constructor <;> omega"]}
    assert post(url, "/", {"prefix": "c"}).status_code == 422


@pytest.mark.parametrize("path", ["/suggest", "/"])
@pytest.mark.parametrize("content_type", [None, "text/plain"])
def test_a_body_not_declared_json_is_415(served, path, content_type):
    url, _, _ = served
    headers = {"Content-Type": content_type} if content_type else {}
    r = requests.post(url + path, data=json.dumps({"tactic_state": GOAL}), headers=headers, timeout=30)
    assert r.status_code == 415 and "application/json" in r.json()["detail"]


def test_llmstep_s_own_client_script_still_works(served):
    """llmstep's python/suggest.py sends ``requests.post(f"http://{HOST}:{PORT}", json=data)`` with
    ``data = {tactic_state, prefix, context}`` and prints ``'[SUGGESTION]'.join(response['suggestions'])``."""
    url, _, _ = served
    data = {"tactic_state": GOAL, "prefix": "cons", "context": CONTEXT}
    response = json.loads(requests.post(url, json=data, timeout=30).content)
    assert "[SUGGESTION]".join(response["suggestions"]) == "constructor <;> omega[SUGGESTION]constructor"


def test_the_editor_bridge_script_works_against_the_real_server(served):
    url, generator, _ = served
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEANSTEP_", "LLMSTEP_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    request = json.loads(FIXTURE.read_text())
    proc = subprocess.run([sys.executable, str(ROOT / "python" / "leanstep_bridge.py"), "--url", url],
                          input=FIXTURE.read_bytes(), env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reply = json.loads(proc.stdout)
    assert isinstance(reply["suggestions"], list) and reply["checked"] is True
    assert generator.requests[-1].tactic_state == request["tactic_state"]


def test_the_lean_tactics_request_fixture_is_accepted(served):
    if not FIXTURE.exists():
        pytest.skip(f"{FIXTURE.relative_to(ROOT)} is not there yet (written with the Lean tactic)")
    url, _, _ = served
    body = json.loads(FIXTURE.read_text())
    r = post(url, "/suggest", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert isinstance(out["suggestions"], list)
    assert all(s["status"] in STATUSES for s in out["suggestions"])


def test_suggester_can_be_used_without_http(served):
    _, _, suggester = served
    result = suggester.suggest(SuggestRequest(tactic_state=GOAL, prefix="constructor", source=SOURCE,
                                              position=(CALL_LINE, CALL_COLUMN)))
    assert [s.status for s in result.suggestions] == ["closes_goal", "valid"]
    assert result.report is not None
    assert result.report.declaration_requests + result.report.declaration_reused >= 1


def test_without_a_goal_the_suggester_reads_it_from_lean_and_generates_for_it(served):
    _, generator, suggester = served
    result = suggester.suggest(SuggestRequest(prefix="constructor", source=SOURCE, position=(CALL_LINE, CALL_COLUMN)))
    assert result.goal == GOAL and generator.requests[-1].tactic_state == GOAL
    assert [s.status for s in result.suggestions] == ["closes_goal", "valid"]
    assert result.timings.setup_ms > 0 and result.budget is not None


def test_without_a_goal_or_a_pool_nothing_is_generated():
    generator = FixedGenerator(CANDIDATES)
    suggester = Suggester(generator, None, load({"repl": "sim"}, environ={}))
    result = suggester.suggest(SuggestRequest(source=SOURCE, position=(CALL_LINE, CALL_COLUMN)))
    assert result.suggestions == () and generator.requests == []
    assert result.context_error == "no goal to suggest for: no REPL pool to read the goal from"


# --------------------------------------------------------------------------- #
# A real model through `leanstep serve --hf-model DIR --repl sim`


@pytest.fixture(scope="module")
def hf_server(tmp_path_factory, tiny_causal):
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    proc, url = spawn_server(log_path, "--hf-model", str(tiny_causal), "--repl", "sim", "--sandbox", "none",
                             "--max-repls", "2", "--device", "cpu", "--prompt-format", "proofstep", "--num-samples",
                             "4", "--temperatures", "0.8", "--max-new-tokens", "6", "--check-timeout", "5",
                             "--threads", "4", "--warm-headers", "import Mathlib")
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"leanstep serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if requests.get(url + "/health", timeout=2).json()["suggest"]:
                break
        except (requests.RequestException, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"leanstep serve did not come up:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    yield url
    stop_server(proc)


def test_a_real_tiny_model_end_to_end(hf_server):
    r = post(hf_server, "/suggest", {"tactic_state": GOAL, "prefix": "intro", "source": SOURCE,
                                     "position": {"line": CALL_LINE, "column": CALL_COLUMN},
                                     "include_invalid": True}, timeout=120)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["suggestions"], out
    for s in out["suggestions"]:
        assert s["text"].startswith("intro")
        assert s["status"] in STATUSES
        assert isinstance(s["score"], float) and s["score"] <= 0
    # A random model's text may or may not parse; either way every candidate got a verdict from Lean.
    assert out["checked"] is True and out["goal"] == GOAL
    assert sum(out["counts"].values()) == len(out["suggestions"])
    assert out["timings"]["generation_ms"] > 0
    ranks = {"closes_goal": 0, "valid": 1, "unchecked": 2, "invalid": 3}
    order = [ranks[s["status"]] for s in out["suggestions"]]
    assert order == sorted(order)
    # llmstep's own request format on the same server.
    r = post(hf_server, "/", {"tactic_state": GOAL, "prefix": "intro", "context": CONTEXT}, timeout=120)
    assert r.status_code == 200
    assert list(r.json()) == ["suggestions"]
    assert all(isinstance(s, str) and s.startswith("intro") for s in r.json()["suggestions"])
