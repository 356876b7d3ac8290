"""leanstep.generate: prompts, post-processing, and every backend against real
(tiny, locally built) models or a real HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import write_jsonl

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
    record_prompt_format,
    render,
)


STATE = "n : Nat\nh : 0 < n\n⊢ n + 0 = n"


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def causal_gen(tiny_causal):
    return make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep", device="auto"))


@pytest.fixture(scope="session")
def seq2seq_gen(tiny_seq2seq):
    return make_generator(GeneratorSettings(model=str(tiny_seq2seq), prompt_format="state", device="auto"))


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
    assert cands[1].count == 2  # both samples of "intro h" are counted
    assert cands[-1].score == float("-inf")


def test_postprocess_drops_empty_without_prefix():
    assert postprocess("", [("\nsimp", -0.1), ("  ", -0.2)]) == []
    assert cut_tactic("simp at h```") == "simp at h"


def test_merge_keeps_best_score_and_counts_every_sample():
    merged = merge([[Candidate("simp", -1.0)], [Candidate("simp", -0.2), Candidate("rfl", -0.5)]])
    assert merged == [Candidate("simp", -0.2, count=2), Candidate("rfl", -0.5)]


def test_prompt_formats():
    assert render("proofstep", STATE, "apply").text == f"[GOAL]{STATE}[PROOFSTEP]apply"
    p = render("state", STATE, "apply", seq2seq=True)
    assert (p.text, p.decoder_prefix) == (STATE, "apply")
    assert render("state", STATE, "apply").text.endswith("\napply")
    chat = render("chat", STATE, "ex")
    assert STATE in chat.text and chat.text.endswith("```lean\nex")


def test_chat_format_uses_chat_template(tiny_causal):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_causal)
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


def test_a_fine_tuned_model_directory_names_its_own_prompt_format(tmp_path):
    model = tmp_path / "my-chat-model"  # the name alone would say `chat`
    model.mkdir()
    record_prompt_format(model, "proofstep")
    assert guess_prompt_format(str(model)) == "proofstep"
    (model / "leanstep.json").write_text('{"prompt_format": "no-such-format"}')
    assert guess_prompt_format(str(model)) == "chat"  # an unknown or unreadable record is ignored
    (model / "leanstep.json").write_text("{not json")
    assert guess_prompt_format(str(model)) == "chat"
    with pytest.raises(ValueError, match="unknown prompt format"):
        record_prompt_format(model, "no-such-format")


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


def test_causal_beam_search_returns_num_beams_distinct(tiny_causal):
    gen = make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep", num_beams=4))
    cands = gen.generate(GenerationRequest(STATE, "", num_samples=2, max_new_tokens=6))
    assert len(cands) == 4
    assert_well_formed(cands, "")


def test_seq2seq_with_decoder_prefix(seq2seq_gen):
    req = GenerationRequest(STATE, "rw [", num_samples=6, temperatures=(1.0, 0.0), max_new_tokens=12)
    cands = seq2seq_gen.generate(req)
    assert_well_formed(cands, "rw [")
    assert seq2seq_gen.is_seq2seq is True


def test_seq2seq_beam_search(tiny_seq2seq):
    gen = make_generator(GeneratorSettings(model=str(tiny_seq2seq), prompt_format="state", num_beams=3))
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


def test_generation_is_thread_safe(tiny_causal):
    assert_thread_safe(make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep")))


def test_warmup_loads_model(tiny_causal):
    gen = make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep"))
    assert gen.model is None
    gen.warmup()
    assert gen.model is not None and gen.stop_ids == [1]


@pytest.mark.filterwarnings("error::FutureWarning")  # a renamed argument of transformers must not come back
def test_graph_decoder_matches_generate(tiny_causal):
    """The GPU fast path's decoding loop (run eagerly here) equals generate()."""
    import torch
    from transformers import AutoModelForCausalLM

    from leanstep.generate.hf import GraphDecoder

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(tiny_causal).to(device).eval()
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


