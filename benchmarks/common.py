"""Shared pieces of the benchmarks: timing, tables, results, plots, workloads, servers, peers.

Standard library at import time (leanstep, matplotlib, psutil and requests are
imported where they are used), so a peer's interpreter can import this module too.
Importing it puts the checkout's ``python/`` folder on ``sys.path`` when leanstep is
not installed, so a benchmark runs from a bare checkout. A benchmark run as a
script first puts the checkout's root on the path, to import this module::

    if __package__ in (None, ""):  # run as a script
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.common import ...

The small API other benchmarks may use:

* ``Stopwatch`` / ``cpu_seconds(pid=None)``: wall and CPU time.
* ``print_table(rows, headers)``: a plain-text table on stdout.
* ``write_results(name, data, path=None) -> Path``: JSON under ``benchmarks/results/``
  with the date and the machine added.
* ``plot(name, series, xlabel, ylabel, title, path=None) -> Path | None``: a PNG line plot.
* ``add_output_arguments(parser, name)`` + ``run_benchmark(name, argv, parse_args, run, report, draw)``:
  ``--json``/``--png`` and the ``main`` of a benchmark that writes both.
* ``CostModel`` + ``make_workload(...) -> list[Snippet]``: a simulated proof-checking batch
  whose costs are carried by ``-- sim: delay S`` directives (see ``leanstep.sim``).
* ``sim_costs(import_=..., tactic=..., ...)`` / ``sim_environ(...)``: the ``LEANSTEP_SIM_*_SECONDS``
  variables, for ``scoped_environ``.
* ``sim_config(**settings)``, ``sim_pool(**settings)``, ``warm_services(config)``, ``serving(services)``:
  leanstep's pool, services and HTTP server in this process, on the simulated REPL.
* ``LeanstepServer(...)``: ``leanstep serve --repl sim`` as a subprocess (context manager).
* ``chosen_systems(text, known)``, ``peers_for(systems, install)``, ``run_system(name, run, missing, ours)``:
  which systems a comparison runs, and running each so that one peer's failure does not stop the others.
* ``post_verify(url, snippets, ...)``: a batch sent as Kimina-shaped ``POST /verify`` requests.
* ``peer_environment(install=True) -> PeerEnv``: the separate virtualenv with the peers
  (Kimina's server fork and LeanInteract), created on first use.
* ``KiminaServer(...)``: the Kimina server pointed at the simulated REPL (context manager).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.util
import json
import math
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PEERS_DIR = BENCH_DIR / ".peers"

if importlib.util.find_spec("leanstep") is None:  # a checkout without an install
    sys.path.insert(0, str(ROOT / "python"))

# Peer versions these benchmarks were written and run against. FastAPI is pinned
# because newer releases reject an argument kimina-ast-server 2.1.3 passes to FastAPI().
PEER_REQUIREMENTS = ("kimina-ast-server==2.1.3", "lean-interact==0.11.6", "fastapi==0.116.1")
PEER_MIN_PYTHON = (3, 12)  # kimina's models use typing.TypedDict, which pydantic refuses before 3.12


# --------------------------------------------------------------------------- timing

class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (wall) and ``sw.cpu`` (this process)."""

    def __enter__(self) -> "Stopwatch":
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        self.seconds = 0.0
        self.cpu = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.cpu = time.process_time() - self._c0


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU seconds of a process (its own threads, not its children)."""
    if pid is None:
        return time.process_time()
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


# --------------------------------------------------------------------------- output

def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    """Print rows as an aligned text table; floats get 3 significant decimals."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:
                return "-"
            return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
        return "-" if v is None else str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def machine_info() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }


def write_results(name: str, data: dict[str, Any], path: str | Path | None = None) -> Path:
    """Write ``data`` (plus date and machine) as JSON; default ``benchmarks/results/NAME.json``."""
    out = Path(path) if path else RESULTS_DIR / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "date": _dt.datetime.now().isoformat(timespec="seconds"),
               "machine": machine_info(), **data}
    out.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    return out


