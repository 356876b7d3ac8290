"""Transformers backend: any causal or encoder-decoder model, local or from the hub.

Sampling makes one batched ``generate`` call per temperature (a row per
sample), greedy decoding one sequence when the temperature is 0, and beam
search when ``num_beams`` > 0. Generation stops at the end of the tactic: every
token whose text contains a newline is treated as an end-of-sequence token,
next to the model's own EOS.

Requests from concurrent callers (several editors) share those calls: with
``batch_size`` > 1 they are collected for ``batch_window`` seconds
(:mod:`leanstep.generate.batching`) and their prompts padded into one batch
(left padding with an attention mask for causal models; seq2seq requests share
a call when their decoder prefixes have one length), one call per temperature.
Each row decodes what it would decode alone; a request that fails is retried
alone so that it fails alone. A request with a ``seed`` shares a call only with
requests of the same seed (the generator is seeded before the call).

A whole-proof request (``GenerationRequest.proof``) is rendered in its proof
format, stops only at the model's EOS and at the format's stop strings (the
closing code fence, watched by :class:`StopAtText`), and always goes through
``generate``.

On a CUDA GPU, sampling and greedy decoding of causal models go through
:class:`GraphDecoder` instead of ``generate``: each prompt is prefilled once,
its key/value cache is copied into a static cache for all its samples, and each
decoding step (forward pass, sampling, bookkeeping) is replayed from a captured
CUDA graph, which removes the per-step Python and kernel-launch overhead that
dominates ``generate`` for a few billion parameters. Rows of every request and
temperature of a batch decode in the same graph.

Nothing here is imported by ``import leanstep.generate``: torch and
transformers load when a generator is built.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from transformers import StoppingCriteria

from .base import Candidate, GenerationRequest, GeneratorSettings, postprocess, postprocess_proofs
from .batching import BatcherStats, RequestBatcher
from .prompts import Prompt, get_format
from .proofs import get_proof_format

log = logging.getLogger(__name__)
ResultT = TypeVar("ResultT")

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


def cache_keyword(forward_params: Collection[str]) -> str:
    """The name a model's ``forward`` takes its key/value cache under, and its output carries it under:
    ``cache`` where transformers renamed it (the old ``past_key_values`` still works there, with a
    deprecation warning), ``past_key_values`` before."""
    return "cache" if "cache" in forward_params and "past_key_values" not in forward_params else "past_key_values"


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


@dataclass(frozen=True)
class DecodeInput:
    """One prompt of a batched decode: its token ids, how many samples to draw, at what
    temperature (0: greedy), and how many tokens must come before a stop token may end a sample."""

    ids: Sequence[int] | torch.Tensor
    num_samples: int
    temperature: float
    min_new_tokens: int = 0


@dataclass(frozen=True)
class _RowPlan:
    """Where each row of a batched decode comes from. Prompts are left-padded to ``width``
    cache slots; row ``r`` samples from prompt ``owner[r]``, whose real tokens fill slots
    ``start[r]`` to ``width - 1``. Rows past the requested ones (``live`` false) only pad the
    batch up to a captured graph's size."""

    owner: torch.Tensor  # (batch,) long
    start: torch.Tensor  # (batch,) long
    prompt_len: torch.Tensor  # (batch,) long: the position of the row's first new token
    inv_temp: torch.Tensor  # (batch, 1) float32
    noise: torch.Tensor  # (batch, 1) float32: 1 samples, 0 is greedy
    min_new: torch.Tensor  # (batch, 1) long
    live: torch.Tensor  # (batch,) bool
    width: int


def _bucket_rows(rows: int) -> int:
    """The batch size a captured graph is made for: the next power of two, so a few graphs serve every batch."""
    return 1 << max(0, rows - 1).bit_length()