def test_the_cache_goes_under_the_name_the_models_forward_takes():
    from leanstep.generate.hf import cache_keyword

    assert cache_keyword(["input_ids", "attention_mask", "cache", "use_cache"]) == "cache"  # transformers 5
    assert cache_keyword(["input_ids", "attention_mask", "past_key_values", "use_cache"]) == "past_key_values"
    assert cache_keyword(["input_ids", "kwargs"]) == "past_key_values"  # a wrapper that hides it: the old name

# -- cross-request batching (several editors at once) ----------------------------------------------

# Goals of different lengths and prefixes of different lengths, so batched rows need padding.
BATCH_STATES = [STATE, "⊢ True", "a b : Nat\n⊢ a + b = b + a ∧ a * b = b * a at h h1 h2 with x y z", "x : Nat ⊢ x = x"]
BATCH_PREFIXES = ["", "simp", "intro h", "rw ["]


def greedy_requests(samples: int = 3) -> list[GenerationRequest]:
    return [GenerationRequest(s, p, num_samples=samples, temperatures=(0.0,), max_new_tokens=10)
            for s, p in zip(BATCH_STATES, BATCH_PREFIXES, strict=True)]


def texts(candidates) -> list[str]:
    return [c.text for c in candidates]


def concurrently(generator, requests: list[GenerationRequest]) -> list:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(generator.generate, requests))


@pytest.mark.parametrize(("model", "fmt", "beams"), [("causal", "proofstep", 0), ("causal", "proofstep", 3),
                                                      ("seq2seq", "state", 0), ("seq2seq", "state", 3)])
def test_a_batch_of_requests_decodes_exactly_what_each_decodes_alone(tiny_causal, tiny_seq2seq, model, fmt, beams):
    directory = tiny_causal if model == "causal" else tiny_seq2seq
    gen = make_generator(GeneratorSettings(model=str(directory), prompt_format=fmt, num_beams=beams))
    requests = greedy_requests()
    alone = [gen.generate(r) for r in requests]
    together = gen.generate_many(requests)
    assert [texts(a) for a in alone] == [texts(t) for t in together]
    for a, t in zip(alone, together, strict=True):
        assert [c.score for c in a] == pytest.approx([c.score for c in t], abs=1e-4)


def test_concurrent_callers_share_one_model_call_and_get_their_own_candidates(tiny_causal):
    solo = make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep"))
    # A window far longer than the test: the batch closes because it is full, so all four share it.
    shared = make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep",
                                              batch_size=4, batch_window=1.0))
    assert shared.batch_stats().batches == 0 and solo.batch_stats() is None
    requests = greedy_requests()
    answers = concurrently(shared, requests)
    assert [texts(a) for a in answers] == [texts(solo.generate(r)) for r in requests]
    stats = shared.batch_stats()
    assert (stats.batches, stats.items, stats.largest) == (1, 4, 4)


def test_requests_arriving_while_the_model_is_busy_wait_together_for_the_next_call(tiny_causal):
    from concurrent.futures import ThreadPoolExecutor

    from server_fixtures import wait_until

    gen = make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep",
                                           batch_size=8, batch_window=0.0))
    gen.warmup()
    start = gen.batch_stats()
    requests = greedy_requests()
    with ThreadPoolExecutor(4) as pool:
        with gen._lock:  # the model is busy with the first request's call
            first = pool.submit(gen.generate, requests[0])
            wait_until(lambda: gen.batch_stats().batches == start.batches + 1)
            rest = [pool.submit(gen.generate, r) for r in requests[1:]]
            wait_until(lambda: gen.batch_stats().queued == 3)
        answers = [first.result(60)] + [f.result(60) for f in rest]
    stats = gen.batch_stats()
    assert (stats.batches - start.batches, stats.largest) == (2, 3)
    assert [texts(a) for a in answers] == [texts(a) for a in gen.generate_many(requests)]