def _jsonable(v: Any) -> Any:
    if hasattr(v, "__dataclass_fields__"):
        return asdict(v)
    if isinstance(v, Path):
        return str(v)
    return str(v)


def plot(name: str, series: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str,
         title: str, path: str | Path | None = None) -> Path | None:
    """A PNG line plot, one line per series; default ``benchmarks/results/NAME.png``.

    Returns None (and says why) when matplotlib is missing.
    """
    from leanstep.plotting import png_figure

    out = Path(path) if path else RESULTS_DIR / f"{name}.png"
    try:
        with png_figure(out, figsize=(6.4, 4.2)) as (_, ax):
            for label, points in series.items():
                if points:
                    xs, ys = zip(*sorted(points))
                    ax.plot(xs, ys, marker="o", label=label)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend()
    except ImportError:
        print(f"[{name}] no plot: matplotlib is not installed")
        return None
    return out


def add_output_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """``--json`` and ``--png``, by default ``benchmarks/results/NAME.json`` and ``NAME.png``."""
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / f"{name}.json", help="where the figures go")
    parser.add_argument("--png", type=Path, default=RESULTS_DIR / f"{name}.png", help="where their plot goes")


def run_benchmark(name: str, argv: list[str] | None, parse_args: Callable[[list[str]], argparse.Namespace],
                  run: Callable[[argparse.Namespace], dict[str, Any]], report: Callable[[dict[str, Any]], None],
                  draw: Callable[[dict[str, Any], Path], None]) -> int:
    """A benchmark's ``main``: parse ``argv`` (default: the command line), run, print the report, write the
    figures as JSON (``--json``, see ``write_results``) and ``draw`` them as a PNG (``--png``), say where."""
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    result = run(args)
    report(result)
    write_results(name, result, args.json)
    draw(result, args.png)
    print(f"\nwrote {args.json} and {args.png}")
    return 0


# --------------------------------------------------------------------------- workload

@dataclass(frozen=True)
class CostModel:
    """The simulated costs of a workload.

    Per-proof seconds are lognormal (median ``proof_median_s``, log-sd ``proof_sigma``:
    a long right tail) capped at ``proof_cap_s``; each snippet carries its cost as a
    ``-- sim: delay S`` directive. ``import_s`` is charged by the simulator for every
    request with imports (``LEANSTEP_SIM_IMPORT_SECONDS``).
    """

    import_s: float = 1.0
    proof_median_s: float = 0.05
    proof_sigma: float = 1.0
    proof_cap_s: float = 3.0
    invalid_fraction: float = 0.2

    def describe(self) -> str:
        mean = self.proof_median_s * math.exp(self.proof_sigma ** 2 / 2)
        return (f"import {self.import_s:g} s per header import; per-proof seconds lognormal(median "
                f"{self.proof_median_s:g}, sigma {self.proof_sigma:g}, uncapped mean {mean:.3f}) capped at "
                f"{self.proof_cap_s:g}; {self.invalid_fraction:.0%} of proofs invalid")


@dataclass(frozen=True)
class Snippet:
    id: str
    code: str
    header: str
    body: str
    cost_s: float  # simulated seconds of the proof
    valid: bool  # the expected verdict
    duplicate_of: str | None = None
    group: str | None = None  # the problem it is a sample of (RL workloads)


