"""Every request shape the README documents for the HTTP API, sent to a real server.

The README's "HTTP API" list is the contract clients read, so this test reads
it: each route it names is called, and each body shape it gives (the field
names in a route's first line) is posted, filled in from ``VALUES`` by field
name (``ROUTE_VALUES`` where one route needs its own), to a server on the
simulated REPL with the ``hint`` backend; ``{id}`` and ``{state}`` in a path are
a proof session's. Each must get the status and the answer the README
describes. A route or field the README gains without a value or a check here
fails, so the page and the server cannot drift apart unnoticed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from server_fixtures import RunningServer, running_server

README = Path(__file__).resolve().parent.parent / "README.md"

PROOF = "import Mathlib\n\ntheorem clean : 2 + 2 = 4 := by norm_num"
SOURCE = """import Mathlib

theorem target (a b : ℕ) (h : a < b) : a ≤ b ∧ 0 < b := by
  llmstep ""
"""
CALL_LINE, CALL_COLUMN = 4, 2
GOAL = "a b : ℕ\nh : a < b\n⊢ a ≤ b ∧ 0 < b"
STATUSES = {"closes_goal", "valid", "unchecked", "invalid"}

# A value for every field name the README's shapes use.
VALUES: dict[str, Any] = {
    "custom_id": "doc-1",
    "id": "doc-1",
    "proof": PROOF,
    "code": PROOF,
    "statement": "theorem clean : 2 + 2 = 4",
    "group": "problem-1",
    "first_valid": True,
    "timeout": 30,
    "infotree_type": "original",
    "infotree": "original",
    "disable_cache": True,
    "debug": True,
    "reuse": True,
    "trust": "lenient",
    "wire": "leanstep",
    "tactic_state": GOAL,
    "prefix": "",
    "context": SOURCE[: SOURCE.index("llmstep")],
    "source": SOURCE,
    "line": CALL_LINE,
    "column": CALL_COLUMN,
    "header": "import Mathlib",
    "tactic": "norm_num",
    "tactics": ["norm_num", "rfl", "frobnicate"],
    "name": "leanstep",
    "input": GOAL,
}
ROUTE_VALUES: dict[str, dict[str, Any]] = {
    "/sessions": {"code": "import Mathlib\n\ntheorem clean : 2 + 2 = 4 := by\n  sorry\n"},
}
STATUS = {"/sessions": 201}


# --------------------------------------------------------------------------- #
# Reading the README


@dataclass(frozen=True)
class Field:
    """One field of a documented shape: its name (or alternatives, ``"proof"|"code"``) and what it holds."""

    names: tuple[str, ...]
    members: tuple[Field, ...] | None = None  # an object's fields, when the README spells them out
    is_list: bool = False  # a list of such objects


_TOKEN = re.compile(r'\s*("[^"]*"|[{}\[\],:|]|[^\s{}\[\],:|"]+)')


def _tokens(sketch: str) -> list[str]:
    return [m.group(1) for m in _TOKEN.finditer(sketch)]


def parse_shape(sketch: str) -> tuple[Field, ...]:
    """The fields of a README sketch such as ``{"codes": [{"custom_id", "proof"|"code"}], "timeout"}``."""
    tokens = _tokens(sketch)
    members, end = _object(tokens, 0)
    assert end == len(tokens), f"trailing text in shape {sketch!r}"
    return members


def _object(tokens: list[str], i: int) -> tuple[tuple[Field, ...], int]:
    assert tokens[i] == "{", tokens[i:]
    i += 1
    members: list[Field] = []
    while tokens[i] != "}":
        names = [tokens[i].strip('"')]
        i += 1
        while tokens[i] == "|":
            names.append(tokens[i + 1].strip('"'))
            i += 2
        nested: tuple[Field, ...] | None = None
        is_list = False
        if tokens[i] == ":":
            is_list = tokens[i + 1] == "["
            nested, i = _object(tokens, i + 2 if is_list else i + 1)
            if is_list:
                assert tokens[i] == "]", tokens[i:]
                i += 1
        members.append(Field(tuple(names), nested, is_list))
        if tokens[i] == ",":
            i += 1
    return tuple(members), i + 1


def documented_api() -> tuple[set[tuple[str, str]], dict[tuple[str, str], list[str]]]:
    """Every route the README's HTTP API section names, and the body shapes of each route's first line."""
    section = README.read_text(encoding="utf-8").split("## HTTP API", 1)[1].split("\n## ", 1)[0]
    routes = set(re.findall(r"`(GET|POST|DELETE) (/[^`\s]*)`", section))
    shapes: dict[tuple[str, str], list[str]] = {}
    for head in re.finditer(r"^- `(GET|POST|DELETE) (/[^`\s]*)`(.*)$", section, re.MULTILINE):
        request_part = head.group(3).split("→", 1)[0]
        shapes[(head.group(1), head.group(2))] = re.findall(r"`(\{.*?\})`", request_part)
    return routes, shapes


def bodies(fields: tuple[Field, ...], path: str = "") -> list[dict[str, Any]]:
    """One body per alternative: the n-th body takes every field's n-th alternative (its last, past the end)."""
    options = [(field, _values(field, path)) for field in fields]
    count = max([len(field.names) for field in fields] + [len(values) for _, values in options] + [1])
    return [{field.names[min(n, len(field.names) - 1)]: values[min(n, len(values) - 1)] for field, values in options}
            for n in range(count)]


