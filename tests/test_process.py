"""One REPL process: framing, timeouts, crashes and garbage end as typed errors, never a hang or a zombie."""

from __future__ import annotations

import sys
import time

import psutil
import pytest

from conftest import SIM_ARGV
from leanstep.repl.process import LaunchSpec, ReplLost, ReplProcess, ReplTimeout
from leanstep.repl.protocol import CommandRequest, CommandResponse, ProtocolError, TacticRequest, TacticResponse


@pytest.fixture
def repl(sim_env, tmp_path):
    with ReplProcess(LaunchSpec(SIM_ARGV, cwd=tmp_path, env=sim_env), name="test-repl") as process:
        yield process


def assert_gone(pid: int) -> None:
    """The process is reaped: neither running nor a zombie."""
    try:
        status = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return
    pytest.fail(f"process {pid} still exists with status {status}")


def test_commands_chain_envs_and_tactics_step_proof_states(repl):
    first = repl.send(CommandRequest("def f := 2"), timeout=10)
    assert isinstance(first, CommandResponse) and first.env == 0
    second = repl.send(CommandRequest("theorem t : 2 + 2 = 4 := by sorry", env=first.env), timeout=10)
    assert second.env == 1 and second.sorries and second.sorries[0].proof_state == 0
    step = repl.send(TacticRequest("norm_num", second.sorries[0].proof_state), timeout=10)
    assert isinstance(step, TacticResponse) and step.completed


def test_a_hang_ends_in_a_timeout_and_the_process_group_is_killed(repl):
    pid = repl.pid
    started = time.monotonic()
    with pytest.raises(ReplTimeout) as info:
        repl.send(CommandRequest("-- sim: hang\ntheorem t : True := trivial"), timeout=1.0)
    assert time.monotonic() - started < 5
    assert "1 s" in str(info.value) and "test-repl" in str(info.value)
    assert not repl.alive
    assert_gone(pid)


def test_a_crash_is_process_lost_with_the_stderr_tail(repl):
    pid = repl.pid
    with pytest.raises(ReplLost) as info:
        repl.send(CommandRequest("-- sim: crash\ndef f := 1"), timeout=10)
    assert info.value.returncode not in (None, 0)
    assert info.value.stderr_tail.strip(), "the REPL's last words should be attached"
    assert_gone(pid)


def test_garbage_output_is_process_lost_not_a_result(repl):
    with pytest.raises(ReplLost, match="not a REPL response"):
        repl.send(CommandRequest("-- sim: garbage\ndef f := 1"), timeout=10)
    assert not repl.alive


def test_a_single_line_response_over_one_megabyte_is_decoded(repl):
    size = 3 * 1024 * 1024
    response = repl.send(CommandRequest(f"-- sim: huge {size}\ndef f := 1"), timeout=30)
    assert isinstance(response, CommandResponse)
    assert sum(len(m.data) for m in response.messages) >= size
    assert repl.send(CommandRequest("def g := 1"), timeout=10).env == response.env + 1


def test_an_invalid_request_is_refused_before_sending_and_the_repl_lives_on(repl):
    with pytest.raises(ProtocolError):
        repl.send(CommandRequest("def f := 1", env=-1), timeout=5)
    assert repl.send(CommandRequest("def f := 1"), timeout=10).env == 0


def test_early_exit_is_process_lost(tmp_path):
    with ReplProcess([sys.executable, "-c", "import sys; sys.stderr.write('bye'); sys.exit(3)"]) as process:
        with pytest.raises(ReplLost) as info:
            process.send(CommandRequest("def f := 1"), timeout=5)
    assert "bye" in info.value.stderr_tail or info.value.returncode == 3


def test_missing_binary_is_a_clear_error():
    with pytest.raises(ReplLost, match="cannot start"):
        ReplProcess(["/nonexistent/repl"], name="ghost").start()


def test_close_reaps_the_process_and_rss_is_reported(repl):
    repl.send(CommandRequest("def f := 1"), timeout=10)  # the REPL is up and has answered
    assert repl.rss_bytes() > 1_000_000
    pid = repl.pid
    repl.close()
    assert_gone(pid)
    assert repl.rss_bytes() == 0