def make_workload(n: int, headers: int = 2, duplicate_fraction: float = 0.2, cost: CostModel = CostModel(),
                  header_skew: float = 0.7, seed: int = 0) -> list[Snippet]:
    """``n`` snippets over ``headers`` distinct import headers, with exact duplicates.

    Header 0 gets ``header_skew`` of the snippets, the rest share the remainder (RL
    batches are dominated by one header). A duplicate repeats an earlier snippet's
    code under a new id. Invalid proofs state a false closed equation (the simulator
    rejects them with an error message).
    """
    rng = random.Random(seed)
    header_texts = [f"import Mathlib\nimport Bench.Header{h}" for h in range(max(1, headers))]
    out: list[Snippet] = []
    for i in range(n):
        if out and rng.random() < duplicate_fraction:
            src = rng.choice([s for s in out if s.duplicate_of is None])
            out.append(Snippet(f"p{i}", src.code, src.header, src.body, src.cost_s, src.valid, src.id))
            continue
        if len(header_texts) == 1 or rng.random() < header_skew:
            header = header_texts[0]
        else:
            header = header_texts[1 + rng.randrange(len(header_texts) - 1)]
        delay = min(cost.proof_cap_s, rng.lognormvariate(math.log(cost.proof_median_s), cost.proof_sigma)) \
            if cost.proof_median_s > 0 else 0.0
        valid = rng.random() >= cost.invalid_fraction
        a, b = rng.randrange(1, 1000), rng.randrange(1, 1000)
        rhs = a + b if valid else a + b + 1
        directive = f"  -- sim: delay {delay:.4f}\n" if delay > 0 else ""
        body = f"theorem bench_{i} (n : ℕ) (h : n = {a}) : {a} + {b} = {rhs} := by\n{directive}  norm_num"
        out.append(Snippet(f"p{i}", f"{header}\n\n{body}", header, body, delay, valid))
    return out


def sim_costs(**seconds: float) -> dict[str, str]:
    """``LEANSTEP_SIM_<KNOB>_SECONDS`` for each knob named (``import``, ``cmd``, ``proof``, ``tactic``; ``import_``
    where a keyword cannot be ``import``): the simulator's costs, inherited by every REPL started under them."""
    return {f"LEANSTEP_SIM_{knob.rstrip('_').upper()}_SECONDS": f"{value:g}" for knob, value in seconds.items()}


def sim_environ(import_s: float = 0.0, cmd_s: float = 0.0, proof_s: float = 0.0) -> dict[str, str]:
    """The simulator's cost variables of a proof-checking workload (no tactic cost)."""
    return sim_costs(import_=import_s, cmd=cmd_s, proof=proof_s, tactic=0)


@contextlib.contextmanager
def scoped_environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for REPLs started inside the block (pools copy the
    environment when they are made); the previous values are restored after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def has_error(result: dict[str, Any]) -> bool:
    """A Kimina-shaped ``/verify`` result has an error (server error or error message)."""
    if result.get("error"):
        return True
    response = result.get("response") or {}
    if "message" in response and "env" not in response:
        return True
    return any(m.get("severity") == "error" for m in response.get("messages") or ())


# --------------------------------------------------------------------------- leanstep in this process

def sim_config(**settings: Any) -> Any:
    """leanstep's configuration on the simulated REPL, unsandboxed unless ``settings`` say otherwise; the
    environment's ``LEANSTEP_*`` variables are ignored."""
    from leanstep.config import load

    return load({"repl": "sim", "sandbox": "none", **settings}, environ={})


@contextlib.contextmanager
def sim_pool(**settings: Any) -> Iterator[Any]:
    """A pool of simulated REPLs (``sim_config(**settings)``), started and warm; shut down after the block."""
    from leanstep.repl.launch import make_pool

    pool = make_pool(sim_config(**settings))
    pool.start()
    try:
        pool.wait_warm(120)
        yield pool
    finally:
        pool.shutdown()


@contextlib.contextmanager
def warm_services(config: Any, **build: Any) -> Iterator[Any]:
    """The server's services (``build_services(config, **build)``), their pool warm; closed after the block."""
    from leanstep.server.services import build_services

    services = build_services(config, **build)
    try:
        services.pool.wait_warm(120)
        yield services
    finally:
        services.close()


@contextlib.contextmanager
def serving(services: Any) -> Iterator[str]:
    """The HTTP app over ``services``, served by waitress in this process; the block gets its base URL."""
    from leanstep.server.app import create_app
    from leanstep.server.wsgi import serve_in_thread

    with serve_in_thread(create_app(services), services.config) as url:
        yield url


