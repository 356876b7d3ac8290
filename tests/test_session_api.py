"""The ``/sessions`` routes on a real waitress server over simulated REPLs: shapes, status codes, keys.

The session service's behaviour is specified in ``test_sessions.py``; here an
HTTP client (``requests``) drives it as an agent would, and every refusal
must be the 4xx the README promises, with a message saying what was wrong.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from server_fixtures import RunningServer, running_server

KEY_A, KEY_B = "key-for-alice", "key-for-bob"
STATEMENT = "theorem goal (a b : ℕ) (h : a < b) : a ≤ b ∧ 0 < b"
GOAL = "a b : ℕ\nh : a < b\n⊢ a ≤ b ∧ 0 < b"
SOURCE = "import Mathlib\n\ntheorem at_call (n : ℕ) (h : 0 < n) : 0 < n + 1 := by\n  omega\n"
CODE = "import Mathlib\n\ntheorem a (x : ℕ) : x + 0 = x := by\n  sorry\n\ntheorem b : 1 + 1 = 2 := sorry\n"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(api_key=f"{KEY_A},{KEY_B}", max_sessions_per_key=3, max_session_states=6,
                        max_attempt_tactics=4, session_ttl=600) as srv:
        yield srv


class Agent:
    """A client holding one API key."""

    def __init__(self, server: RunningServer, key: str) -> None:
        self.url = server.url
        self.headers = {"Authorization": f"Bearer {key}"}
        self.started: list[str] = []

    def post(self, path: str, body: Any) -> requests.Response:
        response = requests.post(self.url + path, json=body, headers=self.headers, timeout=60)
        if path == "/sessions" and response.status_code == 201:
            self.started.append(response.json()["id"])
        return response

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, headers=self.headers, timeout=60)

    def delete(self, path: str) -> requests.Response:
        return requests.delete(self.url + path, headers=self.headers, timeout=60)

    def start(self, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.post("/sessions", body or {"statement": STATEMENT, "header": "import Mathlib"})
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def alice(server: RunningServer) -> Iterator[Agent]:
    yield from _agent(server, KEY_A)


@pytest.fixture
def bob(server: RunningServer) -> Iterator[Agent]:
    yield from _agent(server, KEY_B)


def _agent(server: RunningServer, key: str) -> Iterator[Agent]:
    """An agent that closes what it left open, so the per-key cap starts from zero in the next test."""
    agent = Agent(server, key)
    yield agent
    for sid in agent.started:
        agent.delete(f"/sessions/{sid}")


def test_an_agent_starts_steps_branches_and_reads_back_a_proof(alice: Agent) -> None:
    session = alice.start()
    assert session["roots"] == [0] and session["states"][0] == {
        "id": 0, "goals": [GOAL], "status": "open", "parent": None, "tactic": None, "depth": 0}
    assert session["limits"]["session_timeout"]["source"] == "server" and session["expires_in"] > 0
    sid = session["id"]
    split = alice.post(f"/sessions/{sid}/states/0/tactic", {"tactic": "constructor"}).json()
    assert split["status"] == "valid" and split["state"] == 1 and len(split["goals"]) == 2
    refused = alice.post(f"/sessions/{sid}/states/1/tactic", {"tactic": "exact nope", "timeout": 5}).json()
    assert refused["status"] == "invalid" and refused["state"] is None
    assert refused["messages"] == [{"severity": "error", "data": "Unknown identifier `nope`"}]
    assert refused["limits"]["session_timeout"]["seconds"] == 5
    attempt = alice.post(f"/sessions/{sid}/states/1/attempt", {"tactics": ["frobnicate", "omega"]}).json()
    assert [r["status"] for r in attempt["results"]] == ["invalid", "valid"]
    left = attempt["results"][1]["state"]
    done = alice.post(f"/sessions/{sid}/states/{left}/tactic", {"tactic": "omega"}).json()
    assert done["status"] == "closes_goal" and done["goals"] == []
    tree = alice.get(f"/sessions/{sid}").json()
    assert [(s["id"], s["parent"], s["tactic"], s["status"]) for s in tree["states"]] == [
        (0, None, None, "open"), (1, 0, "constructor", "open"), (2, 1, "omega", "open"),
        (3, 2, "omega", "proved")]
    proof = alice.get(f"/sessions/{sid}/states/3/proof").json()
    assert proof == {"session": sid, "state": 3, "root": 0, "tactics": ["constructor", "omega", "omega"],
                     "proof": "constructor\nomega\nomega"}
    assert alice.delete(f"/sessions/{sid}").json() == {"id": sid, "closed": True}
    assert alice.get(f"/sessions/{sid}").status_code == 404


@pytest.mark.parametrize("body, goals", [
    ({"code": CODE}, ["x : ℕ\n⊢ x + 0 = x", "⊢ 1 + 1 = 2"]),
    ({"source": SOURCE, "position": {"line": 4, "column": 2}}, ["n : ℕ\nh : 0 < n\n⊢ 0 < n + 1"]),
    ({"statement": STATEMENT + " := by", "header": "import Mathlib"}, [GOAL]),
])
def test_each_origin_starts_a_session_on_leans_goals(alice: Agent, body: dict[str, Any], goals: list[str]) -> None:
    session = alice.start(body)
    assert [s["goals"][0] for s in session["states"]] == goals
    assert session["roots"] == list(range(len(goals)))


def test_a_lost_repl_is_invisible_but_for_the_time(server: RunningServer, alice: Agent) -> None:
    sid = alice.start()["id"]
    split = alice.post(f"/sessions/{sid}/states/0/tactic", {"tactic": "constructor"}).json()
    for pid in server.pool.pids():
        os.kill(pid, signal.SIGKILL)
    left = alice.post(f"/sessions/{sid}/states/{split['state']}/tactic", {"tactic": "omega"})
    assert left.status_code == 200 and left.json()["status"] == "valid", left.text
    assert left.json()["goals"] == ["case right\na b : ℕ\nh : a < b\n⊢ 0 < b"]


def test_a_key_lists_its_own_open_sessions_and_no_others(alice: Agent, bob: Agent) -> None:
    first, second = alice.start()["id"], alice.start()["id"]
    alice.post(f"/sessions/{second}/states/0/tactic", {"tactic": "constructor <;> omega"})
    theirs = bob.start()["id"]
    listed = alice.get("/sessions")
    assert listed.status_code == 200
    assert [(s["id"], s["roots"], s["states"], s["proved"]) for s in listed.json()["sessions"]] == [
        (first, 1, 1, 0), (second, 1, 2, 1)]  # oldest first; the step's state closed every goal
    assert all(0 < s["expires_in"] <= 600 for s in listed.json()["sessions"])
    assert [s["id"] for s in bob.get("/sessions").json()["sessions"]] == [theirs]
    alice.delete(f"/sessions/{first}")
    assert [s["id"] for s in alice.get("/sessions").json()["sessions"]] == [second]


def test_another_key_gets_404_for_everything_of_a_session(alice: Agent, bob: Agent) -> None:
    sid = alice.start()["id"]
    alice.post(f"/sessions/{sid}/states/0/tactic", {"tactic": "constructor <;> omega"})
    answers = [bob.get(f"/sessions/{sid}"), bob.delete(f"/sessions/{sid}"),
               bob.post(f"/sessions/{sid}/states/0/tactic", {"tactic": "omega"}),
               bob.post(f"/sessions/{sid}/states/0/attempt", {"tactics": ["omega"]}),
               bob.get(f"/sessions/{sid}/states/1/proof")]
    never = bob.get("/sessions/" + "x" * len(sid))
    for answer in answers:
        assert answer.status_code == 404 and answer.json()["error"] == "session not found"
        assert answer.json()["detail"].replace(sid, "x" * len(sid)) == never.json()["detail"]
    assert len(alice.get(f"/sessions/{sid}").json()["states"]) == 2


def test_without_a_key_or_with_a_wrong_one_nothing_is_started(server: RunningServer) -> None:
    body = {"statement": STATEMENT}
    assert requests.post(server.url + "/sessions", json=body, timeout=30).status_code == 401
    assert requests.get(server.url + "/sessions", timeout=30).status_code == 401
    wrong = requests.post(server.url + "/sessions", json=body, headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"
    assert server.services.sessions.stats().open == 0


def test_the_cap_per_key_is_429_and_leaves_the_other_key_alone(alice: Agent, bob: Agent) -> None:
    for _ in range(3):
        alice.start()
    refused = alice.post("/sessions", {"statement": STATEMENT})
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    assert "maximum of 3 open sessions" in refused.json()["detail"]
    bob.start()


def test_the_cap_on_states_is_409(alice: Agent) -> None:
    sid = alice.start()["id"]
    full = alice.post(f"/sessions/{sid}/states/0/attempt", {"tactics": ["skip", "intro a", "intro b", "intro c"]})
    assert full.status_code == 200
    refused = alice.post(f"/sessions/{sid}/states/0/attempt", {"tactics": ["intro d", "intro e"]})
    assert refused.status_code == 409 and "of the 6 allowed" in refused.json()["detail"]


@pytest.mark.parametrize("path, body, status, says", [
    ("/sessions", {}, 422, "exactly one origin"),
    ("/sessions", {"code": CODE, "statement": STATEMENT}, 422, "got code, statement"),
    ("/sessions", {"source": SOURCE}, 422, "`position` is missing"),
    ("/sessions", {"code": CODE, "header": "import Mathlib"}, 422, "`header` goes with `statement`"),
    ("/sessions", {"code": "import Mathlib\n\ntheorem t : True := trivial\n"}, 422, "no `sorry`"),
    ("/sessions", {"code": "theorem t : True := by\n  sorry\x00"}, 422, "NUL"),
    ("/sessions", {"statement": STATEMENT, "timeout": 0.01}, 422, "below the server's minimum"),
    ("/sessions", {"statement": STATEMENT, "timeout": "30"}, 422, "timeout"),
    ("{sid}/states/0/tactic", {"tactic": ""}, 422, "tactic: is empty"),
    ("{sid}/states/0/tactic", {}, 422, "tactic: field required"),
    ("{sid}/states/0/attempt", {"tactics": []}, 422, "tactics"),
    ("{sid}/states/0/attempt", {"tactics": ["omega", 3]}, 422, "tactics.1"),
    ("{sid}/states/0/attempt", {"tactics": ["a", "b", "c", "d", "e"]}, 422, "more than the 4 allowed"),
    ("{sid}/states/7/tactic", {"tactic": "omega"}, 404, "has no state 7"),
    ("{sid}/states/0/proof", None, 409, "still has 1 goal"),
    ("{sid}/states/-1/tactic", {"tactic": "omega"}, 404, "not found"),
])
def test_bad_input_is_a_clear_4xx(alice: Agent, path: str, body: Any, status: int, says: str) -> None:
    if "{sid}" in path:
        path = "/sessions/" + path.format(sid=alice.start()["id"])
    response = alice.post(path, body) if body is not None else alice.get(path)
    assert response.status_code == status, response.text
    assert says in str(response.json()["detail"]), response.json()


def test_a_body_that_is_not_json_is_refused_like_on_every_route(alice: Agent) -> None:
    response = requests.post(alice.url + "/sessions", data="statement", headers=alice.headers, timeout=30)
    assert response.status_code == 415


def test_health_counts_sessions_and_metrics_export_them(server: RunningServer, alice: Agent) -> None:
    alice.start()
    health = alice.get("/health").json()
    assert health["sessions"]["open"] >= 1 and health["sessions"]["started"] >= 1
    assert "leanstep_sessions_open" in alice.get("/metrics").text
