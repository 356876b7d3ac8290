"""Checked Lean code is arbitrary code: escape attempts from inside a worker fail for real.

The simulated REPL is told to write outside its directory, open a network
connection, start many processes and write a big file; each attempt runs
inside a pooled worker exactly as checked code would.
"""

from __future__ import annotations

import re
import socket
import uuid

import pytest

from conftest import ROOT
from leanstep.config import load
from leanstep.repl.launch import make_pool
from leanstep.repl.protocol import CommandRequest
from leanstep.repl.sandbox import bwrap_usable, describe

MODES = ["bwrap", "rlimit"]


def probe(mode: str, directive: str, **settings) -> str:
    """Run one directive in a fresh sandboxed worker and return the simulator's report."""
    if mode == "bwrap" and not bwrap_usable():
        pytest.skip("bubblewrap is not installed or cannot create namespaces here (apt-get install bubblewrap)")
    config = load({"repl": "sim", "max_repls": 1, "sandbox": mode, **settings}, environ={})
    with make_pool(config) as pool, pool.acquire("") as worker:
        response = worker.run(CommandRequest(f"-- sim: {directive}\ndef probe := 1", env=worker.header_env), 30)
    reports = [m.data for m in response.messages if m.data.startswith("sim ")]
    assert reports, f"no report from the simulator: {response}"
    return reports[0]


def test_writing_outside_the_worker_directory_fails():
    target = ROOT / f".escape-{uuid.uuid4().hex}"  # a directory the server itself can write to
    try:
        report = probe("bwrap", f"write {target}")
        assert "failed" in report
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_the_fallback_says_that_it_does_not_prevent_writes():
    # Without bubblewrap only file permissions stop a write; the log line must not promise more.
    assert "prevented only by file permissions" in describe("rlimit")


@pytest.mark.parametrize("mode", MODES)
def test_writing_inside_the_worker_directory_works(mode):
    assert probe(mode, "write inside.txt").endswith(": ok")


@pytest.mark.parametrize("mode", MODES)
def test_no_network_connection_reaches_the_host(mode):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        report = probe(mode, f"connect 127.0.0.1:{port}")
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert "failed" in report


@pytest.mark.parametrize("mode", MODES)
def test_process_count_is_limited(mode):
    report = probe(mode, "fork 200", max_procs=32)
    started = int(re.search(r"started (\d+)", report).group(1))
    assert started < 200


@pytest.mark.parametrize("mode", MODES)
def test_file_size_is_limited(mode):
    report = probe(mode, "bigfile 64", max_file_mb=8)
    assert "failed" in report


def test_every_mode_is_described_for_the_log():
    for mode in ("bwrap", "rlimit", "none"):
        assert describe(mode)


def test_sandboxed_replacements_started_in_the_background_survive():
    # bwrap --die-with-parent kills a REPL when the *thread* that started it exits; the pool
    # starts every REPL from one long-lived thread, so recycled workers keep running.
    if not bwrap_usable():
        pytest.skip("bubblewrap is not installed or cannot create namespaces here (apt-get install bubblewrap)")
    config = load({"repl": "sim", "max_repls": 1, "sandbox": "bwrap", "max_uses": 2}, environ={})
    with make_pool(config) as pool:
        for i in range(6):
            with pool.acquire("") as worker:
                response = worker.run(CommandRequest(f"def x{i} := {i}", env=worker.header_env), 30)
                assert not response.errors
            pool.wait_warm(30)
        counters = pool.stats().counters
    assert counters.recycled_uses >= 2 and counters.lost == 0


def test_the_sandbox_works_when_the_repl_lives_under_tmp(tmp_path):
    # Checkouts, virtualenvs and Lean toolchains may live under /tmp; the sandbox must not hide them.
    if not bwrap_usable():
        pytest.skip("bubblewrap is not installed or cannot create namespaces here (apt-get install bubblewrap)")
    import sys

    from leanstep.repl.process import ReplProcess
    from leanstep.repl.sandbox import SandboxPolicy, sandboxed

    python = tmp_path / "bin" / "python-under-tmp"
    python.parent.mkdir()
    python.symlink_to(sys.executable)
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {"PYTHONPATH": str(ROOT / "python"), "PATH": "/usr/bin:/bin"}
    spec = sandboxed([str(python), "-m", "leanstep.sim"], workdir=workdir, cwd=workdir, env=env,
                     policy=SandboxPolicy("bwrap"), mode="bwrap")
    with ReplProcess(spec, name="tmp-repl") as repl:
        assert repl.send(CommandRequest("def f := 1"), timeout=30).env == 0