# --------------------------------------------------------------------------- HTTP

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Wait until GET ``url`` answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def request_chunks(snippets: Sequence[Snippet], batch_size: int, whole_groups: bool = False) -> list[list[Snippet]]:
    """The requests a client sends: runs of ``batch_size`` snippets; with ``whole_groups``, whole groups (samples
    of one problem) packed up to ``batch_size``, a larger group alone, as first-valid-wins needs."""
    if not whole_groups:
        return [list(snippets[i:i + batch_size]) for i in range(0, len(snippets), batch_size)]
    groups: dict[str, list[Snippet]] = {}
    for s in snippets:
        groups.setdefault(s.group or s.id, []).append(s)
    chunks: list[list[Snippet]] = []
    for members in groups.values():
        if chunks and len(chunks[-1]) + len(members) <= batch_size:
            chunks[-1].extend(members)
        else:
            chunks.append(list(members))
    return chunks


def post_verify(base_url: str, snippets: Sequence[Snippet], batch_size: int = 16, concurrency: int = 8,
                timeout_s: float = 120.0, first_valid: bool = False) -> list[dict[str, Any]]:
    """Send the batch as Kimina-shaped ``POST /verify`` requests of ``batch_size`` snippets,
    ``concurrency`` requests in flight; return the results in snippet order.

    ``first_valid`` (leanstep only): each request carries whole groups, each snippet its ``group``, and asks
    for first valid wins."""
    import requests

    chunks = request_chunks(snippets, batch_size, whole_groups=first_valid)
    session_per_thread: dict[int, Any] = {}

    def send(chunk: list[Snippet]) -> list[dict[str, Any]]:
        import threading

        sess = session_per_thread.setdefault(threading.get_ident(), requests.Session())
        codes = [{"custom_id": s.id, "proof": s.code, **({"group": s.group} if first_valid else {})} for s in chunk]
        body = {"codes": codes, "timeout": int(timeout_s), **({"first_valid": True} if first_valid else {})}
        r = sess.post(f"{base_url}/verify", json=body, timeout=timeout_s * len(chunk) + 60)
        r.raise_for_status()
        results = r.json()["results"]
        by_id = {str(x.get("custom_id")): x for x in results}
        return [by_id.get(s.id, {"custom_id": s.id, "error": "missing from response"}) for s in chunk]

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(chunks)))) as pool:
        parts = list(pool.map(send, chunks))
    for sess in session_per_thread.values():
        sess.close()
    answered = {str(r.get("custom_id")): r for part in parts for r in part}
    return [answered[s.id] for s in snippets]


class _ServerProcess:
    """A server subprocess with its log in a temporary file; stopped by pid on exit."""

    proc: subprocess.Popen
    url: str

    def _spawn(self, argv: list[str], env: dict[str, str], cwd: str | None, health: str, start_timeout: float) -> None:
        self._log = tempfile.NamedTemporaryFile("w+", prefix="bench-server-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            wait_http(self.url + health, start_timeout, self.proc)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{exc}; log tail:\n{self.log_tail()}") from None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        try:  # REPLs left behind in the server's process group
            os.killpg(self.proc.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        try:
            os.unlink(self._log.name)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LeanstepServer(_ServerProcess):
    """``leanstep serve --repl sim --no-model`` on 127.0.0.1 with ``workers`` REPLs."""

    def __init__(self, workers: int, env: dict[str, str] | None = None, extra_args: Sequence[str] = (),
                 start_timeout: float = 60.0) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "python"), full_env.get("PYTHONPATH")]))
        argv = [sys.executable, "-m", "leanstep", "serve", "--repl", "sim", "--no-model", "--host", "127.0.0.1",
                "--port", str(port), "--max-repls", str(workers), *extra_args]
        self._spawn(argv, full_env, None, "/health", start_timeout)


# --------------------------------------------------------------------------- peers

@dataclass
class PeerEnv:
    """The peers' virtualenv: ``python`` when usable, else ``reason`` says why not."""

    python: Path | None
    reason: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.python is not None


def _python_at_least(exe: str, version: tuple[int, int]) -> bool:
    try:
        out = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2] >= %r)" % (version,)],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == "True"


