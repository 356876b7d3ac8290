"""The MCP server, driven by the official SDK's own client over both transports, on the simulated REPL.

Over stdio the client starts ``leanstep mcp --repl sim --no-model`` as a real subprocess; over streamable
HTTP it talks to ``/mcp`` of a real waitress server behind an API key, in both protocol eras (the
``initialize`` handshake and the 2026 per-request envelope). The tools answer what the HTTP routes answer
for the same input, refusals included, word for word.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx2
import psutil
import pytest
import requests
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from conftest import ROOT
from leanstep.mcp.server import build_server
from leanstep.mcp.tools import code_is_contained
from leanstep.repl.sandbox import bwrap_usable
from leanstep.server.services import build_services
from server_fixtures import SlowChain, running_server, sim_config, sim_repls

API_KEY = "mcp-test-key"
OTHER_KEY = "another-clients-key"
STDIO_ARGV = ("-m", "leanstep", "mcp", "--repl", "sim", "--no-model", "--sandbox", "none", "--max-repls", "2")
PROOF = "theorem two : 1 + 1 = 2 := by\n  norm_num"
SORRY_PROOF = "theorem two : 1 + 1 = 2 := by\n  sorry"
SOURCE = "theorem t (n : Nat) : n + 0 = n := by\n  sorry\n"
AT_SORRY = {"line": 2, "column": 2}
PROVE_WHOLE = {"header": "import Mathlib", "statement": "theorem two : 1 + 1 = 2", "strategy": "whole", "samples": 2,
               "rounds": 0}
ERAS = ("legacy", "auto")  # the initialize handshake; the 2026 per-request envelope (discovered)

Session = Callable[[Client], Awaitable[Any]]


@pytest.fixture(scope="module")
def http_server():
    with running_server(suggest=True, backend="hint", api_key=(API_KEY, OTHER_KEY)) as server:
        yield server


def over_http(url: str, use: Session, *, mode: str = "legacy", key: str | None = API_KEY) -> Any:
    """``use(client)`` with an SDK client connected to ``url``/mcp (sending ``key`` as a bearer token)."""
    async def run() -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        async with httpx2.AsyncClient(headers=headers) as http, \
                Client(streamable_http_client(url + "/mcp", http_client=http), mode=mode) as client:
            return await use(client)

    return anyio.run(run)


def over_stdio(use: Session, *, mode: str = "legacy", extra: tuple[str, ...] = ()) -> Any:
    """``use(client)`` with an SDK client that started ``leanstep mcp`` over stdio."""
    params = StdioServerParameters(command=sys.executable, args=[*STDIO_ARGV, *extra], cwd=str(ROOT))

    async def run() -> Any:
        async with Client(params, mode=mode) as client:
            return await use(client)

    return anyio.run(run)


def call(name: str, arguments: dict[str, Any]) -> Session:
    async def use(client: Client) -> Any:
        return await client.call_tool(name, arguments)
    return use


def connection_failure(url: str, *, key: str | None) -> str:
    """What the SDK client raised (its task group's errors, flattened) when it could not use ``url``/mcp."""
    try:
        over_http(url, call("verify", {"code": PROOF}), key=key)
    except BaseException as exc:  # noqa: BLE001 - the client's errors come wrapped in exception groups
        leaves, pending = [], [exc]
        while pending:
            error = pending.pop()
            nested = getattr(error, "exceptions", None)
            pending.extend(nested) if nested else leaves.append(error)
        return " | ".join(f"{type(e).__name__}: {e}" for e in leaves)
    raise AssertionError("the client was served")


def http_error(server: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = requests.post(server.url + path, json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
    assert 400 <= answer.status_code < 500, answer.text
    return answer.json()


# --------------------------------------------------------------------------- listing


RUNS_LEAN = ("verify", "multi_attempt", "session_start", "session_step", "suggest", "prove")


def test_the_tools_are_listed_with_their_schemas_and_honest_annotations():
    async def use(client: Client) -> Any:
        return (await client.list_tools()).tools

    tools = {tool.name: tool for tool in over_stdio(use)}
    assert list(tools) == ["verify", "multi_attempt", "session_start", "session_step", "session_inspect",
                           "session_list", "session_proof", "session_close", "suggest", "prove"]
    assert tools["verify"].input_schema["required"] == ["code"]
    assert {"statement", "trust", "timeout"} <= set(tools["verify"].input_schema["properties"])
    assert tools["multi_attempt"].input_schema["required"] == ["tactics"]
    assert {"source", "position", "context", "session", "state"} <= set(tools["multi_attempt"].input_schema["properties"])
    assert tools["session_step"].input_schema["required"] == ["session", "state", "tactic"]
    assert {"verdict", "reasons", "messages", "limits"} <= set(tools["verify"].output_schema["properties"])
    assert "attempts" in tools["multi_attempt"].output_schema["required"]
    assert "suggestions" in tools["suggest"].output_schema["required"]
    assert {"statement", "header", "source", "position", "strategy", "timeout"} <= \
        set(tools["prove"].input_schema["properties"])
    assert {"proved", "proof", "strategy", "check", "limits"} <= set(tools["prove"].output_schema["required"])

    def hints(name: str) -> tuple[Any, ...]:
        a = tools[name].annotations
        return a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint

    for name in RUNS_LEAN:  # they run the submitted Lean code, and --sandbox none contains nothing
        assert hints(name) == (False, True, name != "session_start", False), name
        assert "Runs the code in the REPL sandbox ('none'" in tools[name].description
    assert hints("session_inspect") == hints("session_list") == hints("session_proof") == (True, False, True, False)
    assert tools["session_list"].input_schema.get("required", []) == []
    assert hints("session_close") == (False, True, True, False)


def test_only_bubblewrap_counts_as_containing_the_code():
    assert not code_is_contained("none") and not code_is_contained("rlimit")
    assert code_is_contained("auto") == bwrap_usable()


# --------------------------------------------------------------------------- the tools, over stdio


def test_verify_judges_a_file_at_the_requested_trust_level_and_statement():
    statement = "theorem two : 1 + 1 = 2"

    async def use(client: Client) -> list[Any]:
        return [await client.call_tool("verify", arguments) for arguments in (
            {"code": PROOF},
            {"code": SORRY_PROOF, "trust": "lenient"},
            {"code": PROOF, "statement": statement},
            {"code": PROOF, "statement": "theorem two : 2 + 2 = 4"},
        )]

    valid, sorry, stated, other = (r.structured_content for r in over_stdio(use))
    assert (valid["verdict"], valid["trust"], valid["reasons"]) == ("valid", "strict", [])
    assert valid["axioms"] == {"two": ["propext", "Classical.choice", "Quot.sound"]}
    assert valid["limits"]["timeout"]["source"] == "server"
    assert (sorry["verdict"], sorry["trust"]) == ("invalid", "lenient")
    assert [r["code"] for r in sorry["reasons"]] == ["uses_sorry"]
    assert any(m["severity"] == "warning" and m["line"] == 1 for m in sorry["messages"])
    assert stated["verdict"] == "valid"
    assert other["verdict"] == "invalid" and [r["code"] for r in other["reasons"]] == ["statement_mismatch"]


@pytest.mark.parametrize("mode", ERAS)
def test_multi_attempt_answers_every_tactic_in_the_order_sent(mode):
    tactics = ["bogus_tactic", "rfl", "sorry", "simp"]
    result = over_stdio(call("multi_attempt", {"source": SOURCE, "position": AT_SORRY, "tactics": tactics}),
                        mode=mode)
    answer = result.structured_content
    assert not result.is_error and answer["goal"] == "n : Nat\n⊢ n + 0 = n" and answer["context_error"] is None
    assert [a["tactic"] for a in answer["attempts"]] == tactics
    assert [a["status"] for a in answer["attempts"]] == ["invalid", "closes_goal", "invalid", "closes_goal"]
    assert "unknown tactic" in answer["attempts"][0]["message"] and "sorry" in answer["attempts"][2]["message"]
    assert answer["counts"] == {"closes_goal": 2, "valid": 0, "unchecked": 0, "invalid": 2}
    assert answer["limits"]["check_timeout"]["source"] == "server" and answer["limits"]["session_timeout"] is None
    assert json.loads(result.content[0].text) == answer  # the same JSON as text, for clients that read only text


def test_suggest_answers_checked_suggestions_goal_closing_first():
    answer = over_stdio(call("suggest", {"source": SOURCE, "position": AT_SORRY})).structured_content
    statuses = [s["status"] for s in answer["suggestions"]]
    assert answer["checked"] and statuses[0] == "closes_goal"
    assert statuses == sorted(statuses, key=["closes_goal", "valid", "unchecked", "invalid"].index)
    assert "invalid" not in statuses  # as /suggest: the ones Lean rejected are left out unless asked for


def test_a_goal_that_cannot_be_located_is_reported_not_raised():
    result = over_stdio(call("multi_attempt", {"source": "theorem t : True := by\n  trivial\n",
                                               "position": {"line": 9, "column": 0}, "tactics": ["rfl"]}))
    assert not result.is_error
    assert result.structured_content["attempts"][0]["status"] == "unchecked"
    assert "line 9" in result.structured_content["context_error"]


def _same_but_timings(tool: dict[str, Any], http: dict[str, Any]) -> None:
    """``prove``'s answer is ``POST /prove``'s, but for where the time went (each call spends its own)."""
    def without(answer: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in answer.items() if k != "timings"}
        out["check"] = {"reasons": [], **answer["check"]}  # MCP lists no reasons as []; HTTP leaves the key out
        return out

    assert set(tool["timings"]) == set(http["timings"]) == {"generation_ms", "checking_ms", "total_ms"}
    assert without(tool) == without(http)


def test_a_cancelled_prove_call_stops_its_proving_and_the_next_call_still_gets_its_proof():
    """The SDK's client cancels the call (``notifications/cancelled``), connected in-process to the server as over
    stdio; the server's own counters say the proving stopped."""
    model = SlowChain()
    services = build_services(sim_config(prove_timeout=120, check_timeout=30), generator=model)
    sessions = services.sessions

    async def cancel_mid_search_then_prove(client: Client) -> tuple[int, int, Any]:
        async with anyio.create_task_group() as calls:
            calls.start_soon(client.call_tool, "prove", SlowChain.PROVE)
            with anyio.fail_after(30):
                while model.chain_calls < 2:  # the search is in its second expansion
                    await anyio.sleep(0.05)
            calls.cancel_scope.cancel()
        at_cancel = model.chain_calls
        # the search had some 30 s of expansions and 120 s of budget left; it stops within the expansion it was in
        with anyio.fail_after(20):
            while sessions.stats().open:
                await anyio.sleep(0.05)
        return at_cancel, model.chain_calls, await client.call_tool("prove", SlowChain.EASY)

    async def run() -> tuple[int, int, Any]:
        async with Client(build_server(services, owner_of=lambda _ctx: "caller")) as client:
            return await cancel_mid_search_then_prove(client)

    try:
        at_cancel, stopped, easy = anyio.run(run)
        after = model.chain_calls, sessions.stats().open
    finally:
        services.close()
    assert stopped <= at_cancel + 1
    answer = json.loads(easy.content[0].text)
    assert answer["proved"] is True and answer["proof"] == "theorem easy : True := by\n  trivial"
    assert after == (stopped, 0)  # nothing of the cancelled proving ran on


def test_prove_over_stdio_proves_the_goal_at_a_position_with_the_tactic_list():
    result = over_stdio(call("prove", {"source": SOURCE, "position": AT_SORRY, "strategy": "search"}),
                        extra=("--prove-timeout", "30"))
    answer = result.structured_content
    assert not result.is_error and answer["proved"] is True and answer["stopped"] is None
    assert answer["proof"] == "rfl" and answer["strategy"] == "search" and answer["tried"] == ["search"]
    assert answer["expansions"] == 1 and answer["samples"] == 0
    assert answer["check"]["verdict"] == "valid" and answer["check"]["trust"] == "strict"
    assert answer["check"]["concerns"] == [] and "rfl" in answer["check"]["code"]
    assert answer["limits"]["prove_timeout"] == {"seconds": 30.0, "requested": None, "source": "server",
                                                 "max": 30.0, "min": 1.0}  # `leanstep mcp --prove-timeout`
    assert json.loads(result.content[0].text) == answer


@pytest.mark.parametrize("mode", ERAS)
def test_prove_over_http_answers_what_post_prove_answers(http_server, mode):
    result = over_http(http_server.url, call("prove", PROVE_WHOLE), mode=mode)
    http = requests.post(http_server.url + "/prove", json=PROVE_WHOLE, headers={"Authorization": f"Bearer {API_KEY}"},
                         timeout=60)
    assert not result.is_error and http.status_code == 200
    answer = result.structured_content
    assert answer["proved"] is True and answer["proof"] == "theorem two : 1 + 1 = 2 := by\n  rfl"
    assert (answer["strategy"], answer["samples"], answer["rounds"]) == ("whole", 2, 0)  # samples drawn
    _same_but_timings(answer, http.json())


# --------------------------------------------------------------------------- proof sessions


def test_a_proof_session_is_started_stepped_branched_read_and_closed():
    code = "theorem t (n : Nat) : n + 0 = n := by\n  sorry"

    async def use(client: Client) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["start"] = (await client.call_tool("session_start", {"code": code})).structured_content
        session = out["start"]["id"]
        out["step"] = (await client.call_tool("session_step", {"session": session, "state": 0,
                                                                "tactic": "skip"})).structured_content
        out["attempt"] = (await client.call_tool("multi_attempt", {"session": session, "state": 0,
                                                                    "tactics": ["bogus_tactic", "rfl", "simp"]}))
        proved = out["attempt"].structured_content["attempts"][1]["state"]
        out["proof"] = (await client.call_tool("session_proof", {"session": session, "state": proved}))
        out["not proved"] = await client.call_tool("session_proof", {"session": session, "state": 0})
        out["tree"] = (await client.call_tool("session_inspect", {"session": session})).structured_content
        out["listed"] = (await client.call_tool("session_list", {})).structured_content
        out["close"] = (await client.call_tool("session_close", {"session": session})).structured_content
        out["after"] = await client.call_tool("session_inspect", {"session": session})
        out["listed after"] = (await client.call_tool("session_list", {})).structured_content
        return out

    out = over_stdio(use)
    assert out["start"]["roots"] == [0] and out["start"]["states"][0]["goals"] == ["n : Nat\n⊢ n + 0 = n"]
    assert out["start"]["limits"]["session_timeout"]["source"] == "server"
    assert out["step"]["status"] == "valid" and out["step"]["state"] == 1
    attempt = out["attempt"].structured_content
    assert [a["status"] for a in attempt["attempts"]] == ["invalid", "closes_goal", "closes_goal"]
    assert attempt["attempts"][0]["state"] is None and attempt["counts"]["closes_goal"] == 2
    assert "session_timeout" in attempt["limits"] and attempt["limits"]["check_timeout"] is None
    assert out["proof"].structured_content["proof"] == "rfl"
    assert out["not proved"].is_error and out["not proved"].structured_content["error"] == "state not proved"
    assert [s["parent"] for s in out["tree"]["states"]] == [None, 0, 0, 0]
    (listed,) = out["listed"]["sessions"]
    assert {k: listed[k] for k in ("id", "roots", "states", "proved")} == {
        "id": out["start"]["id"], "roots": 1, "states": 4, "proved": 2}
    assert out["close"] == {"id": out["start"]["id"], "closed": True}
    assert out["listed after"] == {"sessions": []}
    assert out["after"].is_error and out["after"].structured_content["error"] == "session not found"


def test_sessions_are_their_callers_and_the_same_through_both_doors(http_server):
    async def start(client: Client) -> str:
        result = await client.call_tool("session_start", {"code": "theorem t : 1 + 1 = 2 := by\n  sorry"})
        return result.structured_content["id"]

    session = over_http(http_server.url, start)
    mine = requests.get(f"{http_server.url}/sessions/{session}", headers={"Authorization": f"Bearer {API_KEY}"},
                        timeout=10)
    assert mine.status_code == 200 and mine.json()["roots"] == [0]  # the /sessions routes see what MCP started
    theirs = requests.get(f"{http_server.url}/sessions/{session}",
                          headers={"Authorization": f"Bearer {OTHER_KEY}"}, timeout=10)
    assert theirs.status_code == 404

    async def listed(client: Client) -> list[str]:
        return [s["id"] for s in (await client.call_tool("session_list", {})).structured_content["sessions"]]

    assert session in over_http(http_server.url, listed)
    assert session not in over_http(http_server.url, listed, key=OTHER_KEY)

    async def intrude(client: Client) -> list[Any]:
        return [await client.call_tool(name, arguments) for name, arguments in (
            ("session_inspect", {"session": session}),
            ("session_step", {"session": session, "state": 0, "tactic": "norm_num"}),
            ("multi_attempt", {"session": session, "state": 0, "tactics": ["norm_num"]}),
            ("session_close", {"session": session}),
        )]

    for result in over_http(http_server.url, intrude, key=OTHER_KEY):
        assert result.is_error and result.structured_content == theirs.json()
    assert requests.get(f"{http_server.url}/sessions/{session}", headers={"Authorization": f"Bearer {API_KEY}"},
                        timeout=10).status_code == 200, "another key closed the session"


# --------------------------------------------------------------------------- refusals: the HTTP words


VERIFY_REFUSALS = [  # (MCP verify arguments, the same request to POST /verify)
    ({"code": PROOF, "timeout": 0.001}, {"codes": [{"custom_id": "a", "proof": PROOF}], "timeout": 0.001}),
    ({"code": PROOF, "timeout": "30"}, {"codes": [{"custom_id": "a", "proof": PROOF}], "timeout": "30"}),
    ({"code": PROOF, "trust": "paranoid"}, {"codes": [{"custom_id": "a", "proof": PROOF}], "trust": "paranoid"}),
    ({"code": PROOF, "statement": "theorem a : True", "formal_statement": "theorem b : True"},
     {"codes": [{"custom_id": "a", "proof": PROOF, "statement": "theorem a : True",
                 "formal_statement": "theorem b : True"}]}),
]
SUGGEST_REFUSALS = [  # the same arguments for the MCP tool and POST /suggest
    {"source": SOURCE},
    {"prefix": "simp"},
    {"source": SOURCE, "position": {"line": 0, "column": 0}},
    {"tactic_state": "⊢ True", "n": 100000},
    {"context": "theorem t : True := by\n  \x00"},
]


PROVE_REFUSALS = [  # the same arguments for the MCP tool and POST /prove
    {},
    {"statement": "theorem t : True", "source": SOURCE, "position": AT_SORRY},
    {"statement": "def f : ℕ := 1"},
    {"source": SOURCE, "position": {"line": 9, "column": 0}},
    {"statement": "theorem t : True", "strategy": "magic"},
    {"statement": "theorem t : True", "samples": 0},
    {"statement": "theorem t : True", "timeout": "30"},
    {"statement": "theorem t : True", "timeout": 0.01},
    {"statement": "theorem t : True\u0000"},
]


def _words(detail: str) -> str:
    """The message after its field path (the paths differ where the shapes differ: ``codes.0`` vs ``body``)."""
    return detail.split(": ", 1)[1]


def test_a_refused_verify_is_a_tool_error_with_the_words_of_the_http_422(http_server):
    async def use(client: Client) -> list[Any]:
        return [await client.call_tool("verify", arguments) for arguments, _ in VERIFY_REFUSALS]

    for result, (_, http_body) in zip(over_http(http_server.url, use), VERIFY_REFUSALS, strict=True):
        http = http_error(http_server, "/verify", http_body)
        assert result.is_error and result.structured_content["error"] == http["error"] == "invalid request"
        assert _words(result.structured_content["detail"]) == _words(http["detail"])
        assert json.loads(result.content[0].text) == result.structured_content


def test_a_refused_suggest_is_a_tool_error_with_exactly_the_http_body(http_server):
    async def use(client: Client) -> list[Any]:
        return [await client.call_tool("suggest", arguments) for arguments in SUGGEST_REFUSALS]

    for result, arguments in zip(over_http(http_server.url, use), SUGGEST_REFUSALS, strict=True):
        assert result.is_error
        assert result.structured_content == http_error(http_server, "/suggest", arguments)


def test_a_refused_prove_is_a_tool_error_with_exactly_the_http_body(http_server):
    async def use(client: Client) -> list[Any]:
        return [await client.call_tool("prove", arguments) for arguments in PROVE_REFUSALS]

    results = over_http(http_server.url, use)
    for result, arguments in zip(results, PROVE_REFUSALS, strict=True):
        assert result.is_error
        assert result.structured_content == http_error(http_server, "/prove", arguments)
    details = [r.structured_content["detail"] for r in results]
    assert "name one target" in details[0] and "statement" in details[2] and "minimum" in details[7]
    assert "no goal at the position" in details[3]  # the prover's refusal, not the model's: a 422


def test_a_failing_model_is_a_tool_error_with_the_words_of_the_http_503():
    unreachable = {"backend": "openai", "openai_base_url": "http://127.0.0.1:9/v1"}
    with running_server(suggest=True, api_key=API_KEY, **unreachable) as server:
        async def use(client: Client) -> tuple[Any, ...]:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            return (tools, await client.call_tool("suggest", {"tactic_state": "⊢ True"}),
                    await client.call_tool("prove", PROVE_WHOLE))

        tools, suggested, proved = over_http(server.url, use)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        http_suggest = requests.post(server.url + "/suggest", json={"tactic_state": "⊢ True"}, headers=headers,
                                     timeout=30)
        http_prove = requests.post(server.url + "/prove", json=PROVE_WHOLE, headers=headers, timeout=30)
    # these backends call a server outside leanstep
    assert tools["suggest"].annotations.open_world_hint is tools["prove"].annotations.open_world_hint is True
    assert http_suggest.status_code == 503 and http_suggest.json()["error"] == "suggestion failed"
    assert suggested.is_error and suggested.structured_content == http_suggest.json()
    assert "cannot reach http://127.0.0.1:9/v1" in suggested.structured_content["detail"]
    assert http_prove.status_code == 503 and http_prove.json()["error"] == "proving failed"
    assert proved.is_error and proved.structured_content == http_prove.json()
    assert "cannot reach http://127.0.0.1:9/v1" in proved.structured_content["detail"]


def test_multi_attempt_refuses_what_cannot_be_checked(http_server):
    async def use(client: Client) -> list[Any]:
        return [await client.call_tool("multi_attempt", arguments) for arguments in (
            {"source": SOURCE, "position": AT_SORRY, "tactics": []},
            {"source": SOURCE, "position": AT_SORRY, "tactics": ["rfl", "  "]},
            {"tactics": ["rfl"]},
            {"session": "s", "tactics": ["rfl"]},
            {"session": "s", "state": 0, "source": SOURCE, "position": AT_SORRY, "tactics": ["rfl"]},
            {"source": SOURCE, "position": AT_SORRY, "tactics": ["rfl"] * 65},
        )]

    details = [r.structured_content["detail"] for r in over_http(http_server.url, use)]
    assert details == [
        "tactics: List should have at least 1 item after validation, not 0",
        "tactics.1: is empty",
        "body: send `source` and `position` (or `context`), or `session` and `state`: the tactics run at that goal",
        "body: `session` and `state` go together: `state` is missing",
        "body: send either `session` and `state` or a place in a file (`source` and `position`, or `context`), "
        "not both",
        "65 tactics in one attempt, more than the 64 allowed (--max-attempt-tactics)",
    ]


def test_an_unknown_tool_is_a_protocol_error(http_server):
    async def use(client: Client) -> MCPError:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("disprove", {})
        return refused.value

    error = over_http(http_server.url, use)
    assert error.code == INVALID_PARAMS
    assert error.message.startswith("unknown tool 'disprove'; the tools are verify, multi_attempt, session_start")


# --------------------------------------------------------------------------- over streamable HTTP


@pytest.mark.parametrize("mode", ERAS)
def test_both_protocol_eras_are_served_over_http(http_server, mode):
    async def use(client: Client) -> tuple[Any, Any]:
        tools = (await client.list_tools()).tools
        return tools, await client.call_tool("verify", {"code": PROOF, "trust": "lenient"})

    tools, result = over_http(http_server.url, use, mode=mode)
    assert [t.name for t in tools][:2] == ["verify", "multi_attempt"] and len(tools) == 10
    assert result.structured_content["verdict"] == "valid" and result.structured_content["trust"] == "lenient"


def test_tool_calls_over_http_run_side_by_side(http_server):
    slow = "theorem slow : True := by\n  -- sim: delay 1.5\n  trivial"

    async def use(client: Client) -> list[Any]:
        results: list[Any] = []

        async def one(index: int) -> None:  # distinct texts: the result cache cannot answer the second
            results.append(await client.call_tool("verify", {"code": slow.replace("slow", f"slow{index}")}))

        async with anyio.create_task_group() as group:
            group.start_soon(one, 1)
            group.start_soon(one, 2)
        return results

    started = time.monotonic()
    results = over_http(http_server.url, use)
    assert [r.structured_content["verdict"] for r in results] == ["valid", "valid"]
    assert time.monotonic() - started < 2.9, "the second call waited for the first"


def test_the_http_server_needs_its_api_key_on_mcp(http_server):
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    for headers, why in (({}, "missing API key"), ({"Authorization": "Bearer wrong"}, "invalid API key"),
                         ({"X-API-Key": "wrong"}, "invalid API key")):
        answer = requests.post(http_server.url + "/mcp", json=initialize, headers={**accept, **headers}, timeout=10)
        assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"
        assert answer.json()["detail"].startswith(why)
    assert "MCPError: Server returned an error response" in connection_failure(http_server.url, key="wrong")


def test_a_refused_key_reaches_no_repl(http_server):
    before = http_server.pool.stats().counters.requests
    assert "MCPError: Server returned an error response" in connection_failure(http_server.url, key=None)
    assert http_server.pool.stats().counters.requests == before


# --------------------------------------------------------------------------- the stdio process


def _stdio_server_that_verified() -> subprocess.Popen[bytes]:
    """``leanstep mcp`` as a plain subprocess, after one verify over its stdin (so a REPL runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEANSTEP_")}
    server = subprocess.Popen([sys.executable, *STDIO_ARGV], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert server.stdin is not None and server.stdout is not None
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "verify", "arguments": {"code": PROOF}}},
    ]
    server.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
    server.stdin.flush()
    answers = [json.loads(server.stdout.readline()) for _ in range(2)]
    assert answers[1]["result"]["structuredContent"]["verdict"] == "valid", answers
    return server


@pytest.mark.parametrize("stop", ["stdin closed", "SIGTERM"])
def test_no_repl_outlives_the_stdio_server(stop):
    server = _stdio_server_that_verified()
    try:
        repls = [p for p in sim_repls(psutil.Process(server.pid)) if p.name().startswith("python")]
        assert repls
        if stop == "SIGTERM":
            server.send_signal(signal.SIGTERM)
        else:
            assert server.stdin is not None
            server.stdin.close()
        assert server.wait(30) == (0 if stop == "stdin closed" else 128 + signal.SIGTERM)
        _gone, alive = psutil.wait_procs(repls, timeout=5)
        assert not alive, f"REPLs outlived the server: {[p.pid for p in alive]}"
        assert server.stderr is not None and b"all REPLs stopped" in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_the_sdk_client_leaves_no_stdio_server_or_repl_behind():
    seen: list[psutil.Process] = []

    async def use(client: Client) -> None:
        await client.call_tool("verify", {"code": PROOF})
        me = psutil.Process()
        servers = [p for p in me.children(recursive=True) if "mcp" in p.cmdline() and "leanstep" in p.cmdline()]
        assert len(servers) == 1
        seen.extend([servers[0], *sim_repls(servers[0])])

    over_stdio(use)
    _gone, alive = psutil.wait_procs(seen, timeout=10)
    assert len(seen) >= 2 and not alive, f"left behind: {[p.cmdline() for p in alive]}"
