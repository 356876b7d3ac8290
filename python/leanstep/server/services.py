"""The server's composition root: the one place the pool, the verifier and the suggester are built.

``leanstep serve`` and every test or benchmark that serves the app call
:func:`build_services`, so they run on the same wiring: a started pool, a
:class:`~leanstep.check.verify.BatchVerifier` on it (or on a Ray cluster with
``--ray``; the pool then only checks ``/suggest``'s candidates), and a suggester
over the configured generator. The app (``server.app.create_app``) takes the
result ready-made.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from leanstep.check.trust import checks_from_config
from leanstep.check.verify import BatchVerifier, Verifier
from leanstep.cluster.router import RayTarget, make_verifier
from leanstep.config import Config
from leanstep.repl.launch import make_pool
from leanstep.repl.pool import ReplPool

if TYPE_CHECKING:  # the suggestion stack is imported only when a suggester is built
    from leanstep.generate.base import Generator
    from leanstep.suggest import Suggester

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What the server answers with; ``suggester`` None means no suggestion routes."""

    config: Config
    pool: ReplPool
    verifier: BatchVerifier
    suggester: Suggester | None

    def close(self) -> None:
        """Stop the verifier, then the pool (the suggester holds nothing of its own)."""
        try:
            self.verifier.close()
        finally:
            self.pool.shutdown()


def build_services(config: Config, *, cluster: RayTarget | None = None, suggest: bool = True,
                   generator: Generator | None = None) -> Services:
    """Build and start the services ``config`` describes.

    ``cluster``: verify on that Ray cluster instead of the local pool (``serve --ray``).
    ``suggest=False``: no suggester. ``generator``: suggest with it instead of ``config``'s
    backend. Raises :class:`leanstep.repl.launch.SetupError`, saying what to fix, when the
    pool or the cluster cannot start; nothing is left running then.
    """
    pool = make_pool(config)  # raises SetupError before anything starts
    pool.start()
    verifier: BatchVerifier | None = None
    try:
        if cluster is not None:
            verifier = make_verifier(cluster, config)
        else:
            verifier = Verifier(pool, cache_size=config.cache_size, checks=checks_from_config(config))
        suggester = _suggester(config, pool, generator) if suggest else None
    except BaseException:
        if verifier is not None:
            verifier.close()
        pool.shutdown()
        raise
    return Services(config, pool, verifier, suggester)


def _suggester(config: Config, pool: ReplPool, generator: Generator | None) -> Suggester:
    """The suggester over ``generator``, or ``config``'s backend (the generation stack is imported only then).

    A model loads and warms up in the background, so the server answers /verify and
    /health at once and the first /suggest does not pay the load. The ``hint`` backend
    (``--no-model``) loads nothing.
    """
    from leanstep.generate import configured_model
    from leanstep.suggest import Suggester

    if generator is None:
        from leanstep.generate import make_generator, settings_from_config

        generator = make_generator(settings_from_config(config))
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