def test_a_batch_mixes_sample_counts_temperatures_and_prefixes(tiny_causal):
    gen = make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep"))
    requests = [GenerationRequest(s, p, num_samples=n, temperatures=temps, max_new_tokens=8)
                for s, p, n, temps in zip(BATCH_STATES, BATCH_PREFIXES, (1, 2, 5, 8),
                                          ((1.0,), (0.0, 1.0), (0.5,), (1.5, 0.0)), strict=True)]
    answers = gen.generate_many(requests)
    greedy = {i: texts(gen.generate(GenerationRequest(r.tactic_state, r.prefix, 1, (0.0,), 8)))
              for i, r in enumerate(requests) if 0.0 in r.temperatures}
    for index, (request, candidates) in enumerate(zip(requests, answers, strict=True)):
        assert isinstance(candidates, list)
        assert_well_formed(candidates, request.prefix)
        most = sum(request.num_samples if t > 0 else 1 for t in request.temperatures)
        assert len(candidates) <= most
        if index in greedy:  # the greedy sequence is among a request's candidates, batched with sampling
            assert greedy[index][0] in texts(candidates)


def test_a_model_call_that_fails_for_one_prompt_fails_only_that_request(tiny_causal):
    """Fault injection: the model raises whenever a batch holds the poisoned goal's prompt."""
    gen = make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep"))
    gen.load()
    poison = gen.tokenizer("omega omega omega omega", add_special_tokens=False)["input_ids"]
    real_generate = gen.model.generate

    def generate(**kwargs):
        for row in kwargs["input_ids"].tolist():
            if any(row[i:i + len(poison)] == poison for i in range(len(row))):
                raise RuntimeError("CUDA error: device-side assert triggered")
        return real_generate(**kwargs)

    gen.model.generate = generate
    requests = greedy_requests()
    requests[2] = GenerationRequest("⊢ omega omega omega omega", "", num_samples=3, temperatures=(0.0,),
                                    max_new_tokens=10)
    answers = gen.generate_many(requests)
    assert isinstance(answers[2], RuntimeError) and "device-side assert" in str(answers[2])
    gen.model.generate = real_generate
    for index in (0, 1, 3):
        assert texts(answers[index]) == texts(gen.generate(requests[index]))


@pytest.mark.filterwarnings("error::FutureWarning")  # a renamed argument of transformers must not come back
def test_the_gpu_decoding_path_batches_requests_exactly_too(tiny_causal):
    """The generator's graph-decoder path (the one it takes on a GPU), run eagerly on the CPU."""
    from leanstep.generate.hf import GraphDecoder

    plain = make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep"))
    fast = make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep"))
    fast.load()
    fast.graph_decoder = GraphDecoder(fast.model, fast.stop_ids, use_graphs=False, bucket_rows=True)
    requests = greedy_requests()
    want = [texts(plain.generate(r)) for r in requests]
    assert [texts(fast.generate(r)) for r in requests] == want
    assert [texts(a) for a in fast.generate_many(requests)] == want
    sampled = fast.generate_many([GenerationRequest(s, p, 6, (1.0, 0.0), 10)
                                  for s, p in zip(BATCH_STATES, BATCH_PREFIXES, strict=True)])
    for request_prefix, candidates, greedy in zip(BATCH_PREFIXES, sampled, want, strict=True):
        assert_well_formed(candidates, request_prefix)
        assert greedy[0] in texts(candidates) and len(candidates) <= 7


