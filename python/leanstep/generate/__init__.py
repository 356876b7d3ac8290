"""Candidate next tactics from a language model.

``make_generator(GeneratorSettings(...))`` builds a backend (``hf``: transformers,
``vllm``: in-process vLLM, ``openai``: an OpenAI-compatible completions server,
``llamacpp``: a GGUF file through llama.cpp, ``hint``: a fixed list of common tactics, no model);
every backend returns ``list[Candidate]`` through the same post-processing.
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
)
from .prompts import FORMATS, Prompt, get_format, render

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


def configured_model(config: Config) -> str:
    """The model ``config``'s backend runs: the GGUF file for ``llamacpp``, else ``--hf-model``."""
    if config.backend == "llamacpp" and config.gguf is not None:
        return str(config.gguf)
    return config.hf_model


def settings_from_config(config: Config) -> GeneratorSettings:
    """Generator settings from the server's :class:`leanstep.config.Config`."""
    model = configured_model(config)
    return GeneratorSettings(
        backend=backend_named(config.backend), model=model,
        prompt_format=config.prompt_format or guess_prompt_format(model),
        num_samples=config.num_samples, temperatures=config.temperatures, max_new_tokens=config.max_new_tokens,
        device=config.device, dtype=config.dtype, num_beams=config.num_beams,
        openai_base_url=config.openai_base_url, openai_api_key=config.openai_api_key, compile=config.compile,
        hint_tactics=config.hint_tactics, cpu_threads=config.llamacpp_threads,
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
    if settings.backend == "llamacpp":
        from .llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(settings)
    if settings.backend == "hint":
        from .hint import HintGenerator

        return HintGenerator(settings)
    raise ValueError(f"unknown backend {settings.backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "DEFAULT_HF_MODEL",
    "FORMATS",
    "Backend",
    "Candidate",
    "GenerationRequest",
    "Generator",
    "GeneratorSettings",
    "Prompt",
    "backend_named",
    "configured_model",
    "cut_tactic",
    "get_format",
    "guess_prompt_format",
    "make_generator",
    "merge",
    "postprocess",
    "render",
]
