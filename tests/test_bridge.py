"""The tactic's bridge, python/leanstep_bridge.py, run as the Lean tactic runs it: a subprocess with
the request on stdin, talking HTTP to a real server on 127.0.0.1 (a small http.server here;
the real server's end-to-end test is separate)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "python" / "leanstep_bridge.py"
FIXTURE = ROOT / "tests" / "fixtures" / "tactic_request.json"
REQUEST_BYTES = FIXTURE.read_bytes()
REQUEST = json.loads(REQUEST_BYTES)


def _load_bridge_module():
    spec = importlib.util.spec_from_file_location("leanstep_bridge_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bridge = _load_bridge_module()


# ------------------------------------------------------------------------------ a live server

SUGGEST_REPLY = {
    "suggestions": [
        {"text": "exact ⟨h.2, h.1⟩", "status": "closes_goal", "goals": [], "score": -0.25, "time_ms": 12.5},
        {"text": "exact And.intro h.2 ?_", "status": "valid", "goals": ["p q : Prop\nh : p ∧ q\n⊢ p"],
         "score": -1.5, "time_ms": 10.0},
    ],
    "timings": {"total_ms": 40.0},
    "counts": {"closes_goal": 1, "valid": 1},
    "checked": True,
}
PROVE_REPLY = {"proof": "trivial", "status": "closes_goal"}


def _validate(body: object) -> str | None:
    """What a /suggest server requires of the tactic's request; None when it is fine."""
    if not isinstance(body, dict):
        return "not an object"
    for key in ("tactic_state", "prefix", "context", "source", "file_name"):
        if not isinstance(body.get(key), str):
            return f"`{key}` must be a string"
    pos = body.get("position")
    if not (isinstance(pos, dict) and isinstance(pos.get("line"), int) and isinstance(pos.get("column"), int)
            and pos["line"] >= 1 and pos["column"] >= 0):
        return "`position` must be {line >= 1, column >= 0}"
    return None


class FakeServer:
    """A real HTTP server in a thread; ``mode`` picks the behaviour, ``seen`` records requests."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.seen: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.seen.append({"path": self.path, "headers": dict(self.headers), "body": raw})
                mode = owner.mode
                if mode == "slow":
                    time.sleep(3.0)
                if mode == "trickle":
                    body = json.dumps(SUGGEST_REPLY).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    for i in range(len(body)):
                        try:
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                        except OSError:
                            return None
                        time.sleep(0.2)
                    return None
                if self.path == "/prove":
                    return self._reply(200, json.dumps(PROVE_REPLY).encode())
                if mode == "http_error":
                    return self._reply(503, json.dumps({"error": "suggestion failed",
                                                        "detail": "RuntimeError: model exploded"}).encode())
                if mode == "not_json":
                    return self._reply(200, b"<html>proxy error</html>", "text/html")
                if mode == "nan":
                    return self._reply(200, b'{"suggestions": [{"text": "simp", "status": "valid", "score": NaN}]}')
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._reply(400, json.dumps({"error": "malformed JSON"}).encode())
                problem = _validate(body)
                if self.path != "/suggest" or problem:
                    return self._reply(422, json.dumps({"error": "invalid request",
                                                        "detail": problem or self.path}).encode())
                self._reply(200, json.dumps(SUGGEST_REPLY, ensure_ascii=False).encode("utf-8"))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = FakeServer()
    yield srv
    srv.close()


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LEANSTEP_", "LLMSTEP_")) and k.lower() not in ("http_proxy", "https_proxy",
                                                                               "all_proxy", "no_proxy")}
    env.update(extra)
    return env


def run_bridge(stdin: bytes, env: dict[str, str], *args: str, timeout: float = 30.0):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], input=stdin, env=env,
                          capture_output=True, timeout=timeout)
    return proc, time.monotonic() - start


def one_json_line(stdout: bytes) -> dict:
    text = stdout.decode("utf-8")
    assert text.endswith("\n") and text.count("\n") == 1, f"not one line: {text!r}"
    return json.loads(text)


# ------------------------------------------------------------------------------ (a) live server

def test_fixture_is_self_consistent():
    """The fixture is what the tactic sends: context = source up to (line, column in code points)."""
    assert _validate(REQUEST) is None
    lines = REQUEST["source"].split("\n")
    line, col = REQUEST["position"]["line"], REQUEST["position"]["column"]
    assert REQUEST["context"] == "\n".join(lines[: line - 1] + [lines[line - 1][:col]])
    assert lines[line - 1][col:].startswith('llmstep "exact"')
    # the column counts code points, not bytes: the line has multi-byte characters before the call
    assert len(lines[line - 1][:col].encode("utf-8")) > col


def test_posts_the_request_unchanged_and_prints_the_reply(server):
    proc, _ = run_bridge(REQUEST_BYTES, _clean_env(LEANSTEP_URL=server.url))
    assert proc.returncode == 0, proc.stderr
    assert one_json_line(proc.stdout) == SUGGEST_REPLY
    assert len(server.seen) == 1
    seen = server.seen[0]
    assert seen["path"] == "/suggest"
    assert seen["headers"]["Content-Type"] == "application/json"
    assert json.loads(seen["body"]) == REQUEST
    assert "Authorization" not in seen["headers"]


def test_unicode_survives_a_non_utf8_locale(server):
    proc, _ = run_bridge(REQUEST_BYTES, _clean_env(LEANSTEP_URL=server.url, LC_ALL="C", LANG="C",
                                                   PYTHONIOENCODING="ascii"))
    assert proc.returncode == 0, proc.stderr
    reply = one_json_line(proc.stdout)
    assert reply["suggestions"][0]["text"] == "exact ⟨h.2, h.1⟩"
    assert json.loads(server.seen[0]["body"])["tactic_state"] == REQUEST["tactic_state"]


# ------------------------------------------------------------------------------ (b) no server

def test_unreachable_server_fails_fast_with_one_json_line(closed_port):
    proc, elapsed = run_bridge(REQUEST_BYTES, _clean_env(LEANSTEP_URL=f"http://127.0.0.1:{closed_port}"),
                               "--timeout", "20")
    assert proc.returncode == bridge.EXIT_UNREACHABLE
    reply = one_json_line(proc.stdout)
    assert reply["kind"] == "unreachable"
    assert "not reachable" in reply["error"] and str(closed_port) in reply["error"]
    assert elapsed < 10, f"took {elapsed:.1f} s against a 20 s timeout: it waited instead of failing fast"


# ------------------------------------------------------------------------------ (c) slow server

def test_slow_server_gives_a_timeout_error(server):
    server.mode = "slow"  # answers after 3 s
    proc, elapsed = run_bridge(REQUEST_BYTES, _clean_env(LEANSTEP_URL=server.url), "--timeout", "0.5")
    assert proc.returncode == bridge.EXIT_TIMEOUT
    reply = one_json_line(proc.stdout)
    assert reply["kind"] == "timeout" and "0.5 s" in reply["error"]
    assert elapsed < 2.9, "the bridge waited for the slow server instead of timing out"


def test_timeout_from_the_environment(server):
    server.mode = "slow"
    proc, _ = run_bridge(REQUEST_BYTES, _clean_env(LEANSTEP_URL=server.url, LEANSTEP_TIMEOUT="0.4"))
    assert proc.returncode == bridge.EXIT_TIMEOUT
    assert "0.4 s" in one_json_line(proc.stdout)["error"]


def test_a_reply_trickling_in_still_ends_at_the_timeout(server):
    """One byte every 0.2 s: no socket read ever waits 1 s, so only the bridge's own deadline can stop it."""
    server.mode = "trickle"
    proc, elapsed = run_bridge(REQUEST_BYTES, _clean_env(LEANSTEP_URL=server.url), "--timeout", "1")
    assert proc.returncode == bridge.EXIT_TIMEOUT
    reply = one_json_line(proc.stdout)
    assert reply["kind"] == "timeout" and "within 1 s" in reply["error"]
    assert elapsed < 2.5, f"the bridge ran {elapsed:.1f} s on a 1 s budget"


