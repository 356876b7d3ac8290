"""The warm pool: header affinity, LRU eviction, replacement, recycling, priorities, clean shutdown."""

from __future__ import annotations

import threading
import time

import psutil
import pytest

from server_fixtures import sim_pool, wait_until

from leanstep.repl.pool import PoolOverloaded, Priority
from leanstep.repl.process import ReplLost, ReplTimeout
from leanstep.repl.protocol import CommandRequest, CommandResponse

HEADER_A = "import Mathlib.Tactic"
HEADER_B = "import Mathlib.Data.Real.Basic"


@pytest.fixture
def pool():
    with sim_pool() as pool:
        yield pool


def run(pool, header, cmd, timeout=10.0, priority=Priority.BATCH):
    with pool.acquire(header, priority) as worker:
        return worker.process.pid, worker.run(CommandRequest(cmd, env=worker.header_env), timeout)


def test_header_affinity_reuses_the_warm_worker(pool):
    pid1, first = run(pool, HEADER_A, "theorem t : 1 + 1 = 2 := by norm_num")
    pid2, second = run(pool, HEADER_A, "theorem t : 2 + 2 = 4 := by norm_num")
    assert pid1 == pid2
    assert isinstance(second, CommandResponse) and not second.errors
    assert pool.stats().counters.started == 1


def test_snippets_on_one_worker_do_not_see_each_other(pool):
    run(pool, "", "theorem shared : True := trivial")
    _, again = run(pool, "", "theorem shared : True := trivial")
    assert not again.errors, "each body must run on the header env, not on the previous snippet"


def test_a_new_header_is_imported_beside_the_others_in_an_idle_worker_of_its_group(pool):
    pid_a, _ = run(pool, HEADER_A, "def a := 1")
    pid_b, _ = run(pool, HEADER_B, "def b := 1")  # the first 4 headers are one group: no second REPL
    pid_c, response = run(pool, "import Lean", "def c := 1")
    assert pid_a == pid_b == pid_c and not response.errors
    stats = pool.stats()
    assert stats.counters.started == 1 and stats.counters.header_loads == 2 and stats.counters.evicted == 0
    assert stats.workers_by_header == {HEADER_A: 1, HEADER_B: 1, "import Lean": 1}
    pid_b_again, _ = run(pool, HEADER_B, "def b2 := 1")  # B is still loaded: no import, no restart
    assert pid_b_again == pid_b and pool.stats().counters.header_loads == 2


def test_a_header_of_another_group_starts_its_own_worker_and_then_takes_the_lru_one():
    with sim_pool(headers_per_repl=2) as pool:
        pid_a, _ = run(pool, HEADER_A, "def a := 1")
        run(pool, HEADER_B, "def b := 1")  # group 0: beside A
        pid_c, _ = run(pool, "import Lean", "def c := 1")  # group 1: a REPL of its own while the pool fills
        assert pid_c != pid_a and pool.stats().counters.started == 2
        run(pool, "import Lean", "def c2 := 1")  # the group-0 REPL is now the least recently used
        pid_d, _ = run(pool, "import Aesop", "def d := 1")  # group 1 too: imported beside import Lean
        assert pid_d == pid_c
        pid_e, _ = run(pool, "import Qq", "def e := 1")  # group 2, pool full: replaces the LRU REPL (A, B)
        stats = pool.stats()
        assert pid_e not in (pid_a, pid_c) and stats.counters.evicted == 1
        assert set(stats.workers_by_header) == {"import Lean", "import Aesop", "import Qq"}


def test_a_worker_full_of_headers_is_replaced_by_a_fresh_one():
    with sim_pool(headers_per_repl=1) as pool:
        pid_a, _ = run(pool, HEADER_A, "def a := 1")
        pid_b, _ = run(pool, HEADER_B, "def b := 1")
        pid_c, _ = run(pool, "import Lean", "def c := 1")
        assert pid_c not in (pid_a, pid_b)
        stats = pool.stats()
        assert stats.counters.evicted == 1
        assert set(stats.workers_by_header) == {HEADER_B, "import Lean"}


def test_a_timed_out_worker_is_replaced_and_the_pool_refills(pool):
    run(pool, HEADER_A, "def warm := 1")
    with pytest.raises(ReplTimeout):
        run(pool, HEADER_A, "-- sim: hang\ndef h := 1", timeout=0.5)
    assert pool.wait_warm(30)
    stats = pool.stats()
    assert stats.counters.timeouts == 1
    assert stats.workers_by_state["idle"] == 1 and stats.workers_by_header == {HEADER_A: 1}
    _, after = run(pool, HEADER_A, "def after := 1")
    assert not after.errors


def test_workers_are_recycled_after_max_uses():
    with sim_pool(max_uses=2) as pool:
        pids = [run(pool, "", f"def x{i} := {i}")[0] for i in range(3)]
        assert pids[0] == pids[1] != pids[2]
        assert pool.stats().counters.recycled_uses == 1


