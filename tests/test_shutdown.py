"""SIGTERM on `leanstep serve`: prompt, and no answer lost.

The server stops listening at once, lets the requests in flight run for
``--shutdown-grace``, then kills the REPLs: a proof still running is answered
``error`` / "server shutting down", a proof that finished in the grace is
answered normally, both answers reach their clients, and the process is gone
within the grace plus two seconds with no REPL left behind.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import psutil
import pytest
import requests

from server_fixtures import sim_repls, spawn_server, wait_until

GRACE_S = 3.0
HANG = "theorem h : True := by\n  sim_hang"
QUICK = "theorem q : True := by\n  -- sim: delay 1\n  trivial"  # in flight at SIGTERM, done within the grace


@pytest.fixture
def server(tmp_path):
    log_path = tmp_path / "serve.log"
    proc, url = spawn_server(log_path, "--repl", "sim", "--no-model", "--max-repls", "2",
                             "--shutdown-grace", str(GRACE_S))

    def up() -> bool:
        assert proc.poll() is None, log_path.read_text()
        try:
            return requests.get(url + "/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(up, 60, "the server did not come up")
        yield proc, url, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def busy_workers(url: str) -> int:
    try:
        return requests.get(url + "/health", timeout=2).json()["pool"]["workers"]["busy"]
    except (requests.RequestException, ValueError, KeyError):
        return -1


def test_sigterm_answers_every_request_in_flight_and_exits_within_the_grace(server):
    proc, url, log_path = server
    answers: dict[str, requests.Response] = {}

    def send(name: str, code: str) -> None:
        answers[name] = requests.post(url + "/verify", json={"codes": [{"custom_id": name, "proof": code}],
                                                             "timeout": 60}, timeout=60)

    clients = [threading.Thread(target=send, args=(name, code)) for name, code in (("hang", HANG), ("quick", QUICK))]
    for client in clients:
        client.start()
    root = psutil.Process(proc.pid)

    def both_running() -> bool:
        simulators = [p for p in sim_repls(root) if p.name().startswith("python")]  # not their sandbox wrappers
        return busy_workers(url) == 2 and len(simulators) == 2

    wait_until(both_running, 30, "both proofs should be running on the two REPLs")
    repls = sim_repls(root)

    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()

    def refused() -> bool:
        try:
            requests.get(url + "/health", timeout=1)
        except requests.ConnectionError:
            return True
        return False

    wait_until(refused, GRACE_S, "a new connection was accepted during the shutdown")
    assert proc.wait(GRACE_S + 10) == 0
    elapsed = time.monotonic() - sent
    for client in clients:
        client.join(10)

    assert elapsed < GRACE_S + 2, f"the server took {elapsed:.1f} s to stop"
    hang = answers["hang"].json()["results"][0]
    assert hang["verdict"] == "error" and hang["error"].startswith("server shutting down")
    assert answers["quick"].json()["results"][0]["verdict"] == "valid"
    gone, alive = psutil.wait_procs(repls, timeout=5)
    assert not alive, f"REPLs outlived the server: {[p.pid for p in alive]}"
    log = log_path.read_text()
    assert "Bad file descriptor" not in log and "all REPLs stopped" in log


def test_sigterm_answers_an_mcp_tool_call_in_flight(server):
    proc, url, log_path = server
    answers: dict[str, requests.Response] = {}
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "verify", "arguments": {"code": HANG}}}

    def send() -> None:
        answers["mcp"] = requests.post(url + "/mcp", json=call, timeout=60, headers={
            "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"})

    client = threading.Thread(target=send)
    client.start()
    root = psutil.Process(proc.pid)
    wait_until(lambda: busy_workers(url) == 1, 30, "the tool call should be running on a REPL")
    repls = sim_repls(root)

    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    assert proc.wait(GRACE_S + 10) == 0
    elapsed = time.monotonic() - sent
    client.join(10)

    assert elapsed < GRACE_S + 2, f"the server took {elapsed:.1f} s to stop"
    [message] = [json.loads(line[5:]) for line in answers["mcp"].text.splitlines() if line.startswith("data:")]
    result = message["result"]["structuredContent"]
    assert result["verdict"] == "error" and result["error"].startswith("server shutting down")
    _gone, alive = psutil.wait_procs(repls, timeout=5)
    assert not alive, f"REPLs outlived the server: {[p.pid for p in alive]}"
    assert "all REPLs stopped" in log_path.read_text()
