"""Candidate next tactics from a language model.

``make_generator(GeneratorSettings(...))`` builds a backend (``hf``: transformers,
``vllm``: in-process vLLM, ``openai``: an OpenAI-compatible completions server,
``hint``: a fixed list of common tactics, no model);
every backend returns ``list[Candidate]`` through the same post-processing.
Backends are imported only when built, so importing this package does not
import torch.
"""

from __future__ import annotations

from .base import (
    BACKENDS,
    Candidate,
    GenerationRequest,
    Generator,
    GeneratorSettings,
    cut_tactic,
    merge,
    postprocess,
)
from .prompts import FORMATS, Prompt, get_format, render

# LeanCopilot's ByT5 tactic generator (about 300M parameters): small enough for
# a laptop CPU, trained on Lean 4 (LeanDojo) states, input = the goal text.
DEFAULT_MODEL = "kaiyuy/leandojo-lean4-tacgen-byt5-small"
DEFAULT_PROMPT_FORMAT = "state"
# llmstep's fine-tuned Pythia 2.8B: better suggestions, wants a GPU.
GPU_MODEL = "wellecks/llmstep-mathlib4-pythia2.8b"
GPU_PROMPT_FORMAT = "proofstep"


def guess_prompt_format(model: str) -> str:
    """The prompt format a known model family was trained with (``chat`` otherwise)."""
    name = model.lower()
    if "llmstep" in name or "pythia" in name or "proofstep" in name:
        return "proofstep"
    if "byt5" in name or "tacgen" in name or "reprover" in name:
        return "state"
    return "chat"


def settings_from_config(config) -> GeneratorSettings:
    """Generator settings from the server's :class:`leanstep.config.Config`."""
    return GeneratorSettings(
        backend=config.backend, model=config.hf_model,
        prompt_format=config.prompt_format or guess_prompt_format(config.hf_model),
        num_samples=config.num_samples, temperatures=config.temperatures, max_new_tokens=config.max_new_tokens,
        device=config.device, dtype=config.dtype, num_beams=config.num_beams,
        openai_base_url=config.openai_base_url, openai_api_key=config.openai_api_key, compile=config.compile,
        hint_tactics=config.hint_tactics,
    )


def make_generator(settings: GeneratorSettings) -> Generator:
    """A generator for ``settings.backend``; the model loads lazily (hf) or now (vllm)."""
    get_format(settings.prompt_format)  # fail early on an unknown format
    if settings.backend == "hf":
        from .hf import HFGenerator

        return HFGenerator(settings)
    if settings.backend == "vllm":
        from .vllm import VLLMGenerator

        return VLLMGenerator(settings)
    if settings.backend == "openai":
        from .openai import OpenAIGenerator

        return OpenAIGenerator(settings)
    if settings.backend == "hint":
        from .hint import HintGenerator

        return HintGenerator(settings)
    raise ValueError(f"unknown backend {settings.backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "Candidate",
    "DEFAULT_MODEL",
    "DEFAULT_PROMPT_FORMAT",
    "FORMATS",
    "GPU_MODEL",
    "GPU_PROMPT_FORMAT",
    "GenerationRequest",
    "Generator",
    "GeneratorSettings",
    "Prompt",
    "cut_tactic",
    "get_format",
    "guess_prompt_format",
    "make_generator",
    "merge",
    "postprocess",
    "render",
]