def test_an_idle_worker_above_the_memory_limit_is_recycled_by_the_watcher():
    with sim_pool(mem_limit_mb=200) as pool:
        pid1, _ = run(pool, "", "-- sim: grow 300\ndef big := 1")
        tick = threading.Event()
        for _ in range(200):  # the watcher reads memory once a second: give it up to 10 s
            if pool.stats().counters.recycled_memory:
                break
            tick.wait(0.05)
        assert pool.stats().counters.recycled_memory == 1, "the idle worker above the limit was not recycled"
        pool.wait_warm(30)
        pid2, _ = run(pool, "", "def small := 1")
        assert pid1 != pid2
        assert pool.stats().counters.recycled_memory == 1


def test_a_busy_worker_found_above_the_memory_limit_is_recycled_when_released():
    with sim_pool(mem_limit_mb=200) as pool:
        pid1, _ = run(pool, "", "-- sim: grow 300\n-- sim: delay 2.5\ndef big := 1")  # the watcher reads it meanwhile
        assert pool.stats().counters.recycled_memory == 1
        pool.wait_warm(30)
        pid2, _ = run(pool, "", "def small := 1")
        assert pid1 != pid2


def wait_for_queue(pool, depth):
    event = threading.Event()
    while pool.stats().queue_depth < depth:
        event.wait(0.01)


def test_interactive_requests_overtake_queued_batch_work():
    with sim_pool(max_repls=1) as pool:
        order: list[str] = []

        def waiter(name, priority):
            with pool.acquire("", priority):
                order.append(name)

        batch = threading.Thread(target=waiter, args=("batch", Priority.BATCH))
        interactive = threading.Thread(target=waiter, args=("interactive", Priority.INTERACTIVE))
        with pool.acquire("", Priority.BATCH):
            batch.start()
            wait_for_queue(pool, 1)  # the batch request queued first...
            interactive.start()
            wait_for_queue(pool, 2)
        for thread in (batch, interactive):
            thread.join(10)
        assert order == ["interactive", "batch"]  # ...but the interactive one is served first


def test_a_full_pool_answers_overloaded_after_the_queue_wait():
    with sim_pool(max_repls=1, queue_wait=0.3) as pool:
        with pool.acquire(""):
            with pytest.raises(PoolOverloaded, match="no REPL free"):
                with pool.acquire("", Priority.BATCH):
                    pass
        assert pool.stats().counters.overloaded == 1


def test_warm_spares_start_at_boot():
    with sim_pool(warm_headers=HEADER_A + ";;" + HEADER_B) as pool:
        assert pool.wait_warm(30)
        assert pool.stats().workers_by_header == {HEADER_A: 1, HEADER_B: 1}
        assert pool.stats().workers_by_state["idle"] == 2


def test_shutdown_leaves_no_process_behind():
    pool = sim_pool(warm_headers=HEADER_A, headers_per_repl=1)
    pool.start()
    pool.wait_warm(30)
    run(pool, "", "def x := 1")  # another group: a second REPL
    pids = pool.pids()
    assert len(pids) == 2
    pool.shutdown()
    for pid in pids:
        assert not psutil.pid_exists(pid), f"REPL {pid} outlived the pool"


def test_preamble_envs_are_cached_per_worker(pool):
    with pool.acquire("") as worker:
        first = worker.preamble("def helper := 3", timeout=10)
        sent = worker.process.requests_sent
        second = worker.preamble("def helper := 3", timeout=10)
        assert not first.cached and second.cached
        assert second.env == first.env and worker.process.requests_sent == sent


def test_mixed_headers_keep_their_workers_instead_of_re_importing():
    # Two headers, two workers, four threads asking in turn: each header keeps its worker.
    with sim_pool(warm_headers=HEADER_A + ";;" + HEADER_B) as pool:
        pool.wait_warm(30)

        def client(k):
            for i in range(10):
                run(pool, (HEADER_A, HEADER_B)[(k + i) % 2], f"def d{k}_{i} := {i}")

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        counters = pool.stats().counters
        assert counters.requests == 40
        assert counters.evicted == 0 and counters.started == 2


# --------------------------------------------------------------------------- #
# Preferring a worker (a proof session's pinned REPL)


def two_warm_workers(pool):
    """Ids of two idle workers with header A, the least recently used first."""
    with pool.acquire(HEADER_A) as first, pool.acquire(HEADER_A) as second:
        ids = [first.id, second.id]
    with pool.acquire(HEADER_A) as again:  # the most recently used one is taken: the other is now the older
        assert again.id in ids
    return [i for i in ids if i != again.id] + [again.id]


def test_a_preferred_idle_worker_is_taken_over_the_one_the_pool_would_pick(pool):
    older, newer = two_warm_workers(pool)
    with pool.acquire(HEADER_A) as plain:
        assert plain.id == newer
    with pool.acquire(HEADER_A, prefer=older) as preferred:
        assert preferred.id == older