@pytest.mark.filterwarnings("error::FutureWarning")  # a renamed argument of transformers must not come back
def test_graph_decoder_decodes_each_prompt_of_a_batch_as_alone(tiny_causal):
    """Left padding, per-row positions and masks, per-row temperatures, padding rows: no effect on a row."""
    import torch
    from transformers import AutoModelForCausalLM

    from leanstep.generate.hf import DecodeInput, GraphDecoder

    model = AutoModelForCausalLM.from_pretrained(tiny_causal).eval()
    prompts = [list(range(2, 40)), list(range(5, 12)), list(range(3, 70, 2)), [7]]
    dec = GraphDecoder(model, stop_ids=[1], bucket_rows=True)
    alone = [dec.decode(p, 1, 0.0, 12, min_new_tokens=12) for p in prompts]
    # 1 + 2 + 3 + 1 = 7 rows, padded to 8; the sampled rows (temperature 1) sit between greedy ones.
    batch = [DecodeInput(prompts[0], 1, 0.0, 12), DecodeInput(prompts[1], 2, 1.0, 12),
             DecodeInput(prompts[2], 3, 0.0, 12), DecodeInput(prompts[3], 1, 0.0, 12)]
    together = dec.decode_batch(batch, 12)
    assert [r.tokens.shape[0] for r in together] == [1, 2, 3, 1]
    for index in (0, 2, 3):
        for row in range(batch[index].num_samples):
            assert together[index].tokens[row].tolist() == alone[index].tokens[0].tolist()
            assert together[index].logprob_sums[row].item() == pytest.approx(
                alone[index].logprob_sums[0].item(), abs=1e-3)
    assert bool((together[1].lengths == 12).all())  # min_new_tokens held for the sampled rows too
    assert not torch.isnan(together[1].logprob_sums).any()


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
    assert cands == [Candidate("simp", -0.5, count=2)]  # the same answer from both requests
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


