"""Editor latency through ``POST /suggest``: many editors at once, and one call end to end.

Both parts run the real server (waitress, in this process, on 127.0.0.1) with the
hf backend over simulated REPLs, and `requests` clients.

**Many editors.** 1, 4 and 16 clients, each sending ``/suggest`` requests one
after another (the next when its answer arrives), every client with its own goal
(prompts of different lengths), 8 samples of up to ``--new-tokens`` tokens, no
checking: this part measures generation under concurrency. Two servers run side
by side on one model, cross-request batching on (``--generation-batch 16``) and
off (``--generation-batch 1``); at each client count the two take turns. Per
client count and mode: p50 and p95 latency, the ratio to one editor's p50, and
the mean batch the generator ran.

**One editor, end to end.** One ``llmstep`` call = generation + reading the goal's
context + checking every candidate in parallel on the warm REPLs, sent as the
editor's bridge sends it (the file text up to the call, the goal, no prefix),
down one proof as in ``editor.py``. Each tactic's checking cost is drawn from a
lognormal distribution (median ``--tactic-median`` s, log-sd ``--tactic-sigma``;
the simulator draws once per tactic text, so a tactic costs the same wherever it
runs). Run twice: with the model's candidates only, and with one more candidate
that never finishes (``sim_hang``), which the checking budget must cut off.

    python benchmarks/suggest_latency.py            # tiny model on the CPU; Pythia-2.8B shape on a GPU
    python benchmarks/suggest_latency.py --quick    # small sizes (smoke test)

Writes JSON (``--json``, default benchmarks/results/suggest_latency.json) and a PNG
plot of latency against editors (``--png``).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    ROOT,
    add_output_arguments,
    plot,
    scoped_environ,
    serving,
    sim_config,
    sim_costs,
    warm_services,
    write_results,
)
from benchmarks.editor import trace  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))  # the tiny-model builders
from tiny_models import WORDS, build_tiny_causal, save_word_tokenizer  # noqa: E402

from leanstep.generate import make_generator, settings_from_config  # noqa: E402
from leanstep.generate.base import Candidate, GenerationRequest, Generator  # noqa: E402

HEADER = "import Mathlib"
GOAL = "a b : ℕ\nh : a < b\n⊢ a ≤ b"
HANG = "sim_hang"
BATCH_ON = 16


@dataclass
class Cell:
    """Latencies of one (mode, client count) cell, with the generator's batching counters."""

    mode: str
    clients: int
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    batches: int = 0
    items: int = 0

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 1.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_s, q)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class WithHangingCandidate:
    """The model's candidates and, last, one more that never finishes: a model proposing a looping tactic."""

    def __init__(self, inner: Generator) -> None:
        self.inner = inner

    def warmup(self) -> None:
        getattr(self.inner, "warmup", lambda: None)()

    def generate(self, request: GenerationRequest) -> list[Candidate]:
        return [*self.inner.generate(request), Candidate(HANG, -1e9)]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="leanstep bench suggest-latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: clients 1,4, few requests (a smoke test)")
    p.add_argument("--shape", choices=("auto", "tiny", "pythia-2.8b"), default="auto",
                   help="model: the tests' tiny GPT-NeoX, or the Pythia-2.8B shape with random weights "
                        "(auto: Pythia-2.8B on a CUDA GPU, tiny otherwise)")
    p.add_argument("--clients", default=None, help="client counts, comma-separated (default 1,4,16; --quick 1,4)")
    p.add_argument("--requests", type=int, default=None,
                   help="requests per (mode, client count), at least one per client (default 32; --quick 8)")
    p.add_argument("--turns", type=int, default=None,
                   help="times the two modes take turns per client count (default 4; --quick 1)")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=None, help="longest candidate (default 48; --quick 16)")
    p.add_argument("--prompt-tokens", type=int, default=None,
                   help="longest goal in words; goals range from half this up (default 256; --quick 64)")
    p.add_argument("--window", type=float, default=0.005, help="batching window in seconds (batching on)")
    p.add_argument("--calls", type=int, default=None, help="end-to-end calls per scenario (default 10; --quick 3)")
    p.add_argument("--workers", type=int, default=4, help="simulated REPLs for checking")
    p.add_argument("--budget", type=float, default=None, help="checking budget in seconds (default 5; --quick 1)")
    p.add_argument("--tactic-median", type=float, default=0.05, help="median seconds of one tactic check")
    p.add_argument("--tactic-sigma", type=float, default=1.0, help="log-sd of one tactic check's seconds")
    p.add_argument("--import-seconds", type=float, default=None, help="simulated import (default 1; --quick 0.2)")
    p.add_argument("--skip", default="", help="parts to leave out: editors, e2e (comma-separated)")
    add_output_arguments(p, "suggest_latency")
    args = p.parse_args(argv)
    args.clients = [int(c) for c in (args.clients or ("1,4" if args.quick else "1,4,16")).split(",")]
    args.requests = args.requests or (8 if args.quick else 32)
    args.turns = args.turns or (1 if args.quick else 4)
    args.new_tokens = args.new_tokens or (16 if args.quick else 48)
    args.prompt_tokens = args.prompt_tokens or (64 if args.quick else 256)
    args.calls = args.calls or (3 if args.quick else 10)
    args.budget = args.budget if args.budget is not None else (1.0 if args.quick else 5.0)
    args.import_seconds = args.import_seconds if args.import_seconds is not None else (0.2 if args.quick else 1.0)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    return args