def test_a_preferred_busy_worker_is_waited_for_while_another_is_idle(pool):
    older, newer = two_warm_workers(pool)
    got: list[int] = []
    release = threading.Event()

    def hold():
        with pool.acquire(HEADER_A, prefer=older):
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    while pool.stats().workers_by_state["busy"] < 1:
        threading.Event().wait(0.01)
    waiter = threading.Thread(target=lambda: got.append(_acquired_id(pool, older)))
    waiter.start()
    deadline = time.monotonic() + 5
    while pool.stats().queue_depth < 1 and not got:
        assert time.monotonic() < deadline
        threading.Event().wait(0.01)
    assert not got  # it waits in the queue although `newer` is idle
    release.set()
    for thread in (holder, waiter):
        thread.join(10)
    assert got == [older]


def test_a_preferred_worker_busy_past_the_pin_wait_gives_way_to_an_idle_one(pool, monkeypatch):
    import leanstep.repl.pool as pool_module

    monkeypatch.setattr(pool_module, "PIN_WAIT_SECONDS", 0.2)
    older, newer = two_warm_workers(pool)
    with pool.acquire(HEADER_A, prefer=older):
        assert _acquired_id(pool, older) == newer


def test_a_preferred_worker_that_is_gone_is_no_obstacle(pool):
    older, newer = two_warm_workers(pool)
    with pool.acquire(HEADER_A, prefer=older) as worker:
        worker.interrupt()  # lost: the pool replaces it on release
        with pytest.raises(ReplLost):
            worker.run(CommandRequest("def x := 1"), 5)
    assert _acquired_id(pool, older) != older


def _acquired_id(pool, prefer):
    with pool.acquire(HEADER_A, Priority.INTERACTIVE, prefer=prefer) as worker:
        return worker.id


def test_a_repl_that_died_while_idle_is_replaced_before_anyone_gets_it(pool):
    with pool.acquire(HEADER_A) as worker:
        dead_id = worker.id
    dead_pid = kill_while_idle(pool, dead_id)
    pid, response = run(pool, HEADER_A, "def after := 1")
    assert pid != dead_pid and not response.errors
    assert pool.stats().counters.lost == 1
    assert _acquired_id(pool, dead_id) != dead_id


@pytest.fixture
def unwatched_pool(monkeypatch):
    """A pool whose watcher does not come round during the test: only handing a REPL out can find it dead."""
    import leanstep.repl.pool as pool_module

    monkeypatch.setattr(pool_module, "WATCH_SECONDS", 3600.0)
    with sim_pool() as pool:
        yield pool


def kill_while_idle(pool, worker_id) -> int:
    """Kill an idle worker's REPL from outside and wait until it is gone; its pid."""
    worker = next(w for w in pool._workers if w.id == worker_id)
    pid = worker.process.pid
    psutil.Process(pid).kill()
    wait_until(lambda: not worker.process.alive, 5, "the killed REPL is still alive")
    return pid


@pytest.mark.parametrize("preferred", [False, True], ids=["the pool's pick", "a preferred one"])
def test_a_repl_that_died_while_idle_is_never_handed_out(unwatched_pool, preferred):
    older, newer = two_warm_workers(unwatched_pool)
    dead = older if preferred else newer  # the pool picks the most recently used; a session prefers its own
    dead_pid = kill_while_idle(unwatched_pool, dead)
    with unwatched_pool.acquire(HEADER_A, prefer=dead if preferred else None) as worker:
        assert worker.id != dead and worker.process.pid != dead_pid
        assert not worker.run(CommandRequest("def after := 1", env=worker.header_env), 10).errors
    assert unwatched_pool.stats().counters.lost == 1


def test_the_watcher_replaces_a_repl_that_died_while_idle_before_anyone_asks(pool):
    older, newer = two_warm_workers(pool)
    kill_while_idle(pool, older)
    # the watcher comes round once a second
    wait_until(lambda: pool.stats().counters.lost >= 1, 10, "no one replaced the REPL that died while idle")
    assert pool.wait_warm(30)
    stats = pool.stats()
    assert stats.workers_by_state["idle"] == 2 and older not in {w.id for w in pool._workers}


def test_handing_a_repl_out_asks_only_that_repl_whether_it_runs(monkeypatch):
    """Finding dead REPLs costs one look per hand-out, however many REPLs are idle (it was one per idle REPL
    and dispatch)."""
    import leanstep.repl.pool as pool_module
    from leanstep.repl.process import ReplProcess

    monkeypatch.setattr(pool_module, "WATCH_SECONDS", 3600.0)
    looks: list[int] = []
    alive = ReplProcess.alive
    monkeypatch.setattr(ReplProcess, "alive", property(lambda process: looks.append(1) or alive.fget(process)))
    with sim_pool(max_repls=4) as pool:
        with pool.acquire(HEADER_A), pool.acquire(HEADER_A), pool.acquire(HEADER_A), pool.acquire(HEADER_A):
            pass
        assert pool.stats().workers_by_state["idle"] == 4
        looks.clear()
        for i in range(20):
            run(pool, HEADER_A, f"def x{i} := {i}")
        assert len(looks) <= 20