class _GraphEntry:
    """Static buffers (cache, mask, positions, outputs) for one (rows, cache length),
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
        self.min_new = torch.zeros(batch, 1, dtype=torch.long, device=dev)
        self.inv_temp = torch.ones(batch, 1, dtype=torch.float32, device=dev)
        self.noise = torch.zeros(batch, 1, dtype=torch.float32, device=dev)
        self.done = torch.zeros(batch, dtype=torch.bool, device=dev)
        self.lengths = torch.zeros(batch, dtype=torch.long, device=dev)
        self.sums = torch.zeros(batch, dtype=torch.float32, device=dev)
        self.graph: torch.cuda.CUDAGraph | None = None

    # -- the pieces of a step -------------------------------------------------
    def pick(self, logits: torch.Tensor) -> None:
        """Choose the next token of every row from (batch, vocab) logits and record it."""
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
            self.owner.cache_keyword: self.cache,
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
    def load_prompts(self, prefill_cache: Any, plan: _RowPlan) -> None:
        """Reset all state and copy each row's prompt key/values into its slots of the static cache."""
        self.cache.reset()
        positions = torch.arange(plan.width, device=self.owner.device)
        shared = _prefill_rows(prefill_cache) == 1
        for layer in range(self.owner.num_layers):
            k, v = _kv_of(prefill_cache, layer)
            if shared:  # one prompt: a broadcast view, no copy before the cache's own
                k, v = k.expand(self.batch, *k.shape[1:]), v.expand(self.batch, *v.shape[1:])
            else:
                k, v = k.index_select(0, plan.owner), v.index_select(0, plan.owner)
            self.cache.update(k, v, layer, {"cache_position": positions})
        slots = torch.arange(self.length, device=self.owner.device)
        visible = (slots >= plan.start[:, None]) & (slots <= plan.width)
        blocked = torch.finfo(self.owner.dtype).min
        self.mask.copy_(torch.where(visible, 0.0, blocked).to(self.owner.dtype)[:, None, None, :])
        self.cache_position.fill_(plan.width)
        self.position_ids.copy_(plan.prompt_len[:, None])
        self.step_no.zero_()
        self.min_new.copy_(plan.min_new)
        self.inv_temp.copy_(plan.inv_temp)
        self.noise.copy_(plan.noise)
        self.done.copy_(~plan.live)
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


def _prefill_rows(cache: Any) -> int:
    """How many sequences a prefill's key/value cache holds."""
    return int(_kv_of(cache, 0)[0].shape[0])


class GraphDecoder:
    """Fast sampling for causal models: prefill once per prompt, decode all samples of all
    prompts in lock-step from a static key/value cache, one CUDA-graph replay per token.

    Several prompts (different lengths, sample counts, temperatures) decode together:
    they are left-padded to the longest, and each row's attention mask and positions
    skip its padding, so a row decodes exactly what it would decode alone. With graphs,
    the row count is rounded up to a power of two (``bucket_rows``; the extra rows are
    finished from the start) so that a few captured graphs serve every batch.

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
        bucket_rows: bool | None = None,
    ):
        reason = graph_decoding_supported(model.config)
        if reason:
            raise ValueError(f"graph decoding does not support this model: {reason}")
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.use_graphs = self.device.type == "cuda" if use_graphs is None else use_graphs
        self.bucket_rows = self.use_graphs if bucket_rows is None else bucket_rows
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
        self.cache_keyword = cache_keyword(params)
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
                dummy = [torch.zeros(1, dtype=torch.long, device=self.device)]
                cache = self._prefill(dummy, 1)[1]
                entry.load_prompts(cache, self._plan([DecodeInput(dummy[0], batch, 1.0)], [1], 1, batch))
                entry.capture()
        self._entries[key] = entry
        return entry

    def _prefill(self, prompts: Sequence[torch.Tensor], width: int) -> tuple[torch.Tensor, Any]:
        """Last-position logits and key/value cache of the prompts, left-padded to ``width``."""
        kwargs: dict[str, Any] = {"use_cache": True}
        if len(prompts) == 1:
            kwargs["input_ids"] = prompts[0].reshape(1, -1)
        else:
            ids = torch.zeros(len(prompts), width, dtype=torch.long, device=self.device)
            mask = torch.zeros_like(ids)
            for row, prompt in enumerate(prompts):
                ids[row, width - prompt.numel():] = prompt
                mask[row, width - prompt.numel():] = 1
            kwargs.update(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
        if self.accepts_logits_to_keep:
            kwargs["logits_to_keep"] = 1
        out = self.model(**kwargs)
        return out.logits[:, -1, :], getattr(out, self.cache_keyword)

    def _plan(self, inputs: Sequence[DecodeInput], lengths: Sequence[int], width: int, batch: int) -> _RowPlan:
        owner: list[int] = []
        temps: list[float] = []
        min_new: list[int] = []
        for index, item in enumerate(inputs):
            owner += [index] * item.num_samples
            temps += [item.temperature] * item.num_samples
            min_new += [item.min_new_tokens] * item.num_samples
        live = len(owner)
        pad = batch - live
        owner += [0] * pad
        temps += [1.0] * pad
        min_new += [0] * pad

        def tensor(values: list[Any], dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=self.device)

        owners = tensor(owner, torch.long)
        prompt_len = tensor(list(lengths), torch.long).index_select(0, owners)
        temperature = tensor(temps, torch.float32)[:, None]
        sampled = temperature > 0
        return _RowPlan(
            owner=owners,
            start=width - prompt_len,
            prompt_len=prompt_len,
            inv_temp=torch.where(sampled, 1.0 / temperature.clamp(min=1e-6), 1.0),
            noise=sampled.float(),
            min_new=tensor(min_new, torch.long)[:, None],
            live=torch.arange(batch, device=self.device) < live,
            width=width,
        )

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
        """``num_samples`` samples for one prompt (see :meth:`decode_batch`)."""
        item = DecodeInput(prompt_ids, num_samples, temperature, min_new_tokens)
        return self.decode_batch([item], max_new_tokens, check_every=check_every)[0]

    @torch.inference_mode()
    def decode_batch(self, inputs: Sequence[DecodeInput], max_new_tokens: int, *,
                     check_every: int = 8) -> list[DecodeResult]:
        """Decode every input's samples together; one result per input, in order."""
        if not inputs:
            return []
        prompts = [torch.as_tensor(x.ids, dtype=torch.long, device=self.device).reshape(-1) for x in inputs]
        lengths = [p.numel() for p in prompts]
        width = max(lengths)
        rows = sum(x.num_samples for x in inputs)
        batch = _bucket_rows(rows) if self.bucket_rows else rows
        entry = self._entry(batch, self.cache_length(width, max_new_tokens))
        logits, cache = self._prefill(prompts, width)
        plan = self._plan(inputs, lengths, width, batch)
        entry.load_prompts(cache, plan)
        del cache
        entry.pick(logits.expand(batch, -1) if len(prompts) == 1 else logits.index_select(0, plan.owner))
        min_new = max(x.min_new_tokens for x in inputs)
        for step in range(1, max_new_tokens):
            if step % check_every == 0 and step >= min_new and bool(entry.done.all()):
                break
            entry.step()
        # copies: on the CPU .cpu() would return the entry's own buffers, which the next decode overwrites
        tokens = entry.out[:, :max_new_tokens].to("cpu", copy=True)
        lengths_out, sums = entry.lengths.to("cpu", copy=True), entry.sums.to("cpu", copy=True)
        results: list[DecodeResult] = []
        row = 0
        for item in inputs:
            end = row + item.num_samples
            results.append(DecodeResult(tokens[row:end], lengths_out[row:end], sums[row:end]))
            row = end
        return results


