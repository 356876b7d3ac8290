"""CPU generation latency: the llamacpp backend against the hf backend, on the same weights.

One ``/suggest`` request's generation through each backend's ``Generator`` (the
code the server runs, post-processing included): a 256-token prompt, 8 samples of
up to 48 new tokens at temperature 1, p50 over the timed runs. The variants take
turns, one run each per round, so that the load of a shared machine falls on all
of them alike, and every run has a prompt of its own (random Lean words), so
llama.cpp's prompt cache never answers from an earlier run.

Models (random weights: latency does not depend on them; built locally with the
tests' builders, ``tests/tiny_models.py``):

* ``tiny``: the tests' tiny GPT-NeoX (hidden 32, 2 layers) with its byte-level BPE
  tokenizer; the hf backend in float32, llama.cpp on its F32 GGUF.
* ``pythia-410m``: a Pythia-410m-shaped GPT-NeoX (hidden 1024, 24 layers, 16 heads,
  intermediate 4096, vocab 50304). llmstep's model is Pythia-2.8B, about 7x the
  work per token: too slow on 2 CPU cores for repeated runs of the hf backend, while
  410m keeps the real vocabulary and layer shapes. The hf backend runs it in float32
  (its CPU dtype); llama.cpp runs it as F32, Q8_0 and Q4_K_M GGUF files.

Variants: ``hf`` (transformers ``generate`` with 8 return sequences, as the hf
backend does on a CPU), ``llamacpp-<type>`` (the llamacpp backend: one prompt
evaluation, 8 samples decoded together in one batch per step) and
``llamacpp-<type>-one-by-one`` (the smallest file only: 8 requests of one sample
each; the prompt is evaluated once and cached, but each sample decodes alone, as a
backend that returns one suggestion per call would).

    python -m benchmarks.cpu_generation            # both models (about 15 min on 2 cores)
    python -m benchmarks.cpu_generation --quick    # the tiny model only (seconds)

Needs llama-cpp-python (``make llamacpp``); without it only the hf variants run,
and the output says why. Prints a table and writes JSON (``--json``, default
``benchmarks/results/cpu_generation.json``).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, write_results  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))  # the tiny-model builders
from tiny_models import WORDS, build_bpe_causal, quantize_gguf, write_gguf  # noqa: E402

from leanstep.generate import GenerationRequest, GeneratorSettings, make_generator  # noqa: E402

PYTHIA_410M: dict[str, Any] = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    rotary_pct=0.25,
    max_position_embeddings=2048,
)
PYTHIA_VOCAB = 50304


def prompt_state(tokenizer: Any, tokens: int, seed: int) -> str:
    """A tactic state of random Lean words whose proofstep prompt is about ``tokens`` tokens."""
    rng = random.Random(seed)
    words: list[str] = []
    while len(tokenizer(f"[GOAL]{' '.join(words)}[PROOFSTEP]")["input_ids"]) < tokens:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def build_models(name: str, folder: Path, gguf_types: list[str]) -> tuple[Path, dict[str, Path]]:
    """(hf model directory, {GGUF type: file}) for ``name``, built once into ``folder``."""
    hf_dir = folder / name
    if not (hf_dir / "config.json").exists():
        if name == "tiny":
            build_bpe_causal(hf_dir)
        else:
            build_bpe_causal(hf_dir, shape=PYTHIA_410M, vocab_size=PYTHIA_VOCAB, init_std=None)
    files: dict[str, Path] = {}
    for kind in gguf_types:
        files[kind] = folder / f"{name}-{kind}.gguf"
        if files[kind].exists():
            continue
        if kind == "F32":
            write_gguf(hf_dir, files[kind])
        else:
            quantize_gguf(files["F32"], files[kind], kind)
    return hf_dir, files


@dataclass
class Variant:
    """One backend configuration under test and its timings."""

    name: str
    generator: Any
    per_request: int  # samples asked per request: all of them, or 1 (eight requests)
    times: list[float] = field(default_factory=list)
    candidates: list[int] = field(default_factory=list)

    def run(self, state: str, samples: int, new_tokens: int) -> tuple[float, int]:
        """Seconds and candidates of one suggestion's generation for ``state``."""
        request = GenerationRequest(state, "", num_samples=self.per_request, temperatures=(1.0,),
                                    max_new_tokens=new_tokens)
        t0 = time.perf_counter()
        found = sum(len(self.generator.generate(request)) for _ in range(samples // self.per_request))
        return time.perf_counter() - t0, found


def time_interleaved(variants: list[Variant], states: list[list[str]], samples: int,
                     new_tokens: int) -> dict[str, Any]:
    """Run every variant once per round, round after round, so that the load of a shared
    machine falls on all of them alike; round 0 is the warm-up (model load included).
    ``states[i][r]`` is variant i's prompt in round r: no variant sees a prompt twice."""
    first: dict[str, float] = {}
    for r in range(len(states[0])):
        timings = []
        for variant, own in zip(variants, states, strict=True):
            seconds, found = variant.run(own[r], samples, new_tokens)
            timings.append(f"{variant.name} {seconds:.2f} s")
            if r == 0:
                first[variant.name] = seconds
            else:
                variant.times.append(seconds)
                variant.candidates.append(found)
        print(f"  {'warm-up' if r == 0 else f'run {r}'}: {', '.join(timings)}", flush=True)
    return {v.name: {"p50_s": statistics.median(v.times), "min_s": min(v.times), "max_s": max(v.times),
                     "first_call_s": first[v.name], "times_s": v.times,
                     "mean_candidates": statistics.mean(v.candidates)} for v in variants}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="leanstep bench cpu-generation", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the tiny model only, 3 runs")
    p.add_argument("--models", default=None, help="comma-separated: tiny, pythia-410m (default: both; --quick: tiny)")
    p.add_argument("--quants", default="Q8_0,Q4_K_M", help="GGUF types besides F32 for pythia-410m")
    p.add_argument("--one-by-one", action=argparse.BooleanOptionalAction, default=True,
                   help="also time each model's smallest GGUF one sample per request")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--prompt-tokens", type=int, default=256)
    p.add_argument("--runs", type=int, default=None, help="timed runs per variant (default 5, --quick 3)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for both backends (default: torch's)")
    p.add_argument("--model-dir", default=None, help="keep the built models here (default: a temporary folder)")
    p.add_argument("--json", default=None, help="where the JSON goes (default benchmarks/results/cpu_generation.json)")
    args = p.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    runs = args.runs or (3 if args.quick else 5)
    models = (args.models or ("tiny" if args.quick else "tiny,pythia-410m")).split(",")
    try:
        import llama_cpp

        llama_missing = ""
    except ImportError:
        llama_missing = "llama-cpp-python is not installed (make llamacpp); only the hf backend is timed"
        print(llama_missing)

    results: dict[str, Any] = {
        "cpu_count": os.cpu_count(), "threads": threads,
        "torch": torch.__version__, "llama_cpp_python": None if llama_missing else llama_cpp.__version__,
        "samples": args.samples, "new_tokens": args.new_tokens, "runs": runs, "temperature": 1.0,
        "models": {}, "note": llama_missing or None,
    }
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.model_dir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for name in models:
            gguf_types = [] if llama_missing else ["F32", *([] if name == "tiny" else args.quants.split(","))]
            t0 = time.perf_counter()
            hf_dir, ggufs = build_models(name, folder, gguf_types)
            tokenizer = AutoTokenizer.from_pretrained(hf_dir)
            variants = [Variant("hf", make_generator(GeneratorSettings(model=str(hf_dir), prompt_format="proofstep",
                                                                       device="cpu")), args.samples)]
            for kind, gguf_path in ggufs.items():
                generator = make_generator(GeneratorSettings(backend="llamacpp", model=str(gguf_path),
                                                             prompt_format="proofstep", device="cpu",
                                                             cpu_threads=threads))
                variants.append(Variant(f"llamacpp-{kind}", generator, args.samples))
                if args.one_by_one and kind == list(ggufs)[-1]:
                    variants.append(Variant(f"llamacpp-{kind}-one-by-one", generator, 1))
            states = [[prompt_state(tokenizer, args.prompt_tokens, seed=1000 * i + r) for r in range(runs + 1)]
                      for i in range(len(variants))]
            prompt_len = len(tokenizer(f"[GOAL]{states[0][0]}[PROOFSTEP]")["input_ids"])
            print(f"\n{name}: prompt {prompt_len} tokens, {args.samples} samples x up to {args.new_tokens} tokens, "
                  f"{threads} threads, {runs} runs", flush=True)
            entry: dict[str, Any] = {
                "build_s": round(time.perf_counter() - t0, 1), "prompt_tokens": prompt_len,
                "gguf_mb": {k: round(v.stat().st_size / 2**20, 1) for k, v in ggufs.items()},
                "variants": time_interleaved(variants, states, args.samples, args.new_tokens),
            }
            for variant in variants[1:]:
                variant.generator.close()
            del variants
            hf_p50 = entry["variants"]["hf"]["p50_s"]
            print(f"{'variant':<28} {'p50 s':>8} {'min s':>8} {'max s':>8} {'first s':>8} {'x hf':>6} {'cands':>6}")
            for variant, v in entry["variants"].items():
                v["speedup_vs_hf"] = hf_p50 / v["p50_s"]
                print(f"{variant:<28} {v['p50_s']:>8.3f} {v['min_s']:>8.3f} {v['max_s']:>8.3f} "
                      f"{v['first_call_s']:>8.2f} {v['speedup_vs_hf']:>6.2f} {v['mean_candidates']:>6.1f}")
            results["models"][name] = entry

    print(f"results written to {os.path.relpath(write_results('cpu_generation', results, args.json))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
