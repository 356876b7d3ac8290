"""Generation latency: plain ``model.generate`` against leanstep's GPU fast path.

The workload is one ``/suggest`` request as llmstep's default model sees it: a
Pythia-2.8B-shaped GPT-NeoX model (random weights: latency does not depend on
them), a 256-token prompt, 8 samples of 48 new tokens. Both variants are forced
to generate exactly 48 tokens (``min_new_tokens = max_new_tokens``) so they do
the same work.

    python -m benchmarks.generation            # GPU: full-size model
    python -m benchmarks.generation --quick    # tiny model, CPU is fine (smoke test)

Prints a table and writes JSON (``--json``, default
``benchmarks/results/generation.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.common import RESULTS_DIR  # noqa: E402

from leanstep.generate.hf import GraphDecoder, resolve_dtype  # noqa: E402

PYTHIA_2_8B = dict(
    hidden_size=2560,
    num_hidden_layers=32,
    num_attention_heads=32,
    intermediate_size=10240,
    vocab_size=50304,
    rotary_pct=0.25,
    max_position_embeddings=2048,
)
TINY = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    vocab_size=512,
    rotary_pct=0.25,
    max_position_embeddings=512,
)


def build_model(shape: dict[str, int], device: torch.device, dtype: torch.dtype) -> Any:
    """A GPT-NeoX model with random weights, created directly on the device."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(**shape, use_cache=True, attn_implementation="sdpa")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = GPTNeoXForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, runs: int, warmup: int) -> tuple[list[float], float]:
    """(per-run seconds, first-call seconds)."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        fn()
    times = []
    for _ in range(runs):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times, first


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="leanstep bench generation", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny model, few runs (works on CPU in seconds)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--prompt-tokens", type=int, default=256)
    p.add_argument("--runs", type=int, default=None, help="timed runs per variant (default 10, --quick 3)")
    p.add_argument("--variants", default=None,
                   help="comma-separated: plain, fast, prefill, compiled (default: all; --quick: no compiled)")
    p.add_argument("--json", default=str(RESULTS_DIR / "generation.json"))
    args = p.parse_args(argv)

    device = torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available()) else
                          ("cpu" if args.device == "auto" else args.device))
    dtype = resolve_dtype(args.dtype, device)
    quick = args.quick or device.type != "cuda"
    shape = TINY if quick else PYTHIA_2_8B
    prompt_tokens = min(args.prompt_tokens, 64) if quick else args.prompt_tokens
    new_tokens = min(args.new_tokens, 16) if quick else args.new_tokens
    runs = args.runs or (3 if quick else 10)
    chosen = args.variants or ("plain,fast,prefill" if quick else "plain,fast,prefill,compiled")
    variants = [v.strip() for v in chosen.split(",") if v.strip()]

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build_model(shape, device, dtype)
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    vocab = shape["vocab_size"]
    prompt = torch.randint(1, vocab, (1, prompt_tokens), device=device)
    stop = 0  # token 0 plays EOS/newline; min_new_tokens keeps it from ending a sample

    def plain() -> torch.Tensor:
        with torch.inference_mode():
            return model.generate(
                prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=0, top_p=1.0,
                temperature=1.0, num_return_sequences=args.samples, max_new_tokens=new_tokens,
                min_new_tokens=new_tokens, eos_token_id=stop, pad_token_id=stop,
            )

    decoder = GraphDecoder(model, stop_ids=[stop])

    def fast() -> Any:
        return decoder.decode(prompt[0], args.samples, 1.0, new_tokens, min_new_tokens=new_tokens)

    results: dict[str, Any] = {
        "benchmark": "generation",
        "quick": quick,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "dtype": str(dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "model_shape": shape,
        "parameters": params,
        "weight_bytes": weight_bytes,
        "build_seconds": round(build_s, 3),
        "samples": args.samples,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "runs": runs,
        "variants": {},
    }
    def prefill() -> Any:  # the fast path's fixed cost: prefill, cache copy, first token
        return decoder.decode(prompt[0], args.samples, 1.0, 1)

    compiled: list[GraphDecoder] = []

    def fast_compiled() -> Any:  # the fast path with torch.compile inside the graph
        if not compiled:
            compiled.append(GraphDecoder(model, stop_ids=[stop], compile=True))
        return compiled[0].decode(prompt[0], args.samples, 1.0, new_tokens, min_new_tokens=new_tokens)

    fns = {"plain": plain, "fast": fast, "prefill": prefill, "compiled": fast_compiled}
    for name in variants:
        if name not in fns:
            raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(fns)}")
        times, first = timed(fns[name], device, runs, warmup=2)
        results["variants"][name] = {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "first_call_s": first,
            "times_s": times,
        }
        if name in ("fast", "compiled"):
            out = fns[name]()
            assert out.tokens.shape == (args.samples, new_tokens), out.tokens.shape
            assert bool((out.lengths == new_tokens).all()), out.lengths

    # Greedy agreement: the fast path must compute the same function as generate().
    check_tokens = min(16, new_tokens)
    with torch.inference_mode():
        ref = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=check_tokens, min_new_tokens=check_tokens,
                             eos_token_id=stop, pad_token_id=stop)[0, prompt_tokens:].tolist()
    got = decoder.decode(prompt[0], 1, 0.0, check_tokens, min_new_tokens=check_tokens).tokens[0].tolist()
    agree = next((i for i, (a, b) in enumerate(zip(ref, got)) if a != b), len(ref))
    results["greedy_agreement_tokens"] = agree
    results["greedy_check_tokens"] = check_tokens

    if device.type == "cuda":
        # One-token decoding must stream every weight once per step.
        results["bandwidth_floor_s_at_3.35TBps"] = weight_bytes * new_tokens / 3.35e12
        results["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30

    print(f"\nGeneration latency: {params / 1e6:.1f}M params ({results['dtype']}) on {results['device']}; "
          f"{args.samples} samples x {new_tokens} new tokens, {prompt_tokens}-token prompt; {runs} runs")
    print(f"{'variant':<10} {'median s':>10} {'min s':>10} {'max s':>10} {'first call s':>13}")
    for name, v in results["variants"].items():
        print(f"{name:<10} {v['median_s']:>10.4f} {v['min_s']:>10.4f} {v['max_s']:>10.4f} {v['first_call_s']:>13.3f}")
    if "plain" in results["variants"] and "fast" in results["variants"]:
        speedup = results["variants"]["plain"]["median_s"] / results["variants"]["fast"]["median_s"]
        results["speedup"] = speedup
        print(f"speed-up of fast over plain: {speedup:.2f}x")
    print(f"greedy agreement with generate(): {agree}/{check_tokens} tokens")
    if "bandwidth_floor_s_at_3.35TBps" in results:
        print(f"weight-bandwidth floor: {results['bandwidth_floor_s_at_3.35TBps']:.3f} s")

    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
