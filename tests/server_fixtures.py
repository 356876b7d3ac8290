"""Helpers shared by the server, client and CLI tests: a real waitress server on 127.0.0.1 over a sim pool."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from leanstep.config import Config, load
from leanstep.generate import Candidate, GenerationRequest
from leanstep.repl.launch import make_pool
from leanstep.repl.pool import ReplPool
from leanstep.server.app import create_app
from leanstep.server.services import Services, build_services
from leanstep.server.wsgi import serve_in_thread

ROOT = Path(__file__).resolve().parent.parent


def import_kimina_client() -> Any:
    """Import the unmodified kimina-client 0.2.1.

    Its models use ``typing.TypedDict`` when ``typing.NotRequired`` exists (Python 3.11), which
    pydantic 2 refuses on Python < 3.12; users of that package on 3.11 need the same shim: the
    import sees ``typing_extensions.TypedDict`` and the package's own code is unchanged.
    """
    import sys
    import typing

    import typing_extensions

    if "kimina_client" in sys.modules or sys.version_info >= (3, 12):
        import kimina_client

        return kimina_client
    original = typing.TypedDict
    typing.TypedDict = typing_extensions.TypedDict  # type: ignore[misc]
    try:
        import kimina_client
    finally:
        typing.TypedDict = original  # type: ignore[misc]
    return kimina_client


def sim_config(**overrides: Any) -> Config:
    """A sim pool of 2 REPLs, no sandbox, zero simulated cost; environment variables ignored."""
    settings = {"repl": "sim", "max_repls": 2, "sandbox": "none", "queue_wait": 30, **overrides}
    return load(settings, environ={})


def sim_pool(**overrides: Any) -> ReplPool:
    """The pool of ``sim_config(**overrides)``, not started: ``with sim_pool() as pool`` starts it and shuts it
    down after the block."""
    return make_pool(sim_config(**overrides))


SIM_COSTS = ("IMPORT", "CMD", "TACTIC", "PROOF")


def sim_costs(monkeypatch: Any, **seconds: float) -> None:
    """The simulator's costs for the REPLs started next (pools copy the environment when made): the knobs named
    (``import``, ``cmd``, ``tactic``, ``proof``) in seconds, every other one zero, whatever the environment said."""
    for knob in SIM_COSTS:
        monkeypatch.delenv(f"LEANSTEP_SIM_{knob}_SECONDS", raising=False)
    for knob, value in seconds.items():
        monkeypatch.setenv(f"LEANSTEP_SIM_{knob.upper()}_SECONDS", str(value))


class SlowChain:
    """A test double for the model: each state of a long ``intro`` chain gets two tactics that take two seconds
    and change nothing, and ``intro``, which makes the next state (a search of many seconds that finds nothing);
    ``⊢ True`` gets ``trivial``. ``chain_calls``: the generations for the chain. ``PROVE``: a proving of the
    chain that would take some 30 s; ``EASY``: one proved in an expansion."""

    PROVE: ClassVar[dict[str, Any]] = {"statement": "theorem chain : ∀ a b c d e f g h i j k l m n o p : ℕ, a = a",
                                       "strategy": "search", "expansions": 4096, "timeout": 120}
    EASY: ClassVar[dict[str, Any]] = {"statement": "theorem easy : True", "strategy": "search"}

    def __init__(self) -> None:
        self.chain_calls = 0
        self.lock = threading.Lock()

    def generate(self, request: GenerationRequest) -> list[Candidate]:
        if request.tactic_state.endswith("⊢ True"):
            return [Candidate("trivial", -0.1)]
        with self.lock:
            self.chain_calls += 1
        return [Candidate("sim_delay 2", -0.1), Candidate("sim_delay 2.0", -0.2), Candidate("intro", -1.0)]


@dataclass
class RunningServer:
    url: str
    services: Services

    @property
    def pool(self) -> ReplPool:
        return self.services.pool

    @property
    def config(self) -> Config:
        return self.services.config


@contextmanager
def running_server(*, suggest: bool = False, generator: Any = None, **overrides: Any) -> Iterator[RunningServer]:
    """The app over ``build_services`` (as ``leanstep serve`` runs it) on a free port.

    ``suggest``: with the suggestion routes, over the configured backend (``backend="hint"``: no model).
    ``generator``: with the suggestion routes, over this generator.
    """
    config = sim_config(**overrides)
    services = build_services(config, suggest=suggest or generator is not None, generator=generator)
    try:
        with serve_in_thread(create_app(services), config) as url:
            yield RunningServer(url, services)
    finally:
        services.close()


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int, *words: str) -> None:
    """The answer is the app's error: status ``expected``, a JSON ``{"error", "detail"}`` naming every one of
    ``words`` (any case). ``headers`` with lower-case names."""
    import json

    assert status == expected, body[:500]
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)
    assert set(error) == {"error", "detail"}
    text = json.dumps(error).lower()
    for word in words:
        assert word.lower() in text, text


def assert_error(resp: Any, expected: int, *words: str) -> None:
    """``assert_json_error`` of a ``requests`` response."""
    assert_json_error(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content, expected, *words)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition not reached in time"
               ) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds, saying ``what``."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def wait_for_idle_repls(server: Any, url: str, count: int, log_path: Any, timeout: float = 60.0) -> None:
    """Poll a ``leanstep serve`` subprocess's /health until ``count`` REPLs are idle (its log on failure)."""
    import time

    import requests

    deadline = time.monotonic() + timeout
    while True:
        assert server.poll() is None, log_path.read_text()
        try:
            if requests.get(url + "/health", timeout=2).json()["pool"]["workers"]["idle"] == count:
                return
        except (requests.RequestException, ValueError, KeyError):
            pass
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)


def sim_repls(root: Any) -> list[Any]:
    """The simulated REPLs among the descendants of ``root`` (a psutil.Process)."""
    import psutil

    found = []
    for proc in root.children(recursive=True):
        try:
            if "leanstep.sim" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn_server(log_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``leanstep serve --port PORT ARGS`` from this checkout, a subprocess on a free port of 127.0.0.1 with its
    output in ``log_path``, in ``env`` (default: this environment without its ``LEANSTEP_*`` variables).
    Returns the process and its base URL; ``stop_server`` stops it."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEANSTEP_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "python"), env.get("PYTHONPATH")]))
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "leanstep", "serve", "--port", str(port), *args], env=env,
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def stop_server(proc: Any, grace: float = 30.0) -> None:
    """SIGTERM a ``leanstep serve`` subprocess and wait for it; SIGKILL it if it outlives ``grace``."""
    import signal

    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
