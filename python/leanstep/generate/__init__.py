"""Candidate next tactics from a language model.

``make_generator(GeneratorSettings(...))`` builds a backend (``hf``: transformers,
``vllm``: in-process vLLM, ``openai``: an OpenAI-compatible completions server,
``llamacpp``: a GGUF file through llama.cpp, ``hint``: a fixed list of common tactics, no model;
``scripted``: proposals replayed from a file, no model); every backend returns
``list[Candidate]`` through the same post-processing, next tactics or (for a
request with a ``proof`` task) whole proofs.
Backends are imported only when built, so importing this package does not
import torch.
"""

from __future__ import annotations

import json
from pathlib import Path
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


# Written beside a model that `leanstep finetune` saved: the prompt format it was trained on.
TRAINED_FORMAT_FILE = "leanstep.json"


def trained_prompt_format(model: str) -> str | None:
    """The prompt format recorded beside a fine-tuned model directory (``leanstep.json``), or None."""
    try:
        recorded = json.loads((Path(model) / TRAINED_FORMAT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = recorded.get("prompt_format") if isinstance(recorded, dict) else None
    return name if isinstance(name, str) and name in FORMATS else None


def record_prompt_format(directory: Path, name: str) -> None:
    """Record beside a saved model the prompt format it was trained on, for :func:`guess_prompt_format`."""
    get_format(name)
    (directory / TRAINED_FORMAT_FILE).write_text(json.dumps({"prompt_format": name}) + "\n", encoding="utf-8")


def guess_prompt_format(model: str) -> str:
    """The prompt format ``model`` was trained with: the one ``leanstep finetune`` recorded beside it, else
    the known one of its family (``chat`` otherwise)."""
    trained = trained_prompt_format(model)
    if trained is not None:
        return trained
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
        hint_tactics=config.hint_tactics, batch_size=config.generation_batch, batch_window=config.generation_window,
        proof_format=config.proof_format or guess_proof_format(model),
        script=str(config.script) if config.script is not None else None, cpu_threads=config.llamacpp_threads,
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
    if settings.backend == "llamacpp":
        from .llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(settings)
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
    "configured_model",
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
    "record_prompt_format",
    "render",
    "trained_prompt_format",
]