def find_peer_base_python() -> str | None:
    """An interpreter new enough for the peers: $LEANSTEP_BENCH_PEER_PYTHON, this one, python3.1x on
    PATH, or a pyenv-installed version."""
    candidates = [os.environ.get("LEANSTEP_BENCH_PEER_PYTHON"), sys.executable,
                  *(shutil.which(f"python3.{m}") for m in (12, 13, 14))]
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            versions = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True,
                                      timeout=30).stdout.split()
            for v in sorted(versions, reverse=True):
                if v[:2] == "3." and v.split(".")[1].isdigit() and int(v.split(".")[1]) >= PEER_MIN_PYTHON[1]:
                    prefix = subprocess.run([pyenv, "prefix", v], capture_output=True, text=True,
                                            timeout=30).stdout.strip()
                    candidates.append(str(Path(prefix) / "bin" / "python3"))
        except (OSError, subprocess.TimeoutExpired):
            pass
    for exe in candidates:
        if exe and _python_at_least(exe, PEER_MIN_PYTHON):
            return exe
    return None


PEERS = ("kimina", "leaninteract")


def chosen_systems(text: str, known: Sequence[str]) -> list[str]:
    """The systems a comma-separated ``--systems`` names; ValueError naming those not in ``known``."""
    systems = [s.strip() for s in text.split(",") if s.strip()]
    unknown = set(systems) - set(known)
    if unknown:
        raise ValueError(f"unknown systems: {', '.join(sorted(unknown))}")
    return systems


def run_system(name: str, run: Callable[[], dict[str, Any]], missing: dict[str, str],
               ours: bool) -> dict[str, Any] | None:
    """``run()``, one system's run. A peer that fails is recorded in ``missing`` with why and None returned, so
    that the others still run; leanstep's own failure (``ours``) fails the benchmark."""
    try:
        return run()
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        print(f"    {name} failed: {reason[:1500]}")
        if ours:
            raise
        missing[name] = reason[:2000]
        return None


def peers_for(systems: Sequence[str], install: bool) -> tuple[PeerEnv | None, dict[str, str]]:
    """The peers' environment when ``systems`` names a peer, and why each named peer cannot run."""
    if not set(PEERS) & set(systems):
        return None, {}
    peer = peer_environment(install=install)
    if peer.ok:
        print(f"  peers: {peer.versions}")
        return peer, {}
    return peer, {name: peer.reason for name in PEERS if name in systems}


def peer_environment(install: bool = True) -> PeerEnv:
    """The peers' virtualenv under ``benchmarks/.peers/venv``, created and filled on first use.

    Idempotent: an existing venv with the pinned packages is used as is. Nothing here
    touches leanstep's own environment.
    """
    venv = PEERS_DIR / "venv"
    py = venv / "bin" / "python"
    marker = venv / ".leanstep-peers"
    wanted = "\n".join(PEER_REQUIREMENTS)
    if py.exists() and marker.exists() and marker.read_text() == wanted:
        return PeerEnv(py, versions=_peer_versions(py))
    if not install:
        return PeerEnv(None, f"peer virtualenv {venv} not set up (run without --no-install to create it)")
    base = find_peer_base_python()
    if base is None:
        return PeerEnv(None, "no Python >= %d.%d found for the peers (kimina-ast-server needs it); set "
                             "LEANSTEP_BENCH_PEER_PYTHON" % PEER_MIN_PYTHON)
    print(f"[peers] setting up {venv} with {' '.join(PEER_REQUIREMENTS)} (once; about a minute)...", flush=True)
    try:
        if not py.exists():
            subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True, text=True, timeout=300)
        proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                               *PEER_REQUIREMENTS], capture_output=True, text=True, timeout=1200)
    except (OSError, subprocess.SubprocessError) as exc:
        return PeerEnv(None, f"could not create the peer virtualenv: {exc}")
    if proc.returncode != 0:
        tail = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("WARNING"))[-800:]
        return PeerEnv(None, f"pip install of the peers failed (offline?): {tail.strip()}")
    marker.write_text(wanted)
    print("[peers] ready", flush=True)
    return PeerEnv(py, versions=_peer_versions(py))


