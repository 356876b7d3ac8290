"""Shared types and post-processing for every generation backend.

A backend turns a :class:`GenerationRequest` into raw continuations (the text the
model wrote after the prompt, which already ends with the user's prefix) with a
score each; :func:`postprocess` then turns those into the final, ranked
:class:`Candidate` list. All backends go through the same :func:`postprocess`, so a
suggestion looks the same whichever model or server produced it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args, runtime_checkable

from .proofs import END_OF_TEXT, ProofTask, extract_lean_code

# Text that ends a tactic when a model keeps writing past it: the next prompt
# marker of the proofstep format, end-of-text markers of common tokenizers and
# a closing code fence (chat models).
END_MARKERS: tuple[str, ...] = ("[GOAL]", "[PROOFSTEP]", *END_OF_TEXT, "```")

# Where candidates come from: transformers in process, vLLM in process, an
# OpenAI-compatible completions server, a GGUF file through llama.cpp in process,
# a fixed tactic list (no model), or proposals replayed from a file (no model).
Backend = Literal["hf", "vllm", "openai", "llamacpp", "hint", "scripted"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)

# Longest wait for more requests to join a generation batch: past this the wait
# costs an editor more than batching saves.
MAX_BATCH_WINDOW_S = 1.0

# LeanCopilot's ByT5 tactic generator (about 300M parameters): small enough for
# a laptop CPU, trained on Lean 4 (LeanDojo) states, input = the goal text.
DEFAULT_HF_MODEL = "kaiyuy/leandojo-lean4-tacgen-byt5-small"


def backend_named(name: str) -> Backend:
    """The backend called ``name`` (a flag's or a setting's text); a ValueError lists the known ones otherwise."""
    for backend in BACKENDS:
        if backend == name:
            return backend
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


@dataclass(frozen=True)
class Candidate:
    """One suggested tactic, or one whole proof.

    ``text`` is the complete tactic (the request's prefix included), on one line;
    for a whole-proof request it is the Lean code of one answer (many lines).
    ``score`` is the mean log-probability per generated token under the model's
    own (temperature 1) distribution, so it is <= 0 and comparable between
    samples of different lengths and temperatures; higher is better. For beam
    search it is the beam's length-normalised log-probability, which is the
    same quantity. Backends that cannot report log-probabilities use 0.0.
    ``count`` is how many of the samples drawn gave this text (duplicates are
    merged; pass@k counts them all).
    """

    text: str
    score: float
    count: int = 1


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate for: one goal, one prefix, and the sampling budget.

    ``temperatures``: one batched call per temperature, ``num_samples`` samples
    each; a temperature of 0 means greedy decoding (one sample). ``proof``:
    ask for whole proofs of that task instead of next tactics (each candidate
    is then a complete Lean code block, see :mod:`leanstep.generate.proofs`;
    ``tactic_state`` may hold the goal, or be empty). ``seed``: sample
    reproducibly (the same seed, model and request give the same candidates).
    ``abandoned``: turns true once nobody waits for the answer (the client
    disconnected); a batching backend then drops the request if it has not started.
    """

    tactic_state: str
    prefix: str = ""
    num_samples: int = 8
    temperatures: tuple[float, ...] = (0.5,)
    max_new_tokens: int = 64
    proof: ProofTask | None = None
    seed: int | None = None
    abandoned: Callable[[], bool] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperatures:
            raise ValueError("temperatures must not be empty")
        for t in self.temperatures:
            if not (t >= 0 and math.isfinite(t)):
                raise ValueError(f"temperatures must be finite and >= 0, got {t!r}")


@dataclass(frozen=True)
class GeneratorSettings:
    """Everything needed to build a generator (see :func:`leanstep.generate.make_generator`).

    ``model``: a local directory or a Hugging Face hub id (for ``openai``: the
    model name the server knows; for ``llamacpp``: the GGUF file). ``num_beams`` > 0
    switches the hf and vllm backends from sampling to beam search. ``fast_path`` lets the hf backend use
    its CUDA-graph decoder for causal models on a GPU; ``compile`` adds
    torch.compile to it (faster steps, but a compile of tens of seconds for each
    new cache-length bucket, so it suits long-running servers that warm up).
    ``batch_size`` > 1 lets the hf backend generate for up to that many concurrent
    requests in one batched call, collected for ``batch_window`` seconds after the
    first arrives (1: every request alone, nothing waits).
    ``cpu_threads`` and ``seed`` are the llamacpp backend's: threads for llama.cpp's
    CPU kernels (0: one per core this process may use) and the seed of its sampler.
    """

    backend: Backend = "hf"
    model: str = DEFAULT_HF_MODEL
    prompt_format: str = "state"
    num_samples: int = 8
    temperatures: tuple[float, ...] = (0.5,)
    max_new_tokens: int = 64
    device: str = "auto"
    dtype: str = "auto"
    num_beams: int = 0
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    request_timeout: float = 60.0
    fast_path: bool = True
    compile: bool = False
    trust_remote_code: bool = False
    batch_size: int = 1
    batch_window: float = 0.0
    hint_tactics: tuple[str, ...] = ()  # the hint backend's list (empty: its default)
    proof_format: str = "prover-completion"  # how whole-proof requests are rendered (leanstep.generate.proofs)
    script: str | None = None  # the scripted backend's proposals file
    cpu_threads: int = 0
    seed: int = 0
    extra: dict[str, object] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        backend_named(self.backend)
        if self.num_beams < 0:
            raise ValueError(f"num_beams must be >= 0, got {self.num_beams}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.batch_window <= MAX_BATCH_WINDOW_S:
            raise ValueError(f"batch_window must be between 0 and {MAX_BATCH_WINDOW_S:g} seconds, "
                             f"got {self.batch_window:g}")
        if self.cpu_threads < 0:
            raise ValueError(f"cpu_threads must be >= 0, got {self.cpu_threads}")
        object.__setattr__(self, "temperatures", tuple(float(t) for t in self.temperatures))

    def request(self, tactic_state: str, prefix: str = "", num_samples: int | None = None) -> GenerationRequest:
        """A request with this configuration's sampling budget."""
        return GenerationRequest(
            tactic_state=tactic_state,
            prefix=prefix,
            num_samples=num_samples if num_samples is not None else self.num_samples,
            temperatures=self.temperatures,
            max_new_tokens=self.max_new_tokens,
        )


@runtime_checkable
class Generator(Protocol):
    """A source of candidate next tactics. Implementations must be thread-safe."""

    def generate(self, request: GenerationRequest) -> list[Candidate]:
        """Candidates for the request, best first, de-duplicated, each starting with the prefix."""
        ...


def cut_tactic(continuation: str) -> str:
    """The part of a model's continuation that is the tactic: up to the first
    newline or end marker (whichever comes first)."""
    end = len(continuation)
    nl = continuation.find("\n")
    if nl != -1:
        end = nl
    for marker in END_MARKERS:
        i = continuation.find(marker, 0, end)
        if i != -1:
            end = i
    return continuation[:end]


def postprocess(prefix: str, outputs: Iterable[tuple[str, float]]) -> list[Candidate]:
    """Turn raw ``(continuation, score)`` pairs into ranked candidates.

    The continuation is what the model generated after the prompt (which ended
    with ``prefix``). Each is cut at the end of the tactic, the prefix is put in
    front, whitespace is stripped, empty ones are dropped, duplicates keep their
    best score, and the result is sorted by score (best first; ties keep the
    order of first appearance, so greedy/beam order survives).
    """
    return _ranked(((prefix + cut_tactic(continuation)).strip(), score, 1) for continuation, score in outputs)


def _ranked(items: Iterable[tuple[str, float, int]]) -> list[Candidate]:
    """Non-empty texts, duplicates merged (best score, counts added), best score first (ties: first seen)."""
    best: dict[str, float] = {}
    counts: dict[str, int] = {}
    for text, raw_score, count in items:
        if not text.strip():
            continue
        score = -math.inf if math.isnan(raw_score) else float(raw_score)
        if text not in best or score > best[text]:
            best[text] = score
        counts[text] = counts.get(text, 0) + count
    ranked = sorted(best.items(), key=lambda kv: -kv[1])
    return [Candidate(text=t, score=s, count=counts[t]) for t, s in ranked]


def postprocess_proofs(answer_start: str, outputs: Iterable[tuple[str, float]],
                       stop: Sequence[str] = ()) -> list[Candidate]:
    """Raw ``(continuation, score)`` pairs of a whole-proof request -> ranked candidates, each the Lean
    code of one answer (:func:`leanstep.generate.proofs.extract_lean_code`).

    ``answer_start`` is the end of the prompt the answer continues (the open
    fence and statement of the completion format; empty for chat formats); a
    continuation is cut at the first of the format's ``stop`` strings (servers
    leave them out, a local model writes them). Duplicates keep their best
    score and add up their counts; answers without code are dropped.
    """
    def cut(text: str) -> str:
        ends = [i for i in (text.find(s) for s in stop) if i >= 0]
        return text[:min(ends)] if ends else text

    return _ranked((extract_lean_code(answer_start + cut(continuation)), score, 1) for continuation, score in outputs)


def merge(candidate_lists: Sequence[Sequence[Candidate]]) -> list[Candidate]:
    """Merge already post-processed lists (e.g. from several temperatures)."""
    return _ranked((c.text.strip(), c.score, c.count) for cs in candidate_lists for c in cs)
