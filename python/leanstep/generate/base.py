"""Shared types and post-processing for every generation backend.

A backend turns a :class:`GenerationRequest` into raw continuations (the text the
model wrote after the prompt, which already ends with the user's prefix) with a
score each; :func:`postprocess` then turns those into the final, ranked
:class:`Candidate` list. All backends go through the same :func:`postprocess`, so a
suggestion looks the same whichever model or server produced it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args, runtime_checkable

# Text that ends a tactic when a model keeps writing past it: the next prompt
# marker of the proofstep format, end-of-text markers of common tokenizers and
# a closing code fence (chat models).
END_MARKERS: tuple[str, ...] = (
    "[GOAL]",
    "[PROOFSTEP]",
    "<|endoftext|>",
    "</s>",
    "<|im_end|>",
    "<|eot_id|>",
    "<eos>",
    "```",
)

# Where candidates come from: transformers in process, vLLM in process, an
# OpenAI-compatible completions server, a GGUF file through llama.cpp in process,
# or a fixed tactic list (no model).
Backend = Literal["hf", "vllm", "openai", "llamacpp", "hint"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)

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
    """One suggested tactic.

    ``text`` is the complete tactic (the request's prefix included), on one line.
    ``score`` is the mean log-probability per generated token under the model's
    own (temperature 1) distribution, so it is <= 0 and comparable between
    samples of different lengths and temperatures; higher is better. For beam
    search it is the beam's length-normalised log-probability, which is the
    same quantity. Backends that cannot report log-probabilities use 0.0.
    """

    text: str
    score: float


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate for: one goal, one prefix, and the sampling budget.

    ``temperatures``: one batched call per temperature, ``num_samples`` samples
    each; a temperature of 0 means greedy decoding (one sample).
    """

    tactic_state: str
    prefix: str = ""
    num_samples: int = 8
    temperatures: tuple[float, ...] = (0.5,)
    max_new_tokens: int = 64

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
    hint_tactics: tuple[str, ...] = ()  # the hint backend's list (empty: its default)
    cpu_threads: int = 0
    seed: int = 0
    extra: dict[str, object] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        backend_named(self.backend)
        if self.num_beams < 0:
            raise ValueError(f"num_beams must be >= 0, got {self.num_beams}")
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
    best: dict[str, float] = {}
    for continuation, raw_score in outputs:
        text = (prefix + cut_tactic(continuation)).strip()
        if not text:
            continue
        score = -math.inf if math.isnan(raw_score) else float(raw_score)
        if text not in best or score > best[text]:
            best[text] = score
    ranked = sorted(best.items(), key=lambda kv: -kv[1])
    return [Candidate(text=t, score=s) for t, s in ranked]


def merge(candidate_lists: Sequence[Sequence[Candidate]]) -> list[Candidate]:
    """Merge already post-processed lists (e.g. from several temperatures)."""
    return postprocess("", ((c.text, c.score) for cs in candidate_lists for c in cs))
