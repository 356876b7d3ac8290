"""Candidate next tactics from a language model.

``make_generator(GeneratorSettings(...))`` builds a backend (``hf``: transformers,
``vllm``: in-process vLLM, ``openai``: an OpenAI-compatible completions server,
``hint``: a fixed list of common tactics, no model; ``scripted``: proposals
replayed from a file, no model); every backend returns ``list[Candidate]``
through the same post-processing, next tactics or (for a request with a
``proof`` task) whole proofs.
Backends are imported only when built, so importing this package does not
import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import (
    BACKENDS,
    DEFAULT_HF_MODEL,
    Backend,
    Candidate,
    GenerationRequest,
    Generator,
    GeneratorSettings,
    backend_named,
    cut_tactic,
    merge,
    postprocess,
    postprocess_proofs,
)
from .prompts import FORMATS, Prompt, get_format, render
from .proofs import PROOF_FORMATS, ProofFeedback, ProofTask, extract_lean_code, get_proof_format, guess_proof_format

if TYPE_CHECKING:  # the configuration module imports this package's base; no cycle at run time
    from leanstep.config import Config


def guess_prompt_format(model: str) -> str:
    """The prompt format a known model family was trained with (``chat`` otherwise)."""
    name = model.lower()
    if "llmstep" in name or "pythia" in name or "proofstep" in name:
        return "proofstep"
    if "byt5" in name or "tacgen" in name or "reprover" in name:
        return "state"
    return "chat"


def settings_from_config(config: Config) -> GeneratorSettings:
    """Generator settings from the server's :class:`leanstep.config.Config`."""
    return GeneratorSettings(
        backend=backend_named(config.backend), model=config.hf_model,
        prompt_format=config.prompt_format or guess_prompt_format(config.hf_model),
        num_samples=config.num_samples, temperatures=config.temperatures, max_new_tokens=config.max_new_tokens,
        device=config.device, dtype=config.dtype, num_beams=config.num_beams,
        openai_base_url=config.openai_base_url, openai_api_key=config.openai_api_key, compile=config.compile,
        hint_tactics=config.hint_tactics,
        proof_format=config.proof_format or guess_proof_format(config.hf_model),
        script=str(config.script) if config.script is not None else None,
    )


def make_generator(settings: GeneratorSettings) -> Generator:
    """A generator for ``settings.backend``; the model loads lazily (hf) or now (vllm)."""
    get_format(settings.prompt_format)  # fail early on an unknown format
    get_proof_format(settings.proof_format)
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
    if settings.backend == "scripted":
        from .scripted import ScriptedGenerator

        return ScriptedGenerator(settings)
    raise ValueError(f"unknown backend {settings.backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "DEFAULT_HF_MODEL",
    "FORMATS",
    "PROOF_FORMATS",
    "Backend",
    "Candidate",
    "GenerationRequest",
    "Generator",
    "GeneratorSettings",
    "Prompt",
    "ProofFeedback",
    "ProofTask",
    "backend_named",
    "cut_tactic",
    "extract_lean_code",
    "get_format",
    "get_proof_format",
    "guess_prompt_format",
    "guess_proof_format",
    "make_generator",
    "merge",
    "postprocess",
    "postprocess_proofs",
    "render",
]