def build_model(shape: str, path: Path) -> Path:
    """A model directory for ``shape``: the tests' tiny model, or the Pythia-2.8B shape (random bf16 weights)."""
    if shape == "tiny":
        return build_tiny_causal(path)
    import torch
    from benchmarks.generation import PYTHIA_2_8B
    from benchmarks.generation import build_model as build_neox

    save_word_tokenizer(path, PYTHIA_2_8B["vocab_size"])
    torch.manual_seed(0)
    model = build_neox(PYTHIA_2_8B, torch.device("cuda"), torch.bfloat16)
    model.config.update({"bos_token_id": 1, "eos_token_id": 1, "pad_token_id": 1})
    model.save_pretrained(path)
    del model
    torch.cuda.empty_cache()
    return path


def goals(count: int, longest: int, seed: int = 0) -> list[str]:
    """``count`` distinct goals of ``longest // 2`` to ``longest`` words of the model's vocabulary."""
    rng = random.Random(seed)
    words = [w for w in WORDS if w != "⊢"]
    out = []
    for _ in range(count):
        size = rng.randint(max(1, longest // 2), longest)
        out.append(" ".join(rng.choice(words) for _ in range(size - 2)) + " ⊢ True")
    return out


def server_config(args: argparse.Namespace, model: Path, batch: int, **overrides: Any):
    settings = {"max_repls": args.workers, "warm_headers": HEADER, "hf_model": str(model),
                "prompt_format": "proofstep", "num_samples": args.samples, "max_new_tokens": args.new_tokens,
                "generation_batch": batch, "generation_window": args.window, "check_timeout": args.budget,
                "threads": 64, **overrides}
    return sim_config(**settings)


def serve(stack: ExitStack, config, generator: Generator | None = None) -> tuple[str, Any]:
    """Services and a waitress server for ``config`` inside ``stack``; (base URL, the generator)."""
    services = stack.enter_context(warm_services(config, generator=generator))
    url = stack.enter_context(serving(services))
    assert services.suggester is not None
    return url, services.suggester.generator


def wait_ready(url: str, body: dict[str, Any], timeout: float = 600.0) -> None:
    """Until the model has loaded and one request went through (the warm-up is not timed)."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        r = requests.post(url + "/suggest", json=body, timeout=timeout)
        if r.status_code == 200:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server never answered /suggest: {r.status_code} {r.text[:300]}")
        time.sleep(0.5)


def run_clients(url: str, bodies: list[dict[str, Any]], clients: int, total: int) -> tuple[list[float], int]:
    """``clients`` threads, each sending its share of ``total`` requests back to back; latencies and errors."""
    import requests

    per_client = max(1, math.ceil(total / clients))
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(index: int) -> None:
        with requests.Session() as session:
            start.wait()
            for k in range(per_client):
                body = bodies[(index + k * clients) % len(bodies)]
                t0 = time.perf_counter()
                r = session.post(url + "/suggest", json=body, timeout=600)
                elapsed = time.perf_counter() - t0
                with lock:
                    if r.status_code == 200 and r.json()["suggestions"] is not None:
                        latencies.append(elapsed)
                    else:
                        errors[0] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0]


def batch_counters(generator: Any) -> tuple[int, int]:
    stats = generator.batch_stats() if hasattr(generator, "batch_stats") else None
    return (stats.batches, stats.items) if stats is not None else (0, 0)


def many_editors(args: argparse.Namespace, model: Path) -> list[Cell]:
    bodies = [{"tactic_state": g, "prefix": "", "n": args.samples, "check": False}
              for g in goals(max(args.clients) * 2, args.prompt_tokens)]
    cells: list[Cell] = []
    with ExitStack() as stack:
        servers = {mode: serve(stack, server_config(args, model, batch, max_repls=1))
                   for mode, batch in (("batching off", 1), ("batching on", BATCH_ON))}
        for url, _ in servers.values():
            wait_ready(url, bodies[0])
        for clients in args.clients:
            # The modes take turns, a share of the requests each turn, so that load from outside the
            # benchmark falls on both alike.
            share = max(clients, math.ceil(args.requests / args.turns))
            turn_cells = {mode: Cell(mode, clients) for mode in servers}
            for _ in range(args.turns):
                for mode, (url, generator) in servers.items():
                    cell = turn_cells[mode]
                    before = batch_counters(generator)
                    latencies, errors = run_clients(url, bodies, clients, share)
                    after = batch_counters(generator)
                    cell.latencies_s += latencies
                    cell.errors += errors
                    cell.batches += after[0] - before[0]
                    cell.items += after[1] - before[1]
            for mode, cell in turn_cells.items():
                cells.append(cell)
                print(f"  {mode:<13} {clients:>3} editors: p50 {cell.percentile(0.5):.3f} s, "
                      f"p95 {cell.percentile(0.95):.3f} s, mean batch {cell.mean_batch:.1f}, errors {cell.errors}",
                      flush=True)
    return cells


def end_to_end(args: argparse.Namespace, model: Path) -> list[dict[str, Any]]:
    calls = [call_body(source, position) for source, position in trace(theorems=10, calls=args.calls + 1)]
    environ = sim_costs(import_=args.import_seconds, cmd=0.01, proof=0.02, tactic=args.tactic_median)
    environ["LEANSTEP_SIM_TACTIC_SIGMA"] = f"{args.tactic_sigma:g}"
    rows = []
    with scoped_environ(environ):  # the simulated REPLs the servers start inherit the costs
        for scenario, hang in (("model's candidates", False), ("plus one hanging candidate", True)):
            config = server_config(args, model, BATCH_ON)
            generator = make_generator(settings_from_config(config))
            with ExitStack() as stack:
                url, _ = serve(stack, config, WithHangingCandidate(generator) if hang else generator)
                wait_ready(url, calls[0])  # model loaded, REPLs warm, first preamble elaborated: not timed
                rows.append(_e2e_scenario(url, scenario, hang, calls[1:]))
            print(f"  {scenario}: p50 {rows[-1]['p50_s']:.3f} s, p95 {rows[-1]['p95_s']:.3f} s", flush=True)
    return rows


def call_body(source: str, position: tuple[int, int]) -> dict[str, Any]:
    """What the editor's bridge sends for one ``llmstep ""`` call (invalid candidates kept, to count them)."""
    return {"tactic_state": GOAL, "prefix": "", "source": source,
            "position": {"line": position[0], "column": position[1]}, "include_invalid": True}


def _e2e_scenario(url: str, scenario: str, hang: bool, calls: list[dict[str, Any]]) -> dict[str, Any]:
    import requests

    totals, generation, checking, statuses, timed_out = [], [], [], [], 0
    with requests.Session() as session:
        for body in calls:
            t0 = time.perf_counter()
            r = session.post(url + "/suggest", json=body, timeout=600)
            totals.append(time.perf_counter() - t0)
            r.raise_for_status()
            answer = r.json()
            generation.append(answer["timings"]["generation_ms"] / 1000)
            checking.append(answer["timings"]["checking_ms"] / 1000)
            statuses.append(answer["counts"])
            timed_out += sum(1 for s in answer["suggestions"]
                             if s["text"] == HANG and (s.get("message") or "").startswith("timeout:"))
    return {"scenario": scenario, "hanging_candidate": hang, "calls": len(totals), "latencies_s": totals,
            "p50_s": statistics.median(totals), "p95_s": percentile(totals, 0.95),
            "generation_p50_s": statistics.median(generation), "checking_p50_s": statistics.median(checking),
            "checking_max_s": max(checking), "hang_cut_off": timed_out, "counts": statuses}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    shape = args.shape if args.shape != "auto" else ("pythia-2.8b" if torch.cuda.is_available() else "tiny")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    result: dict[str, Any] = {"quick": args.quick, "shape": shape, "device": device, "samples": args.samples,
                              "new_tokens": args.new_tokens, "window_s": args.window, "batch_on": BATCH_ON,
                              "prompt_words": [args.prompt_tokens // 2, args.prompt_tokens]}
    with tempfile.TemporaryDirectory(prefix="suggest-latency-model-") as tmp:
        model = build_model(shape, Path(tmp))
        if "editors" not in args.skip:
            print(f"Many editors: {shape} model on {device}, {args.samples} samples x up to {args.new_tokens} "
                  f"tokens, goals of {args.prompt_tokens // 2}-{args.prompt_tokens} words, no checking", flush=True)
            cells = many_editors(args, model)
            result["editors"] = [_cell_json(c, cells) for c in cells]
        if "e2e" not in args.skip:
            print(f"One editor end to end: {args.calls} calls, {args.workers} REPLs, budget {args.budget:g} s, "
                  f"tactic cost lognormal(median {args.tactic_median:g} s, sigma {args.tactic_sigma:g})", flush=True)
            result["end_to_end"] = {
                "budget_s": args.budget, "workers": args.workers, "import_s": args.import_seconds,
                "tactic_cost": {"distribution": "lognormal", "median_s": args.tactic_median,
                                "sigma": args.tactic_sigma,
                                "mean_s": args.tactic_median * math.exp(args.tactic_sigma ** 2 / 2)},
                "scenarios": end_to_end(args, model),
            }
    return result


def _cell_json(cell: Cell, cells: list[Cell]) -> dict[str, Any]:
    single = next(c for c in cells if c.mode == cell.mode and c.clients == min(x.clients for x in cells))
    return {"mode": cell.mode, "clients": cell.clients, "requests": len(cell.latencies_s), "errors": cell.errors,
            "p50_s": cell.percentile(0.5), "p95_s": cell.percentile(0.95), "mean_batch": cell.mean_batch,
            "p50_vs_one_editor": cell.percentile(0.5) / single.percentile(0.5), "latencies_s": cell.latencies_s}


def print_tables(result: dict[str, Any]) -> None:
    if "editors" in result:
        print(f"\nMany editors ({result['shape']} model on {result['device']}; "
              f"window {result['window_s'] * 1000:g} ms, at most {result['batch_on']} requests per batch):\n")
        print("| editors | batching | p50 s | p95 s | p50 / one editor's | mean batch | errors |")
        print("|---|---|---|---|---|---|---|")
        for row in result["editors"]:
            print(f"| {row['clients']} | {row['mode'].split()[-1]} | {row['p50_s']:.3f} | {row['p95_s']:.3f} | "
                  f"{row['p50_vs_one_editor']:.2f}x | {row['mean_batch']:.1f} | {row['errors']} |")
        by = {(r["mode"], r["clients"]): r for r in result["editors"]}
        for clients in sorted({r["clients"] for r in result["editors"]}):
            off, on = by.get(("batching off", clients)), by.get(("batching on", clients))
            if off and on:
                print(f"{clients} editors: batching on / off p50 = {on['p50_s'] / off['p50_s']:.2f}")
    if "end_to_end" in result:
        e2e = result["end_to_end"]
        cost = e2e["tactic_cost"]
        print(f"\nOne editor end to end ({e2e['workers']} REPLs, budget {e2e['budget_s']:g} s; tactic cost "
              f"lognormal, median {cost['median_s']:g} s, sigma {cost['sigma']:g}, mean {cost['mean_s']:.3f} s):\n")
        print("| scenario | calls | p50 s | p95 s | generation p50 s | checking p50 s | checking max s "
              "| hang cut off |")
        print("|---|---|---|---|---|---|---|---|")
        for row in e2e["scenarios"]:
            print(f"| {row['scenario']} | {row['calls']} | {row['p50_s']:.3f} | {row['p95_s']:.3f} | "
                  f"{row['generation_p50_s']:.3f} | {row['checking_p50_s']:.3f} | {row['checking_max_s']:.3f} | "
                  f"{row['hang_cut_off']}/{row['calls'] if row['hanging_candidate'] else 0} |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    result = run(args)
    print_tables(result)
    write_results("suggest_latency", result, args.json)
    if "editors" in result:
        series = {f"{mode}, {q}": [(r["clients"], r[f"{q}_s"]) for r in result["editors"] if r["mode"] == mode]
                  for mode in ("batching off", "batching on") for q in ("p50", "p95")}
        plot("suggest_latency", series, "concurrent editors", "latency of one /suggest (s)",
             f"/suggest under concurrent editors ({result['shape']} model, {result['device']})", args.png)
    print(f"\nwrote {args.json}" + (f" and {args.png}" if "editors" in result else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
