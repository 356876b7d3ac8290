"""Whole proofs: what a prover model is asked, in its own family's format, and how its answer is read.

A :class:`ProofTask` is the Lean text a proof continues (``header`` and
``statement``, the latter ending where the proof starts, e.g. ``theorem foo
(x : ℕ) : x + 0 = x := by``) and, for a repair, the earlier attempts with
Lean's errors. A generation request that carries one
(``GenerationRequest.proof``) is answered with complete Lean code blocks
instead of one-line tactics: every backend renders it with a
:class:`ProofFormat` and reads the answers with :func:`postprocess_proofs`.

The formats follow the prompts the prover families were trained with:

* ``prover-completion``: the statement pre-filled inside an open ``lean4`` fence,
  the model continues the proof and stops at the closing fence (DeepSeek-Prover-V1.5,
  and any base model; the tiny test models too);
* ``prover-plan``: a chat turn asking for a proof plan before a complete ``lean4``
  block (DeepSeek-Prover-V2, Goedel-Prover-V2);
* ``prover-think``: a chat turn asking to think step by step, with the
  families' system message; the answer follows ``</think>`` (Kimina-Prover);
* ``prover-chat``: a plain instruction for general chat models.

A repair shows the failed attempt and Lean's messages: as extra chat turns (the
attempt as the assistant's answer, the errors as the user's reply) for chat
formats, and as a Lean comment above the statement for the completion format.

Reading an answer (:func:`extract_lean_code`) is lenient, since sampled text is
messy: reasoning inside ``<think>`` is skipped when a final answer follows it,
the last ``lean``/``lean4`` fenced block wins (else the last fenced block),
a block cut off by the token limit is kept up to where it stops, and text
without any fence is taken as code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .prompts import Prompt

FENCE_OPEN = "```lean4\n"
_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([\w+-]*)[^\n]*$", re.MULTILINE)
_LEAN_INFO = frozenset({"lean", "lean4", "lean3"})
_THINK_END = "</think>"
# End-of-text markers of common tokenizers (DeepSeek's is written with full-width bars).
END_OF_TEXT: tuple[str, ...] = ("<|endoftext|>", "</s>", "<|im_end|>", "<|eot_id|>", "<eos>",
                                "<\uff5cend\u2581of\u2581sentence\uff5c>")


@dataclass(frozen=True)
class ProofFeedback:
    """One failed attempt as the model is shown it: the code Lean checked and what Lean said."""

    code: str
    errors: str


@dataclass(frozen=True)
class ProofTask:
    """What a whole proof must complete.

    ``statement`` ends where the proof starts: ``... := by`` for a theorem, or
    a declaration's text up to a call inside its proof. ``feedback``: earlier
    attempts of this line of repair, oldest first.
    """

    header: str
    statement: str
    feedback: tuple[ProofFeedback, ...] = ()

    @property
    def shown(self) -> str:
        """The statement as chat formats show it: its header, then the statement with ``sorry`` for the proof."""
        glue = "" if self.statement.endswith((" ", "\n")) else " "
        head = self.header.rstrip("\n")
        return (head + "\n\n" if head else "") + self.statement + glue + "sorry"


def _comment_safe(text: str) -> str:
    """Text that cannot end or nest a Lean block comment."""
    return text.replace("-/", "- /").replace("/-", "/ -")


class ProofFormat:
    """Base class: ``render(task, goal, tokenizer)`` -> the model's input, and where generation stops."""

    name = ""
    stop: tuple[str, ...] = ()  # stop strings (besides the model's end of text)

    def render(self, task: ProofTask, goal: str = "", tokenizer: Any = None) -> Prompt:
        raise NotImplementedError


class CompletionFormat(ProofFormat):
    """The statement inside an open fence; the model's continuation is the proof, up to the closing fence."""

    name = "prover-completion"
    stop = ("```",)

    def render(self, task: ProofTask, goal: str = "", tokenizer: Any = None) -> Prompt:
        notes = ""
        for attempt in task.feedback:
            notes += (f"/- An earlier attempt failed:\n{_comment_safe(attempt.code.rstrip())}\n"
                      f"Lean's errors:\n{_comment_safe(attempt.errors.rstrip())} -/\n")
        if goal.strip():
            notes += f"/- The goal at this point:\n{_comment_safe(goal.strip())} -/\n"
        head = task.header.rstrip("\n")
        answer_start = FENCE_OPEN + (head + "\n\n" if head else "") + notes + task.statement
        return Prompt("Complete the following Lean 4 code:\n\n" + answer_start, answer_start=answer_start)


