"""The llamacpp backend: a GGUF file run by llama.cpp (llama-cpp-python).

The model is the tests' tiny GPT-NeoX with a byte-level BPE tokenizer, written as a
GGUF file here (``tiny_models.write_gguf``) and loaded by llama.cpp's own loader. The
same weights also run in the hf backend, so the two backends are checked against
each other. Without llama-cpp-python (``make llamacpp``) the tests that need it skip
and say so; the sampler, the settings and the errors are tested either way.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from leanstep import config as config_mod
from leanstep.generate import Candidate, GenerationRequest, GeneratorSettings, make_generator, settings_from_config
from leanstep.generate.llamacpp import ALL_LAYERS, gpu_layers, sample_tokens

sys.path.insert(0, str(Path(__file__).parent))
from test_generate import STATE, assert_thread_safe, assert_well_formed
from tiny_models import build_bpe_causal, quantize_gguf, write_gguf

try:
    import llama_cpp  # noqa: F401

    MISSING = ""
except ImportError:
    MISSING = "llama-cpp-python is not installed (make llamacpp installs it)"
needs_llama = pytest.mark.skipif(bool(MISSING), reason=MISSING)


def llamacpp_settings(gguf: Path, **kw) -> GeneratorSettings:
    return GeneratorSettings(backend="llamacpp", model=str(gguf), prompt_format=kw.pop("prompt_format", "proofstep"),
                             device="cpu", **kw)


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory) -> Path:
    return build_bpe_causal(tmp_path_factory.mktemp("tiny-bpe"))


@pytest.fixture(scope="module")
def gguf_file(bpe_dir, tmp_path_factory) -> Path:
    return write_gguf(bpe_dir, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf")


@pytest.fixture(scope="module")
def llama_gen(gguf_file):
    if MISSING:
        pytest.skip(MISSING)
    generator = make_generator(llamacpp_settings(gguf_file))
    yield generator
    generator.close()


# -- the sampler (numpy only) ---------------------------------------------------------


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x - (x.max(1, keepdims=True) + np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)))


def test_greedy_takes_the_most_likely_token_and_scores_it_at_temperature_one():
    logits = np.array([[0.0, 3.0, 1.0, -2.0], [5.0, 0.0, 0.0, 4.0]], dtype=np.float32)
    picks, logprobs = sample_tokens(logits, 0.0, np.random.default_rng(0))
    assert picks.tolist() == [1, 0]
    assert logprobs == pytest.approx(log_softmax(logits)[[0, 1], [1, 0]])


def test_banned_tokens_are_never_drawn_but_keep_their_share_of_probability():
    logits = np.array([[4.0, 1.0, 0.0]] * 200, dtype=np.float32)
    banned = np.array([True, False, False])
    picks, logprobs = sample_tokens(logits, 1.0, np.random.default_rng(1), banned)
    assert 0 not in picks.tolist()
    assert logprobs == pytest.approx(log_softmax(logits)[np.arange(200), picks])


def test_sampling_follows_the_tempered_distribution_and_is_seeded():
    logits = np.log(np.array([[0.5, 0.3, 0.2]] * 20000))
    picks, _ = sample_tokens(logits, 0.5, np.random.default_rng(2))
    want = np.array([0.5, 0.3, 0.2]) ** 2 / (np.array([0.5, 0.3, 0.2]) ** 2).sum()
    assert np.bincount(picks, minlength=3) / len(picks) == pytest.approx(want, abs=0.015)
    again, _ = sample_tokens(logits, 0.5, np.random.default_rng(2))
    assert (picks == again).all()


# -- settings and errors (no model needed) --------------------------------------------------


def test_the_backend_is_chosen_by_flag_and_takes_the_gguf_file_as_its_model():
    config = config_mod.load({"backend": "llamacpp", "gguf": "models/llmstep-pythia-2.8b-Q4_K_M.gguf",
                              "llamacpp_threads": "3"})
    settings = settings_from_config(config)
    assert (settings.backend, settings.model, settings.cpu_threads) == (
        "llamacpp", "models/llmstep-pythia-2.8b-Q4_K_M.gguf", 3)
    assert settings.prompt_format == "proofstep"  # guessed from the file's name, as from a model id


def test_the_backend_without_a_gguf_file_or_with_negative_threads_is_refused():
    with pytest.raises(ValueError, match="--backend llamacpp needs --gguf FILE"):
        config_mod.load({"backend": "llamacpp"})
    with pytest.raises(ValueError, match="--llamacpp-threads"):
        config_mod.load({"backend": "llamacpp", "gguf": "m.gguf", "llamacpp_threads": "-1"})


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"GGUF model file.*nope\.gguf"):
        make_generator(llamacpp_settings(tmp_path / "nope.gguf"))


def test_beam_search_is_refused_with_a_reason(gguf_file):
    with pytest.raises(ValueError, match="beam search"):
        make_generator(llamacpp_settings(gguf_file, num_beams=4))


def test_offload_follows_the_device_setting():
    assert gpu_layers("cpu", True) == 0
    assert gpu_layers("auto", False) == 0
    assert gpu_layers("auto", True) == ALL_LAYERS
    assert gpu_layers("cuda", True) == ALL_LAYERS
    with pytest.raises(ValueError, match="CPU only"):
        gpu_layers("cuda", False)


def test_without_llama_cpp_python_the_error_says_how_to_install(gguf_file):
    if not MISSING:
        pytest.skip("llama-cpp-python is installed here; the missing-package error cannot be observed")
    with pytest.raises(ImportError, match="make llamacpp"):
        make_generator(llamacpp_settings(gguf_file))


def test_the_gguf_file_carries_the_model_and_its_tokenizer(bpe_dir, gguf_file):
    import gguf
    from transformers import AutoConfig

    reader = gguf.GGUFReader(gguf_file)
    config = AutoConfig.from_pretrained(bpe_dir)
    fields = {name: reader.fields[name].contents() for name in (
        "general.architecture", "gptneox.block_count", "gptneox.embedding_length", "tokenizer.ggml.model",
        "tokenizer.ggml.pre", "tokenizer.ggml.eos_token_id")}
    assert fields == {"general.architecture": "gptneox", "gptneox.block_count": config.num_hidden_layers,
                      "gptneox.embedding_length": config.hidden_size, "tokenizer.ggml.model": "gpt2",
                      "tokenizer.ggml.pre": "gpt-2", "tokenizer.ggml.eos_token_id": config.eos_token_id}
    assert len(reader.fields["tokenizer.ggml.tokens"].contents()) == config.vocab_size
    assert len(reader.tensors) == 4 + 12 * config.num_hidden_layers


# -- llama.cpp on the tiny model --------------------------------------------------------


@needs_llama
def test_the_tokenizer_survives_the_conversion(bpe_dir, llama_gen):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(bpe_dir)
    model = llama_gen.load()
    for text in (f"[GOAL]{STATE}[PROOFSTEP]simp at h", "intro h\n  exact ⟨h.1, h.2⟩", "rw [Nat.add_comm] at h1"):
        assert model.tokenize(text) == hf(text)["input_ids"], text
        assert model.text(model.tokenize(text)) == text


@needs_llama
def test_greedy_decoding_agrees_with_the_hf_backend_on_the_same_weights(bpe_dir, llama_gen):
    hf = make_generator(GeneratorSettings(model=str(bpe_dir), prompt_format="proofstep", device="cpu"))
    for prefix in ("", "simp", "rw ["):
        request = GenerationRequest(STATE, prefix, temperatures=(0.0,), max_new_tokens=12)
        (ours,), (theirs,) = llama_gen.generate(request), hf.generate(request)
        assert ours.text == theirs.text, prefix
        assert ours.score == pytest.approx(theirs.score, abs=0.02), prefix


@needs_llama
@pytest.mark.parametrize("prefix", ["", "apply"])
def test_sampling_gives_well_formed_scored_candidates(llama_gen, prefix):
    request = GenerationRequest(STATE, prefix, num_samples=8, temperatures=(1.0, 0.0), max_new_tokens=10)
    candidates = llama_gen.generate(request)
    assert_well_formed(candidates, prefix)
    assert 1 < len(candidates) <= 9
    assert all(c.score < 0 for c in candidates)


@needs_llama
def test_every_sample_asked_for_is_drawn_even_beyond_one_round(llama_gen):
    from leanstep.generate.llamacpp import PARALLEL

    model = llama_gen.load()
    logits = model.evaluate_prompt(model.tokenize(f"[GOAL]{STATE}[PROOFSTEP]"))
    rng = np.random.default_rng(0)
    raw = model.sample(logits, PARALLEL * 2 + 3, 1.5, 6, may_stop_at_once=False, rng=rng)
    assert len(raw) == PARALLEL * 2 + 3
    for text, score in raw:
        # each sample ends at its first newline, or runs to the token limit
        assert "\n" not in text[:-1], text
        assert text and score < 0
    assert len({text for text, _ in raw}) > PARALLEL  # samples differ: each round draws afresh


@needs_llama
def test_a_request_reuses_the_cached_beginning_of_the_last_prompt(gguf_file):
    generator = make_generator(llamacpp_settings(gguf_file))
    model = generator.load()
    decoded: list[int] = []
    decode = model._decode
    model._decode = lambda entries, logits: (decoded.append(len(entries)), decode(entries, logits))[1]  # type: ignore[method-assign]
    greedy = {"temperatures": (0.0,), "max_new_tokens": 8}
    generator.generate(GenerationRequest(STATE, "", **greedy))
    first_prompt = decoded[0]
    decoded.clear()
    warm = generator.generate(GenerationRequest(STATE, "simp", **greedy))
    assert decoded[0] < 4 < first_prompt  # only the new prefix's tokens were evaluated
    cold = make_generator(llamacpp_settings(gguf_file)).generate(GenerationRequest(STATE, "simp", **greedy))
    # and the answer is the same (up to float rounding: the batches differ)
    assert [c.text for c in warm] == [c.text for c in cold]
    assert [c.score for c in warm] == pytest.approx([c.score for c in cold], abs=1e-5)
    generator.close()


@needs_llama
def test_the_same_seed_gives_the_same_candidates(gguf_file):
    request = GenerationRequest(STATE, "", num_samples=6, temperatures=(1.0,), max_new_tokens=8)
    runs = []
    for _ in range(2):
        generator = make_generator(llamacpp_settings(gguf_file, seed=7))
        runs.append(generator.generate(request))
        generator.close()
    assert runs[0] == runs[1]


@needs_llama
def test_a_prompt_longer_than_the_context_keeps_its_end(llama_gen):
    long_state = "\n".join(f"h{i} : x + {i} = y" for i in range(400)) + "\n⊢ x = y"
    model = llama_gen.load()
    assert len(model.tokenize(long_state)) > model.positions
    candidates = llama_gen.generate(GenerationRequest(long_state, "exact", num_samples=4, max_new_tokens=8))
    assert_well_formed(candidates, "exact")
    with pytest.raises(ValueError, match="no room for a prompt"):
        llama_gen.generate(GenerationRequest(STATE, "", max_new_tokens=model.positions))


@needs_llama
def test_generation_is_thread_safe(llama_gen):
    assert_thread_safe(llama_gen)


QUANTISED_RUN = """
import json, sys
from leanstep.generate import GenerationRequest, GeneratorSettings, make_generator
generator = make_generator(GeneratorSettings(backend="llamacpp", model=sys.argv[1], prompt_format="proofstep",
                                             device="cpu"))