def _captured(fn: Callable[..., ResultT], *args: Any) -> ResultT | Exception:
    """``fn(*args)``, or the exception it raised (for one request that must fail alone)."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - handed back to the one request it belongs to
        return exc


@dataclass(frozen=True)
class _Job:
    """One request at one temperature (or its beam search): some rows of a batched model call."""

    index: int  # the request's place in the batch
    ids: tuple[int, ...]
    dec: tuple[int, ...]  # a seq2seq decoder's forced start (the prefix)
    temperature: float
    samples: int  # sequences it gets back (beam search: the beams)
    min_new: int
    max_new: int
    seed: int | None = None
    whole: bool = False  # a whole-proof request: it stops at the EOS and the proof format's stop strings
    answer_start: str = ""  # the end of the prompt a whole proof's answer continues


class StopAtText(StoppingCriteria):
    """Stops each sequence once its text after the prompt contains a stop string (a closing code fence).

    Transformers' own ``stop_strings`` maps strings to token ids through the
    vocabulary, which fails on some tokenizers; decoding the last few tokens of
    each sequence works with any.
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_len: int, window: int = 8) -> None:
        self.tokenizer = tokenizer
        self.stops = tuple(stops)
        self.prompt_len = prompt_len
        self.window = window

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        start = max(self.prompt_len, input_ids.shape[1] - self.window)
        tails = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
        return torch.tensor([any(s in tail for s in self.stops) for tail in tails], dtype=torch.bool,
                            device=input_ids.device)


