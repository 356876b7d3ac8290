"""``leanstep finetune``: the tests' tiny models trained for a few steps on the CPU, on steps extracted
here from Lean files by the simulated REPL; the loss goes down and the saved model serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from leanstep.cli import main as leanstep
from leanstep.data import extract
from leanstep.data.finetune import (
    HELD_OUT_FILE,
    IGNORE_INDEX,
    LOG_FILE,
    PLOT_FILE,
    ExampleEncoder,
    FinetuneReport,
    TrainingStep,
    held_out_line,
    main,
)
from leanstep.generate import GenerationRequest, GeneratorSettings
from leanstep.generate.hf import HFGenerator
from leanstep.generate.prompts import render
from server_fixtures import running_server

PNG = b"\x89PNG\r\n\x1a\n"
GOAL = "p q : Prop\nhp : p\nhq : q\n⊢ p ∧ q"
LEAN = {
    "Logic.lean": """theorem and_swap (p q : Prop) (hp : p) (hq : q) : p ∧ q := by
  constructor
  · exact hp
  · exact hq

theorem and_intro (a b : Prop) (ha : a) (hb : b) : a ∧ b := by
  constructor
  exact ha
  exact hb
""",
    "Arith.lean": """theorem two : 2 + 2 = 4 := by norm_num

theorem comm (n m : Nat) : n + m = m + n := by
  omega

theorem triv : True := by trivial

theorem zero (n : Nat) : n + 0 = n := by
  induction n with
  | zero => rfl
  | succ k ih => simp