request = GenerationRequest(sys.argv[2], "simp", num_samples=4, max_new_tokens=8)
print(json.dumps([[c.text, c.score] for c in generator.generate(request)]))
"""


@needs_llama
@pytest.mark.parametrize("kind", ["Q8_0", "Q4_K_M"])
def test_a_quantised_model_loads_and_generates(gguf_file, tmp_path, kind):
    import json
    import signal
    import subprocess

    quantised = quantize_gguf(gguf_file, tmp_path / f"tiny-{kind}.gguf", kind)
    assert quantised.stat().st_size < gguf_file.stat().st_size / 2
    # In a child process: quantised matrix products are where a llama.cpp built for AMX dies on a
    # machine that advertises AMX but cannot run it, and that must fail this test, not the session.
    result = subprocess.run([sys.executable, "-c", QUANTISED_RUN, str(quantised), STATE],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != -signal.SIGILL, (
        "llama.cpp died of an illegal instruction: it was built for instructions this machine cannot run "
        "(make llamacpp builds it portable)")
    assert result.returncode == 0, result.stderr[-2000:]
    candidates = [Candidate(text, score) for text, score in json.loads(result.stdout)]
    assert_well_formed(candidates, "simp")


@needs_llama
@pytest.mark.parametrize(("damage", "reason"), [("garbage", "invalid magic"), ("header", "key-value pairs"),
                                                ("weights", "within the file bounds")])
def test_a_file_that_is_not_a_whole_gguf_model_is_a_clear_error(gguf_file, tmp_path, damage, reason):
    whole = gguf_file.read_bytes()
    bad = tmp_path / f"{damage}.gguf"
    bad.write_bytes({"garbage": b"not a model at all\n" * 100, "header": whole[:5000],
                     "weights": whole[: len(whole) * 9 // 10]}[damage])
    generator = make_generator(llamacpp_settings(bad))
    with pytest.raises(ValueError, match=f"could not load {bad}: .*{reason}"):  # llama.cpp's own reason
        generator.generate(GenerationRequest(STATE))
    assert generator.model is None


@needs_llama
def test_the_chat_format_uses_the_gguf_files_chat_template(bpe_dir, tmp_path):
    import json

    chat_dir = tmp_path / "chat"
    chat_dir.mkdir()
    for f in bpe_dir.iterdir():
        (chat_dir / f.name).write_bytes(f.read_bytes())
    tok_config = json.loads((chat_dir / "tokenizer_config.json").read_text())
    tok_config["chat_template"] = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
                                   "{% if add_generation_prompt %}<assistant>{% endif %}")
    (chat_dir / "tokenizer_config.json").write_text(json.dumps(tok_config))
    generator = make_generator(llamacpp_settings(write_gguf(chat_dir, tmp_path / "chat.gguf"), prompt_format="chat"))
    template = generator.load().chat_template
    assert template is not None
    prompt = generator.format.render(STATE, "simp", tokenizer=template).text
    assert prompt.startswith("<user>") and prompt.endswith("</user><assistant>```lean\nsimp")
    assert_well_formed(generator.generate(GenerationRequest(STATE, "simp", num_samples=3, max_new_tokens=6)), "simp")
    generator.close()


@needs_llama
def test_warmup_loads_the_model(gguf_file):
    generator = make_generator(llamacpp_settings(gguf_file))
    assert generator.model is None
    generator.warmup()
    assert generator.model is not None and generator.model.stops.any()
    generator.close()
    assert generator.model is None


@needs_llama
def test_the_generate_command_runs_the_backend_from_its_flags(gguf_file):
    import json
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEANSTEP_")}
    result = subprocess.run(
        [sys.executable, "-m", "leanstep", "generate", "--backend", "llamacpp", "--gguf", str(gguf_file),
         "--prompt-format", "proofstep", "--device", "cpu", "--llamacpp-threads", "1", "--num-samples", "4",
         "--max-new-tokens", "8", "--state", STATE, "--prefix", "simp"],
        capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines and all(line["text"].startswith("simp") and line["score"] < 0 for line in lines)


@needs_llama
def test_a_whole_proof_sample_runs_past_newlines_to_a_stop_text(llama_gen):
    from collections import Counter

    model = llama_gen.load()
    logits = model.evaluate_prompt(model.tokenize(f"[GOAL]{STATE}[PROOFSTEP]"))

    def draw(stop_texts: tuple[str, ...]) -> list[tuple[str, float]]:
        return model.sample(logits, 12, 1.0, 24, may_stop_at_once=True, rng=np.random.default_rng(3),
                            stop_texts=stop_texts)

    free = draw(())
    assert any("\n" in text.rstrip("\n") for text, _ in free)  # a newline does not end a proof
    stop = Counter("".join(text for text, _ in free).replace("\n", "")).most_common(1)[0][0]
    longest_piece = max(len(piece.decode("utf-8", "replace")) for piece in model.pieces)
    stopped = draw((stop,))
    for text, score in stopped:
        assert stop not in text[: max(0, len(text) - longest_piece)], text  # it ends within its last token
        assert score < 0
    assert sum(stop in text for text, _ in stopped) > 0
    assert sum(len(t) for t, _ in stopped) < sum(len(t) for t, _ in free)


@needs_llama
def test_a_whole_proof_request_gives_lean_code_and_a_seed_repeats_it(llama_gen):
    from leanstep.generate import ProofTask

    task = ProofTask("import Mathlib", "theorem t (n : Nat) : n + 0 = n := by")
    request = GenerationRequest("", "", num_samples=6, temperatures=(1.0,), max_new_tokens=24, proof=task, seed=11)
    first, second = llama_gen.generate(request), llama_gen.generate(request)
    # the request's seed, not the generator's sequence (scores to float rounding: the second prompt is cached)
    assert [c.text for c in first] == [c.text for c in second]
    assert [c.score for c in first] == pytest.approx([c.score for c in second], rel=1e-3)
    for candidate in first:
        assert candidate.text.startswith(task.header) and candidate.score < 0


# -- leanstep doctor -----------------------------------------------------------------


def test_doctor_checks_the_gguf_file_when_the_backend_is_llamacpp(gguf_file, bpe_dir, tmp_path):
    from leanstep.doctor import model_checks

    def rows(gguf: Path) -> dict:
        config = config_mod.load({"backend": "llamacpp", "gguf": str(gguf), "hf_model": "no-such-org/no-such-model"},
                                 environ={})
        return {c.name: c for c in model_checks(config)}

    good = rows(gguf_file)
    assert good["model"].status == "ok" and str(gguf_file) in good["model"].detail  # the GGUF, not --hf-model
    assert good["python: llama_cpp"].status == ("fail" if MISSING else "ok")
    missing = rows(tmp_path / "nope.gguf")
    assert missing["model"].status == "fail" and "does not exist" in missing["model"].detail
    assert "--gguf" in missing["model"].fix
    weights = next(bpe_dir.glob("*.safetensors"))  # a model file, but not a GGUF one
    not_gguf = rows(weights)
    assert not_gguf["model"].status == "fail" and "not a GGUF file" in not_gguf["model"].detail


def test_leanstep_doctor_takes_the_backend_and_the_gguf_file_by_flag(gguf_file, tmp_path, capsys):
    from leanstep.cli import main

    closed = "http://127.0.0.1:9"  # the discard port: nothing answers HTTP there
    main(["doctor", "--backend", "llamacpp", "--gguf", str(gguf_file), "--url", closed])
    model_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("model "))
    assert " ok " in model_line and str(gguf_file) in model_line
    main(["doctor", "--backend", "llamacpp", "--gguf", str(tmp_path / "gone.gguf"), "--url", closed])
    model_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("model "))
    assert " FAIL " in model_line and "gone.gguf" in model_line
