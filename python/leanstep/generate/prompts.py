"""Prompt formats, chosen by name.

A format decides what text the model sees for a goal and a prefix:

* ``proofstep``: ``[GOAL]{state}[PROOFSTEP]{prefix}``, the format llmstep's
  fine-tuned Pythia models were trained on; the model continues the prefix.
* ``state``: the goal text alone, for seq2seq tactic generators such as
  LeanCopilot's ByT5 model; the prefix is forced on the decoder side by the
  backend (``decoder_prefix``), or appended to the input where that is impossible.
* ``chat``: an instruction for general or prover chat models, rendered with the
  tokenizer's chat template when it has one; the assistant turn is pre-filled
  with an opening ``lean`` code fence and the prefix, so the model's first line
  is the tactic.

Training uses the same code: :func:`training_example` renders a tactic step's prompt exactly as
serving renders it for an empty prefix, with the tactic as the text the model must write next,
so a model is trained on the prompts it will be served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INSTRUCTION = (
    "You are proving a theorem in Lean 4 with Mathlib. Given the tactic state below, "
    "write the single next tactic. Answer with the tactic only, on one line."
)


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt.

    ``text`` is the model input (for a causal model it ends with the prefix).
    ``decoder_prefix`` is text a seq2seq model's decoder must start with (the
    user's prefix for the ``state`` format), or ``""``. ``answer_start`` is the
    end of ``text`` that already belongs to the answer (a whole-proof format's
    open code fence and statement), read back together with what the model adds.
    """

    text: str
    decoder_prefix: str = ""
    answer_start: str = ""


class PromptFormat:
    """Base class: ``render(tactic_state, prefix, tokenizer=None, seq2seq=False)``."""

    name = ""

    def render(self, tactic_state: str, prefix: str, tokenizer: Any = None, seq2seq: bool = False) -> Prompt:
        raise NotImplementedError


class ProofstepFormat(PromptFormat):
    name = "proofstep"

    def render(self, tactic_state: str, prefix: str, tokenizer: Any = None, seq2seq: bool = False) -> Prompt:
        if seq2seq:
            return Prompt(f"[GOAL]{tactic_state}[PROOFSTEP]", decoder_prefix=prefix)
        return Prompt(f"[GOAL]{tactic_state}[PROOFSTEP]{prefix}")


class StateFormat(PromptFormat):
    name = "state"

    def render(self, tactic_state: str, prefix: str, tokenizer: Any = None, seq2seq: bool = False) -> Prompt:
        if seq2seq:
            return Prompt(tactic_state, decoder_prefix=prefix)
        # A causal model has no decoder side: the state, a newline, then the prefix.
        return Prompt(f"{tactic_state}\n{prefix}")


class ChatFormat(PromptFormat):
    name = "chat"

    def render(self, tactic_state: str, prefix: str, tokenizer: Any = None, seq2seq: bool = False) -> Prompt:
        user = f"{INSTRUCTION}\n\nTactic state:\n```lean\n{tactic_state}\n```"
        if seq2seq:
            return Prompt(user, decoder_prefix=prefix)
        answer_start = f"```lean\n{prefix}"
        template = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
        if template:
            head = tokenizer.apply_chat_template(
                [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
            )
            return Prompt(head + answer_start)
        return Prompt(f"{user}\n\nNext tactic:\n{answer_start}")


FORMATS: dict[str, PromptFormat] = {f.name: f for f in (ProofstepFormat(), StateFormat(), ChatFormat())}


@dataclass(frozen=True)
class TrainingExample:
    """One step to learn: the prompt served for its goal and the tactic the model should write after it.

    The model's end-of-sequence token follows ``completion`` when training: serving stops there (or at a newline).
    """

    prompt: Prompt
    completion: str


def get_format(name: str) -> PromptFormat:
    """The format called ``name``; a ValueError lists the known names otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(
            f"unknown prompt format {name!r}; choose one of: {', '.join(sorted(FORMATS))}"
        ) from None


def render(name: str, tactic_state: str, prefix: str = "", tokenizer: Any = None, seq2seq: bool = False) -> Prompt:
    """Shorthand for ``get_format(name).render(...)``."""
    return get_format(name).render(tactic_state, prefix, tokenizer=tokenizer, seq2seq=seq2seq)


def training_example(name: str, tactic_state: str, tactic: str, tokenizer: Any = None,
                     seq2seq: bool = False) -> TrainingExample:
    """The example format ``name`` makes of one step: its prompt for ``tactic_state`` with no prefix, as
    served, and ``tactic`` to follow it."""
    return TrainingExample(render(name, tactic_state, "", tokenizer=tokenizer, seq2seq=seq2seq), tactic)