""",
}
FAST = ["--batch-size", "64", "--logging-steps", "1", "--device", "cpu", "--no-progress"]
EVAL = ["--strategy", "search", "--expansions", "2", "--repl", "sim", "--sandbox", "none", "--max-repls", "2",
        "--no-progress", "--plot", ""]


@pytest.fixture(scope="module")
def steps_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lean")
    for name, text in LEAN.items():
        (root / name).write_text(text, encoding="utf-8")
    out = root / "steps.jsonl"
    assert extract.main([str(root), "-o", str(out), "--repl", "sim", "--sandbox", "none", "--max-repls", "2",
                         "--no-progress"]) == 0
    return out


def training_log(out: Path) -> dict:
    return json.loads((out / LOG_FILE).read_text(encoding="utf-8"))


def losses(log: dict, split: str) -> list[float]:
    return [p["loss"] for p in log["history"] if p["split"] == split]


def test_the_training_prompt_is_token_for_token_the_prompt_served_and_only_the_tactic_is_learned(tiny_causal):
    served = HFGenerator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep", device="cpu"))
    served.load()
    tokenizer = served.tokenizer
    encoder = ExampleEncoder(tokenizer, "proofstep", seq2seq=False, max_length=512, eos_id=tokenizer.eos_token_id)
    example = encoder.encode(TrainingStep(GOAL, "exact hp", "Logic.lean\0and_swap"))
    assert example is not None
    prompt_ids, _ = served._prompt_ids(render("proofstep", GOAL, ""), max_new=8)
    tactic_ids = tokenizer("exact hp", add_special_tokens=False)["input_ids"]
    assert example.input_ids == prompt_ids + tactic_ids + [tokenizer.eos_token_id]
    assert example.labels == [IGNORE_INDEX] * len(prompt_ids) + tactic_ids + [tokenizer.eos_token_id]
    short = ExampleEncoder(tokenizer, "proofstep", seq2seq=False, max_length=len(tactic_ids) + 3,
                           eos_id=tokenizer.eos_token_id).encode(TrainingStep(GOAL, "exact hp", ""))
    assert short is not None and short.input_ids[:2] == prompt_ids[-2:]  # a long prompt keeps its end
    too_long = ExampleEncoder(tokenizer, "proofstep", seq2seq=False, max_length=len(tactic_ids) + 1,
                              eos_id=tokenizer.eos_token_id)
    assert too_long.encode(TrainingStep(GOAL, "exact hp", "")) is None


def test_a_causal_model_learns_the_steps_and_leanstep_serve_loads_it_as_saved(steps_file, tiny_causal, tmp_path):
    out = tmp_path / "model"
    assert main([str(steps_file), "--base", str(tiny_causal), "--out", str(out), "--max-steps", "6", "--lr", "3e-3",
                 "--eval-fraction", "0.3", *FAST]) == 0
    log = training_log(out)
    train = losses(log, "train")
    assert len(train) == 6 and train[-1] < 0.8 * train[0], train
    assert len(losses(log, "eval")) >= 2  # before the first step and after the last
    assert log["held_out"] > 0 and log["examples"] > 0 and log["skipped"] == {"tactic spans several lines": 1}
    held = {tuple(d) for d in log["held_out_declarations"]}
    trained_on = {(r["file"], r["decl"]) for r in map(json.loads, steps_file.read_text().splitlines())} - held
    assert held and trained_on and held.isdisjoint(trained_on)
    # the held-out theorems, and only they, are problems for `leanstep eval`, each the theorem as written
    problems = [json.loads(line) for line in (out / HELD_OUT_FILE).read_text(encoding="utf-8").splitlines()]
    assert {(p["file"], p["id"]) for p in problems} == held and len(problems) == len(held) == log["held_out_problems"]
    for problem in problems:
        assert f"\n{problem['statement']} := by" in "\n" + LEAN[problem["file"]]
    assert (out / PLOT_FILE).read_bytes()[:8] == PNG
    assert json.loads((out / "leanstep.json").read_text(encoding="utf-8")) == {"prompt_format": "proofstep"}
    # served with no flag but the model: the prompt format comes from the directory
    with running_server(suggest=True, hf_model=str(out), device="cpu", num_samples=3, temperatures=(0.8,),
                        max_new_tokens=6) as server:
        assert server.services.suggester is not None
        assert server.services.suggester.generator.settings.prompt_format == "proofstep"
        r = requests.post(server.url + "/suggest", json={"tactic_state": GOAL, "prefix": ""}, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["suggestions"] and all(s["status"] == "unchecked" for s in r.json()["suggestions"])
    # `leanstep eval` reads them: with the fixed tactic list, Lean (simulated) accepts a proof of each as the
    # statement asked; with the fine-tuned model, every problem gets its search
    assert leanstep(["eval", str(out / HELD_OUT_FILE), *EVAL, "--no-model", "-o", str(tmp_path / "hint.jsonl")]) == 0
    attempts = [json.loads(line) for line in (tmp_path / "hint.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(a["problem"] for a in attempts) == sorted(p["id"] for p in problems)
    assert all(a["proved"] and a["check"]["verdict"] == "valid" and a["check"]["trust"] == "strict" for a in attempts)
    assert leanstep(["eval", str(out / HELD_OUT_FILE), *EVAL, "--hf-model", str(out), "--device", "cpu",
                     "--num-samples", "2", "--max-new-tokens", "6", "-o", str(tmp_path / "model.jsonl")]) == 0
    attempts = [json.loads(line) for line in (tmp_path / "model.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(a["problem"] for a in attempts) == sorted(p["id"] for p in problems)
    assert all(a["expansions"] >= 1 for a in attempts)


def test_a_seq2seq_model_learns_through_lora_and_is_saved_merged(steps_file, tiny_seq2seq, tmp_path):
    out = tmp_path / "t5"
    assert main([str(steps_file), "--base", str(tiny_seq2seq), "--out", str(out), "--max-steps", "5", "--lr", "1e-2",
                 "--prompt-format", "state", "--lora", "--lora-r", "4", *FAST]) == 0
    log = training_log(out)
    train = losses(log, "train")
    assert len(train) == 5 and train[-1] < train[0], train
    assert log["seq2seq"] is True and log["lora"]["r"] == 4
    assert not (out / "adapter_config.json").exists()  # merged: a plain model, loaded as any other
    generator = HFGenerator(GeneratorSettings(model=str(out), prompt_format="state", device="cpu", num_samples=2,
                                              max_new_tokens=4))
    candidates = generator.generate(GenerationRequest(GOAL, "", num_samples=2, max_new_tokens=4))
    assert generator.is_seq2seq and len(candidates) <= 2
    assert all(c.text.strip() and c.score <= 0 for c in candidates)


def test_held_out_declarations_without_the_extracted_problems_are_reported_as_not_written(tmp_path):
    held = [("A.lean", "a"), ("B.lean", "b")]
    report = FinetuneReport(tmp_path / "model", "base", "proofstep", False, 4, 2, {}, held)
    assert extract.problems_of(tmp_path / "data.jsonl", set(held)) is None
    assert held_out_line(report, tmp_path / "data.jsonl") == (
        f"no {tmp_path / 'data.problems.jsonl'} beside the data (`leanstep extract` writes it): "
        "the held-out theorems are not written as problems")
    report.held_out_problems = 0
    assert "none of the 2 held-out declarations is a proved named theorem" in held_out_line(report, tmp_path)
    report.held_out_problems = 1
    assert held_out_line(report, tmp_path).startswith(f"1 of the 2 held-out declarations are theorems, written as "
                                                      f"problems to {tmp_path / 'model' / HELD_OUT_FILE}")


def _write(path: Path, lines: list[dict | str]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(("lines", "flags", "message"), [
    (["{not json"], [], "data.jsonl:1: not JSON"),
    ([{"state_before": "⊢ True"}], [], "data.jsonl:1: a step needs a `tactic`"),
    ([{"state_before": "⊢ True", "tactic": "constructor\n  trivial"}], [], "no step to train on"),
    ([{"state_before": "⊢ True", "tactic": "trivial", "file": "A", "decl": "a"}], ["--eval-fraction", "0.5"],
     "at least two declarations"),
    ([{"state_before": "⊢ True", "tactic": "trivial"}], ["--lr", "0"], "--lr must be a positive number"),
])
def test_bad_data_or_flags_are_a_usage_error_that_says_what_to_fix(tmp_path, tiny_causal, capsys, lines, flags,
                                                                     message):
    data = _write(tmp_path / "data.jsonl", lines)
    assert main([str(data), "--base", str(tiny_causal), "--out", str(tmp_path / "out"), *flags, *FAST]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
