"""Transformers backend: any causal or encoder-decoder model, local or from the hub.

Sampling makes one batched ``generate`` call per temperature
(``num_return_sequences`` samples), greedy decoding one sequence when the
temperature is 0, and beam search when ``num_beams`` > 0. Generation stops at
the end of the tactic: every token whose text contains a newline is treated as
an end-of-sequence token, next to the model's own EOS.

On a CUDA GPU, sampling and greedy decoding of causal models go through
:class:`GraphDecoder` instead of ``generate``: the prompt is prefilled once,
its key/value cache is copied into a static cache for all samples, and each
decoding step (forward pass, sampling, bookkeeping) is replayed from a captured
CUDA graph, which removes the per-step Python and kernel-launch overhead that
dominates ``generate`` for a few billion parameters.

Nothing here is imported by ``import leanstep.generate``: torch and
transformers load when a generator is built.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .base import Candidate, GenerationRequest, GeneratorSettings, postprocess
from .prompts import Prompt, get_format

log = logging.getLogger(__name__)

# How many trailing prompt tokens are decoded together with a continuation, so
# that tokenizers which drop a leading space when decoding a fragment alone
# (SentencePiece) still give the right text.
_CONTEXT_TOKENS = 4
# Static-cache lengths are rounded up to a multiple of this, so a handful of
# captured graphs serve all prompt lengths.
_CACHE_BUCKET = 64


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: the first CUDA GPU when there is one, else the CPU."""
    if device in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """``auto``: bf16 on a GPU that supports it, fp16 on older GPUs, float32 on the CPU
    (CPU half-precision matmuls are slow or missing)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    device = torch.device(device)
    if dtype in ("", "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    names = {
        "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
        "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
        "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    }
    try:
        return names[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto, {', '.join(sorted(names))}") from None


def _transformers_version() -> tuple[int, int]:
    import transformers

    major, minor = transformers.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def _dtype_kwarg(dtype: torch.dtype) -> dict[str, Any]:
    # `dtype=` replaced `torch_dtype=` in transformers 4.56.
    return {"dtype": dtype} if _transformers_version() >= (4, 56) else {"torch_dtype": dtype}


def newline_token_ids(tokenizer: Any) -> list[int]:
    """Ids of every token whose text contains a newline (these end a tactic)."""
    n = len(tokenizer)
    ids: list[int] = []
    chunk = 8192
    for start in range(0, n, chunk):
        texts = tokenizer.batch_decode([[i] for i in range(start, min(n, start + chunk))])
        ids.extend(start + j for j, t in enumerate(texts) if "\n" in t)
    return ids


def encode_prompt(tokenizer: Any, text: str, seq2seq: bool) -> list[int]:
    """Token ids of a prompt as a model is served it, and so trained on (``leanstep finetune``): with the
    tokenizer's special tokens, unless a causal prompt already starts with its BOS token (a chat template's)."""
    bos = getattr(tokenizer, "bos_token", None)
    special = seq2seq or not (bos and text.startswith(bos))
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None), tokenizer):
        value = getattr(source, "eos_token_id", None)
        if value is None:
            continue
        ids.extend([value] if isinstance(value, int) else list(value))
    return sorted(set(ids))


def _kv_of(cache: Any, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of one layer of a transformers cache, across versions."""
    if hasattr(cache, "layers"):
        entry = cache.layers[layer]
        return entry.keys, entry.values
    if hasattr(cache, "key_cache"):
        return cache.key_cache[layer], cache.value_cache[layer]
    return cache[layer][0], cache[layer][1]


def _make_static_cache(config: Any, batch: int, length: int, device: torch.device, dtype: torch.dtype) -> Any:
    from transformers import StaticCache

    params = inspect.signature(StaticCache.__init__).parameters
    optional = {"max_batch_size": batch, "batch_size": batch, "device": device, "dtype": dtype}
    kwargs: dict[str, Any] = {"config": config, "max_cache_len": length}
    kwargs.update({name: value for name, value in optional.items() if name in params})
    return StaticCache(**kwargs)


def graph_decoding_supported(config: Any) -> str | None:
    """None when :class:`GraphDecoder` can run this model, else the reason it cannot."""
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder model"
    if getattr(config, "sliding_window", None):
        return "sliding-window attention"
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    if kinds - {"full_attention"}:
        return f"layer types {sorted(kinds)}"
    return None