def _values(field: Field, path: str) -> list[Any]:
    if field.members is None:
        return [ROUTE_VALUES.get(path, {}).get(name, VALUES.get(name)) for name in field.names[:1]]
    return [[body] if field.is_list else body for body in bodies(field.members, path)]


# --------------------------------------------------------------------------- #
# The answers the README describes


def check_verify(answer: dict[str, Any], body: dict[str, Any]) -> None:
    """Kimina's ``/verify`` results, in order, plus our verdict and the limits that applied."""
    assert [r["custom_id"] for r in answer["results"]] == [c["custom_id"] for c in body["codes"]]
    for result in answer["results"]:
        assert result["verdict"] == "valid", result
        assert set(result["response"]) >= {"env", "time"}
    assert "timeout" in answer["limits"]


def check_api_check(answer: dict[str, Any], body: dict[str, Any]) -> None:
    """Kimina's ``/api/check`` results: id, time, the REPL's response, plus our verdict."""
    assert [r["id"] for r in answer["results"]] == [s["id"] for s in body["snippets"]]
    for result in answer["results"]:
        assert result["verdict"] == "valid", result
        assert isinstance(result["time"], float) and "env" in result["response"]
    assert "timeout" in answer["limits"]


def check_suggest(answer: dict[str, Any], body: dict[str, Any]) -> None:
    """Checked suggestions with status, goals, score and timings, for the goal at the call."""
    assert answer["goal"] == GOAL, answer  # read from Lean when the body does not send it
    assert answer["checked"] is True and answer["suggestions"], answer
    for suggestion in answer["suggestions"]:
        assert set(suggestion) >= {"text", "status", "goals", "score", "time_ms"}
        assert suggestion["status"] in STATUSES
    assert set(answer["timings"]) >= {"generation_ms", "checking_ms", "total_ms"}
    assert set(answer["counts"]) == STATUSES


def check_llmstep(answer: dict[str, Any], body: dict[str, Any]) -> None:
    """llmstep's answer: bare texts, best first."""
    assert list(answer) == ["suggestions"]
    assert answer["suggestions"] and all(isinstance(s, str) for s in answer["suggestions"])


def check_session(answer: dict[str, Any], body: dict[str, Any]) -> None:
    """A new session: its id and its root states, with Lean's goals."""
    assert isinstance(answer["id"], str) and answer["roots"] == [0], answer
    root = answer["states"][0]
    assert set(root) == {"id", "goals", "status", "parent", "tactic", "depth"}
    assert root["status"] == "open" and root["goals"] == ([GOAL] if "source" in body else ["⊢ 2 + 2 = 4"])


def check_step(answer: dict[str, Any], body: dict[str, Any]) -> None:
    """One step: Lean's verdict and, for an accepted tactic, the new state."""
    assert set(answer) >= {"tactic", "status", "state", "goals", "messages", "time_ms"}
    assert answer["tactic"] == body["tactic"] and answer["status"] == "closes_goal" and answer["state"] is not None


