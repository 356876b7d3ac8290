"""The pool's own limits, tried the way a hostile client would: slow header imports, REPL restarts, shutdown.

Every header import is bounded by ``import_timeout`` (a worker's first import, a
second header imported into an idle worker, a background spare) and answered
``timeout`` naming the import; REPL restarts beyond ``max_restarts_per_minute``
are deferred, never lost; ``shutdown`` kills a REPL in the middle of a proof and
its request is answered at once.
"""

from __future__ import annotations

import threading
import time

import psutil
import pytest

from conftest import SIM_ARGV
from server_fixtures import sim_pool, wait_until

from leanstep.check.verify import ERROR, TIMEOUT, VALID, Snippet, Verifier, VerifyOptions
from leanstep.repl.pool import HeaderImportTimeout, PoolSettings, Priority, ReplPool, RestartLimited
from leanstep.repl.process import LaunchSpec

SLOW_HEADER = "import Mathlib"
HANG = "theorem h : True := by\n  sim_hang"
QUICK = "theorem q : 1 + 1 = 2 := by norm_num"


@pytest.fixture
def slow_imports(monkeypatch):
    """Every REPL takes 30 s per header import (far past the 1 s import timeout the tests set)."""
    monkeypatch.setenv("LEANSTEP_SIM_IMPORT_SECONDS", "30")


def alive(pids):
    running = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
        except psutil.NoSuchProcess:
            pass
    return running


# --------------------------------------------------------------------------- header imports


def test_a_first_import_past_the_import_timeout_is_a_timeout_that_names_the_import(slow_imports):
    with sim_pool(import_timeout=1.0) as pool, Verifier(pool) as verifier:
        result = verifier.verify(Snippet("slow", f"{SLOW_HEADER}\n{QUICK}"), VerifyOptions(timeout=10))
        assert result.verdict == TIMEOUT
        assert "header import timed out in 1 seconds" in result.reasons[0].message
        assert "--import-timeout" in result.reasons[0].message and "could not start a REPL" not in result.reasons[0].message
        assert pool.stats().counters.start_failures == 1


def test_a_second_header_imported_into_an_idle_worker_is_bounded_and_not_retried(slow_imports):
    with sim_pool(max_repls=1, import_timeout=1.0) as pool, Verifier(pool) as verifier:
        assert verifier.verify(Snippet("plain", QUICK), VerifyOptions(timeout=10)).verdict == VALID  # no import
        result = verifier.verify(Snippet("slow", f"{SLOW_HEADER}\n{QUICK}"), VerifyOptions(timeout=10))
        assert result.verdict == TIMEOUT and "--import-timeout" in result.reasons[0].message
        assert pool.wait_warm(20)
        # the killed REPL was replaced by one for what it held, not by another 30 s try at the slow header
        assert pool.stats().workers_by_header == {"": 1}
        assert verifier.verify(Snippet("after", QUICK), VerifyOptions(timeout=10)).verdict == VALID


def test_a_background_spare_import_is_bounded(slow_imports):
    with sim_pool(import_timeout=1.0, warm_headers=(SLOW_HEADER,)) as pool:
        assert pool.wait_warm(20), "the spare's import outlived the import timeout"
        stats = pool.stats()
        assert stats.counters.start_failures == 1 and stats.counters.started == 0
        assert sum(stats.workers_by_state.values()) == 0


def test_the_pool_raises_a_header_import_timeout_with_the_limit(slow_imports):
    with sim_pool(import_timeout=1.0) as pool:
        with pytest.raises(HeaderImportTimeout) as caught, pool.acquire(SLOW_HEADER):
            pass
        assert caught.value.limit == 1.0 and caught.value.header == SLOW_HEADER


# --------------------------------------------------------------------------- the restart budget


def hang_repeatedly(verifier, times):
    return [verifier.verify(Snippet(f"hang{i}", HANG), VerifyOptions(timeout=0.3, use_cache=False))
            for i in range(times)]