def _peer_versions(py: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys; print(json.dumps({n: m.version(n) for n in "
            "('kimina-ast-server', 'lean-interact', 'fastapi', 'uvicorn')} | {'python': sys.version.split()[0]}))")
    try:
        out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60)
        return json.loads(out.stdout)
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}


class SimShims:
    """A temporary folder with a ``lake`` that runs ``lake env CMD ARGS`` as ``CMD ARGS`` and a
    ``repl`` executable that runs ``python -m leanstep.sim``; also a fake REPL checkout
    (``lean-toolchain`` + ``.lake/build/bin/repl``) for tools that want one."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-sim-"))
        self.bin = self.dir / "bin"
        self.bin.mkdir()
        self.lake = self.bin / "lake"
        self.lake.write_text('#!/bin/sh\nif [ "$1" = "env" ]; then shift; fi\nexec "$@"\n')
        pythonpath = str(ROOT / "python")
        self.repl = self.bin / "repl"
        self.repl.write_text(f'#!/bin/sh\nPYTHONPATH="{pythonpath}${{PYTHONPATH:+:$PYTHONPATH}}" '
                             f'exec "{sys.executable}" -m leanstep.sim "$@"\n')
        self.repl_checkout = self.dir / "repl-checkout"
        (self.repl_checkout / ".lake" / "build" / "bin").mkdir(parents=True)
        (self.repl_checkout / "lean-toolchain").write_text("leanprover/lean4:v4.19.0\n")
        shutil.copy(self.repl, self.repl_checkout / ".lake" / "build" / "bin" / "repl")
        self.project = self.dir / "project"
        self.project.mkdir()
        for f in (self.lake, self.repl, self.repl_checkout / ".lake" / "build" / "bin" / "repl"):
            f.chmod(0o755)

    def path_env(self) -> str:
        return os.pathsep.join([str(self.bin), os.environ.get("PATH", "")])

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# Kimina imports a Prisma client at start-up even with no database configured, and
# generating it downloads engine binaries; the database is off unless
# LEAN_SERVER_DATABASE_URL is set, so the benchmark replaces that module by a stub.
_KIMINA_BOOT = textwrap.dedent("""
    import sys, types
    stub = types.ModuleType("server.prisma_client")
    class _NoDatabase:
        async def connect(self):
            raise RuntimeError("database disabled in this benchmark")
        async def disconnect(self):
            pass
    stub.prisma = _NoDatabase()
    sys.modules["server.prisma_client"] = stub
    from server.__main__ import main
    sys.argv = ["kimina-ast-server"]
    main()
""")


class KiminaServer(_ServerProcess):
    """kimina-ast-server with ``workers`` REPLs, each the simulated REPL behind the lake shim.

    Run in its quietest configuration (``ENVIRONMENT=prod``, ``LOG_LEVEL=WARNING``): in
    ``dev`` it pretty-prints every snippet to the console.
    """

    def __init__(self, peer: PeerEnv, workers: int, env: dict[str, str] | None = None,
                 start_timeout: float = 90.0) -> None:
        assert peer.python is not None
        self.shims = SimShims()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        boot = self.shims.dir / "kimina_boot.py"
        boot.write_text(_KIMINA_BOOT)
        full_env = {**os.environ, **(env or {}),
                    "PATH": self.shims.path_env(),
                    "LEAN_SERVER_SKIP_VALIDATION": "1",
                    "LEAN_SERVER_REPL_PATH": str(self.shims.repl),
                    "LEAN_SERVER_PROJECT_DIR": str(self.shims.project),
                    "LEAN_SERVER_MAX_REPLS": str(workers),
                    "LEAN_SERVER_HOST": "127.0.0.1",
                    "LEAN_SERVER_PORT": str(port),
                    "LEAN_SERVER_ENVIRONMENT": "prod",
                    "LEAN_SERVER_LOG_LEVEL": "WARNING"}
        full_env.pop("PYTHONPATH", None)
        for key in [k for k in full_env if k.startswith("LEAN_SERVER_DATABASE")]:
            full_env.pop(key)
        try:
            self._spawn([str(peer.python), str(boot)], full_env, str(self.shims.project), "/health", start_timeout)
        except Exception:
            self.shims.cleanup()
            raise

    def stop(self) -> None:
        super().stop()
        self.shims.cleanup()
