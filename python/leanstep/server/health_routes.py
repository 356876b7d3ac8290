"""``GET /health`` (the pool's real state) and ``GET /metrics`` (Prometheus text, one registry per app).

``status`` is liveness: ``ok`` (200) while the server accepts work, even while
every REPL is starting or being replaced (work then waits for one), and
``shutting down`` (503) once it stops. Readiness is ``ready``: false while no
REPL can take work yet because every one is starting. ``GET /`` is Kimina's
alias of ``/health``; under ``--wire kimina-exact`` it answers Kimina's
``{"status": "ok"}`` and nothing more.

``/health`` without the API key (when one is set) answers a public view:
``status``, ``ready``, ``suggest`` and the pool's ``max_repls``, ``workers``
and ``queue_depth``, counts only, never the header texts clients sent.
``/metrics`` reads the pool, the verifier's cache and its verdict counts at
scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING

from flask import Blueprint, Response, g
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from leanstep.api.kimina import KIMINA_EXACT
from leanstep.check.verify import VERDICTS
from leanstep.server.jsonio import json_response

if TYPE_CHECKING:
    from leanstep.server.app import AppState
    from leanstep.server.services import Services


class _ServicesCollector:
    """Reads the pool, the cache and the verdict counters at scrape time."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        stats = self.services.pool.stats()
        workers = GaugeMetricFamily("leanstep_pool_workers", "REPL workers by state", labels=["state"])
        for state, count in sorted(stats.workers_by_state.items()):
            workers.add_metric([state], count)
        yield workers
        yield GaugeMetricFamily("leanstep_pool_max_repls", "configured pool size", value=stats.max_repls)
        yield GaugeMetricFamily("leanstep_pool_queue_depth", "requests waiting for a REPL", value=stats.queue_depth)
        yield GaugeMetricFamily("leanstep_pool_rss_bytes", "resident memory of the REPLs at their last poll",
                                value=stats.rss_bytes)
        yield GaugeMetricFamily("leanstep_pool_warm_headers", "distinct headers with a worker",
                                value=len(stats.workers_by_header))
        c = stats.counters
        simple = {
            "leanstep_repl_started": ("REPL processes started", c.started),
            "leanstep_repl_start_failures": ("REPL starts that failed", c.start_failures),
            "leanstep_repl_timeouts": ("REPL commands killed at their wall-clock limit", c.timeouts),
            "leanstep_repl_lost": ("REPL processes lost (crash, exit, garbage)", c.lost),
            "leanstep_repl_evicted": ("idle REPLs evicted for another header", c.evicted),
            "leanstep_repl_restarts": ("REPLs replaced after a timeout, loss or recycling",
                                       c.timeouts + c.lost + c.recycled_memory + c.recycled_uses),
            "leanstep_pool_overloaded": ("acquisitions that gave up waiting", c.overloaded),
            "leanstep_pool_requests": ("REPL acquisitions released", c.requests),
        }
        for name, (doc, value) in simple.items():
            yield CounterMetricFamily(name, doc, value=value)
        recycled = CounterMetricFamily("leanstep_repl_recycled", "REPLs recycled", labels=["reason"])
        recycled.add_metric(["memory"], c.recycled_memory)
        recycled.add_metric(["uses"], c.recycled_uses)
        yield recycled
        vstats = self.services.verifier.stats()
        cache = vstats.cache
        yield CounterMetricFamily("leanstep_cache_hits", "results answered from the result cache",
                                  value=cache.hits + cache.batch_duplicates)
        yield CounterMetricFamily("leanstep_cache_misses", "result cache look-ups that missed", value=cache.misses)
        yield GaugeMetricFamily("leanstep_cache_entries", "entries in the result cache", value=cache.entries)
        verdicts = CounterMetricFamily("leanstep_snippets", "snippets answered, by verdict", labels=["verdict"])
        for verdict in VERDICTS:
            verdicts.add_metric([verdict], vstats.verdicts.get(verdict, 0))
        yield verdicts
        sessions = self.services.sessions.stats()
        yield GaugeMetricFamily("leanstep_sessions_open", "proof sessions open", value=sessions.open)
        ended = CounterMetricFamily("leanstep_sessions_ended", "proof sessions ended, by how", labels=["how"])
        ended.add_metric(["closed"], sessions.closed)
        ended.add_metric(["expired"], sessions.expired)
        yield ended
        yield CounterMetricFamily("leanstep_session_tactics", "tactics run in proof sessions", value=sessions.steps)
        yield CounterMetricFamily("leanstep_session_replayed_tactics",
                                  "tactics run again to rebuild session states on another REPL",
                                  value=sessions.replayed_tactics)


def health_blueprint(state: AppState) -> Blueprint:
    """``/health`` and ``/metrics`` over ``state.services``; registers the scrape-time collector."""
    bp = Blueprint("health", __name__)
    services = state.services
    state.registry.register(_ServicesCollector(services))

    kimina_root = services.config.wire == KIMINA_EXACT

    @bp.get("/")
    def root() -> Response:
        """Kimina's health alias."""
        if kimina_root:
            return json_response({"status": "shutting down"}, 503) if state.closing else \
                json_response({"status": "ok"})
        return health()

    @bp.get("/health")
    @bp.get("/health/")
    def health() -> Response:
        stats = services.pool.stats()
        by_state = stats.workers_by_state
        ready = by_state.get("idle", 0) + by_state.get("busy", 0) > 0 or not by_state.get("starting", 0)
        status, code = ("shutting down", 503) if state.closing else ("ok", 200)
        suggest = services.suggester is not None
        public_pool = {"max_repls": stats.max_repls, "workers": by_state, "queue_depth": stats.queue_depth}
        if not g.get("authenticated", False):  # liveness and load only: header texts are what clients sent
            return json_response({"status": status, "ready": ready, "pool": public_pool, "suggest": suggest}, code)
        c = stats.counters
        return json_response({
            "status": status,
            "ready": ready,
            "pool": {
                **public_pool,
                "warm_headers": stats.workers_by_header,
                "rss_bytes": stats.rss_bytes,
                "counters": {"started": c.started, "start_failures": c.start_failures, "timeouts": c.timeouts,
                             "lost": c.lost, "recycled_memory": c.recycled_memory,
                             "recycled_uses": c.recycled_uses, "evicted": c.evicted, "overloaded": c.overloaded,
                             "requests": c.requests},
            },
            "cache": asdict(services.verifier.stats().cache),
            "sessions": asdict(services.sessions.stats()),
            "suggest": suggest,
        }, code)

    @bp.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(state.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return bp
