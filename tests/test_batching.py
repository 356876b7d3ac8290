"""leanstep.generate.batching: concurrent requests collected into batches, each caller answered alone.

The batcher knows nothing about models; here its ``run`` function records the
batches it is given, and blocks on an event where a test must hold a batch running.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from leanstep.generate.batching import RequestAbandoned, RequestBatcher

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_fixtures import wait_until


class Recorder:
    """A ``run`` function: doubles every number, fails on negative ones, can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        self.started.set()
        assert self.release.wait(30), "the test never released the batch"
        return [ValueError(f"negative: {x}") if x < 0 else 2 * x for x in items]


def busy(pool: ThreadPoolExecutor, max_size: int) -> tuple[Recorder, RequestBatcher, Future]:
    """A batcher (no window) whose first batch, item 1, is running and held until ``run.release`` is set."""
    run = Recorder()
    run.release.clear()
    batcher = RequestBatcher(run, max_size=max_size, window=0.0)
    first = pool.submit(batcher.submit, 1)
    assert run.started.wait(10)
    return run, batcher, first


def submit_all(batcher: RequestBatcher, items: list[int]) -> list[int | BaseException]:
    def one(x: int) -> int | BaseException:
        try:
            return batcher.submit(x)
        except Exception as exc:  # noqa: BLE001 - returned for the test to inspect
            return exc

    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(one, items))


def test_concurrent_requests_run_as_one_batch_and_each_caller_gets_its_own_answer():
    run = Recorder()
    batcher = RequestBatcher(run, max_size=6, window=10.0)  # the batch closes when full, not at the window
    assert submit_all(batcher, [1, 2, 3, 4, 5, 6]) == [2, 4, 6, 8, 10, 12]
    assert len(run.batches) == 1 and sorted(run.batches[0]) == [1, 2, 3, 4, 5, 6]
    stats = batcher.stats()
    assert (stats.batches, stats.items, stats.largest, stats.dropped) == (1, 6, 6, 0)


def test_no_batch_is_larger_than_the_cap():
    run = Recorder()
    batcher = RequestBatcher(run, max_size=2, window=0.05)
    assert submit_all(batcher, list(range(7))) == [2 * x for x in range(7)]
    assert all(len(b) <= 2 for b in run.batches) and sum(len(b) for b in run.batches) == 7
    assert batcher.stats().largest <= 2


def test_a_failing_request_fails_alone():
    run = Recorder()
    batcher = RequestBatcher(run, max_size=3, window=10.0)
    answers = submit_all(batcher, [1, -1, 3])
    assert answers[0] == 2 and answers[2] == 6
    assert isinstance(answers[1], ValueError) and "negative: -1" in str(answers[1])
    assert len(run.batches) == 1


def test_a_run_that_raises_fails_its_batch_and_the_batcher_goes_on():
    calls: list[list[int]] = []

    def run(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return [x + 1 for x in items]

    batcher = RequestBatcher(run, max_size=2, window=10.0)
    failed = submit_all(batcher, [1, 2])
    assert all(isinstance(a, RuntimeError) and "model exploded" in str(a) for a in failed)
    assert submit_all(batcher, [5, 6]) == [6, 7]


def test_a_run_that_answers_the_wrong_number_of_items_fails_that_batch_clearly():
    batcher = RequestBatcher(lambda items: [1], max_size=2, window=10.0)
    answers = submit_all(batcher, [1, 2])
    assert all(isinstance(a, RuntimeError) and "1 results for a batch of 2" in str(a) for a in answers)


def test_requests_that_arrive_while_a_batch_runs_form_the_next_batch():
    with ThreadPoolExecutor(4) as pool:
        run, batcher, first = busy(pool, max_size=8)
        later = [pool.submit(batcher.submit, x) for x in (2, 3, 4)]
        wait_until(lambda: batcher.stats().queued == 3)
        run.release.set()
        assert first.result(10) == 2 and [f.result(10) for f in later] == [4, 6, 8]
    assert run.batches[0] == [1] and sorted(run.batches[1]) == [2, 3, 4]


def test_a_request_whose_caller_left_is_dropped_before_its_batch_runs():
    gone = threading.Event()
    with ThreadPoolExecutor(3) as pool:
        run, batcher, first = busy(pool, max_size=8)
        left = pool.submit(batcher.submit, 2, gone.is_set)
        stays = pool.submit(batcher.submit, 3, lambda: False)
        wait_until(lambda: batcher.stats().queued == 2)
        gone.set()
        with pytest.raises(RequestAbandoned):
            left.result(10)  # the caller stops waiting at once, while the batch before it still runs
        assert batcher.stats().dropped == 1
        run.release.set()
        assert first.result(10) == 2 and stays.result(10) == 6
    assert run.batches == [[1], [3]]


def test_a_caller_that_leaves_during_its_batch_does_not_stop_the_others():
    run = Recorder()
    run.release.clear()
    batcher = RequestBatcher(run, max_size=2, window=10.0)
    gone = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        left = pool.submit(batcher.submit, 1, gone.is_set)
        stays = pool.submit(batcher.submit, 2)
        assert run.started.wait(10)
        gone.set()
        with pytest.raises(RequestAbandoned):
            left.result(10)
        run.release.set()
        assert stays.result(10) == 4
    assert run.batches in ([[1, 2]], [[2, 1]])


def test_a_predicate_that_raises_does_not_stop_the_batcher():
    def broken() -> bool:
        raise OSError("connection state unknown")

    batcher = RequestBatcher(Recorder(), max_size=1, window=0.0)
    assert batcher.submit(4, broken) == 8


def test_closing_fails_what_is_queued_and_refuses_new_requests():
    with ThreadPoolExecutor(2) as pool:
        run, batcher, running = busy(pool, max_size=1)
        queued = pool.submit(batcher.submit, 2)
        wait_until(lambda: batcher.stats().queued == 1)
        closer = threading.Thread(target=batcher.close)
        closer.start()
        with pytest.raises(RuntimeError, match="closed before this request ran"):
            queued.result(10)
        run.release.set()
        assert running.result(10) == 2  # the batch that had started finishes
        closer.join(10)
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(3)


@pytest.mark.parametrize(("kwargs", "message"), [({"max_size": 0, "window": 0.0}, "max_size"),
                                                  ({"max_size": 2, "window": -1.0}, "window")])
def test_nonsense_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RequestBatcher(Recorder(), **kwargs)
