"""The throughput benchmark's workloads, by name, and the ideal time a checker could reach on each.

* ``lean``: one header, no duplicates: what the Kimina paper and most RL
  pipelines run. Every system is bound by Lean here; the best any can do is the ideal.
* ``rl8``, ``rl32``: RL sampling: K samples of each problem (K = 8, 32), all
  checked (training needs every reward). Samples repeat one another as
  sampling from a model does (below); the duplicate rate is printed.
* ``pass8``, ``pass32``: the same samples for pass@K evaluation: a problem
  is solved by its first valid sample, so leanstep asks for first valid wins
  (``first_valid``, whole groups per request) and skips the rest; the peers
  have no such request and check every sample.
* ``mix``: two headers, 70 % / 30 % (``import Mathlib`` and ``import Mathlib``
  plus one more module), interleaved, no duplicates.
* ``custom``: ``--headers`` and ``--duplicates`` as given (the earlier single workload).

**How samples repeat.** The samples of one problem are draws from a Chinese
restaurant process with concentration ``theta``: sample k+1 is a new proof with
probability theta / (theta + k), else a copy of an earlier sample chosen in
proportion to how often it was drawn. That "rich get richer" process gives the
power-law frequencies of generated text (Goldwater, Griffiths and Johnson,
"Interpolating between types and tokens by estimating power-law generators",
NIPS 2005; Teh, "A hierarchical Bayesian language model based on Pitman-Yor
processes", ACL 2006), and RL-trained provers are known to concentrate their
samples on a few proofs: on miniF2F, DeepSeek-Prover-V1.5-RL gave half the
theorems a single opening tactic across its samples (Burton, "Inference-time
diversity in RL-trained Lean theorem provers", arXiv 2601.16172), and GRPO
sharpens a prover's distribution around its likeliest proofs (He, Fried and
Welleck, arXiv 2506.02355). Neither reports an exact-duplicate rate of whole
proofs, so ``theta`` (default 8: expected distinct proofs 8 ln(1 + K/8), so
about 30 % duplicates at K = 8 and 60 % at K = 32) is a modelling choice,
changed with ``--theta``; proofs whose comments vary between samples repeat
less. A problem's distinct proofs are valid with the problem's own pass rate,
drawn from Beta(0.4, 0.6) (mean 0.4; most problems nearly always or nearly
never solved, as pass@k curves of provers show); a copy has its original's
verdict and cost.

**The ideal.** A checker with W workers and no result cache must run every
snippet's proof (P simulated seconds in all) and import each header at least
once on each worker it uses, and at least once in all: its wall time is at
least (P + max(H, W) x import) / W for H headers. Efficiency = ideal / measured;
above 1 means work was avoided (a result cache, first valid wins).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.common import CostModel, Snippet, make_workload

NAMES = ("lean", "rl8", "rl32", "pass8", "pass32", "mix")
PASS_BETA = (0.4, 0.6)


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    snippets: list[Snippet]
    first_valid: bool = False  # leanstep asks for first valid wins (pass@K)

    @property
    def headers(self) -> int:
        return len({s.header for s in self.snippets})

    @property
    def proof_seconds(self) -> float:
        return sum(s.cost_s for s in self.snippets)

    @property
    def duplicates(self) -> int:
        return sum(1 for s in self.snippets if s.duplicate_of)

    def ideal_s(self, workers: int, import_s: float) -> float:
        return (self.proof_seconds + max(self.headers, workers) * import_s) / workers

    def solved(self) -> dict[str, bool]:
        """Each problem (group) and whether one of its samples is valid."""
        out: dict[str, bool] = {}
        for s in self.snippets:
            if s.group is not None:
                out[s.group] = out.get(s.group, False) or s.valid
        return out


def rl_samples(problems: int, k: int, cost: CostModel, theta: float, seed: int) -> list[Snippet]:
    """``k`` samples of each of ``problems`` problems on one header, repeating as a Chinese restaurant process."""
    rng = random.Random(seed)
    header = "import Mathlib"
    out: list[Snippet] = []
    for p in range(problems):
        pass_rate = rng.betavariate(*PASS_BETA)
        drawn: list[Snippet] = []  # one entry per sample so far: a copy is drawn in proportion to counts
        for j in range(k):
            if drawn and rng.random() >= theta / (theta + len(drawn)):
                original = rng.choice(drawn)
                source = original if original.duplicate_of is None else \
                    next(s for s in drawn if s.id == original.duplicate_of)
                copy = Snippet(f"q{p}-{j}", source.code, header, source.body, source.cost_s, source.valid, source.id,
                               f"q{p}")
                drawn.append(copy)
                continue
            delay = min(cost.proof_cap_s, rng.lognormvariate(math.log(cost.proof_median_s), cost.proof_sigma)) \
                if cost.proof_median_s > 0 else 0.0
            valid = rng.random() < pass_rate
            a, b = rng.randrange(1, 1000), rng.randrange(1, 1000)
            directive = f"  -- sim: delay {delay:.4f}\n" if delay > 0 else ""
            body = (f"theorem problem_{p} (n : ℕ) (h : n = {a}) : {a} + {b} = {a + b + (0 if valid else 1)} := by\n"
                    f"{directive}  -- sample {j}\n  norm_num")
            drawn.append(Snippet(f"q{p}-{j}", f"{header}\n\n{body}", header, body, delay, valid, None, f"q{p}"))
        out += drawn
    return out


def build(names: Sequence[str], n: int, cost: CostModel, *, theta: float = 8.0, seed: int = 0,
          headers: int = 2, duplicates: float = 0.2) -> list[Workload]:
    """The named workloads, each of about ``n`` snippets."""
    out = []
    for name in names:
        if name == "lean":
            out.append(Workload(name, "one header, no duplicates", make_workload(n, 1, 0.0, cost, seed=seed)))
        elif name.startswith(("rl", "pass")):
            k = int(name.removeprefix("rl").removeprefix("pass"))
            samples = rl_samples(max(1, round(n / k)), k, cost, theta, seed)
            share = sum(1 for s in samples if s.duplicate_of) / len(samples)
            if name.startswith("rl"):
                out.append(Workload(name, f"RL sampling, K = {k}, every sample checked ({share:.0%} duplicates)",
                                    samples))
            else:
                out.append(Workload(name, f"pass@{k}: first valid wins ({share:.0%} duplicates)", samples, True))
        elif name == "mix":
            out.append(Workload(name, "2 headers (70/30), no duplicates", make_workload(n, 2, 0.0, cost, seed=seed)))
        elif name == "custom":
            out.append(Workload(name, f"{headers} header(s), {duplicates:.0%} duplicates",
                                make_workload(n, headers, duplicates, cost, seed=seed)))
        else:
            raise ValueError(f"unknown workload {name!r}; choose from {', '.join((*NAMES, 'custom'))}")
    return out