def test_openai_unreachable_is_clear(closed_port):
    from leanstep.generate.openai import OpenAIError

    gen = make_generator(GeneratorSettings(
        backend="openai", model="m", prompt_format="state", openai_base_url=f"http://127.0.0.1:{closed_port}/v1",
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


# -- whole proofs: formats, reading answers, every backend ---------------------------------------

from leanstep.generate import PROOF_FORMATS, ProofFeedback, ProofTask, extract_lean_code, postprocess_proofs  # noqa: E402
from leanstep.generate.proofs import get_proof_format, guess_proof_format  # noqa: E402

TASK = ProofTask("import Mathlib\nopen Nat", "theorem foo (x : ℕ) (h : 2 < x) : 4 < 2 * x := by")
FAILED = ProofFeedback("import Mathlib\n\ntheorem foo (x : ℕ) (h : 2 < x) : 4 < 2 * x := by\n  simp",
                       "4:2: error: simp made no progress")


def test_completion_format_prefills_the_statement_and_stops_at_the_fence():
    fmt = get_proof_format("prover-completion")
    prompt = fmt.render(TASK)
    assert prompt.text.endswith(f"```lean4\nimport Mathlib\nopen Nat\n\n{TASK.statement}")
    assert prompt.answer_start and prompt.text.endswith(prompt.answer_start)
    assert fmt.stop == ("```",)
    repair = fmt.render(ProofTask(TASK.header, TASK.statement, (FAILED,)), goal="x : ℕ\n⊢ 4 < 2 * x")
    assert "simp made no progress" in repair.text and "⊢ 4 < 2 * x" in repair.text
    comment = repair.text[repair.text.index("/-"):repair.text.rindex("-/")]
    assert comment.count("-/") == comment.count("/-") - 1  # the notes cannot close their comment early


@pytest.mark.parametrize("name", ["prover-plan", "prover-think", "prover-chat"])
def test_chat_formats_show_the_statement_and_send_errors_back_as_turns(name):
    fmt = get_proof_format(name)
    first = fmt.render(TASK).text
    assert "theorem foo (x : ℕ) (h : 2 < x) : 4 < 2 * x := by sorry" in first and fmt.stop == ()
    repair = fmt.render(ProofTask(TASK.header, TASK.statement, (FAILED,))).text
    assert repair.startswith(first.removesuffix("\n\nAssistant:"))
    assert "simp made no progress" in repair and FAILED.code in repair


def test_chat_formats_use_the_tokenizer_chat_template(tiny_causal):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_causal)
    tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    text = get_proof_format("prover-think").render(ProofTask("", "theorem t : True := by", (FAILED,)), "",
                                                   tokenizer).text
    assert text.startswith("<system>You are an expert in mathematics and Lean 4.<user>")
    assert "<assistant>```lean4\n" in text and text.endswith("<assistant>")


def test_proof_format_is_guessed_from_the_model_family():
    assert guess_proof_format("deepseek-ai/DeepSeek-Prover-V2-7B") == "prover-plan"
    assert guess_proof_format("Goedel-LM/Goedel-Prover-V2-8B") == "prover-plan"
    assert guess_proof_format("deepseek-ai/DeepSeek-Prover-V1.5-RL") == "prover-completion"
    assert guess_proof_format("AI-MO/Kimina-Prover-Distill-8B") == "prover-think"
    assert guess_proof_format("Qwen/Qwen2.5-7B-Instruct") == "prover-chat"
    assert set(PROOF_FORMATS) == {"prover-completion", "prover-plan", "prover-think", "prover-chat"}
    with pytest.raises(ValueError, match="prover-completion"):
        get_proof_format("nope")


@pytest.mark.parametrize(("answer", "code"), [
    ("Plan: use nlinarith.\n```lean4\ntheorem t : 1 = 1 := by\n  rfl\n```\nDone.", "theorem t : 1 = 1 := by\n  rfl"),
    # the last Lean block wins over an earlier one and over other languages
    ("```lean4\nwrong\n```\n```python\nprint(1)\n```\n```lean\nright\n```", "right"),
    # reasoning inside <think> is skipped when an answer follows it
    ("<think>\n```lean4\ndraft\n```\n</think>\nFinal:\n```lean4\nfinal\n```", "final"),
    # a block cut off by the token limit is kept up to where it stops
    ("Proof:\n```lean4\ntheorem t : True := by\n  trivi", "theorem t : True := by\n  trivi"),
    # no fence: the text is the code; end-of-text markers and trailing blanks go
    ("  simp  \n  rfl<|im_end|>garbage", "  simp\n  rfl"),
    # reasoning cut off before any code: nothing
    ("<think>I should use induction on n and then", ""),
    ("```\nuntagged\n```", "untagged"),
    ("~~~lean4\ntilde\n~~~", "tilde"),
])
def test_lean_code_is_read_from_messy_answers(answer, code):
    assert extract_lean_code(answer) == code


def test_postprocess_proofs_keeps_whole_blocks_and_counts_duplicates():
    start = "```lean4\ntheorem t : 1 + 1 = 2 := by"
    cands = postprocess_proofs(start, [("\n  norm_num\n```\nmore text", -0.5), ("\n  norm_num", -0.2),
                                       ("\n  decide\n```", -0.9), ("```", -0.1)], stop=("```",))
    assert [(c.text, c.count) for c in cands] == [
        ("theorem t : 1 + 1 = 2 := by", 1), ("theorem t : 1 + 1 = 2 := by\n  norm_num", 2),
        ("theorem t : 1 + 1 = 2 := by\n  decide", 1)]
    assert cands[1].score == pytest.approx(-0.2)  # the best of its two samples


def test_tiny_causal_model_writes_whole_proofs_through_the_same_path(tiny_causal):
    gen = make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep",
                                           proof_format="prover-completion"))
    request = GenerationRequest("", num_samples=4, temperatures=(1.0,), max_new_tokens=12, proof=TASK, seed=7)
    cands = gen.generate(request)
    assert cands and sum(c.count for c in cands) == 4
    for c in cands:  # the pre-filled statement is part of every answer
        assert c.text.startswith("import Mathlib\nopen Nat\n\ntheorem foo"), c.text
    assert gen.generate(request) == cands  # the same seed, the same samples


def test_openai_whole_proof_payload(completions_server):
    handler, base = completions_server
    handler.reply = {"choices": [_choice("\n  omega\n", [-0.3])]}
    gen = make_generator(GeneratorSettings(backend="openai", model="prover", prompt_format="state",
                                           proof_format="prover-completion", openai_base_url=base))
    cands = gen.generate(GenerationRequest("", num_samples=2, temperatures=(0.8,), max_new_tokens=512, proof=TASK,
                                           seed=3))
    assert [c.text for c in cands] == [
        "import Mathlib\nopen Nat\n\ntheorem foo (x : ℕ) (h : 2 < x) : 4 < 2 * x := by\n  omega"]
    sent = handler.requests[0]["json"]
    assert sent["stop"] == ["```"] and sent["max_tokens"] == 512 and sent["seed"] == 3
    assert sent["prompt"].startswith("Complete the following Lean 4 code:")


