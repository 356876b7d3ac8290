"""LeanCopilot's external model API, as its unmodified ``ExternalGenerator`` calls it.

LeanCopilot builds its request with ``(toJson req).pretty 99999999999999999``
and posts it with ``curl -X POST URL -H "accept: application/json" -H
"Content-Type: application/json" -d BODY`` (``LeanCopilot/Models/External.lean``).
Lean's ``Json.pretty`` keeps an object's fields in an ordered map and prints
them in reverse key order on one line at that width, ``": "`` after each key
and ``", "`` between fields, escaping only ``"``, ``\\``, newlines, carriage
returns and control characters; everything else is raw UTF-8. The tests send
exactly those bytes and read the answer as Lean's parser would: strict JSON,
where a score must be a finite number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from leanstep.api.leancopilot import probability
from leanstep.generate.base import Candidate, GenerationRequest
from server_fixtures import RunningServer, running_server

GOALS = "case left\na b : ℕ\nh : a < b\n⊢ a ≤ b\n\ncase right\na b : ℕ\nh : a < b\n⊢ 0 < b"
CURL_HEADERS = {"accept": "application/json", "Content-Type": "application/json"}


def lean_string(text: str) -> str:
    """``Json.renderString``: quotes, and escapes for ``"``, ``\\``, ``\\n``, ``\\r`` and control characters."""
    out = []
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def lean_pretty(fields: dict[str, str]) -> bytes:
    """``(toJson obj).pretty 99999999999999999`` for an object of strings: fields in reverse key order."""
    inner = ", ".join(f"{lean_string(k)}: {lean_string(v)}" for k, v in sorted(fields.items(), reverse=True))
    return ("{" + inner + "}").encode("utf-8")


def read_as_lean(response: requests.Response) -> Any:
    """The answer as Lean's ``Json.parse`` reads it: no NaN or Infinity literals."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON: Lean cannot parse this answer")

    return json.loads(response.content.decode("utf-8"), parse_constant=refuse)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(suggest=True, backend="hint") as srv:
        yield srv


def test_the_request_bytes_are_what_lean_prints() -> None:
    assert lean_pretty({"name": "m", "input": "⊢ p\n\"q\"", "prefix": ""}) == \
        '{"prefix": "", "name": "m", "input": "⊢ p\\n\\"q\\""}'.encode()


@pytest.mark.parametrize("prefix", ["", "simp", "omega"])
def test_generate_answers_leancopilots_exact_request_with_scored_tactics(server: RunningServer, prefix: str) -> None:
    body = lean_pretty({"name": "wellecks/llmstep-mathlib4-pythia2.8b", "input": GOALS, "prefix": prefix})
    response = requests.post(server.url + "/generate", data=body, headers=CURL_HEADERS, timeout=30)
    assert response.status_code == 200, response.text
    answer = read_as_lean(response)
    assert list(answer) == ["outputs"] and answer["outputs"]
    for generation in answer["outputs"]:
        assert set(generation) == {"output", "score"}
        assert isinstance(generation["output"], str) and generation["output"].startswith(prefix)
        assert isinstance(generation["score"], float) and 0.0 <= generation["score"] <= 1.0
    scores = [g["score"] for g in answer["outputs"]]
    assert scores == sorted(scores, reverse=True)  # best first, as the model ranked them
    if not prefix:
        assert "omega" in [g["output"] for g in answer["outputs"]]


def test_a_null_prefix_is_an_empty_one_as_in_leancopilots_own_server(server: RunningServer) -> None:
    response = requests.post(server.url + "/generate", json={"name": "x", "input": GOALS, "prefix": None},
                             timeout=30)
    assert response.status_code == 200 and read_as_lean(response)["outputs"]


@pytest.mark.parametrize("body, field", [
    ({"input": GOALS, "prefix": ""}, "name"),
    ({"name": "x", "prefix": ""}, "input"),
    ({"name": "x", "input": 3}, "input"),
    ({"name": "x", "input": "⊢ p\x00"}, "NUL"),
])
def test_a_malformed_generate_request_is_422_naming_the_field(server: RunningServer, body: dict[str, Any],
                                                              field: str) -> None:
    response = requests.post(server.url + "/generate", json=body, timeout=30)
    assert response.status_code == 422 and field in response.json()["detail"]


def test_encode_says_there_is_no_encoder(server: RunningServer) -> None:
    body = lean_pretty({"name": "kaiyuy/leandojo-lean4-retriever-byt5-small", "input": GOALS})
    response = requests.post(server.url + "/encode", data=body, headers=CURL_HEADERS, timeout=30)
    assert response.status_code == 501
    assert "no encoder" in response.json()["detail"]


def test_a_failing_model_is_a_503_naming_its_error() -> None:
    with running_server(suggest=True, backend="openai", openai_base_url="http://127.0.0.1:9/v1") as down:
        body = lean_pretty({"name": "any", "input": GOALS, "prefix": ""})
        response = requests.post(down.url + "/generate", data=body, headers=CURL_HEADERS, timeout=30)
    assert response.status_code == 503 and response.json()["error"] == "generation failed"
    assert "cannot reach http://127.0.0.1:9/v1" in response.json()["detail"]


class WildScores:
    """A generator whose scores are everything a broken backend could send."""

    SCORES = (float("nan"), float("inf"), -float("inf"), 3.5, 0.0, -1e-9, -0.7, -1e300)

    def generate(self, request: GenerationRequest) -> list[Candidate]:
        return [Candidate(f"{request.prefix}tac{i}", score) for i, score in enumerate(self.SCORES)]


def test_every_score_is_a_probability_whatever_the_model_says() -> None:
    with running_server(generator=WildScores()) as srv:
        body = lean_pretty({"name": "any", "input": GOALS, "prefix": ""})
        response = requests.post(srv.url + "/generate", data=body, headers=CURL_HEADERS, timeout=30)
        assert response.status_code == 200, response.text
        scores = [g["score"] for g in read_as_lean(response)["outputs"]]
    assert len(scores) == len(WildScores.SCORES)
    assert all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores), scores


def test_probability_turns_log_probabilities_into_probabilities() -> None:
    assert probability(0.0) == 1.0 and probability(math.log(0.25)) == pytest.approx(0.25)
    assert probability(2.0) == 1.0 and probability(-math.inf) == 0.0 and probability(math.nan) == 0.0