class HFGenerator:
    """Generator backed by a transformers model; thread-safe, loads on first use."""

    def __init__(self, settings: GeneratorSettings):
        self.settings = settings
        self.format = get_format(settings.prompt_format)
        self.proof_format = get_proof_format(settings.proof_format)
        self._lock = threading.RLock()
        self._loaded = False
        self.model: Any = None
        self.tokenizer: Any = None
        self.is_seq2seq = False
        self.device: torch.device | None = None
        self.dtype: torch.dtype | None = None
        self.stop_ids: list[int] = []
        self.eos_ids: list[int] = []
        self.pad_id: int = 0
        self.max_input_tokens: int | None = None
        self.graph_decoder: GraphDecoder | None = None
        self._batcher: RequestBatcher[GenerationRequest, list[Candidate]] | None = None
        if settings.batch_size > 1:
            self._batcher = RequestBatcher(self.generate_many, max_size=settings.batch_size,
                                           window=settings.batch_window, name="hf-generation-batcher")

    # -- loading -------------------------------------------------------------
    def load(self) -> None:
        """Load tokenizer and model (idempotent; safe to call from several threads)."""
        if self._loaded:  # no lock: a caller must reach the batcher's queue while a batch holds the model
            return
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
        self.eos_ids = eos
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
        """Candidates for one request. With ``batch_size`` > 1, requests from concurrent callers
        are collected for ``batch_window`` seconds and generated together (:meth:`generate_many`)."""
        self.load()
        if self._batcher is not None:
            return self._batcher.submit(request, request.abandoned)
        answer = self.generate_many([request])[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def batch_stats(self) -> BatcherStats | None:
        """How cross-request batching went so far (None when it is off)."""
        return self._batcher.stats() if self._batcher is not None else None

    def generate_many(self, requests: Sequence[GenerationRequest]) -> list[list[Candidate] | BaseException]:
        """Candidates for each request, generated in as few batched model calls as the requests
        allow; a request that fails gets its exception in its place and the others are answered."""
        self.load()
        with self._lock:
            outputs: list[list[tuple[str, float]]] = [[] for _ in requests]
            failures: dict[int, BaseException] = {}
            groups: dict[tuple[Any, ...], list[_Job]] = {}
            starts: dict[int, str] = {}
            for index, request in enumerate(requests):
                jobs = _captured(self._jobs, index, request)
                if isinstance(jobs, Exception):  # this request fails, the others go on
                    failures[index] = jobs
                    continue
                starts[index] = jobs[0].answer_start if jobs else ""
                for job in jobs:
                    groups.setdefault(self._group_key(job), []).append(job)
            for group in groups.values():
                for job, result in self._run_isolated(group):
                    if isinstance(result, BaseException):
                        failures.setdefault(job.index, result)
                    else:
                        outputs[job.index] += result
            answers: list[list[Candidate] | BaseException] = []
            for index, request in enumerate(requests):
                failure = failures.get(index)
                if failure is not None:
                    answers.append(failure)
                elif request.proof is not None:
                    answers.append(postprocess_proofs(starts[index], outputs[index], self.proof_format.stop))
                else:
                    answers.append(postprocess(request.prefix, outputs[index]))
            return answers

    def _jobs(self, index: int, request: GenerationRequest) -> list[_Job]:
        """The request's share of the batch: one job per temperature, or one beam search."""
        whole = request.proof is not None
        if request.proof is not None:
            prompt = self.proof_format.render(request.proof, request.tactic_state, tokenizer=self.tokenizer)
        else:
            prompt = self.format.render(request.tactic_state, request.prefix, tokenizer=self.tokenizer,
                                        seq2seq=self.is_seq2seq)
        ids, dec = self._prompt_ids(prompt, request.max_new_tokens)
        min_new = 0 if request.prefix else 1  # an immediate newline would be an empty tactic
        beams = self.settings.num_beams
        runs = [(0.0, beams)] if beams > 0 else [(t, request.num_samples if t > 0 else 1)
                                                 for t in request.temperatures]
        return [_Job(index, tuple(ids), tuple(dec), t, samples, min_new, request.max_new_tokens, request.seed, whole,
                     prompt.answer_start) for t, samples in runs]

    def _uses_graph(self, job: _Job) -> bool:
        return self.graph_decoder is not None and not job.dec and self.settings.num_beams == 0 and not job.whole

    def _group_key(self, job: _Job) -> tuple[Any, ...]:
        """Jobs with equal keys share one model call. The graph decoder mixes temperatures and
        prompt lengths per row; ``generate`` takes one temperature and one minimum length per
        call, and a seq2seq decoder prefix of one length (it is not padded)."""
        if self._uses_graph(job):
            return ("graph", job.max_new, job.seed)
        return ("generate", job.temperature, job.min_new, len(job.dec), job.max_new, job.seed, job.whole)

    def _run_isolated(self, group: list[_Job]) -> list[tuple[_Job, list[tuple[str, float]] | BaseException]]:
        """Run the group as one call; if that fails, each job alone, so only the failing one fails."""
        try:
            return list(zip(group, self._run_group(group), strict=True))
        except Exception as exc:  # noqa: BLE001 - isolated below
            if len(group) == 1:
                return [(group[0], exc)]
            log.warning("a batched generation of %d prompts failed (%s: %s); running them one by one",
                        len(group), type(exc).__name__, exc)
        return [(job, _captured(lambda one: self._run_group([one])[0], job)) for job in group]

    def _run_group(self, group: list[_Job]) -> list[list[tuple[str, float]]]:
        if group[0].seed is not None:
            torch.manual_seed(group[0].seed)
        if self._uses_graph(group[0]):
            return self._run_graph(group)
        return self._run_generate(group)

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

    @staticmethod
    def _cut(tokens: Sequence[int], stops: frozenset[int]) -> list[int]:
        """Tokens up to and including the first of ``stops``."""
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

    def _run_graph(self, group: list[_Job]) -> list[list[tuple[str, float]]]:
        assert self.graph_decoder is not None
        inputs = [DecodeInput(job.ids, job.samples, job.temperature, job.min_new) for job in group]
        results = self.graph_decoder.decode_batch(inputs, group[0].max_new)
        answers = []
        for job, res in zip(group, results, strict=True):
            context = list(job.ids[-_CONTEXT_TOKENS:])
            texts = []
            for i in range(job.samples):
                length = int(res.lengths[i])
                tokens = res.tokens[i, :length].tolist()
                texts.append((self._decode(context, tokens), float(res.logprob_sums[i]) / max(1, length)))
            answers.append(texts)
        return answers

    def _run_generate(self, group: list[_Job]) -> list[list[tuple[str, float]]]:
        """One ``model.generate`` call over every job of the group: a row per sample (per
        prompt for beam search), prompts padded (left for causal models) with an attention mask."""
        first, beams, dev = group[0], self.settings.num_beams, self.device
        rows = [job.ids for job in group for _ in range(1 if beams else job.samples)]
        width = max(len(ids) for ids in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros(len(rows), width, dtype=torch.long)
        for row, ids in enumerate(rows):
            span = slice(0, len(ids)) if self.is_seq2seq else slice(width - len(ids), width)
            input_ids[row, span] = torch.tensor(ids, dtype=torch.long)
            attention[row, span] = 1
        inputs: dict[str, Any] = {"input_ids": input_ids.to(dev), "attention_mask": attention.to(dev)}
        start = self.model.config.decoder_start_token_id if self.is_seq2seq else None
        start = self.pad_id if start is None else start
        if self.is_seq2seq:
            inputs["decoder_input_ids"] = torch.tensor(
                [[start, *job.dec] for job in group for _ in range(1 if beams else job.samples)], device=dev)
            skip = 1 + len(first.dec)
        else:
            skip = width
        stops = frozenset(self.eos_ids) if first.whole else self._stop_set
        kwargs: dict[str, Any] = {
            "max_new_tokens": first.max_new,
            "eos_token_id": sorted(stops) or None,
            "pad_token_id": self.pad_id,
            "return_dict_in_generate": True,
        }
        if first.whole and self.proof_format.stop:
            kwargs["stopping_criteria"] = [StopAtText(self.tokenizer, self.proof_format.stop, skip)]
        if first.min_new:
            kwargs["min_new_tokens"] = first.min_new
        if beams > 0:
            kwargs.update(
                do_sample=False, num_beams=beams, num_return_sequences=beams, output_scores=True, length_penalty=1.0
            )
        elif first.temperature > 0:
            kwargs.update(do_sample=True, temperature=first.temperature, top_k=0, top_p=1.0, output_logits=True)
        else:
            kwargs.update(do_sample=False, num_beams=1, output_logits=True)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        seqs = out.sequences[:, skip:].tolist()
        if beams > 0:
            row_scores = out.sequences_scores.float().tolist()
            row_texts = [(toks, score) for toks, score in zip(seqs, row_scores, strict=True)]
        else:
            steps = len(out.logits)
            new = out.sequences[:, skip : skip + steps]
            logp = torch.stack(
                [torch.log_softmax(lg.float(), dim=-1).gather(1, new[:, t : t + 1]).squeeze(1)
                 for t, lg in enumerate(out.logits)],
                dim=1,
            ).cpu()
            row_texts = []
            for row, toks in enumerate(seqs):
                kept = self._cut(toks[:steps], stops)
                row_texts.append((kept, float(logp[row, : len(kept)].sum()) / max(1, len(kept))))
        answers = []
        row = 0
        for job in group:
            context = [start, *job.dec] if self.is_seq2seq else list(job.ids[-_CONTEXT_TOKENS:])
            texts = []
            for toks, score in row_texts[row : row + job.samples]:
                texts.append((self._decode(context, self._cut(toks, stops)), score))
            answers.append(texts)
            row += job.samples
        return answers
