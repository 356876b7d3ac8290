"""``leanstep finetune DATA.jsonl --base MODEL --out DIR``: train a tactic model on extracted steps.

The records are ``leanstep extract``'s (or any JSON lines with ``tactic`` and ``state_before``).
Each becomes a prompt and a target by ``generate.prompts.training_example``, the code that renders
prompts when serving, for the goal the ``llmstep`` tactic sends (the main goal, ``goals_before[0]``;
``state_before`` for records that have no goal list); the target is the tactic and the model's
end-of-sequence token, and the loss is on the target only (the prompt's labels are -100). Prompts
are tokenized as the serving backend tokenizes them (``generate.hf.encode_prompt``). Steps the
served model could never write are left out: a tactic over several lines (serving stops at the
first newline) and ``sorry``.

Training is transformers' ``Trainer`` with ``DataCollatorForSeq2Seq`` (padding, -100 on padded
labels), for causal and encoder-decoder models alike; ``--lora`` trains low-rank adapters with
``peft`` and merges them into the weights before saving. ``--eval-fraction`` holds out whole
declarations (steps of one proof never sit on both sides) and reports their loss.

``DIR`` then holds the model and tokenizer (``save_pretrained``), ``leanstep.json`` (the prompt
format, which ``leanstep serve --hf-model DIR`` reads, so it needs no other flag),
``training_log.json`` (counts, the held-out declarations, every logged loss), ``loss.png`` (the curves)
and, when declarations were held out and ``leanstep extract`` wrote the problems of the data's
theorems beside it, ``held_out.jsonl``: the held-out theorems as problems for ``leanstep eval``.

torch, transformers, peft and matplotlib load only when training runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from leanstep.api.records import json_line
from leanstep.data.extract import problems_of, problems_path
from leanstep.generate import record_prompt_format
from leanstep.generate.prompts import FORMATS, get_format, training_example
from leanstep.plotting import png_figure
from leanstep.verify_cli import UsageError, read_records

IGNORE_INDEX = -100  # the label the loss skips (transformers' convention)
LOG_FILE = "training_log.json"
PLOT_FILE = "loss.png"
HELD_OUT_FILE = "held_out.jsonl"
SKIP_MULTILINE = "tactic spans several lines"
SKIP_PLACEHOLDER = "sorry"
SKIP_TOO_LONG = "tactic longer than --max-length"
PLACEHOLDER_TACTICS = frozenset({"sorry", "admit"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="JSON lines of steps, as `leanstep extract` writes them")
    parser.add_argument("--base", required=True, help="the model to start from: a local directory or a hub id")
    parser.add_argument("--out", required=True, help="directory to save the fine-tuned model in")
    parser.add_argument("--prompt-format", default="proofstep", choices=sorted(FORMATS),
                        help="the prompt the model is trained on, and then served with (default: proofstep)")
    parser.add_argument("--epochs", type=float, default=1.0, help="passes over the data (default: 1)")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many optimizer steps (0: --epochs)")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per optimizer step (default: 8)")
    parser.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (default: 5e-5; 2e-4 suits LoRA)")
    parser.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps (default: 0)")
    parser.add_argument("--max-length", type=int, default=1024,
                        help="most tokens per example; a longer prompt keeps its end, as when serving (default: 1024)")
    parser.add_argument("--eval-fraction", type=float, default=0.0,
                        help="fraction of declarations held out to measure the loss on (default: 0, none)")
    parser.add_argument("--logging-steps", type=int, default=10, help="log the loss every N steps (default: 10)")
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters (peft), merged into the saved model")
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank (default: 16)")
    parser.add_argument("--lora-alpha", type=int, default=32, help="LoRA scaling alpha (default: 32)")
    parser.add_argument("--lora-dropout", type=float, default=0.05, help="LoRA dropout (default: 0.05)")
    parser.add_argument("--lora-target-modules", default=None,
                        help="comma-separated module names to adapt (default: peft's choice for the architecture)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the base model's own code")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


@dataclass(frozen=True)
class FinetuneSettings:
    """Everything one fine-tuning run needs (the command's flags)."""

    data: Path
    base: str
    out: Path
    prompt_format: str = "proofstep"
    epochs: float = 1.0
    max_steps: int = 0
    batch_size: int = 8
    lr: float = 5e-5
    warmup_steps: int = 0
    max_length: int = 1024
    eval_fraction: float = 0.0
    logging_steps: int = 10
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] | None = None
    device: str = "auto"
    seed: int = 0
    trust_remote_code: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        get_format(self.prompt_format)
        for name in ("batch_size", "max_length", "logging_steps", "lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_steps < 0 or self.warmup_steps < 0:
            raise UsageError("--max-steps and --warmup-steps must not be negative")
        for name in ("epochs", "lr"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise UsageError(f"--{name} must be a positive number, got {value}")
        if not 0 <= self.eval_fraction < 1 or not 0 <= self.lora_dropout < 1:
            raise UsageError("--eval-fraction and --lora-dropout must be at least 0 and below 1")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FinetuneSettings:
        targets = tuple(t.strip() for t in args.lora_target_modules.split(",") if t.strip()) \
            if args.lora_target_modules else None
        return cls(Path(args.data), args.base, Path(args.out), args.prompt_format, args.epochs, args.max_steps,
                   args.batch_size, args.lr, args.warmup_steps, args.max_length, args.eval_fraction,
                   args.logging_steps, args.lora, args.lora_r, args.lora_alpha, args.lora_dropout, targets,
                   args.device, args.seed, args.trust_remote_code, not args.no_progress)


# --------------------------------------------------------------------------- #
# The data


@dataclass(frozen=True)
class TrainingStep:
    """One step to learn from: the goal as served, the tactic, and the declaration it came from."""

    state: str
    tactic: str
    declaration: str  # "file\0declaration": held-out steps are whole declarations


def served_state(record: dict[str, Any]) -> str | None:
    """The tactic state the model sees for this step when serving: the main goal the ``llmstep`` tactic
    sends (``goals_before[0]``), or ``state_before`` for records that list no goals."""
    goals = record.get("goals_before")
    if isinstance(goals, list) and goals and isinstance(goals[0], str):
        return goals[0]
    state = record.get("state_before")
    return state if isinstance(state, str) and state else None


def read_steps(path: Path) -> tuple[list[TrainingStep], Counter[str]]:
    """The steps of a JSON-lines file, and how many were left out for each reason."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    skipped: Counter[str] = Counter()

    def step(record: dict[str, Any], lineno: int) -> TrainingStep | None:
        state, tactic = served_state(record), record.get("tactic")
        if state is None or not isinstance(tactic, str) or not tactic.strip():
            raise ValueError("a step needs a `tactic` and a `state_before` (or `goals_before`) string")
        tactic = tactic.strip()
        if "\n" in tactic:
            skipped[SKIP_MULTILINE] += 1
            return None
        if tactic in PLACEHOLDER_TACTICS:
            skipped[SKIP_PLACEHOLDER] += 1
            return None
        return TrainingStep(state, tactic, f"{record.get('file')}\0{record.get('decl')}")

    steps = read_records(path, step, "steps", "`tactic` and `state_before`")
    return [s for s in steps if s is not None], skipped


def hold_out(steps: Sequence[TrainingStep], fraction: float) -> tuple[list[TrainingStep], list[TrainingStep]]:
    """(train, held out): ``fraction`` of the declarations, chosen by a hash of their names (the same each run)."""
    if fraction <= 0:
        return list(steps), []
    names = sorted({s.declaration for s in steps}, key=lambda d: hashlib.sha256(d.encode()).hexdigest())
    if len(names) < 2:
        raise UsageError("--eval-fraction needs steps from at least two declarations "
                         "(a record names its own with `file` and `decl`)")
    held = set(names[: min(len(names) - 1, max(1, round(fraction * len(names))))])
    return [s for s in steps if s.declaration not in held], [s for s in steps if s.declaration in held]


@dataclass(frozen=True)
class Encoded:
    """One tokenized example: the input, and labels that are -100 wherever the loss must not look."""

    input_ids: list[int]
    labels: list[int]

    def features(self) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids, "attention_mask": [1] * len(self.input_ids), "labels": self.labels}


class ExampleEncoder:
    """Turns steps into token ids the way the served model reads its prompt and writes its tactic."""

    def __init__(self, tokenizer: Any, prompt_format: str, seq2seq: bool, max_length: int, eos_id: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_format = prompt_format
        self.seq2seq = seq2seq
        self.max_length = max_length
        self.eos_id = eos_id

    def encode(self, step: TrainingStep) -> Encoded | None:
        """The example, or None when the tactic alone does not fit in ``max_length`` tokens."""
        from leanstep.generate.hf import encode_prompt

        example = training_example(self.prompt_format, step.state, step.tactic, self.tokenizer, self.seq2seq)
        prompt = encode_prompt(self.tokenizer, example.prompt.text, self.seq2seq)
        target = [*self.tokenizer(example.completion, add_special_tokens=False)["input_ids"], self.eos_id]
        if self.seq2seq:
            if len(target) > self.max_length:
                return None
            return Encoded(prompt[-self.max_length:], target)
        room = self.max_length - len(target)
        if room < 1:
            return None
        prompt = prompt[-room:]  # serving also keeps the end of a long prompt
        return Encoded(prompt + target, [IGNORE_INDEX] * len(prompt) + target)


# --------------------------------------------------------------------------- #
# Training


@dataclass(frozen=True)
class LossPoint:
    step: int
    split: str  # "train" or "eval"
    loss: float


@dataclass
class FinetuneReport:
    """What a run did: the counts, the losses logged along the way, and where the model went."""

    out: Path
    base: str
    prompt_format: str
    seq2seq: bool
    examples: int
    held_out: int
    skipped: dict[str, int]
    held_out_declarations: list[tuple[str, str]] = field(default_factory=list)  # (file, declaration)
    held_out_problems: int | None = None  # how many are theorems written to held_out.jsonl (None: no problems file)
    steps: int = 0
    seconds: float = 0.0
    lora: dict[str, Any] | None = None
    history: list[LossPoint] = field(default_factory=list)

    def losses(self, split: str) -> list[float]:
        return [p.loss for p in self.history if p.split == split]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["out"] = str(self.out)
        return out


def _pick_device(device: str) -> tuple[bool, bool]:
    """(train on the CPU, bf16 mixed precision) for ``--device``."""
    import torch

    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available")
    on_cpu = device == "cpu" or not torch.cuda.is_available()
    return on_cpu, not on_cpu and torch.cuda.is_bf16_supported()


def _load(settings: FinetuneSettings) -> tuple[Any, Any, bool]:
    """(model, tokenizer, seq2seq) of the base, loaded by ``from_pretrained`` as the server loads models."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    trust = settings.trust_remote_code
    try:
        config = AutoConfig.from_pretrained(settings.base, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--base {settings.base}: cannot load it ({exc})") from None
    seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    tokenizer = AutoTokenizer.from_pretrained(settings.base, trust_remote_code=trust)
    auto = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    model = auto.from_pretrained(settings.base, trust_remote_code=trust)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # as the server does
    return model, tokenizer, seq2seq


def _eos_id(model: Any, tokenizer: Any) -> int:
    for value in (tokenizer.eos_token_id, getattr(model.config, "eos_token_id", None)):
        if isinstance(value, int):
            return value
        if isinstance(value, list) and value:
            return int(value[0])
    raise UsageError("the base model's tokenizer has no end-of-sequence token to end a tactic with")


def _check_installed(settings: FinetuneSettings) -> None:
    """Fail before training, not after it, when the plot or LoRA cannot be made."""
    import importlib.util

    needed = ["matplotlib", *(["peft"] if settings.lora else [])]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"{' and '.join(missing)} not installed: pip install 'leanstep[finetune]'")


def _with_lora(model: Any, settings: FinetuneSettings, seq2seq: bool) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM if seq2seq else TaskType.CAUSAL_LM, r=settings.lora_r,
                        lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                        target_modules=list(settings.lora_target_modules) if settings.lora_target_modules else None)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise UsageError(f"--lora: {exc} (name the layers with --lora-target-modules)") from None


class _Dataset:
    """A list of encoded examples in the form ``Trainer`` reads (indexable, sized)."""

    def __init__(self, examples: list[Encoded]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.examples[index].features()


def _encode_all(encoder: ExampleEncoder, steps: list[TrainingStep], skipped: Counter[str]) -> list[Encoded]:
    encoded = []
    for step in steps:
        example = encoder.encode(step)
        if example is None:
            skipped[SKIP_TOO_LONG] += 1
        else:
            encoded.append(example)
    return encoded


def finetune(settings: FinetuneSettings) -> FinetuneReport:
    """Train, save the model (LoRA merged) with its prompt format, the log and the loss plot; the report."""
    steps, skipped = read_steps(settings.data)
    train_steps, held_steps = hold_out(steps, settings.eval_fraction)
    if not train_steps:
        raise UsageError(f"{settings.data}: no step to train on ({dict(skipped) or 'the file is empty'})")
    _check_installed(settings)
    on_cpu, bf16 = _pick_device(settings.device)

    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    model, tokenizer, seq2seq = _load(settings)
    encoder = ExampleEncoder(tokenizer, settings.prompt_format, seq2seq, _max_length(settings, model),
                             _eos_id(model, tokenizer))
    train_set = _Dataset(_encode_all(encoder, train_steps, skipped))
    held_set = _Dataset(_encode_all(encoder, held_steps, skipped))
    if not len(train_set):
        raise UsageError(f"no training example fits in --max-length {settings.max_length} tokens")
    if settings.lora:
        model = _with_lora(model, settings, seq2seq)
    report = FinetuneReport(settings.out, settings.base, settings.prompt_format, seq2seq, len(train_set),
                            len(held_set), dict(skipped), _declarations(held_steps))
    problems = problems_of(settings.data, set(report.held_out_declarations)) if held_steps else None
    report.held_out_problems = None if problems is None else len(problems)
    if settings.lora:
        report.lora = {"r": settings.lora_r, "alpha": settings.lora_alpha, "dropout": settings.lora_dropout,
                       "target_modules": list(settings.lora_target_modules or ()) or "peft default"}

    class RecordLosses(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kwargs: Any) -> None:
            for key, split in (("loss", "train"), ("eval_loss", "eval")):
                if logs and key in logs:
                    report.history.append(LossPoint(state.global_step, split, float(logs[key])))

    total = settings.max_steps or math.ceil(settings.epochs * math.ceil(len(train_set) / settings.batch_size))
    eval_steps = max(1, total // 10)
    arguments = TrainingArguments(
        output_dir=str(settings.out), per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size, learning_rate=settings.lr,
        num_train_epochs=settings.epochs, max_steps=settings.max_steps or -1, warmup_steps=settings.warmup_steps,
        logging_steps=settings.logging_steps, logging_first_step=True,
        eval_strategy="steps" if len(held_set) else "no", eval_steps=eval_steps,
        save_strategy="no", report_to="none", seed=settings.seed, data_seed=settings.seed,
        use_cpu=on_cpu, bf16=bf16, remove_unused_columns=False, disable_tqdm=not settings.progress,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, model=model if seq2seq else None, label_pad_token_id=IGNORE_INDEX)
    trainer = Trainer(model=model, args=arguments, train_dataset=train_set,
                      eval_dataset=held_set if len(held_set) else None, data_collator=collator,
                      processing_class=tokenizer, callbacks=[RecordLosses()])
    started = time.monotonic()
    if len(held_set):
        trainer.evaluate()  # the held-out loss before training: the curve's first point
    trainer.train()
    if len(held_set) and trainer.state.global_step % eval_steps:
        trainer.evaluate()  # and after the last step
    report.seconds = time.monotonic() - started
    report.steps = trainer.state.global_step
    _save(model.merge_and_unload() if settings.lora else model, tokenizer, settings, report, problems or [])
    return report


def _declarations(steps: Sequence[TrainingStep]) -> list[tuple[str, str]]:
    """The (file, declaration) pairs of ``steps``, sorted: what a later evaluation must not have seen."""
    return sorted({(file, decl) for file, _, decl in (s.declaration.partition("\0") for s in steps)})


def _max_length(settings: FinetuneSettings, model: Any) -> int:
    positions = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    return min(settings.max_length, positions) if isinstance(positions, int) and positions > 0 else settings.max_length


def _save(model: Any, tokenizer: Any, settings: FinetuneSettings, report: FinetuneReport,
          held_out_problems: list[dict[str, Any]]) -> None:
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record_prompt_format(out, settings.prompt_format)
    (out / HELD_OUT_FILE).unlink(missing_ok=True)  # a previous run's, for other declarations
    if held_out_problems:
        (out / HELD_OUT_FILE).write_text("".join(json_line(p) for p in held_out_problems), encoding="utf-8")
    (out / LOG_FILE).write_text(json.dumps(report.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    plot_losses(report, out / PLOT_FILE)


def plot_losses(report: FinetuneReport, path: Path) -> None:
    """The training (and held-out) loss against the optimizer step, as a PNG."""
    with png_figure(path, figsize=(7, 4)) as (_, ax):
        for split, style in (("train", "-"), ("eval", "o--")):
            points = [(p.step, p.loss) for p in report.history if p.split == split]
            if points:
                ax.plot(*zip(*points, strict=True), style,
                        label="training loss" if split == "train" else "held-out loss")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss per tactic token")
        ax.set_title(f"{report.base} -> {report.out.name} ({report.prompt_format}, {report.examples} examples)",
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend()


def run(args: argparse.Namespace) -> int:
    try:
        report = finetune(FinetuneSettings.from_args(args))
    except UsageError as exc:
        print(f"leanstep finetune: {exc}", file=sys.stderr)
        return 2
    train, held = report.losses("train"), report.losses("eval")
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items()))
    print(f"leanstep finetune: {report.examples} examples" + (f" ({report.held_out} held out)" if held else "")
          + (f", left out: {skipped}" if skipped else "")
          + f"; {report.steps} steps in {report.seconds:.1f} s"
          + (f"; train loss {train[0]:.3f} -> {train[-1]:.3f}" if train else "")
          + (f"; held-out loss {held[0]:.3f} -> {held[-1]:.3f}" if held else ""), file=sys.stderr)
    print(f"leanstep finetune: saved to {report.out} (serve it with `leanstep serve --hf-model {report.out}`; "
          f"loss curve: {report.out / PLOT_FILE})", file=sys.stderr)
    if report.held_out_declarations:
        print(f"leanstep finetune: {held_out_line(report, Path(args.data))}", file=sys.stderr)
    return 0


def held_out_line(report: FinetuneReport, data: Path) -> str:
    """What became of the held-out declarations as problems for ``leanstep eval``."""
    held = len(report.held_out_declarations)
    if report.held_out_problems is None:
        return (f"no {problems_path(data)} beside the data (`leanstep extract` writes it): "
                "the held-out theorems are not written as problems")
    if not report.held_out_problems:
        return f"none of the {held} held-out declarations is a proved named theorem: no {HELD_OUT_FILE}"
    path = report.out / HELD_OUT_FILE
    return (f"{report.held_out_problems} of the {held} held-out declarations are theorems, written as problems to "
            f"{path} (measure them with `leanstep eval {path} --hf-model {report.out}`)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leanstep finetune", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