def check_attempt(answer: dict[str, Any], body: dict[str, Any]) -> None:
    """One step answer per tactic, in order."""
    assert [r["tactic"] for r in answer["results"]] == body["tactics"]
    assert [r["status"] for r in answer["results"]] == ["closes_goal", "closes_goal", "invalid"]


def check_generate(answer: dict[str, Any], body: dict[str, Any]) -> None:
    """LeanCopilot's shape: tactics with a probability each."""
    assert list(answer) == ["outputs"] and answer["outputs"]
    assert all(set(o) == {"output", "score"} and 0 <= o["score"] <= 1 for o in answer["outputs"])


def check_prove(answer: dict[str, Any], body: dict[str, Any]) -> None:
    """A proof of the statement, which strategy found it, what it cost, and the final check's verdict."""
    assert set(answer) == {"proved", "proof", "strategy", "tried", "expansions", "samples", "rounds", "timings",
                           "check", "stopped", "limits"}
    assert answer["proved"] is True and answer["proof"].startswith(body["statement"] + " := by"), answer
    assert answer["strategy"] in answer["tried"] and answer["stopped"] is None
    assert set(answer["timings"]) == {"generation_ms", "checking_ms", "total_ms"}
    assert answer["check"]["verdict"] == "valid" and answer["check"]["trust"] == "strict"
    assert "prove_timeout" in answer["limits"]


def check_health(answer: dict[str, Any]) -> None:
    """The pool's real state, and whether suggestions are served."""
    assert answer["status"] == "ok"
    assert set(answer["pool"]) >= {"max_repls", "workers", "queue_depth"}
    assert answer["suggest"] is True


POST_CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {
    "/verify": check_verify,
    "/api/check": check_api_check,
    "/suggest": check_suggest,
    "/": check_llmstep,
    "/sessions": check_session,
    "/sessions/{id}/states/{state}/tactic": check_step,
    "/sessions/{id}/states/{state}/attempt": check_attempt,
    "/generate": check_generate,
    "/prove": check_prove,
}
GET_ROUTES = {"/health", "/metrics", "/sessions", "/sessions/{id}", "/sessions/{id}/states/{state}/proof"}
OTHER_ROUTES = {("DELETE", "/sessions/{id}"), ("POST", "/encode")}

DOCUMENTED_ROUTES, DOCUMENTED_SHAPES = documented_api()


def _posts() -> Iterator[Any]:
    for (method, path), sketches in sorted(DOCUMENTED_SHAPES.items()):
        if method != "POST":
            continue
        for number, sketch in enumerate(sketches, start=1):
            for variant, body in enumerate(bodies(parse_shape(sketch), path), start=1):
                yield pytest.param(path, body, id=f"POST {path} shape {number}.{variant}")


# --------------------------------------------------------------------------- #
# The tests


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(suggest=True, backend="hint", warm_headers=("import Mathlib",)) as srv:
        yield srv


@dataclass(frozen=True)
class ProvedSession:
    """A session whose root (state 0) is open and whose state 1 is proved, for the paths with ``{id}``."""

    id: str

    def fill(self, path: str) -> str:
        return path.replace("{id}", self.id).replace("{state}", "1" if path.endswith("/proof") else "0")


@pytest.fixture(scope="module")
def session(server: RunningServer) -> ProvedSession:
    started = requests.post(server.url + "/sessions", json={"statement": VALUES["statement"],
                                                            "header": VALUES["header"]}, timeout=60).json()
    step = requests.post(f"{server.url}/sessions/{started['id']}/states/0/tactic", json={"tactic": "norm_num"},
                         timeout=60).json()
    assert step["state"] == 1 and step["status"] == "closes_goal", step
    return ProvedSession(started["id"])


def test_every_documented_route_has_a_check_here() -> None:
    known = {("POST", path) for path in POST_CHECKS} | {("GET", path) for path in GET_ROUTES} | OTHER_ROUTES
    assert known == DOCUMENTED_ROUTES
    assert all(DOCUMENTED_SHAPES[("POST", path)] for path in POST_CHECKS), DOCUMENTED_SHAPES


