"""leanstep.generate: prompts, post-processing, and every backend against real
(tiny, locally built) models or a real HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from leanstep.generate import (
    Candidate,
    GenerationRequest,
    GeneratorSettings,
    cut_tactic,
    get_format,
    guess_prompt_format,
    make_generator,
    merge,
    postprocess,
    render,
)

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import build_tiny_causal, build_tiny_seq2seq  # noqa: E402

STATE = "n : Nat\nh : 0 < n\n⊢ n + 0 = n"


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def causal_dir(tmp_path_factory) -> Path:
    return build_tiny_causal(tmp_path_factory.mktemp("tiny-causal"))


@pytest.fixture(scope="session")
def seq2seq_dir(tmp_path_factory) -> Path:
    return build_tiny_seq2seq(tmp_path_factory.mktemp("tiny-seq2seq"))


@pytest.fixture(scope="session")
def causal_gen(causal_dir):
    return make_generator(GeneratorSettings(model=str(causal_dir), prompt_format="proofstep", device="auto"))


@pytest.fixture(scope="session")
def seq2seq_gen(seq2seq_dir):
    return make_generator(GeneratorSettings(model=str(seq2seq_dir), prompt_format="state", device="auto"))


def assert_well_formed(cands: list[Candidate], prefix: str) -> None:
    assert cands, "no candidates"
    texts = [c.text for c in cands]
    assert len(texts) == len(set(texts)), f"duplicates in {texts}"
    scores = [c.score for c in cands]
    assert scores == sorted(scores, reverse=True), f"not sorted: {scores}"
    for c in cands:
        assert c.text.startswith(prefix.strip()), c.text
        assert c.text == c.text.strip() and c.text
        assert "\n" not in c.text
        assert c.score <= 1e-6


# -- post-processing and prompts -------------------------------------------------------


def test_postprocess_cuts_prefixes_dedups_and_sorts():
    raw = [
        (" h\nexact foo", -1.0),
        (" h", -0.5),  # same tactic, better score: kept
        ("   \n", -0.1),  # empty after prefix? no: prefix makes it "intro"
        (" x[PROOFSTEP]junk", -2.0),
        (" y<|endoftext|>", -0.7),
        (" z", float("nan")),
    ]
    cands = postprocess("intro", raw)
    assert [c.text for c in cands] == ["intro", "intro h", "intro y", "intro x", "intro z"]
    assert cands[1].score == -0.5
    assert cands[-1].score == float("-inf")


def test_postprocess_drops_empty_without_prefix():
    assert postprocess("", [("\nsimp", -0.1), ("  ", -0.2)]) == []
    assert cut_tactic("simp at h```") == "simp at h"


def test_merge_keeps_best_score():
    merged = merge([[Candidate("simp", -1.0)], [Candidate("simp", -0.2), Candidate("rfl", -0.5)]])
    assert merged == [Candidate("simp", -0.2), Candidate("rfl", -0.5)]


def test_prompt_formats():
    assert render("proofstep", STATE, "apply").text == f"[GOAL]{STATE}[PROOFSTEP]apply"
    p = render("state", STATE, "apply", seq2seq=True)
    assert (p.text, p.decoder_prefix) == (STATE, "apply")
    assert render("state", STATE, "apply").text.endswith("\napply")
    chat = render("chat", STATE, "ex")
    assert STATE in chat.text and chat.text.endswith("```lean\nex")


def test_chat_format_uses_chat_template(causal_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(causal_dir)
    tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}<assistant>"
    text = render("chat", STATE, "simp", tokenizer=tok).text
    assert text.startswith("<user>") and "<assistant>```lean\nsimp" in text


def test_unknown_format_lists_choices():
    with pytest.raises(ValueError, match="chat, proofstep, state"):
        get_format("nope")
    with pytest.raises(ValueError, match="proofstep"):
        make_generator(GeneratorSettings(prompt_format="nope"))


def test_guess_prompt_format():
    assert guess_prompt_format("wellecks/llmstep-mathlib4-pythia2.8b") == "proofstep"
    assert guess_prompt_format("kaiyuy/leandojo-lean4-tacgen-byt5-small") == "state"
    assert guess_prompt_format("some/chat-prover") == "chat"


def test_settings_and_request_validation():
    with pytest.raises(ValueError, match="backend"):
        GeneratorSettings(backend="tgi")
    with pytest.raises(ValueError):
        GenerationRequest(STATE, num_samples=0)
    with pytest.raises(ValueError):
        GenerationRequest(STATE, temperatures=(-1.0,))
    req = GeneratorSettings(num_samples=3, temperatures=[0.2, 0.0]).request(STATE, "rw")
    assert (req.num_samples, req.temperatures, req.prefix) == (3, (0.2, 0.0), "rw")


def test_import_does_not_load_torch():
    code = "import sys, leanstep.generate; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- transformers backend -----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "apply"])
def test_causal_sampling(causal_gen, prefix):
    req = GenerationRequest(STATE, prefix, num_samples=8, temperatures=(1.0,), max_new_tokens=10)
    cands = causal_gen.generate(req)
    assert_well_formed(cands, prefix)
    assert 1 <= len(cands) <= 8
    assert causal_gen.is_seq2seq is False


def test_causal_greedy_is_deterministic(causal_gen):
    req = GenerationRequest(STATE, "simp", num_samples=5, temperatures=(0.0,), max_new_tokens=10)
    first, second = causal_gen.generate(req), causal_gen.generate(req)
    assert len(first) == 1 and first == second
    assert_well_formed(first, "simp")


def test_causal_beam_search_returns_num_beams_distinct(causal_dir):
    gen = make_generator(GeneratorSettings(model=str(causal_dir), prompt_format="proofstep", num_beams=4))
    cands = gen.generate(GenerationRequest(STATE, "", num_samples=2, max_new_tokens=6))
    assert len(cands) == 4
    assert_well_formed(cands, "")


def test_seq2seq_with_decoder_prefix(seq2seq_gen):
    req = GenerationRequest(STATE, "rw [", num_samples=6, temperatures=(1.0, 0.0), max_new_tokens=12)
    cands = seq2seq_gen.generate(req)
    assert_well_formed(cands, "rw [")
    assert seq2seq_gen.is_seq2seq is True


def test_seq2seq_beam_search(seq2seq_dir):
    gen = make_generator(GeneratorSettings(model=str(seq2seq_dir), prompt_format="state", num_beams=3))
    cands = gen.generate(GenerationRequest(STATE, "exact ", max_new_tokens=8))
    assert 1 <= len(cands) <= 3
    assert_well_formed(cands, "exact")


def assert_thread_safe(gen, threads: int = 4) -> None:
    """``threads`` requests at once all succeed with well-formed candidates."""
    results: list[list[Candidate]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(gen.generate(GenerationRequest(STATE, "intro", num_samples=4, max_new_tokens=6)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert not errors, errors
    assert len(results) == threads
    for cands in results:
        assert_well_formed(cands, "intro")


def test_generation_is_thread_safe(causal_dir):
    assert_thread_safe(make_generator(GeneratorSettings(model=str(causal_dir), prompt_format="proofstep")))


def test_warmup_loads_model(causal_dir):
    gen = make_generator(GeneratorSettings(model=str(causal_dir), prompt_format="proofstep"))
    assert gen.model is None
    gen.warmup()
    assert gen.model is not None and gen.stop_ids == [1]


def test_graph_decoder_matches_generate(causal_dir):
    """The GPU fast path's decoding loop (run eagerly here) equals generate()."""
    import torch
    from transformers import AutoModelForCausalLM

    from leanstep.generate.hf import GraphDecoder

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(causal_dir).to(device).eval()
    ids = list(range(2, 40))
    dec = GraphDecoder(model, stop_ids=[1])
    got = dec.decode(ids, 1, 0.0, 12, min_new_tokens=12)
    with torch.inference_mode():
        ref = model.generate(
            torch.tensor([ids], device=device), do_sample=False, max_new_tokens=12, min_new_tokens=12,
            eos_token_id=1, pad_token_id=1,
        )[0, len(ids):].tolist()
    assert got.tokens[0].tolist() == ref
    # Log-probabilities: the mean matches a teacher-forced recomputation.
    with torch.inference_mode():
        logits = model(torch.tensor([ids + ref], device=device)).logits[0, len(ids) - 1 : -1].float()
        want = torch.log_softmax(logits, -1).gather(1, torch.tensor(ref, device=device)[:, None]).sum().item()
    assert got.logprob_sums[0].item() == pytest.approx(want, abs=1e-3)
    # Sampling: several samples, each stopped at its first stop token.
    res = dec.decode(ids, 6, 1.0, 16)
    for row, length in zip(res.tokens.tolist(), res.lengths.tolist()):
        assert 1 <= length <= 16
        assert 1 not in row[: length - 1]