class _ChatProofFormat(ProofFormat):
    """A chat turn asking for the whole proof; repairs add the failed answer and Lean's reply as turns."""

    system: str | None = None

    def request(self, task: ProofTask, goal: str) -> str:
        raise NotImplementedError

    def render(self, task: ProofTask, goal: str = "", tokenizer: Any = None) -> Prompt:
        turns: list[dict[str, str]] = [{"role": "system", "content": self.system}] if self.system else []
        turns.append({"role": "user", "content": self.request(task, goal)})
        for attempt in task.feedback:
            turns.append({"role": "assistant", "content": f"```lean4\n{attempt.code.rstrip()}\n```"})
            turns.append({"role": "user", "content": f"Lean 4 rejected this proof. Its errors:\n```\n"
                                                     f"{attempt.errors.rstrip()}\n```\n"
                                                     "Write a corrected complete proof in one ```lean4 code block."})
        template = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
        if template:
            return Prompt(tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True))
        plain = "\n\n".join(f"{t['role'].capitalize()}: {t['content']}" for t in turns)
        return Prompt(plain + "\n\nAssistant:")


def _goal_note(goal: str) -> str:
    return f"\n\nThe goal at the `sorry`:\n```\n{goal.strip()}\n```" if goal.strip() else ""


class PlanFormat(_ChatProofFormat):
    name = "prover-plan"

    def request(self, task: ProofTask, goal: str) -> str:
        return (f"Complete the following Lean 4 code:\n\n```lean4\n{task.shown}\n```{_goal_note(goal)}\n\n"
                "Before producing the Lean 4 code to formally prove the given theorem, provide a detailed proof "
                "plan outlining the main proof steps and strategies.\nThe plan should highlight key ideas, "
                "intermediate lemmas, and proof structures that will guide the construction of the final formal "
                "proof.")


class ThinkFormat(_ChatProofFormat):
    name = "prover-think"
    system = "You are an expert in mathematics and Lean 4."

    def request(self, task: ProofTask, goal: str) -> str:
        return (f"Think about and solve the following problem step by step in Lean 4.\n"
                f"# Formal statement:\n```lean4\n{task.shown}\n```{_goal_note(goal)}\n")


class InstructFormat(_ChatProofFormat):
    name = "prover-chat"

    def request(self, task: ProofTask, goal: str) -> str:
        return (f"Prove the following theorem in Lean 4 with Mathlib. Replace `sorry` with a proof and answer "
                f"with the complete Lean code in one ```lean4 code block.\n\n```lean4\n{task.shown}\n```"
                f"{_goal_note(goal)}")


PROOF_FORMATS: dict[str, ProofFormat] = {f.name: f for f in (CompletionFormat(), PlanFormat(), ThinkFormat(),
                                                              InstructFormat())}


def get_proof_format(name: str) -> ProofFormat:
    """The whole-proof format called ``name``; a ValueError lists the known names otherwise."""
    try:
        return PROOF_FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown proof format {name!r}; choose one of: {', '.join(sorted(PROOF_FORMATS))}") \
            from None


def guess_proof_format(model: str) -> str:
    """The whole-proof format a known prover family was trained with (``prover-completion`` otherwise)."""
    name = model.lower()
    if "kimina" in name:
        return "prover-think"
    if "goedel" in name or ("deepseek-prover" in name and "v1" not in name):
        return "prover-plan"
    if "instruct" in name or "chat" in name or name.startswith(("gpt-", "claude", "o1", "o3", "o4")):
        return "prover-chat"
    return "prover-completion"


# --------------------------------------------------------------------------- #
# Reading answers


def _final_answer(text: str) -> str:
    """The part after the last ``</think>``; all of it when there is none."""
    end = text.rfind(_THINK_END)
    return text[end + len(_THINK_END):] if end >= 0 else text


def _blocks(text: str) -> list[tuple[str, str, bool]]:
    """Fenced blocks as ``(info, code, closed)``, in order; an unclosed last block runs to the end."""
    fences = list(_FENCE.finditer(text))
    blocks: list[tuple[str, str, bool]] = []
    k = 0
    while k < len(fences):
        opening = fences[k]
        marker = opening.group(1)
        closing = next((j for j in range(k + 1, len(fences))
                        if fences[j].group(1).startswith(marker[0] * len(marker)) and not fences[j].group(2)),
                       None)
        start = opening.end() + 1
        if closing is None:
            blocks.append((opening.group(2).lower(), text[start:], False))
            break
        blocks.append((opening.group(2).lower(), text[start:fences[closing].start()], True))
        k = closing + 1
    return blocks


def extract_lean_code(text: str) -> str:
    """The Lean code an answer holds (see the module docstring); ``""`` when it holds none."""
    text = text.replace("\r\n", "\n")
    for marker in END_OF_TEXT:
        cut = text.find(marker)
        if cut >= 0:
            text = text[:cut]
    answer = _final_answer(text)
    blocks = _blocks(answer) or (_blocks(text) if answer is not text else [])
    if blocks:
        lean = [b for b in blocks if b[0] in _LEAN_INFO] or [b for b in blocks if not b[0]] or blocks
        closed = [b for b in lean if b[2]]
        code = (closed or lean)[-1][1]
    elif "<think>" in answer and _THINK_END not in answer:
        code = ""  # reasoning cut off before any code
    else:
        code = answer
    return "\n".join(line.rstrip() for line in code.strip("\n").split("\n")).strip("\n")


__all__ = ["END_OF_TEXT", "PROOF_FORMATS", "ProofFeedback", "ProofFormat", "ProofTask", "extract_lean_code",
           "get_proof_format", "guess_proof_format"]