def test_hint_backend_proves_whole_with_one_finishing_tactic():
    proofs = hint_generator(("simp", "constructor", "omega")).generate(GenerationRequest("", proof=TASK))
    assert [c.text for c in proofs] == [TASK.statement + "\n  simp", TASK.statement + "\n  omega"]


# -- the scripted backend ----------------------------------------------------------------------------


def scripted(tmp_path, *entries, name="script.jsonl"):
    return make_generator(GeneratorSettings(backend="scripted", script=str(write_jsonl(tmp_path / name, *entries))))


def test_scripted_backend_replays_tactics_by_goal_or_target(tmp_path):
    gen = scripted(tmp_path,
                   {"goal": "x : ℕ\n⊢ x + 0 = x", "tactics": ["simp", {"text": "omega", "score": -2.5}]},
                   {"goal": "⊢ p ∧ q", "tactics": ["constructor", "exact ⟨hp, hq⟩"]})
    assert gen.generate(GenerationRequest("x  : ℕ\n⊢ x + 0   = x")) == [Candidate("simp", 0.0),
                                                                       Candidate("omega", -2.5)]
    assert [c.text for c in gen.generate(GenerationRequest("hp : p\nhq : q\n⊢ p ∧ q", "exact"))] == ["exact ⟨hp, hq⟩"]
    assert gen.generate(GenerationRequest("⊢ False")) == []


def test_scripted_backend_replays_proofs_by_theorem_and_round(tmp_path):
    gen = scripted(tmp_path,
                   {"theorem": "foo", "proofs": ["theorem foo : 1 = 1 := by simp"], "round": 0},
                   {"theorem": "foo", "proofs": ["theorem foo : 1 = 1 := by rfl"], "round": 1},
                   {"theorem": "foo", "proofs": ["theorem foo : 1 = 1 := by decide"]})
    first = ProofTask("", "theorem foo : 1 = 1 := by")
    assert [c.text for c in gen.generate(GenerationRequest("", proof=first))] == [
        "theorem foo : 1 = 1 := by simp", "theorem foo : 1 = 1 := by decide"]
    repair = ProofTask("", first.statement, (FAILED,))
    assert [c.text for c in gen.generate(GenerationRequest("", proof=repair))] == [
        "theorem foo : 1 = 1 := by rfl", "theorem foo : 1 = 1 := by decide"]


@pytest.mark.parametrize(("line", "error"), [
    ("not json", "not JSON"),
    ('{"goal": "⊢ p"}', "expected a list"),
    ('{"theorem": "t", "proofs": [3]}', "proposal 0"),
    ('{"theorem": "t", "proofs": [], "round": -1}', "round"),
    ('{"tactics": []}', "`goal` and `tactics`"),
])
def test_scripted_backend_names_the_bad_line(tmp_path, line, error):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"goal": "⊢ p", "tactics": []}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"bad.jsonl:2: .*{error}"):
        make_generator(GeneratorSettings(backend="scripted", script=str(path)))
    with pytest.raises(ValueError, match="--script"):
        make_generator(GeneratorSettings(backend="scripted"))


def test_whole_proofs_and_next_tactics_batched_together_each_get_their_own_kind(tiny_causal):
    shared = make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep",
                                              proof_format="prover-completion", batch_size=2, batch_window=1.0))
    proof = GenerationRequest("", num_samples=2, temperatures=(0.0,), max_new_tokens=8, proof=TASK)
    tactic = GenerationRequest(STATE, "", num_samples=2, temperatures=(0.0,), max_new_tokens=8)
    whole, step = concurrently(shared, [proof, tactic])
    assert shared.batch_stats().items == 2  # one batch, two calls: the kinds never share a model call
    assert whole and all(c.text.startswith("import Mathlib\nopen Nat\n\ntheorem foo") for c in whole)
    assert step and all("\n" not in c.text for c in step)
    assert texts(whole) == texts(shared.generate_many([proof])[0])
