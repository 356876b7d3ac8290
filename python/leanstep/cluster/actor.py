"""The verifier actor: one node's warm pool behind Ray, checking the distinct snippets the router sends.

It neither caches nor de-duplicates: the router (``cluster.router``) has done both for
the whole cluster before a sub-batch leaves the driver, so what arrives here is
distinct, and what goes back is each check's :class:`Outcome` in the header's and
body's own lines, for the router to answer every copy of the snippet with.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from leanstep.check.trust import checks_from_config
from leanstep.check.verify import Outcome, PoolChecker, Submission, VerifyOptions
from leanstep.config import Config

RAY_MISSING = "Ray is not installed: pip install leanstep[ray]  (or: pip install 'ray>=2.30')"


def import_ray() -> Any:
    """Ray, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(RAY_MISSING) from exc
    return ray


def _node_id() -> str:
    """The Ray node this process runs on, or "" outside Ray (asking Ray then would start a local instance)."""
    try:
        ray = import_ray()
    except ImportError:
        return ""
    return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else ""


@dataclass(frozen=True)
class ActorStatus:
    """What one verifier actor reports: where it runs, how busy it is, which headers are warm."""

    slot: int
    node_id: str
    hostname: str
    pid: int
    max_repls: int
    in_flight_snippets: int
    in_flight_batches: int
    queue_depth: int  # requests waiting for a REPL inside the actor's pool
    workers_by_state: dict[str, int]
    warm_headers: dict[str, int]  # header text -> REPLs holding it
    verified: int  # distinct snippets checked since the actor started
    repls_started: int  # REPL starts (each one pays its header's import)
    repls_evicted: int  # idle REPLs closed to make room for another header


class VerifierActor:
    """One node's warm pool behind a Ray actor; methods run concurrently (a threaded actor).

    Plain class so it can be tested and profiled without Ray; :func:`remote_actor_class`
    wraps it with ``ray.remote``.
    """

    def __init__(self, slot: int, config: Config, env: Mapping[str, str] | None = None) -> None:
        if env:
            os.environ.update(env)  # before the pool copies the environment for its REPLs
        from leanstep.repl.launch import make_pool

        self.slot = slot
        self.pool = make_pool(config)
        self.pool.start()
        self.checker = PoolChecker(self.pool, checks=checks_from_config(config))
        self._lock = threading.Lock()
        self._in_flight_snippets = 0
        self._in_flight_batches = 0
        self._verified = 0

    def check(self, submissions: list[Submission], options: VerifyOptions) -> list[Outcome]:
        """Check a sub-batch of distinct snippets on this node; one outcome per submission, in order."""
        with self._lock:
            self._in_flight_snippets += len(submissions)
            self._in_flight_batches += 1
        try:
            return self.checker.check(submissions, options)
        finally:
            with self._lock:
                self._in_flight_snippets -= len(submissions)
                self._in_flight_batches -= 1
                self._verified += len(submissions)

    def status(self) -> ActorStatus:
        stats = self.pool.stats()
        with self._lock:
            in_flight, batches, verified = self._in_flight_snippets, self._in_flight_batches, self._verified
        return ActorStatus(
            slot=self.slot, node_id=_node_id(), hostname=socket.gethostname(), pid=os.getpid(),
            max_repls=stats.max_repls, in_flight_snippets=in_flight, in_flight_batches=batches,
            queue_depth=stats.queue_depth, workers_by_state=dict(stats.workers_by_state),
            warm_headers=dict(stats.workers_by_header), verified=verified,
            repls_started=stats.counters.started, repls_evicted=stats.counters.evicted,
        )

    def wait_warm(self, timeout: float) -> bool:
        """Block until the pool's warm spares have imported their headers."""
        return self.pool.wait_warm(timeout)

    def repl_pids(self) -> list[int]:
        return self.pool.pids()

    def shutdown(self) -> None:
        self.checker.close()
        self.pool.shutdown()


_REMOTE_CLASS: Any = None


def remote_actor_class() -> Any:
    """``ray.remote(VerifierActor)``, made once per process."""
    global _REMOTE_CLASS
    if _REMOTE_CLASS is None:
        _REMOTE_CLASS = import_ray().remote(VerifierActor)
    return _REMOTE_CLASS
