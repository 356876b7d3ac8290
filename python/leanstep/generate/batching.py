"""Cross-request batching: concurrent calls collected for a short window and run as one.

A model decodes many prompts in one call for little more than the price of one
(each decoding step reads every weight once, whatever the batch), so several
editors asking at once should share a call. :class:`RequestBatcher` is the part
that knows nothing about models: callers ``submit`` an item and block; one
worker thread collects what arrives within ``window`` seconds of the oldest
waiting item (at most ``max_size`` items), hands the lot to the backend's
``run`` function and gives each caller its own result or its own exception.

A caller may pass ``abandoned``, a predicate that turns true when nobody wants
its answer any more (the HTTP client disconnected). Such an item is dropped
before its batch starts, and its caller stops waiting at once (it raises
:class:`RequestAbandoned`); a batch never waits for a caller.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

# How often a waiting caller asks its ``abandoned`` predicate.
ABANDON_POLL_S = 0.05


class RequestAbandoned(Exception):
    """The caller's client left before the answer was ready; the request was dropped or its answer discarded."""


def caller_left(abandoned: Callable[[], bool] | None) -> bool:
    """Whether ``abandoned`` says nobody waits for the answer any more; long work (a batch, a proof search) asks
    it between its steps. A predicate that fails says no: it must not stop the work, which runs on."""
    if abandoned is None:
        return False
    try:
        return bool(abandoned())
    except Exception:  # noqa: BLE001 - see the docstring
        return False


@dataclass(frozen=True)
class BatcherStats:
    """Counts since the batcher was made: batches run, items run in them, the largest batch,
    items dropped because their caller left before they ran."""

    batches: int = 0
    items: int = 0
    largest: int = 0
    dropped: int = 0
    queued: int = 0  # waiting now

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0


@dataclass(eq=False)
class _Pending(Generic[ItemT, ResultT]):
    item: ItemT
    arrived: float
    abandoned: Callable[[], bool] | None
    done: threading.Event = field(default_factory=threading.Event)
    result: ResultT | None = None
    error: BaseException | None = None

    def gone(self) -> bool:
        return caller_left(self.abandoned)


class RequestBatcher(Generic[ItemT, ResultT]):
    """Runs concurrent ``submit`` calls in batches through ``run``; thread-safe.

    ``run(items)`` returns one entry per item, in order: its result, or an exception
    for that item alone. An exception raised by ``run`` itself fails every item of
    that batch (and only that batch). The worker thread starts on the first submit.
    """

    def __init__(self, run: Callable[[Sequence[ItemT]], Sequence[ResultT | BaseException]], *,
                 max_size: int, window: float, name: str = "request-batcher") -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        if window < 0:
            raise ValueError(f"window must be >= 0 seconds, got {window}")
        self._run = run
        self.max_size = max_size
        self.window = window
        self.name = name
        self._cond = threading.Condition()
        self._queue: deque[_Pending[ItemT, ResultT]] = deque()
        self._worker: threading.Thread | None = None
        self._closed = False
        self._batches = self._items = self._largest = self._dropped = 0

    def submit(self, item: ItemT, abandoned: Callable[[], bool] | None = None) -> ResultT:
        """Run ``item`` in the next batch that has room; its result, or its exception raised here."""
        pending: _Pending[ItemT, ResultT] = _Pending(item, time.monotonic(), abandoned)
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            self._queue.append(pending)
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._worker.start()
            self._cond.notify_all()
        while not pending.done.wait(ABANDON_POLL_S if abandoned is not None else None):
            if pending.gone():
                with self._cond:
                    if pending in self._queue:
                        self._queue.remove(pending)
                        self._dropped += 1
                raise RequestAbandoned("the client left before its generation finished")
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]  # set together with done

    def stats(self) -> BatcherStats:
        with self._cond:
            return BatcherStats(self._batches, self._items, self._largest, self._dropped, len(self._queue))

    def close(self) -> None:
        """Fail what is still queued and stop the worker after its current batch."""
        with self._cond:
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
            worker = self._worker
        for pending in left:
            pending.error = RuntimeError(f"{self.name} closed before this request ran")
            pending.done.set()
        if worker is not None and worker is not threading.current_thread():
            worker.join()

    def _next_batch(self) -> list[_Pending[ItemT, ResultT]] | None:
        """Wait for work, let the window fill, take up to ``max_size`` items; None once closed."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            while self._queue and len(self._queue) < self.max_size and not self._closed:
                left = self._queue[0].arrived + self.window - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._closed:
                return None
            batch: list[_Pending[ItemT, ResultT]] = []
            while self._queue and len(batch) < self.max_size:
                pending = self._queue.popleft()
                if pending.gone():
                    self._dropped += 1
                    pending.error = RequestAbandoned("the client left before its generation started")
                    pending.done.set()
                    continue
                batch.append(pending)
            if batch:
                self._batches += 1
                self._items += len(batch)
                self._largest = max(self._largest, len(batch))
            return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            if not batch:
                continue
            try:
                results = list(self._run([p.item for p in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(results)} results for a batch of {len(batch)}")
            except BaseException as exc:  # noqa: BLE001 - every caller of this batch gets the failure
                results = [exc] * len(batch)
            for pending, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    pending.error = result
                else:
                    pending.result = result
                pending.done.set()