# ------------------------------------------------------------------------------ another route

def test_another_route_is_posted_to_and_its_reply_passed_on(server):
    request = {"goal": "⊢ True", "source": "theorem t : True := by\n  llmqed\n"}
    proc, _ = run_bridge(json.dumps(request).encode(), _clean_env(LEANSTEP_URL=server.url), "--route", "/prove")
    assert proc.returncode == 0, proc.stdout
    assert one_json_line(proc.stdout) == PROVE_REPLY
    assert server.seen[0]["path"] == "/prove" and json.loads(server.seen[0]["body"]) == request


@pytest.mark.parametrize("route", ["prove", "/prove?x=1", "/../admin", "//evil.example/x", "/Prove"])
def test_a_route_that_is_not_a_plain_path_is_refused(server, route):
    proc, _ = run_bridge(REQUEST_BYTES, _clean_env(LEANSTEP_URL=server.url), "--route", route)
    assert proc.returncode == bridge.EXIT_BAD_REQUEST
    assert "--route" in one_json_line(proc.stdout)["error"]
    assert server.seen == []


# ------------------------------------------------------------------------------ (d) URL precedence

def test_leanstep_url_wins_over_llmstep_host_port(server, closed_port):
    env = _clean_env(LEANSTEP_URL=server.url + "/", LLMSTEP_HOST="127.0.0.1", LLMSTEP_PORT=str(closed_port))
    proc, _ = run_bridge(REQUEST_BYTES, env)
    assert proc.returncode == 0, proc.stdout
    assert len(server.seen) == 1 and server.seen[0]["path"] == "/suggest"


def test_llmstep_host_and_port_are_honoured(server):
    proc, _ = run_bridge(REQUEST_BYTES, _clean_env(LLMSTEP_HOST="127.0.0.1", LLMSTEP_PORT=str(server.port)))
    assert proc.returncode == 0, proc.stdout
    assert len(server.seen) == 1


def test_llmstep_host_may_be_a_full_url(server):
    proc, _ = run_bridge(REQUEST_BYTES, _clean_env(LLMSTEP_HOST=server.url))
    assert proc.returncode == 0, proc.stdout
    assert len(server.seen) == 1