def test_timeouts_cannot_restart_repls_faster_than_the_budget():
    with sim_pool(max_repls=1, max_restarts_per_minute=2, queue_wait=5) as pool, Verifier(pool) as verifier:
        results = hang_repeatedly(verifier, 10)
        counters = pool.stats().counters
        assert counters.started <= 1 + 2, "each hanging proof bought a REPL restart"
        assert [r.verdict for r in results[:3]] == [TIMEOUT] * 3
        refused = results[3:]
        assert all(r.verdict == ERROR for r in refused)
        assert all("--max-restarts-per-minute" in r.reasons[0].message for r in refused)
        assert counters.restarts_deferred >= 1


def test_a_deferred_replacement_starts_when_the_budget_frees_so_the_pool_refills(sim_env):
    settings = PoolSettings(max_repls=2, queue_wait=5, max_restarts_per_minute=1, restart_window_s=2.0)
    with ReplPool(settings, lambda workdir: LaunchSpec(SIM_ARGV, cwd=workdir, env=sim_env)) as pool, \
            Verifier(pool) as verifier:
        verifier.verify_batch([Snippet("a", QUICK), Snippet("b", "theorem b : 2 = 2 := rfl")],
                              VerifyOptions(timeout=10, use_cache=False))
        hang_repeatedly(verifier, 2)  # the first replacement is the budget's one; the second waits for it
        assert pool.stats().counters.restarts_deferred >= 1
        wait_until(lambda: pool.stats().workers_by_state["idle"] == 2, timeout=20)


def test_an_honest_workload_with_some_timeouts_is_not_held_back():
    with sim_pool() as pool, Verifier(pool) as verifier:  # the default budget: 6 per minute for 2 REPLs
        codes = [Snippet(f"ok{i}", f"theorem t{i} : {i} + 1 = {i + 1} := by norm_num") for i in range(20)]
        codes += [Snippet("hang1", HANG), Snippet("hang2", HANG + "\n")]
        results = verifier.verify_batch(codes, VerifyOptions(timeout=0.5))
        assert [r.verdict for r in results] == [VALID] * 20 + [TIMEOUT, TIMEOUT]
        assert pool.stats().counters.restarts_deferred == 0 and pool.stats().counters.restart_limited == 0


def test_a_request_that_needs_a_new_repl_gets_restart_limited_at_once_when_the_wait_would_outlast_it():
    with sim_pool(max_repls=1, max_restarts_per_minute=1, headers_per_repl=1) as pool:
        with pool.acquire("import A"):
            pass
        with pool.acquire("import B"):  # the REPL is full of headers: replaced, the budget's one restart
            pass
        started = time.monotonic()
        with pytest.raises(RestartLimited, match="--max-restarts-per-minute"), \
                pool.acquire("import C", Priority.INTERACTIVE, wait=5):
            pass
        assert time.monotonic() - started < 5, "it waited out its whole wait for a start that could not come"


# --------------------------------------------------------------------------- shutdown


def test_shutdown_kills_a_repl_mid_proof_and_its_request_is_answered_shutting_down():
    pool = sim_pool()
    pool.start()
    verifier = Verifier(pool)
    assert verifier.verify(Snippet("warm", QUICK), VerifyOptions(timeout=10)).verdict == VALID
    results = {}
    thread = threading.Thread(target=lambda: results.update(
        hang=verifier.verify(Snippet("hang", HANG), VerifyOptions(timeout=300))))
    thread.start()
    wait_until(lambda: pool.stats().workers_by_state["busy"] == 1 and pool.pids())
    pids = pool.pids()
    pool.shutdown(timeout=2)
    thread.join(5)
    verifier.close()
    assert not thread.is_alive()
    assert results["hang"].verdict == ERROR and results["hang"].reasons[0].message.startswith("server shutting down")
    wait_until(lambda: not alive(pids), timeout=5)
