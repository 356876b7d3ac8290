"""The Flask app: thin routes over the verifier, the pool and (optionally) the suggester.

Routes: ``POST /verify`` and ``POST /api/check`` (Kimina-compatible shapes plus a
``verdict`` per result), ``GET /health`` (the pool's real state), ``GET
/metrics`` (Prometheus text, one registry per app), and, when a suggester is
given, the suggestion routes from ``server.suggest_routes`` (imported lazily so
the verification path never imports a model library).

The batch routes hold every request to the server's limits: the client's
``timeout`` is capped at ``--timeout`` and refused (422) below
``--min-timeout``, more distinct headers than ``--max-headers-per-request``
are refused (422), and each answer's ``limits`` says which timeout applied and
why (``leanstep.limits``). Once the server is shutting down they answer 503.

Every error is JSON ``{"error": ..., "detail": ...}``: malformed JSON 400,
a body not sent as ``application/json`` 415, a wrong or missing field 422, a
body over ``max_body_mb`` or more snippets than ``max_batch`` 413, a missing or
wrong API key 401, a browser ``Origin`` not in ``allow_origin`` 403. Problems
with one snippet (a NUL byte, text that is not Unicode) become that snippet's
result, never a failed batch.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException

from leanstep.check.verify import SHUTTING_DOWN, VERDICTS, Snippet, Verifier, VerifyOptions, distinct_headers
from leanstep.config import Config
from leanstep.limits import AppliedTimeout, LimitError, bounded_timeout
from leanstep.repl.pool import ReplPool
from leanstep.server.jsonio import (
    BODY_TOO_LARGE, body_limit_bytes, body_too_large_detail, error_response, json_response, parse_or_422,
    read_json_body,
)
from leanstep.server.schemas import (
    CHECK_DEFAULT_TIMEOUT_S, CheckBody, VerifyBody, check_result_json, verify_result_json,
)

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health", "/health/"})  # GET / (Kimina's health alias) shares POST / with llmstep, so it is keyed
PREFLIGHT_HEADERS = {  # what an allowed page's CORS preflight is told it may send
    "Access-Control-Allow-Methods": "GET, POST",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-API-Key",
    "Access-Control-Max-Age": "600",
}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


@dataclass
class AppState:
    """What the routes share; ``close()`` stops the verifier and, if the app made it, the pool."""

    config: Config
    pool: ReplPool
    verifier: Verifier
    registry: CollectorRegistry
    owns_pool: bool = False
    closing: bool = False

    def close(self) -> None:
        self.closing = True
        self.verifier.close()
        if self.owns_pool:
            self.pool.shutdown()


class _PoolCollector:
    """Reads the pool, the cache and the verdict counters at scrape time."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def collect(self):  # noqa: ANN201 (prometheus_client protocol)
        stats = self.state.pool.stats()
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
        vstats = self.state.verifier.stats()
        cache = vstats["cache"]
        yield CounterMetricFamily("leanstep_cache_hits", "results answered from the result cache",
                                  value=cache["hits"] + cache["batch_duplicates"])
        yield CounterMetricFamily("leanstep_cache_misses", "result cache look-ups that missed", value=cache["misses"])
        yield GaugeMetricFamily("leanstep_cache_entries", "entries in the result cache", value=cache["entries"])
        verdicts = CounterMetricFamily("leanstep_snippets", "snippets answered, by verdict", labels=["verdict"])
        for verdict in VERDICTS:
            verdicts.add_metric([verdict], vstats["verdicts"].get(verdict, 0))
        yield verdicts


def _api_key_ok(expected: str) -> tuple[bool, str]:
    given = request.headers.get("Authorization")
    if given is not None:
        given = given.strip()
        if given[:7].lower() == "bearer ":
            given = given[7:].strip()
    else:
        given = request.headers.get("X-API-Key")
    if not given:
        return False, "missing API key: send `Authorization: Bearer <key>`"
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8")):
        return False, "invalid API key"
    return True, ""