def test_url_resolution_order():
    assert bridge.server_url({}) == "http://localhost:6000"
    assert bridge.server_url({"LLMSTEP_PORT": "7001"}) == "http://localhost:7001"
    assert bridge.server_url({"LLMSTEP_HOST": "gpu-box"}) == "http://gpu-box:6000"
    assert bridge.server_url({"LLMSTEP_HOST": "https://x.example/"}) == "https://x.example"
    assert bridge.server_url({"LEANSTEP_URL": "http://a:1/", "LLMSTEP_HOST": "b", "LLMSTEP_PORT": "2"}) == "http://a:1"
    assert bridge.timeout_seconds(None, {}) == bridge.DEFAULT_TIMEOUT_S
    assert bridge.timeout_seconds(None, {"LEANSTEP_TIMEOUT": "2.5"}) == 2.5
    assert bridge.timeout_seconds("1", {"LEANSTEP_TIMEOUT": "2.5"}) == 1.0
    assert bridge.timeout_seconds(None, {"LEANSTEP_TIMEOUT": " "}) == bridge.DEFAULT_TIMEOUT_S


@pytest.mark.parametrize("args, env, source", [
    (("--timeout", "0"), {}, "--timeout"),
    (("--timeout", "-3"), {}, "--timeout"),
    (("--timeout", "nan"), {}, "--timeout"),
    (("--timeout", "inf"), {}, "--timeout"),
    (("--timeout", "0.000000"), {}, "--timeout"),  # what the tactic sends for llmstep.timeout = 0
    ((), {"LEANSTEP_TIMEOUT": "0"}, "LEANSTEP_TIMEOUT"),
    ((), {"LEANSTEP_TIMEOUT": "soon"}, "LEANSTEP_TIMEOUT"),
])
def test_a_timeout_that_is_no_budget_is_refused_not_replaced(server, args, env, source):
    """Zero once meant "10 s" here while the tactic killed the bridge after 3 s: every call timed out."""
    proc, _ = run_bridge(REQUEST_BYTES, _clean_env(LEANSTEP_URL=server.url, **env), *args)
    assert proc.returncode == bridge.EXIT_BAD_REQUEST
    reply = one_json_line(proc.stdout)
    assert reply["kind"] == "bad_request"
    assert reply["error"].startswith(f"{source} must be a positive number of seconds")
    assert "llmstep.timeout" in reply["error"]
    assert server.seen == []


# ------------------------------------------------------------------------------ (e) malformed stdin

@pytest.mark.parametrize("stdin, needle", [
    (b"", "malformed JSON"),
    (b"tactic_state: x", "malformed JSON"),
    (b"[1, 2]", "one JSON object"),
    (b'{"prefix": "simp"}', "tactic_state"),
    (b'{"tactic_state": 3}', "tactic_state"),
])
def test_malformed_stdin_is_a_clean_error_and_nothing_is_sent(server, stdin, needle):
    proc, _ = run_bridge(stdin, _clean_env(LEANSTEP_URL=server.url))
    assert proc.returncode == bridge.EXIT_BAD_REQUEST
    reply = one_json_line(proc.stdout)
    assert reply["kind"] == "bad_request" and needle in reply["error"]
    assert server.seen == []


# ------------------------------------------------------------------------------ (f) Authorization

def test_api_key_is_sent_as_bearer_token(server):
    proc, _ = run_bridge(REQUEST_BYTES, _clean_env(LEANSTEP_URL=server.url, LEANSTEP_API_KEY="s3cret"))
    assert proc.returncode == 0, proc.stdout
    assert server.seen[0]["headers"]["Authorization"] == "Bearer s3cret"
    assert b"s3cret" not in proc.stdout  # the key is never echoed


# ------------------------------------------------------------------------------ bad replies

def test_http_error_carries_the_servers_message(server):
    server.mode = "http_error"
    proc, _ = run_bridge(REQUEST_BYTES, _clean_env(LEANSTEP_URL=server.url))
    assert proc.returncode == bridge.EXIT_BAD_REPLY
    reply = one_json_line(proc.stdout)
    assert reply["kind"] == "http"
    assert "503" in reply["error"] and "model exploded" in reply["error"]


def test_validation_error_names_the_field(server):
    request = dict(REQUEST, position={"line": 0, "column": 3})
    proc, _ = run_bridge(json.dumps(request).encode(), _clean_env(LEANSTEP_URL=server.url))
    assert proc.returncode == bridge.EXIT_BAD_REPLY
    assert "position" in one_json_line(proc.stdout)["error"]


@pytest.mark.parametrize("mode", ["not_json", "nan"])
def test_reply_that_lean_cannot_parse_is_an_error(server, mode):
    server.mode = mode
    proc, _ = run_bridge(REQUEST_BYTES, _clean_env(LEANSTEP_URL=server.url))
    assert proc.returncode == bridge.EXIT_BAD_REPLY
    reply = one_json_line(proc.stdout)
    assert reply["kind"] == "bad_reply"

    def reject(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    json.loads(proc.stdout, parse_constant=reject)  # what reaches Lean is always strict JSON
