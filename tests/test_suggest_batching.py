"""Several editors at once: ``POST /suggest`` over real HTTP shares batched model calls.

A tiny Hugging Face model built locally, the hf backend with cross-request batching,
the app served by waitress over a simulated REPL pool, `requests` and raw sockets as
the editors.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests


from server_fixtures import running_server, wait_until

GOALS = ["n : ℕ\n⊢ n + 0 = n", "⊢ True", "a b : ℕ\nh : a < b\n⊢ a ≤ b ∧ 0 < b", "x y : ℕ\n⊢ x * y = y * x"]


@contextmanager
def serving(tiny_causal: Path, **overrides) -> Iterator[tuple[str, object]]:
    """(base URL, generator) of a server whose hf backend decodes greedily with these settings."""
    with running_server(suggest=True, backend="hf", hf_model=str(tiny_causal), prompt_format="proofstep",
                        temperatures=(0.0,), max_new_tokens=8, max_repls=1, **overrides) as srv:
        generator = srv.services.suggester.generator
        generator.warmup()
        yield srv.url, generator


def ask(url: str, goal: str) -> list[str]:
    r = requests.post(url + "/suggest", json={"tactic_state": goal, "check": False}, timeout=120)
    assert r.status_code == 200, r.text
    return [s["text"] for s in r.json()["suggestions"]]


def test_concurrent_editors_share_a_model_call_and_each_gets_its_own_suggestions(tiny_causal):
    with serving(tiny_causal, generation_batch=1) as (url, _):
        alone = [ask(url, goal) for goal in GOALS]
    # The window is far longer than the test: the batch closes because four requests filled it.
    with serving(tiny_causal, generation_batch=4, generation_window=1.0) as (url, generator):
        before = generator.batch_stats()
        with ThreadPoolExecutor(len(GOALS)) as pool:
            together = list(pool.map(lambda goal: ask(url, goal), GOALS))
        after = generator.batch_stats()
    assert together == alone
    assert (after.batches - before.batches, after.items - before.items) == (1, 4)


def test_batching_off_runs_every_request_alone(tiny_causal):
    with serving(tiny_causal, generation_batch=1) as (url, generator):
        assert generator.batch_stats() is None
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda goal: ask(url, goal), GOALS[:3]))
    assert all(isinstance(a, list) for a in answers)


# What an editor sends for a goal: a /suggest request, or LeanCopilot's /generate request.
ROUTE_BODIES = {
    "/suggest": lambda goal: {"tactic_state": goal, "check": False},
    "/generate": lambda goal: {"name": "tiny", "input": goal, "prefix": ""},
}


def raw_post(port: int, path: str, goal: str) -> socket.socket:
    """A client that sends one request for ``goal`` to ``path`` on its own connection (and can hang up)."""
    body = json.dumps(ROUTE_BODIES[path](goal)).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n".encode()
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


@pytest.mark.parametrize("path", ROUTE_BODIES)
def test_an_editor_that_hangs_up_while_queued_is_dropped_without_costing_a_generation(tiny_causal, path):
    with serving(tiny_causal, generation_batch=4, generation_window=0.0) as (url, generator):
        port = int(url.rsplit(":", 1)[1])
        start = generator.batch_stats()
        with generator._lock:  # the model is busy: the first request's batch waits here
            first = threading.Thread(target=ask, args=(url, GOALS[0]))
            first.start()
            wait_until(lambda: generator.batch_stats().batches == start.batches + 1)
            quitter = raw_post(port, path, GOALS[1])
            wait_until(lambda: generator.batch_stats().queued == 1)
            quitter.close()  # the editor moved on
            wait_until(lambda: generator.batch_stats().dropped == start.dropped + 1)
        first.join(60)
        stats = generator.batch_stats()
        assert (stats.batches - start.batches, stats.items - start.items, stats.queued) == (1, 1, 0)
        assert ask(url, GOALS[2])  # and the server goes on answering


# -- settings ------------------------------------------------------------------------------------


def test_batching_is_set_by_flag_or_environment_and_reaches_the_generator():
    from leanstep.config import load
    from leanstep.generate import settings_from_config

    config = load({}, environ={"LEANSTEP_GENERATION_BATCH": "4", "LEANSTEP_GENERATION_WINDOW": "0.02"})
    settings = settings_from_config(config)
    assert (settings.batch_size, settings.batch_window) == (4, 0.02)
    flags = load({"generation_batch": "1"}, environ={"LEANSTEP_GENERATION_BATCH": "4"})
    assert flags.generation_batch == 1
    defaults = load({}, environ={})
    assert defaults.generation_batch > 1 and 0 < defaults.generation_window <= 0.01


@pytest.mark.parametrize(("given", "flag"), [({"generation_batch": "0"}, "--generation-batch"),
                                             ({"generation_window": "-0.1"}, "--generation-window"),
                                             ({"generation_window": "5"}, "--generation-window")])
def test_nonsense_batching_settings_name_their_flag(given, flag):
    from leanstep.config import load

    with pytest.raises(ValueError, match=flag):
        load(given, environ={})


def test_generator_settings_refuse_nonsense_batching():
    from leanstep.generate import GeneratorSettings

    with pytest.raises(ValueError, match="batch_size"):
        GeneratorSettings(batch_size=0)
    with pytest.raises(ValueError, match="batch_window"):
        GeneratorSettings(batch_size=2, batch_window=-1.0)