# -- vLLM -----------------------------------------------------------------------------------


def test_vllm_missing_gives_install_hint():
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed here; the missing-package error cannot be observed")
    with pytest.raises(ImportError, match=r"pip install leanstep\[vllm\]"):
        make_generator(GeneratorSettings(backend="vllm", model="any/model", prompt_format="proofstep"))


# -- OpenAI-compatible server -------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    requests: list[dict] = []
    reply: dict | None = None
    status = 200

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
        payload = json.dumps(type(self).reply).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def completions_server():
    handler = type("Handler", (_Recorder,), {"requests": [], "reply": None, "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _choice(text, logprobs):
    return {"text": text, "index": 0, "finish_reason": "stop", "logprobs": {"token_logprobs": logprobs, "tokens": []}}


def test_openai_payload_and_scores(completions_server):
    handler, base = completions_server
    handler.reply = {
        "choices": [
            _choice(" h\nexact h", [-0.2, -0.4]),
            _choice(" h", [-0.1, -0.1]),
            _choice(" x y", [-1.0, -2.0, -3.0]),
            _choice("", []),
        ]
    }
    gen = make_generator(GeneratorSettings(
        backend="openai", model="prover-7b", prompt_format="proofstep",
        openai_base_url=base + "/", openai_api_key="sk-test",
    ))
    cands = gen.generate(GenerationRequest(STATE, "intro", num_samples=4, temperatures=(0.7,), max_new_tokens=32))
    assert [c.text for c in cands] == ["intro", "intro h", "intro x y"]
    assert cands[0].score == 0.0  # no log-probabilities: neutral score
    assert cands[1].score == pytest.approx(-0.1)  # duplicate of " h\n...": best score kept
    assert cands[2].score == pytest.approx(-2.0)
    (req,) = handler.requests
    assert req["path"] == "/v1/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-test"
    assert req["json"] == {
        "model": "prover-7b",
        "prompt": f"[GOAL]{STATE}[PROOFSTEP]intro",
        "n": 4,
        "temperature": 0.7,
        "max_tokens": 32,
        "stop": ["\n"],
        "logprobs": 1,
    }


def test_openai_one_request_per_temperature(completions_server):
    handler, base = completions_server
    handler.reply = {"choices": [_choice("simp", [-0.5])]}
    gen = make_generator(GeneratorSettings(backend="openai", model="m", prompt_format="state", openai_base_url=base))
    cands = gen.generate(GenerationRequest(STATE, "", num_samples=3, temperatures=(0.0, 1.0), max_new_tokens=8))
    assert cands == [Candidate("simp", -0.5)]
    sent = [r["json"] for r in handler.requests]
    assert [(s["temperature"], s["n"]) for s in sent] == [(0.0, 1), (1.0, 3)]
    assert sent[0]["prompt"] == f"{STATE}\n"
    assert "Authorization" not in handler.requests[0]["headers"]


def test_openai_http_error_is_clear(completions_server):
    from leanstep.generate.openai import OpenAIError

    handler, base = completions_server
    handler.status, handler.reply = 500, {"error": "model exploded"}
    gen = make_generator(GeneratorSettings(backend="openai", model="m", prompt_format="state", openai_base_url=base))
    with pytest.raises(OpenAIError, match="HTTP 500.*model exploded"):
        gen.generate(GenerationRequest(STATE))


def test_openai_unreachable_is_clear():
    import socket

    from leanstep.generate.openai import OpenAIError

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = make_generator(GeneratorSettings(
        backend="openai", model="m", prompt_format="state", openai_base_url=f"http://127.0.0.1:{port}/v1",
        request_timeout=2.0,
    ))
    with pytest.raises(OpenAIError, match="cannot reach"):
        gen.generate(GenerationRequest(STATE))


def test_openai_needs_base_url():
    with pytest.raises(ValueError, match="base URL"):
        make_generator(GeneratorSettings(backend="openai", model="m", prompt_format="state"))


# ------------------------------------------------------------------ the model-free hint backend


def hint_generator(tactics: tuple[str, ...] = ()):
    from leanstep.generate import GeneratorSettings, make_generator

    return make_generator(GeneratorSettings(backend="hint", hint_tactics=tactics))


def test_hint_backend_offers_its_list_in_order_without_a_model():
    from leanstep.generate.hint import DEFAULT_HINT_TACTICS

    candidates = hint_generator().generate(GenerationRequest("⊢ 1 + 1 = 2", ""))
    assert [c.text for c in candidates] == list(DEFAULT_HINT_TACTICS)
    assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
    assert candidates[0].score == 0.0 and all(c.score <= 0 for c in candidates)


def test_hint_backend_loads_no_model_library():
    code = ("import sys; from leanstep.generate import GeneratorSettings, GenerationRequest, make_generator; "
            "make_generator(GeneratorSettings(backend='hint')).generate(GenerationRequest('⊢ p')); "
            "assert not {'torch', 'transformers'} & set(sys.modules), 'a model library was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_hint_backend_completes_the_prefix_or_offers_the_prefix_itself():
    generator = hint_generator(("simp", "simp_all", "omega"))
    assert [c.text for c in generator.generate(GenerationRequest("⊢ p", "sim"))] == ["simp", "simp_all"]
    assert [c.text for c in generator.generate(GenerationRequest("⊢ p", "exact h"))] == ["exact h"]
    assert [c.text for c in generator.generate(GenerationRequest("⊢ p", "  "))] == ["simp", "simp_all", "omega"]


def test_hint_backend_needs_a_tactic():
    with pytest.raises(ValueError, match="hint-tactics"):
        hint_generator(("  ",))