def create_app(config: Config, pool: ReplPool | None = None, suggester: Any = None, verifier: Any = None) -> Flask:
    """Build the app. Without ``pool`` one is made from ``config`` and started (and owned by the app).

    ``verifier`` replaces the local one for the batch routes (``serve --ray`` passes a cluster-wide one).
    """
    owns_pool = pool is None
    if pool is None:
        from leanstep.repl.launch import make_pool

        pool = make_pool(config)
        pool.start()
    app = Flask("leanstep")
    app.config["MAX_CONTENT_LENGTH"] = body_limit_bytes(config.max_body_mb)
    allowed_origins = frozenset(config.allow_origin)
    registry = CollectorRegistry(auto_describe=True)
    verifier = verifier or Verifier(pool, cache_size=config.cache_size)
    state = AppState(config, pool, verifier, registry, owns_pool=owns_pool)
    app.extensions["leanstep"] = state
    registry.register(_PoolCollector(state))
    http_requests = Counter("leanstep_http_requests", "HTTP requests by route and status",
                            ["route", "status"], registry=registry)
    latency = Histogram("leanstep_http_request_seconds", "HTTP request latency by route", ["route"],
                        buckets=LATENCY_BUCKETS, registry=registry)

    # -- cross-cutting --------------------------------------------------------

    @app.before_request
    def _admit() -> Response | None:
        """403 for a web page not in ``allow_origin``, then 401 without the key (/health answers a public view).

        Browsers send ``Origin`` with every cross-site POST and CORS request, so a page a user
        happens to visit cannot drive a local server. A CORS preflight (OPTIONS) carries no key
        by design and gets only Flask's empty answer, so it needs none.
        """
        g.started = time.monotonic()
        origin = request.headers.get("Origin")
        if origin is not None and origin not in allowed_origins:
            return error_response(403, "origin not allowed",
                                  f"requests from web pages at {origin!r} are refused; start the server with "
                                  "`--allow-origin ORIGIN` for a page that should call it")
        g.authenticated = True
        if config.api_key and request.method != "OPTIONS":
            g.authenticated, why = _api_key_ok(config.api_key)
            if not g.authenticated and request.path not in OPEN_PATHS:
                return error_response(401, "unauthorized", why)
        return None

    @app.after_request
    def _cors(response: Response) -> Response:
        """Let the pages of ``allow_origin`` read answers (and pass their preflight)."""
        origin = request.headers.get("Origin")
        if origin is not None and origin in allowed_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.vary.add("Origin")
            if request.method == "OPTIONS":
                response.headers.update(PREFLIGHT_HEADERS)
        return response

    @app.after_request
    def _observe(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        http_requests.labels(route, str(response.status_code)).inc()
        started = g.get("started")
        if started is not None:
            latency.labels(route).observe(time.monotonic() - started)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if exc.code == 413:
            return error_response(413, BODY_TOO_LARGE, body_too_large_detail(app.config["MAX_CONTENT_LENGTH"]))
        return error_response(exc.code or 500, (exc.name or "error").lower(), exc.description)

    @app.errorhandler(Exception)
    def _internal(exc: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal server error", f"{type(exc).__name__}: {exc}")

    def read_json(list_field: str) -> tuple[Any, Response | None]:
        """The body (see ``read_json_body``), or 413 when ``list_field`` holds more than ``max_batch`` entries."""
        payload, problem = read_json_body()
        if problem is not None:
            return None, problem
        if isinstance(payload, dict) and isinstance(payload.get(list_field), list) \
                and len(payload[list_field]) > config.max_batch:
            return None, error_response(
                413, "too many snippets",
                f"{len(payload[list_field])} entries in `{list_field}`, the limit is {config.max_batch} "
                "(max_batch); split the work into smaller requests")
        return payload, None

    # -- routes ---------------------------------------------------------------

    import_limit = bounded_timeout(None, ceiling=config.import_timeout, ceiling_flag="--import-timeout")

    def run_batch(list_field: str, model: type, default_timeout: float | None,
                  options_of: Callable[[Any, AppliedTimeout], VerifyOptions],
                  snippets_of: Callable[[Any], list[Snippet]], result_json: Callable[[Any, Any], dict]) -> Response:
        """The batch routes differ only in field names and shapes: parse, hold to the server's limits, verify, answer.

        The client's ``timeout`` is capped at ``--timeout`` (``default_timeout`` when it sent none) and
        refused below ``--min-timeout``; more distinct headers than ``--max-headers-per-request`` are
        refused. The answer's ``limits`` says which timeout applied and why, and the import timeout.
        """
        if state.closing:
            return error_response(503, SHUTTING_DOWN, "the server is stopping and takes no new work; retry later")
        payload, problem = read_json(list_field)
        if problem is not None:
            return problem
        body, problem = parse_or_422(model, payload)
        if problem is not None:
            return problem
        try:
            timeout = bounded_timeout(body.timeout, ceiling=config.timeout, ceiling_flag="--timeout",
                                      floor=config.min_timeout, default=default_timeout)
        except LimitError as exc:
            return error_response(422, "invalid request", f"timeout: {exc}")
        snippets = snippets_of(body)
        headers = distinct_headers(snippets)
        if len(headers) > config.max_headers_per_request:
            return error_response(
                422, "too many headers",
                f"the snippets import {len(headers)} distinct headers; the server allows "
                f"{config.max_headers_per_request} per request (--max-headers-per-request), as each one costs a "
                "REPL import: group the snippets by header and send the groups as separate requests")
        results = verifier.verify_batch(snippets, options_of(body, timeout))
        return json_response({"results": [result_json(r, body) for r in results],
                              "limits": {"timeout": timeout.to_json(), "import_timeout": import_limit.to_json()}})

    def strict_of(body: Any) -> bool:
        return config.strict if body.strict is None else body.strict

    @app.post("/verify")
    @app.post("/one_pass_verify_batch")
    def verify() -> Response:
        return run_batch(
            "codes", VerifyBody, None,
            lambda body, timeout: VerifyOptions(timeout=timeout.seconds, timeout_origin=timeout.describe(),
                                                infotree=body.infotree_type, strict=strict_of(body),
                                                use_cache=not body.disable_cache),
            lambda body: [Snippet(str(c.custom_id), c.content) for c in body.codes],
            lambda result, body: verify_result_json(result))

    @app.post("/api/check")
    @app.post("/api/check/")
    def check() -> Response:
        return run_batch(
            "snippets", CheckBody, CHECK_DEFAULT_TIMEOUT_S,
            lambda body, timeout: VerifyOptions(timeout=timeout.seconds, timeout_origin=timeout.describe(),
                                                infotree=body.infotree, strict=strict_of(body),
                                                use_cache=body.reuse, debug=body.debug),
            lambda body: [Snippet(s.id, s.code) for s in body.snippets],
            lambda result, body: check_result_json(result, body.debug))

    @app.get("/health")
    @app.get("/health/")
    @app.get("/")
    def health() -> Response:
        stats = pool.stats()
        by_state = stats.workers_by_state
        ready = by_state.get("idle", 0) + by_state.get("busy", 0)
        if state.closing:
            status, code = "shutting down", 503
        elif ready == 0 and by_state.get("starting", 0):
            status, code = "starting", 200
        else:
            status, code = "ok", 200
        public_pool = {"max_repls": stats.max_repls, "workers": by_state, "queue_depth": stats.queue_depth}
        if not g.get("authenticated", False):  # liveness and load only: header texts are what clients sent
            return json_response({"status": status, "pool": public_pool, "suggest": suggester is not None}, code)
        c = stats.counters
        return json_response({
            "status": status,
            "pool": {
                **public_pool,
                "warm_headers": stats.workers_by_header,
                "rss_bytes": stats.rss_bytes,
                "counters": {"started": c.started, "start_failures": c.start_failures, "timeouts": c.timeouts,
                             "lost": c.lost, "recycled_memory": c.recycled_memory,
                             "recycled_uses": c.recycled_uses, "evicted": c.evicted, "overloaded": c.overloaded,
                             "requests": c.requests},
            },
            "cache": verifier.cache.stats(),
            "suggest": suggester is not None,
        }, code)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    if suggester is not None:
        from leanstep.server.suggest_routes import suggest_blueprint

        app.register_blueprint(suggest_blueprint(suggester))

    return app