@dataclass
class DecodeResult:
    """Per-sample tokens (``tokens[i, :lengths[i]]``, the last one a stop token
    when the sample stopped) and the sum of their log-probabilities."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    logprob_sums: torch.Tensor


class _GraphEntry:
    """Static buffers (cache, mask, positions, outputs) for one (samples, cache length),
    and the CUDA graph of one decoding step over them."""

    def __init__(self, owner: GraphDecoder, batch: int, length: int) -> None:
        self.owner = owner
        self.batch = batch
        self.length = length
        model, dev = owner.model, owner.device
        self.cache = _make_static_cache(model.config, batch, length, dev, owner.dtype)
        self.tokens_in = torch.zeros(batch, 1, dtype=torch.long, device=dev)
        self.position_ids = torch.zeros(batch, 1, dtype=torch.long, device=dev)
        self.cache_position = torch.zeros(1, dtype=torch.long, device=dev)
        self.mask = torch.full((batch, 1, 1, length), torch.finfo(owner.dtype).min, dtype=owner.dtype, device=dev)
        self.out = torch.zeros(batch, length, dtype=torch.long, device=dev)
        self.step_no = torch.zeros(1, dtype=torch.long, device=dev)
        self.min_new = torch.zeros(1, dtype=torch.long, device=dev)
        self.inv_temp = torch.ones(1, dtype=torch.float32, device=dev)
        self.noise = torch.zeros(1, dtype=torch.float32, device=dev)
        self.done = torch.zeros(batch, dtype=torch.bool, device=dev)
        self.lengths = torch.zeros(batch, dtype=torch.long, device=dev)
        self.sums = torch.zeros(batch, dtype=torch.float32, device=dev)
        self.graph: torch.cuda.CUDAGraph | None = None

    # -- the pieces of a step -------------------------------------------------
    def pick(self, logits: torch.Tensor) -> None:
        """Choose the next token of every sample from (batch, vocab) logits and record it."""
        logits = logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        scores = logits * self.inv_temp
        # Gumbel-max: argmax(logits / T + Gumbel noise) samples softmax(logits / T);
        # with noise 0 it is greedy decoding. No host synchronisation needed.
        u = torch.rand_like(scores).clamp_(min=torch.finfo(torch.float32).tiny)
        scores = scores - self.noise * torch.log(-torch.log(u))
        stop = self.owner.stop_mask[: scores.shape[-1]]
        scores = scores.masked_fill(stop & (self.step_no < self.min_new), float("-inf"))
        nxt = scores.argmax(dim=-1)
        alive = ~self.done
        self.sums.add_(logp.gather(1, nxt[:, None]).squeeze(1) * alive)
        self.lengths.add_(alive.long())
        self.out.scatter_(1, self.step_no.expand(self.batch).unsqueeze(1), nxt[:, None])
        self.done.logical_or_(stop[nxt])
        self.tokens_in.copy_(nxt[:, None])
        self.step_no.add_(1)

    def forward_pick_advance(self) -> None:
        kwargs: dict[str, Any] = {
            "input_ids": self.tokens_in,
            "position_ids": self.position_ids,
            "attention_mask": self.mask,
            "past_key_values": self.cache,
            "use_cache": True,
        }
        if self.owner.accepts_cache_position:
            kwargs["cache_position"] = self.cache_position
        logits = self.owner.step_model(**kwargs).logits[:, -1, :]
        self.pick(logits)
        self.cache_position.add_(1)
        self.position_ids.add_(1)
        self.mask.index_fill_(3, self.cache_position, 0.0)

    # -- per request ------------------------------------------------------------
    def load_prompt(self, prefill_cache: Any, prompt_len: int, temperature: float, min_new: int) -> None:
        """Reset all state and copy the prompt's key/values into every sample's slot."""
        self.cache.reset()
        positions = torch.arange(prompt_len, device=self.owner.device)
        for layer in range(self.owner.num_layers):
            k, v = _kv_of(prefill_cache, layer)
            shape = (self.batch, *k.shape[1:])
            self.cache.update(
                k.expand(shape), v.expand(shape), layer, {"cache_position": positions}
            )
        self.mask.fill_(torch.finfo(self.owner.dtype).min)
        self.mask[..., : prompt_len + 1] = 0.0
        self.cache_position.fill_(prompt_len)
        self.position_ids.fill_(prompt_len)
        self.step_no.zero_()
        self.min_new.fill_(min_new)
        self.inv_temp.fill_(1.0 / temperature if temperature > 0 else 1.0)
        self.noise.fill_(1.0 if temperature > 0 else 0.0)
        self.done.zero_()
        self.lengths.zero_()
        self.sums.zero_()

    def capture(self) -> None:
        """Warm up (on a side stream, as CUDA graph capture requires) and capture one step."""
        stream = torch.cuda.Stream(device=self.owner.device)
        stream.wait_stream(torch.cuda.current_stream(self.owner.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                self.forward_pick_advance()
        torch.cuda.current_stream(self.owner.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.forward_pick_advance()
        self.graph = graph

    def step(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.forward_pick_advance()


class GraphDecoder:
    """Fast sampling for causal models: prefill once, decode all samples in lock-step
    from a static key/value cache, one CUDA-graph replay per token.

    On a CPU (``use_graphs=False``) the same code runs eagerly, which is how the
    tests check it. Not thread-safe: the caller serialises calls.
    """

    def __init__(
        self,
        model: Any,
        stop_ids: Sequence[int],
        use_graphs: bool | None = None,
        max_graphs: int = 4,
        compile: bool = False,
    ):
        reason = graph_decoding_supported(model.config)
        if reason:
            raise ValueError(f"graph decoding does not support this model: {reason}")
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.use_graphs = self.device.type == "cuda" if use_graphs is None else use_graphs
        self.max_graphs = max_graphs
        # torch.compile fuses the small element-wise kernels of each layer; the
        # decoding step is still captured in our own CUDA graph. Costs a compile
        # (tens of seconds) per new cache length, so it is opt-in.
        self.step_model = torch.compile(model, dynamic=False) if compile else model
        self.num_layers = model.config.num_hidden_layers
        vocab = max(model.get_output_embeddings().weight.shape[0], model.config.vocab_size)
        self.stop_mask = torch.zeros(vocab, dtype=torch.bool, device=self.device)
        ids = [i for i in stop_ids if 0 <= i < vocab]
        if ids:
            self.stop_mask[torch.tensor(ids, device=self.device)] = True
        params = inspect.signature(model.forward).parameters
        self.accepts_cache_position = "cache_position" in params
        self.accepts_logits_to_keep = "logits_to_keep" in params
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self._entries: OrderedDict[tuple[int, int], _GraphEntry] = OrderedDict()

    def _entry(self, batch: int, length: int) -> _GraphEntry:
        key = (batch, length)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        while len(self._entries) >= self.max_graphs:
            self._entries.popitem(last=False)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        entry = _GraphEntry(self, batch, length)
        if self.use_graphs:
            # The first request fills the cache lazily; capture needs it allocated.
            with torch.inference_mode():
                dummy = torch.zeros(1, 1, dtype=torch.long, device=self.device)
                cache = self._prefill(dummy)[1]
                entry.load_prompt(cache, 1, 1.0, 0)
                entry.capture()
        self._entries[key] = entry
        return entry

    def _prefill(self, ids: torch.Tensor) -> tuple[torch.Tensor, Any]:
        kwargs: dict[str, Any] = {"input_ids": ids, "use_cache": True}
        if self.accepts_logits_to_keep:
            kwargs["logits_to_keep"] = 1
        out = self.model(**kwargs)
        return out.logits[:, -1, :], out.past_key_values

    def cache_length(self, prompt_len: int, max_new_tokens: int) -> int:
        length = -(-(prompt_len + max_new_tokens) // _CACHE_BUCKET) * _CACHE_BUCKET
        if self.max_positions:
            length = min(length, max(self.max_positions, prompt_len + max_new_tokens))
        return length

    @torch.inference_mode()
    def decode(
        self,
        prompt_ids: Sequence[int] | torch.Tensor,
        num_samples: int,
        temperature: float,
        max_new_tokens: int,
        *,
        min_new_tokens: int = 0,
        check_every: int = 8,
    ) -> DecodeResult:
        ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=self.device).reshape(1, -1)
        prompt_len = ids.shape[1]
        entry = self._entry(num_samples, self.cache_length(prompt_len, max_new_tokens))
        logits, cache = self._prefill(ids)
        entry.load_prompt(cache, prompt_len, temperature, min_new_tokens)
        del cache
        entry.pick(logits.expand(num_samples, -1))
        for step in range(1, max_new_tokens):
            if step % check_every == 0 and step >= min_new_tokens and bool(entry.done.all()):
                break
            entry.step()
        return DecodeResult(
            tokens=entry.out[:, :max_new_tokens].cpu(),
            lengths=entry.lengths.cpu(),
            logprob_sums=entry.sums.cpu(),
        )


class HFGenerator:
    """Generator backed by a transformers model; thread-safe, loads on first use."""

    def __init__(self, settings: GeneratorSettings):
        self.settings = settings
        self.format = get_format(settings.prompt_format)
        self._lock = threading.RLock()
        self._loaded = False
        self.model: Any = None
        self.tokenizer: Any = None
        self.is_seq2seq = False
        self.device: torch.device | None = None
        self.dtype: torch.dtype | None = None
        self.stop_ids: list[int] = []
        self.pad_id: int = 0
        self.max_input_tokens: int | None = None
        self.graph_decoder: GraphDecoder | None = None

    # -- loading -------------------------------------------------------------
    def load(self) -> None:
        """Load tokenizer and model (idempotent; safe to call from several threads)."""
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        s = self.settings
        trust = s.trust_remote_code
        config = AutoConfig.from_pretrained(s.model, trust_remote_code=trust)
        self.is_seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        self.device = resolve_device(s.device)
        self.dtype = resolve_dtype(s.dtype, self.device)
        tok = AutoTokenizer.from_pretrained(s.model, trust_remote_code=trust)
        auto = AutoModelForSeq2SeqLM if self.is_seq2seq else AutoModelForCausalLM
        model = auto.from_pretrained(s.model, trust_remote_code=trust, **_dtype_kwarg(self.dtype))
        # transformers types .to() through a decorator that loses the bound model
        model.to(self.device)  # type: ignore[arg-type]
        model.eval()
        if not self.is_seq2seq:
            tok.padding_side = "left"
        if tok.pad_token_id is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        eos = _eos_ids(model, tok)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (eos[0] if eos else 0)
        self.stop_ids = sorted(set(eos) | set(newline_token_ids(tok)))
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        tok_limit = getattr(tok, "model_max_length", None)
        if not limit and tok_limit and tok_limit < 1_000_000:
            limit = tok_limit
        self.max_input_tokens = limit
        self.model, self.tokenizer = model, tok
        if s.fast_path and self.device.type == "cuda" and s.num_beams == 0:
            reason = graph_decoding_supported(config)
            if reason is None:
                try:
                    self.graph_decoder = GraphDecoder(model, self.stop_ids, compile=s.compile)
                except Exception as exc:  # noqa: BLE001  # pragma: no cover - any failure falls back to generate()
                    log.warning("fast GPU decoding unavailable, using generate(): %s", exc)
            else:
                log.info("fast GPU decoding not used: %s", reason)
        log.info(
            "loaded %s (%s) on %s in %s", s.model, "seq2seq" if self.is_seq2seq else "causal", self.device, self.dtype
        )

    def warmup(self) -> None:
        """Load the model and run one tiny generation (captures the GPU graph), so the
        first real request is not slow."""
        self.load()
        self.generate(GenerationRequest("⊢ True", "", num_samples=2, temperatures=(1.0,), max_new_tokens=4))

    # -- generation ------------------------------------------------------------
    def generate(self, request: GenerationRequest) -> list[Candidate]:
        self.load()
        with self._lock:
            prompt = self.format.render(
                request.tactic_state, request.prefix, tokenizer=self.tokenizer, seq2seq=self.is_seq2seq
            )
            outputs: list[tuple[str, float]] = []
            if self.settings.num_beams > 0:
                outputs += self._run_generate(prompt, request, temperature=0.0, beams=self.settings.num_beams)
            else:
                for temperature in request.temperatures:
                    outputs += self._sample(prompt, request, temperature)
            return postprocess(request.prefix, outputs)

    def _encode(self, text: str, special: bool) -> list[int]:
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def _prompt_ids(self, prompt: Prompt, max_new: int) -> tuple[list[int], list[int]]:
        """(input ids, decoder prefix ids); the input keeps its end when too long."""
        ids = encode_prompt(self.tokenizer, prompt.text, self.is_seq2seq)
        budget = self.max_input_tokens
        if budget:
            budget = budget if self.is_seq2seq else max(1, budget - max_new)
            if len(ids) > budget:
                ids = ids[-budget:]
        dec = self._encode(prompt.decoder_prefix, False) if prompt.decoder_prefix else []
        return ids, dec

    def _decode(self, context: list[int], new: Sequence[int]) -> str:
        """Text of ``new`` as it reads after ``context`` (see _CONTEXT_TOKENS)."""
        head = self.tokenizer.decode(context, skip_special_tokens=True) if context else ""
        full = self.tokenizer.decode(list(context) + list(new), skip_special_tokens=True)
        if full.startswith(head):
            return full[len(head):]
        return self.tokenizer.decode(list(new), skip_special_tokens=True)

    def _cut(self, tokens: Sequence[int]) -> list[int]:
        """Tokens up to and including the first stop token."""
        stops = self._stop_set
        for i, t in enumerate(tokens):
            if t in stops:
                return list(tokens[: i + 1])
        return list(tokens)

    @property
    def _stop_set(self) -> frozenset[int]:
        cached = getattr(self, "_stop_frozen", None)
        if cached is None:
            cached = self._stop_frozen = frozenset(self.stop_ids)
        return cached

    def _sample(self, prompt: Prompt, request: GenerationRequest, temperature: float) -> list[tuple[str, float]]:
        n = request.num_samples if temperature > 0 else 1
        if self.graph_decoder is not None and not prompt.decoder_prefix:
            ids, _ = self._prompt_ids(prompt, request.max_new_tokens)
            min_new = 0 if request.prefix else 1
            res = self.graph_decoder.decode(ids, n, temperature, request.max_new_tokens, min_new_tokens=min_new)
            context = ids[-_CONTEXT_TOKENS:]
            out = []
            for i in range(n):
                length = int(res.lengths[i])
                toks = res.tokens[i, :length].tolist()
                score = float(res.logprob_sums[i]) / max(1, length)
                out.append((self._decode(context, toks), score))
            return out
        return self._run_generate(prompt, request, temperature=temperature, beams=0)

    def _run_generate(
        self, prompt: Prompt, request: GenerationRequest, temperature: float, beams: int
    ) -> list[tuple[str, float]]:
        ids, dec = self._prompt_ids(prompt, request.max_new_tokens)
        dev = self.device
        inputs: dict[str, Any] = {
            "input_ids": torch.tensor([ids], device=dev),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long, device=dev),
        }
        if self.is_seq2seq:
            start = self.model.config.decoder_start_token_id
            if start is None:
                start = self.pad_id
            context = [start, *dec]
            inputs["decoder_input_ids"] = torch.tensor([context], device=dev)
            skip = len(context)
        else:
            context = ids[-_CONTEXT_TOKENS:]
            skip = len(ids)
        kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_new_tokens,
            "eos_token_id": self.stop_ids,
            "pad_token_id": self.pad_id,
            "return_dict_in_generate": True,
        }
        if not request.prefix:
            kwargs["min_new_tokens"] = 1  # an immediate newline would be an empty tactic
        if beams > 0:
            kwargs.update(
                do_sample=False, num_beams=beams, num_return_sequences=beams, output_scores=True, length_penalty=1.0
            )
        elif temperature > 0:
            kwargs.update(
                do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                num_return_sequences=request.num_samples, output_logits=True,
            )
        else:
            kwargs.update(do_sample=False, num_beams=1, output_logits=True)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        seqs = out.sequences[:, skip:].tolist()
        if beams > 0:
            scores = out.sequences_scores.float().tolist()
            return [(self._decode(context, self._cut(toks)), score) for toks, score in zip(seqs, scores, strict=True)]
        logits = out.logits
        steps = len(logits)
        new = out.sequences[:, skip : skip + steps]
        logp = torch.stack(
            [torch.log_softmax(lg.float(), dim=-1).gather(1, new[:, t : t + 1]).squeeze(1)
             for t, lg in enumerate(logits)],
            dim=1,
        ).cpu()
        results: list[tuple[str, float]] = []
        for i, toks in enumerate(seqs):
            kept = self._cut(toks[:steps])
            length = max(1, len(kept))
            results.append((self._decode(context, kept), float(logp[i, : len(kept)].sum()) / length))
        return results
