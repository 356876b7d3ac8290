"""The `llmstep` tactic itself, elaborated by real Lean against a small HTTP server that plays leanstep's
`/suggest` (each test sets the suggestions it answers). Needs `lake` and a built `LeanTactic` (`lake build` in
this repository); without them every test here skips and says why.

They pin what cannot be checked without Lean: local re-checks never cost the user's proof its heartbeats,
multi-line suggestions are indented at the call's column, `sorry` is caught as a token and not as a
substring, `llmstep.timeout 0` is refused, and no wait outlives the budget (a wrapper interpreter that
leaves a process holding the bridge's output, or one that ignores SIGTERM); and `llmqed` offers `/prove`'s
proof as the server laid it out, or warns when there is none."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import ROOT

from leanstep.workspace import find_lake

pytestmark = pytest.mark.lean


@pytest.fixture(scope="module")
def lake() -> str:
    found = find_lake()
    if found is None:
        reason = "no `lake` on PATH or in ~/.elan/bin: install elan to elaborate the llmstep tactic"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    build = subprocess.run([found, "build", "LeanTactic"], cwd=ROOT, capture_output=True, text=True,
                           timeout=3600, check=False)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return found


class SuggestServer:
    """Answers every POST /suggest with ``suggestions`` (after ``delay`` seconds), or with ``reply`` when it is
    set (what `llmqed` gets from `/prove`); ``paths`` records the routes asked."""

    def __init__(self) -> None:
        self.suggestions: list[dict] = []
        self.reply: dict | None = None
        self.paths: list[str] = []
        self.delay = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.paths.append(self.path)
                time.sleep(owner.delay)
                body = json.dumps(owner.reply if owner.reply is not None else {"suggestions": owner.suggestions})
                body = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, *texts: str, status: str = "unchecked") -> None:
        self.suggestions = [{"text": t, "status": status, "goals": []} for t in texts]


@pytest.fixture
def server():
    srv = SuggestServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def elaborate(lake: str, server: SuggestServer, tmp_path: Path, body: str) -> tuple[str, float]:
    """`lake env lean` on ``import LeanTactic`` + ``body``; its messages and the seconds it took."""
    source = tmp_path / "Llmstep.lean"
    source.write_text("import LeanTactic\n\n" + textwrap.dedent(body))
    env = {**os.environ, "LEANSTEP_URL": server.url, "LEANSTEP_SCRIPT": str(ROOT / "python/leanstep_bridge.py")}
    start = time.monotonic()
    proc = subprocess.run([lake, "env", "lean", str(source)], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    return proc.stdout + proc.stderr, time.monotonic() - start


def test_rechecks_never_make_the_users_proof_time_out(lake, server, tmp_path):
    """Ten unchecked suggestions that each run until their cap (1000 thousand heartbeats: every rewrite makes the
    goal bigger and none closes it), on a declaration allowed 5000 thousand. Before, their work was charged to the
    declaration, whose own proof then hit "(deterministic) timeout"; the "dropped" note proves they ran to the cap."""
    server.answer(*["repeat rw [← Nat.add_zero a]"] * 10)
    messages, _ = elaborate(lake, server, tmp_path, """
        set_option maxHeartbeats 5000 in
        set_option llmstep.heartbeats 1000 in
        example (a b : Nat) : a + b = b + a := by
          llmstep ""
          exact Nat.add_comm a b
    """)
    assert "deterministic" not in messages, messages
    assert "error" not in messages, messages
    assert "10 suggestion(s) dropped: they did not finish within 1000 heartbeats" in messages, messages


def test_a_nearly_spent_declaration_shows_suggestions_unchecked_and_says_why(lake, server, tmp_path):
    server.answer("decide")
    messages, _ = elaborate(lake, server, tmp_path, """
        set_option maxHeartbeats 1000 in
        theorem small : 2 + 2 = 4 := by
          llmstep ""
          rfl
    """)
    assert "shown unchecked" in messages and "maxHeartbeats" in messages, messages
    assert "not checked" in messages  # the suggestion is still offered


def test_a_multi_line_suggestion_is_indented_at_the_call(lake, server, tmp_path):
    server.answer("constructor\n· exact h.2\n· exact h.1")
    messages, _ = elaborate(lake, server, tmp_path, """
        example (p q : Prop) (h : p ∧ q) : q ∧ p := by
            llmstep ""
            exact ⟨h.2, h.1⟩
    """)
    # the call is at column 4; before, the continuation lines came out at column 0 (the message may nest
    # them 2 further, the inserted text is the suggestion as given)
    assert re.search(r"constructor\n {4,}· exact h\.2\n {4,}· exact h\.1", messages), messages
    assert "closes the goal" in messages


def test_sorry_is_caught_as_a_token_not_as_a_substring(lake, server, tmp_path):
    server.answer("exact sorry", "admit", "exact (sorryAx _ false)", "exact sorry_free h")
    messages, _ = elaborate(lake, server, tmp_path, """
        theorem sorry_free {p : Prop} (h : p) : p := h

        example (p : Prop) (h : p) : p := by
          llmstep ""
          exact h
    """)
    assert "exact sorry_free h" in messages and "closes the goal" in messages, messages
    assert "exact sorry\n" not in messages and "admit" not in messages and "sorryAx" not in messages


def test_a_zero_timeout_is_refused_with_a_warning(lake, server, tmp_path):
    server.answer("rfl", status="closes_goal")
    messages, _ = elaborate(lake, server, tmp_path, """
        set_option llmstep.timeout 0 in
        example : 1 = 1 := by
          llmstep ""
          rfl
    """)
    assert "warning" in messages and "`llmstep.timeout` is 0" in messages, messages


@pytest.mark.parametrize("wrapper, delay, budget_ms, warning", [
    pytest.param('(sleep 60) &\nexec python3 "$@"', 0.0, 2000, "kept its output open",
                 id="a_grandchild_holds_the_bridges_output"),
    pytest.param("trap '' TERM\nsleep 60", 60.0, 1000, "no answer from the leanstep server within 1000 ms",
                 id="the_interpreter_ignores_sigterm"),
])
def test_no_wait_outlives_the_budget(lake, server, tmp_path, wrapper, delay, budget_ms, warning):
    """The bridge's interpreter is a wrapper that misbehaves: it starts a grandchild that keeps stdout open for a
    minute before running the bridge, or it ignores SIGTERM and sleeps. Elaboration still ends, with a warning."""
    server.answer("rfl", status="closes_goal")
    server.delay = delay
    script = tmp_path / "python-wrapper"
    script.write_text(f"#!/bin/sh\n{wrapper}\n")
    script.chmod(0o755)
    messages, elapsed = elaborate(lake, server, tmp_path, f"""
        set_option llmstep.python "{script}" in
        set_option llmstep.timeout {budget_ms} in
        example : 1 = 1 := by
          llmstep ""
          rfl
    """)
    assert elapsed < 30, f"elaboration took {elapsed:.0f} s: it waited for the wrapper"
    assert warning in messages, messages


def prove_reply(proved: bool, proof: str | None = None, stopped: str | None = None) -> dict:
    return {"proved": proved, "proof": proof, "strategy": "whole" if proved else None, "tried": ["search", "whole"],
            "expansions": 3, "samples": 8, "rounds": 0,
            "timings": {"generation_ms": 1.0, "checking_ms": 2.0, "total_ms": 1234.5}, "check": None,
            "stopped": stopped, "limits": {}}


def test_llmqed_offers_the_servers_proof_as_it_was_laid_out(lake, server, tmp_path):
    server.reply = prove_reply(True, "constructor\n    exact h.2\n    exact h.1")
    messages, _ = elaborate(lake, server, tmp_path, """
        example (p q : Prop) (h : p ∧ q) : q ∧ p := by
            llmqed
            exact ⟨h.2, h.1⟩
    """)
    assert server.paths == ["/prove"]
    assert re.search(r"Try this: constructor\n {4,}exact h\.2\n {4,}exact h\.1", messages), messages
    assert "proved by whole (3 expansions, 8 samples, 1234 ms)" in messages
    assert "error" not in messages, messages


def test_llmqed_without_a_proof_is_a_warning_and_the_file_still_elaborates(lake, server, tmp_path):
    server.reply = prove_reply(False, stopped="timeout")
    messages, _ = elaborate(lake, server, tmp_path, """
        example (p q : Prop) (h : p ∧ q) : q ∧ p := by
          llmqed
          exact ⟨h.2, h.1⟩
    """)
    assert "llmqed: no proof found (timeout; 3 expansions, 8 samples, 1234 ms)" in messages, messages
    assert "error" not in messages, messages
