"""Every request shape the README documents for the HTTP API, sent to a real server.

The README's "HTTP API" list is the contract clients read, so this test reads
it: each route it names is called, and each body shape it gives (the field
names in a route's first line) is posted, filled in from ``VALUES`` by field
name, to a server on the simulated REPL with the ``hint`` backend. Each must
get a 200 with the answer the README describes. A route or field the README
gains without a value or a check here fails, so the page and the server cannot
drift apart unnoticed.
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
}


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
    routes = set(re.findall(r"`(GET|POST) (/[^`\s]*)`", section))
    shapes: dict[tuple[str, str], list[str]] = {}
    for head in re.finditer(r"^- `(GET|POST) (/[^`\s]*)`(.*)$", section, re.MULTILINE):
        request_part = head.group(3).split("→", 1)[0]
        shapes[(head.group(1), head.group(2))] = re.findall(r"`(\{.*?\})`", request_part)
    return routes, shapes


def bodies(fields: tuple[Field, ...]) -> list[dict[str, Any]]:
    """One body per alternative: the n-th body takes every field's n-th alternative (its last, past the end)."""
    options = [(field, _values(field)) for field in fields]
    count = max([len(field.names) for field in fields] + [len(values) for _, values in options] + [1])
    return [{field.names[min(n, len(field.names) - 1)]: values[min(n, len(values) - 1)] for field, values in options}
            for n in range(count)]


def _values(field: Field) -> list[Any]:
    if field.members is None:
        return [VALUES[name] for name in field.names[:1]]
    return [[body] if field.is_list else body for body in bodies(field.members)]


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
}
GET_ROUTES = {"/health", "/metrics"}

DOCUMENTED_ROUTES, DOCUMENTED_SHAPES = documented_api()


def _posts() -> Iterator[Any]:
    for (method, path), sketches in sorted(DOCUMENTED_SHAPES.items()):
        if method != "POST":
            continue
        for number, sketch in enumerate(sketches, start=1):
            for variant, body in enumerate(bodies(parse_shape(sketch)), start=1):
                yield pytest.param(path, body, id=f"POST {path} shape {number}.{variant}")


# --------------------------------------------------------------------------- #
# The tests


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(suggest=True, backend="hint", warm_headers=("import Mathlib",)) as srv:
        yield srv


def test_every_documented_route_has_a_check_here() -> None:
    known = {("POST", path) for path in POST_CHECKS} | {("GET", path) for path in GET_ROUTES}
    assert known == DOCUMENTED_ROUTES
    assert all(DOCUMENTED_SHAPES[("POST", path)] for path in POST_CHECKS), DOCUMENTED_SHAPES


def test_the_shape_parser_reads_alternatives_and_nesting() -> None:
    fields = parse_shape('{"codes": [{"custom_id", "proof"|"code"}], "timeout"}')
    assert fields == (Field(("codes",), (Field(("custom_id",)), Field(("proof", "code"))), is_list=True),
                      Field(("timeout",)))
    assert [list(b["codes"][0]) for b in bodies(fields)] == [["custom_id", "proof"], ["custom_id", "code"]]


@pytest.mark.parametrize("path, body", list(_posts()))
def test_documented_body_is_answered_as_documented(server: RunningServer, path: str, body: dict[str, Any]) -> None:
    response = requests.post(server.url + path, json=body, timeout=120)
    assert response.status_code == 200, response.text
    POST_CHECKS[path](response.json(), body)


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