def test_the_shape_parser_reads_alternatives_and_nesting() -> None:
    fields = parse_shape('{"codes": [{"custom_id", "proof"|"code"}], "timeout"}')
    assert fields == (Field(("codes",), (Field(("custom_id",)), Field(("proof", "code"))), is_list=True),
                      Field(("timeout",)))
    assert [list(b["codes"][0]) for b in bodies(fields)] == [["custom_id", "proof"], ["custom_id", "code"]]


@pytest.mark.parametrize("path, body", list(_posts()))
def test_documented_body_is_answered_as_documented(server: RunningServer, session: ProvedSession, path: str,
                                                   body: dict[str, Any]) -> None:
    response = requests.post(server.url + session.fill(path), json=body, timeout=120)
    assert response.status_code == STATUS.get(path, 200), response.text
    POST_CHECKS[path](response.json(), body)


def test_a_session_is_read_back_as_its_tree_and_its_proof(server: RunningServer, session: ProvedSession) -> None:
    tree = requests.get(server.url + session.fill("/sessions/{id}"), timeout=30).json()
    assert [(s["id"], s["parent"], s["tactic"], s["status"]) for s in tree["states"][:2]] == [
        (0, None, None, "open"), (1, 0, "norm_num", "proved")]  # then what the other tests added
    proof = requests.get(server.url + session.fill("/sessions/{id}/states/{state}/proof"), timeout=30).json()
    assert proof["tactics"] == ["norm_num"] and proof["proof"] == "norm_num"


def test_the_open_sessions_are_listed_with_the_documented_keys(server: RunningServer, session: ProvedSession) -> None:
    listed = requests.get(server.url + "/sessions", timeout=30).json()["sessions"]
    mine = next(s for s in listed if s["id"] == session.id)
    assert set(mine) == {"id", "roots", "states", "proved", "expires_in"}
    assert mine["roots"] == 1 and mine["proved"] >= 1 and mine["states"] >= 2


def test_a_deleted_session_is_closed(server: RunningServer) -> None:
    sid = requests.post(server.url + "/sessions", json={"statement": VALUES["statement"]}, timeout=60).json()["id"]
    assert requests.delete(f"{server.url}/sessions/{sid}", timeout=30).json() == {"id": sid, "closed": True}
    assert requests.get(f"{server.url}/sessions/{sid}", timeout=30).status_code == 404


def test_encode_is_501_without_an_encoder(server: RunningServer) -> None:
    response = requests.post(server.url + "/encode", json={"name": "leanstep", "input": GOAL}, timeout=30)
    assert response.status_code == 501 and "no encoder" in response.json()["detail"]


def test_health_is_the_pools_state(server: RunningServer) -> None:
    response = requests.get(server.url + "/health", timeout=30)
    assert response.status_code == 200, response.text
    check_health(response.json())


def test_metrics_is_prometheus_text(server: RunningServer) -> None:
    response = requests.get(server.url + "/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "leanstep_pool_workers" in response.text


def test_a_source_and_position_without_a_goal_get_the_goal_from_lean(server: RunningServer) -> None:
    """The second ``/suggest`` shape sends no ``tactic_state``: the goal comes from Lean, and a call
    outside any proof is told so instead of being refused."""
    fields = parse_shape('{"source", "position": {"line", "column"}}')
    body = bodies(fields)[0]
    assert "tactic_state" not in body
    answer = requests.post(server.url + "/suggest", json=body, timeout=120).json()
    assert answer["goal"] == GOAL
    outside: dict[str, Any] = {"source": "import Mathlib\n\n#eval 1 + 1\n", "position": {"line": 3, "column": 0}}
    response = requests.post(server.url + "/suggest", json=outside, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["suggestions"] == [] and "no goal to suggest for" in response.json()["context_error"]


def test_a_context_alone_also_gets_the_goal_from_lean(server: RunningServer) -> None:
    response = requests.post(server.url + "/suggest", json={"context": VALUES["context"]}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["goal"] == GOAL


def test_a_body_that_says_nothing_of_the_goal_is_422(server: RunningServer) -> None:
    response = requests.post(server.url + "/suggest", json={"prefix": "simp"}, timeout=30)
    assert response.status_code == 422
    assert "tactic_state" in response.json()["detail"]
