"""The ``leanstep`` command as users run it: ``serve``'s clear start-up errors, SIGTERM leaving no REPL
behind, ``generate``'s raw candidates, and the settings every command that runs a model shares."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import psutil
import pytest
import requests

from conftest import ROOT
from leanstep import config
from leanstep.cli import build_parser
from server_fixtures import sim_repls, spawn_server, wait_for_idle_repls


def leanstep(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEANSTEP_")}
    return subprocess.run([sys.executable, "-m", "leanstep", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=ROOT, **kwargs)


def test_serve_without_a_workspace_says_what_to_pass():
    result = leanstep("serve", "--no-model")
    assert result.returncode == 2
    assert "--workspace" in result.stderr and "--repl sim" in result.stderr


def test_serve_with_a_folder_that_is_not_a_lake_project_says_so(tmp_path):
    result = leanstep("serve", "--no-model", "--workspace", str(tmp_path))
    assert result.returncode == 2
    assert "not a Lake project" in result.stderr


def test_a_bad_flag_value_names_the_flag():
    result = leanstep("serve", "--no-model", "--repl", "sim", "--max-repls", "0")
    assert result.returncode == 2
    assert "--max-repls must be positive" in result.stderr


def test_a_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = leanstep("serve", "--no-model", "--repl", "sim", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr  # before any REPL starts, so nothing else is logged
    assert f"127.0.0.1:{port}" in result.stderr and "already in use" in result.stderr
    assert "--port" in result.stderr


def test_a_bad_origin_names_the_flag():
    result = leanstep("serve", "--no-model", "--repl", "sim", "--allow-origin", "https://app.example/")
    assert result.returncode == 2
    assert "--allow-origin" in result.stderr and "'https://app.example/'" in result.stderr


MODEL_COMMANDS = [["serve"], ["mcp"], ["prove", "Demo.lean"], ["eval", "problems.jsonl"]]


@pytest.mark.parametrize("command", MODEL_COMMANDS, ids=lambda c: c[0])
def test_no_model_means_the_tactic_list_on_every_command_that_runs_a_model(command):
    parser = build_parser()
    for given, environ in ((["--backend", "openai"], {}), ([], {"LEANSTEP_BACKEND": "vllm"})):
        assert config.load(parser.parse_args([*command, *given]), environ=environ).backend != "hint"
        args = parser.parse_args([*command, *given, "--no-model"])
        assert config.load(args, environ=environ).backend == "hint"


@pytest.mark.parametrize("command", MODEL_COMMANDS[1:], ids=lambda c: c[0])
def test_the_commands_without_http_take_the_proving_and_trust_settings(command):
    args = build_parser().parse_args([*command, "--prove-timeout", "7", "--prove-samples", "3", "--trust", "lenient",
                                      "--session-ttl", "60"])
    loaded = config.load(args, environ={})
    assert (loaded.prove_timeout, loaded.prove_samples, loaded.trust.value, loaded.session_ttl) == \
        (7.0, 3, "lenient", 60.0)


def test_generate_prints_the_raw_candidates_one_json_line_each():
    result = leanstep("generate", "--backend", "hint", "--hint-tactics", "simp;;omega;;simp_all",
                      "--state", "⊢ p", "--prefix", "sim")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    # the prefix filters, the model's order is kept, and nothing was checked (no status)
    assert [line["text"] for line in lines] == ["simp", "simp_all"]
    assert all(set(line) == {"text", "score"} for line in lines)


def test_sigterm_stops_the_server_and_every_repl(tmp_path):
    log_path = tmp_path / "serve.log"
    proc, url = spawn_server(log_path, "--repl", "sim", "--no-model", "--max-repls", "2",
                             "--warm-headers", "import A;;import B")
    try:
        wait_for_idle_repls(proc, url, 2, log_path)
        code = "import A\n\ntheorem t : 1 + 1 = 2 := by norm_num"
        reply = requests.post(url + "/verify", json={"codes": [{"custom_id": "x", "proof": code}]}, timeout=30).json()
        assert reply["results"][0]["verdict"] == "valid"
        # with no model, /suggest and llmstep's route answer from the fixed tactic list, checked
        context = "import A\n\ntheorem u : 2 + 2 = 4 := by\n  "
        suggested = requests.post(url + "/suggest", json={"tactic_state": "⊢ 2 + 2 = 4", "prefix": "",
                                                           "context": context}, timeout=60).json()
        assert any(s["status"] == "closes_goal" for s in suggested["suggestions"]), suggested
        plain = requests.post(url + "/", json={"tactic_state": "⊢ 2 + 2 = 4", "prefix": "norm", "context": context},
                              timeout=60).json()
        assert plain["suggestions"] == ["norm_num"]
        repls = sim_repls(psutil.Process(proc.pid))
        assert len(repls) >= 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    gone, alive = psutil.wait_procs(repls, timeout=10)
    assert not alive, f"REPLs outlived the server: {[p.pid for p in alive]}"
    assert "all REPLs stopped" in log_path.read_text()
