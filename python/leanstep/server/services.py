"""The server's composition root: the one place the pool, the verifier, the sessions and the suggester are built.

``leanstep serve`` and every test or benchmark that serves the app call
:func:`build_services`, so they run on the same wiring: a started pool, a
:class:`~leanstep.check.verify.BatchVerifier` on it (or on a Ray cluster with
``--ray``; the pool then only checks ``/suggest``'s candidates and runs the
proof sessions), the proof sessions on the pool, and a suggester over the
configured generator, and a prover (best-first search on the sessions, whole
proofs checked by the verifier) over the same generator. The app
(``server.app.create_app``) takes the result ready-made.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from leanstep.check.sessions import SessionLimits, SessionService
from leanstep.check.tactics import TacticChecker
from leanstep.check.trust import checks_from_config
from leanstep.check.verify import BatchVerifier, Verifier
from leanstep.cluster.router import RayTarget, make_verifier
from leanstep.config import Config
from leanstep.limits import RequestLimits
from leanstep.perf.trace import TraceWriter
from leanstep.repl.launch import make_pool
from leanstep.repl.pool import ReplPool

if TYPE_CHECKING:  # the suggestion and proving stack is imported only when they are built
    from leanstep.generate.base import Generator
    from leanstep.prove.prover import Prover
    from leanstep.suggest import Suggester

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What the server answers with; ``suggester`` and ``prover`` None mean no suggestion, generation and
    proving routes (they share one generator)."""

    config: Config
    pool: ReplPool
    verifier: BatchVerifier
    sessions: SessionService
    suggester: Suggester | None
    prover: Prover | None = None
    trace: TraceWriter | None = None

    @cached_property
    def limits(self) -> RequestLimits:
        """What one verification request may ask for; every door (HTTP, MCP) holds requests to these."""
        return RequestLimits.from_config(self.config)

    def close(self) -> None:
        """Stop the verifier, then the pool (the suggester holds nothing of its own), then the trace."""
        try:
            self.verifier.close()
        finally:
            self.pool.shutdown()
            if self.trace is not None:
                self.trace.close()


def build_services(config: Config, *, cluster: RayTarget | None = None, suggest: bool = True,
                   generator: Generator | None = None) -> Services:
    """Build and start the services ``config`` describes.

    ``cluster``: verify on that Ray cluster instead of the local pool (``serve --ray``).
    ``suggest=False``: no suggester and no prover. ``generator``: suggest and prove with it
    instead of ``config``'s backend. Raises :class:`leanstep.repl.launch.SetupError`, saying what to fix, when the
    pool or the cluster cannot start; nothing is left running then.
    """
    pool = make_pool(config)  # raises SetupError before anything starts
    pool.start()
    verifier: BatchVerifier | None = None
    trace = None
    try:
        if config.trace is not None:
            trace = TraceWriter(config.trace, pool.import_seconds if cluster is None else None)
        if cluster is not None:
            verifier = make_verifier(cluster, config, on_check=trace)
        else:
            verifier = Verifier(pool, cache_size=config.cache_size, checks=checks_from_config(config), on_check=trace)
        sessions = session_service(config, pool)
        suggester = prover = None
        if suggest:
            generator = _generator(config, generator)
            suggester = _suggester(config, pool, generator)
            prover = make_prover(config, verifier, sessions, generator)
    except BaseException:
        if verifier is not None:
            verifier.close()
        pool.shutdown()
        if trace is not None:
            trace.close()
        raise
    return Services(config, pool, verifier, sessions, suggester, prover, trace)


def session_service(config: Config, pool: ReplPool) -> SessionService:
    """Proof sessions on ``pool`` with ``config``'s limits; states are built within ``--timeout`` even after a
    step's own budget ended, so the next step finds them ready."""
    limits = SessionLimits(ttl=config.session_ttl, max_sessions=config.max_sessions,
                           max_per_owner=config.max_sessions_per_key, max_states=config.max_session_states,
                           max_tactics=config.max_attempt_tactics, timeout=config.session_timeout,
                           min_timeout=config.min_timeout)
    checker = TacticChecker(pool, budget=config.session_timeout, prepare_timeout=config.timeout)
    return SessionService(checker, limits, heartbeats=config.heartbeats)


def make_prover(config: Config, verifier: BatchVerifier, sessions: SessionService, generator: Generator) -> Prover:
    """The prover over ``generator``: it searches on ``sessions`` and checks on ``verifier`` at ``strict`` (or
    ``sealed``, when that is the server's level) under the server's trust settings."""
    from leanstep.check.verdict import Trust
    from leanstep.prove.checking import ProofChecker
    from leanstep.prove.prover import Prover

    trust = config.trust if config.trust.rank > Trust.STRICT.rank else Trust.STRICT
    checks = checks_from_config(config)
    checker = ProofChecker(verifier, trust=trust, allowed_axioms=checks.allowed_axioms,
                           timeout_origin="the server's --timeout")
    return Prover(generator, checker, config, sessions)


def _generator(config: Config, generator: Generator | None) -> Generator:
    """``generator``, or ``config``'s backend (the generation stack is imported only then)."""
    if generator is not None:
        return generator
    from leanstep.generate import make_generator, settings_from_config

    return make_generator(settings_from_config(config))


def _suggester(config: Config, pool: ReplPool, generator: Generator) -> Suggester:
    """The suggester over ``generator``.

    A model loads and warms up in the background, so the server answers /verify and
    /health at once and the first /suggest does not pay the load. The ``hint`` backend
    (``--no-model``) loads nothing.
    """
    from leanstep.generate import configured_model
    from leanstep.suggest import Suggester

    warmup = getattr(generator, "warmup", None)
    if warmup is not None:
        model = configured_model(config)

        def warm() -> None:
            try:
                warmup()
                log.info("generator ready (%s backend, %s)", config.backend, model)
            except Exception as exc:  # noqa: BLE001 - the server still verifies; /suggest reports the error
                log.error("model %s could not be loaded (%s); /suggest answers 503 until it can", model, exc)

        threading.Thread(target=warm, name="model-warmup", daemon=True).start()
    return Suggester(generator, pool, config)
