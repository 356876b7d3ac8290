"""llama.cpp backend: a GGUF model run in process through llama-cpp-python.

For machines without a GPU (llama.cpp's quantised CPU kernels), or a laptop GPU
through a Metal or CUDA build of llama-cpp-python. It drives llama.cpp's C API as
llama-cpp-python exposes it (``llama_cpp.llama_*``), because the high-level
``Llama`` class decodes one sequence at a time.

Sampling ``n`` candidates costs one evaluation of the prompt and one batched
decoding step per token for all of them: the prompt is decoded once into sequence 0
of a unified key/value cache, the samples' sequences share its cells
(``llama_memory_seq_cp`` adds a sequence id to a cell, it copies nothing), and each
step decodes the last token of every unfinished sample in one batch, so the
weights are read once per step, not once per sample. More samples than the context
has sequences (:data:`PARALLEL`) run in rounds over the same prompt cells. The
prompt stays in the cache after a request, and the next request evaluates only the
tokens after the beginning it shares with it (the same goal with another prefix
costs a few tokens).

Tokens are drawn in numpy from each step's logits with a seeded generator
(temperature 0: the most likely token). A sample ends at a token whose text holds a
newline, at an end-of-generation token, or after ``max_new_tokens``; its score is
the mean log-probability of its tokens under the model's temperature-1
distribution, as for the other backends, and :func:`postprocess` does the rest.
A whole-proof request (``request.proof``) is rendered in its proof format and its
samples run to an end-of-generation token or the format's stop strings instead of
the newline, then go through :func:`postprocess_proofs`.

The context holds one key/value cache, so generation is serialised by a lock.
llama-cpp-python compiles llama.cpp when it is installed (``make llamacpp``); it is
imported only when this generator is built.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np

from .base import Candidate, GenerationRequest, GeneratorSettings, postprocess, postprocess_proofs
from .prompts import Prompt, get_format
from .proofs import get_proof_format

log = logging.getLogger(__name__)

INSTALL_HINT = "the llamacpp backend needs llama-cpp-python: make llamacpp (or pip install 'leanstep[llamacpp]')"
# Key/value cache cells of the context: the prompt plus every sample of a round.
KV_CELLS = 2048
# Sequences decoded together: the most samples in one round.
PARALLEL = 16
# Prompt tokens per llama_decode call.
PROMPT_BATCH = 512
# llama.cpp's "every layer" for n_gpu_layers.
ALL_LAYERS = 0x7FFFFFFF


def default_threads() -> int:
    """Cores this process may run on (all of them where the platform cannot say)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def gpu_layers(device: str, supports_offload: bool) -> int:
    """Layers to offload for a ``--device`` value: all on a GPU build (``auto``, or a GPU
    named explicitly), none for ``cpu`` or on a CPU-only build under ``auto``."""
    if device == "cpu":
        return 0
    if device in ("", "auto"):
        return ALL_LAYERS if supports_offload else 0
    if not supports_offload:
        raise ValueError(f"device {device!r}: this llama-cpp-python build runs on the CPU only; reinstall it with "
                         "GPU support (e.g. CMAKE_ARGS=-DGGML_CUDA=on) or use device cpu")
    return ALL_LAYERS


def sample_tokens(logits: np.ndarray, temperature: float, rng: np.random.Generator,
                  banned: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One token per row of ``logits`` (rows x vocabulary) and its log-probability under
    the temperature-1 distribution.

    Temperature 0 takes the most likely token; otherwise a token is drawn from the
    softmax of ``logits / temperature`` (no top-k or top-p cut, as the hf backend).
    ``banned`` tokens (a boolean mask over the vocabulary) are never drawn, though
    their probability still counts in the log-probability of the others.
    """
    x = logits.astype(np.float64)
    peak = x.max(axis=1, keepdims=True)
    log_norm = peak[:, 0] + np.log(np.exp(x - peak).sum(axis=1))
    allowed = x if banned is None else np.where(banned, -np.inf, x)
    if temperature == 0:
        picks = allowed.argmax(axis=1)
    else:
        scaled = allowed / temperature
        weights = np.exp(scaled - scaled.max(axis=1, keepdims=True))
        cumulative = np.cumsum(weights, axis=1)
        draws = rng.random(len(x)) * cumulative[:, -1]
        picks = np.array([min(int(np.searchsorted(row, u, side="right")), x.shape[1] - 1)
                          for row, u in zip(cumulative, draws, strict=True)])
    rows = np.arange(len(x))
    return picks, x[rows, picks] - log_norm


class NativeLog:
    """llama.cpp's own log, line by line, to the ``leanstep.generate.llamacpp.native`` logger.

    llama.cpp's informational lines (its loading report) go out at debug level, its
    warnings and errors at theirs; the first error since :meth:`clear` is kept, so a
    failed load can say why.
    (llama-cpp-python's own log router maps older numbers of ggml's levels: it prints
    warnings and hides errors.)
    """

    # ggml_log_level: 1 debug, 2 info, 3 warn, 4 error; 5 continues the previous message.
    LEVELS: ClassVar[dict[int, int]] = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
    CONTINUE = 5

    def __init__(self) -> None:
        self.logger = logging.getLogger(f"{__name__}.native")
        self.first_error = ""
        self._level = logging.DEBUG
        self._partial = ""
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self.first_error = ""

    def write(self, level: int, text: bytes) -> None:
        with self._lock:
            if level != self.CONTINUE:
                self._level = self.LEVELS.get(level, logging.DEBUG)
            *lines, self._partial = (self._partial + text.decode("utf-8", "replace")).split("\n")
            for line in filter(str.strip, lines):
                if self._level >= logging.ERROR and not self.first_error:
                    self.first_error = line.strip()
                self.logger.log(self._level, "%s", line)


NATIVE_LOG = NativeLog()
_native_callback: Any = None  # the C callback: kept alive as long as llama.cpp may call it


def route_native_log(llama_cpp: Any) -> None:
    """Send llama.cpp's log to :data:`NATIVE_LOG` (once per process; llama.cpp's logger is global)."""
    global _native_callback
    if _native_callback is None:
        _native_callback = llama_cpp.llama_log_callback(lambda level, text, _user: NATIVE_LOG.write(level, text))
        llama_cpp.llama_log_set(_native_callback, ctypes.c_void_p(0))


class ChatTemplate:
    """A GGUF file's chat template, in the shape the ``chat`` prompt format expects of a
    tokenizer (``chat_template``, ``apply_chat_template``)."""

    def __init__(self, template: str, bos_token: str, eos_token: str):
        self.chat_template = template
        self.bos_token = bos_token
        self.eos_token = eos_token

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False,
                            add_generation_prompt: bool = True) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(self.chat_template, eos_token=self.eos_token, bos_token=self.bos_token,
                                        add_generation_prompt=add_generation_prompt)
        return formatter(messages=cast(Any, messages)).prompt  # plain dicts are what the template reads


def _free(llama_cpp: Any, model: Any, context: Any, batch: Any) -> None:
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(context)
    llama_cpp.llama_model_free(model)


class LlamaModel:
    """One GGUF model and its context (llama.cpp's C objects), and the decoding loop.

    Not thread-safe: :class:`LlamaCppGenerator` serialises calls.
    """

    def __init__(self, llama_cpp: Any, path: Path, threads: int, offload_layers: int):
        self.lib = lc = llama_cpp
        model_params = lc.llama_model_default_params()
        model_params.n_gpu_layers = offload_layers
        NATIVE_LOG.clear()
        model = lc.llama_model_load_from_file(str(path).encode(), model_params)
        if not model:
            reason = NATIVE_LOG.first_error or "not a GGUF model it supports"
            raise ValueError(f"llama.cpp could not load {path}: {reason}")
        context_params = lc.llama_context_default_params()
        context_params.n_ctx = KV_CELLS
        context_params.n_batch = context_params.n_ubatch = PROMPT_BATCH
        context_params.n_seq_max = PARALLEL
        context_params.kv_unified = True  # the samples share the prompt's cells
        context_params.n_threads = context_params.n_threads_batch = threads
        context = lc.llama_init_from_model(model, context_params)
        if not context:
            lc.llama_model_free(model)
            raise ValueError(f"llama.cpp could not create a context of {KV_CELLS} cells for {path}")
        self.model, self.context = model, context
        self.batch = lc.llama_batch_init(max(PROMPT_BATCH, PARALLEL), 0, 1)
        self._finalizer = weakref.finalize(self, _free, lc, model, context, self.batch)
        self.memory = lc.llama_get_memory(context)
        self.vocab = lc.llama_model_get_vocab(model)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        self.cells = lc.llama_n_ctx(context)
        self.positions = min(lc.llama_model_n_ctx_train(model), self.cells)
        self.pieces = [self._piece(t, special=False) for t in range(self.n_vocab)]
        self.ends = np.array([bool(lc.llama_vocab_is_eog(self.vocab, t)) for t in range(self.n_vocab)])
        self.stops = self.ends | np.array([b"\n" in piece for piece in self.pieces])  # the end of a tactic
        bos = lc.llama_vocab_bos(self.vocab)
        self.bos_text = self._piece(bos, special=True).decode("utf-8", "replace") if bos >= 0 else ""
        eos = lc.llama_vocab_eos(self.vocab)
        eos_text = self._piece(eos, special=True).decode("utf-8", "replace") if eos >= 0 else ""
        template = lc.llama_model_chat_template(model, None)
        self.chat_template = ChatTemplate(template.decode(), self.bos_text, eos_text) if template else None
        self.cached: list[int] = []  # the tokens of sequence 0 in the cache: the last prompt

    def close(self) -> None:
        """Free llama.cpp's model and context now (otherwise when this object is collected)."""
        self._finalizer()

    def _piece(self, token: int, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self.lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self.lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def tokenize(self, text: str) -> list[int]:
        """``text``'s tokens, special tokens parsed, the model's BOS added unless the text starts with it."""
        data = text.encode()
        add_special = not (self.bos_text and text.startswith(self.bos_text))
        capacity = len(data) + 2
        tokens = (self.lib.llama_token * capacity)()
        n = self.lib.llama_tokenize(self.vocab, data, len(data), tokens, capacity, add_special, True)
        if n < 0:
            capacity = -n
            tokens = (self.lib.llama_token * capacity)()
            n = self.lib.llama_tokenize(self.vocab, data, len(data), tokens, capacity, add_special, True)
        return list(tokens[:n])

    def text(self, tokens: Sequence[int]) -> str:
        return b"".join(self.pieces[t] for t in tokens).decode("utf-8", "replace")

    def prompt_budget(self, max_new_tokens: int) -> int:
        budget = self.positions - max_new_tokens
        if budget < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the model's "
                             f"{self.positions} positions")
        return budget

    def _decode(self, entries: Sequence[tuple[int, int, int]], want_logits: Sequence[bool]) -> None:
        """Decode ``(token, position, sequence)`` entries in one batch."""
        batch = self.batch
        for i, ((token, position, sequence), logits) in enumerate(zip(entries, want_logits, strict=True)):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = sequence
            batch.logits[i] = logits
        batch.n_tokens = len(entries)
        status = self.lib.llama_decode(self.context, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed (status {status}) on a batch of {len(entries)} tokens")

    def _logits(self, rows: int) -> np.ndarray:
        """A copy of the last decode's logits (one row per token that asked for them)."""
        pointer = self.lib.llama_get_logits(self.context)
        return np.ctypeslib.as_array(pointer, shape=(rows, self.n_vocab)).copy()

    def evaluate_prompt(self, tokens: list[int]) -> np.ndarray:
        """Put ``tokens`` in sequence 0 of the cache, decoding only what differs from the
        cached prompt (at least the last token, for its logits); returns those logits."""
        keep = 0
        for cached, token in zip(self.cached, tokens[:-1], strict=False):
            if cached != token:
                break
            keep += 1
        if not self.lib.llama_memory_seq_rm(self.memory, 0, keep, -1):  # recurrent models cannot cut a sequence
            self.lib.llama_memory_clear(self.memory, True)
            keep = 0
        self.cached = []
        for start in range(keep, len(tokens), PROMPT_BATCH):
            chunk = tokens[start:start + PROMPT_BATCH]
            self._decode([(t, start + i, 0) for i, t in enumerate(chunk)],
                         [start + i == len(tokens) - 1 for i in range(len(chunk))])
        self.cached = list(tokens)
        return self._logits(1)[0]

    def sample(self, prompt_logits: np.ndarray, num_samples: int, temperature: float, max_new_tokens: int,
               may_stop_at_once: bool, rng: np.random.Generator,
               stop_texts: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """``num_samples`` continuations of the cached prompt, in rounds of at most
        :data:`PARALLEL` that fit the cache, as ``(text, mean log-probability)``.

        A continuation ends at a newline (the end of a tactic) or, when ``stop_texts``
        is given (a whole proof), at an end-of-generation token or one of those texts."""
        fit = max(1, (self.cells - len(self.cached)) // max_new_tokens)
        out: list[tuple[str, float]] = []
        while len(out) < num_samples:
            size = min(PARALLEL, fit, num_samples - len(out))
            out += self._round(prompt_logits, size, temperature, max_new_tokens, may_stop_at_once, rng, stop_texts)
        return out

    def _ended(self, token: int, tokens: list[int], stop_texts: Sequence[str] | None) -> bool:
        if stop_texts is None:
            return bool(self.stops[token])
        if self.ends[token]:
            return True
        tail = self.text(tokens[-64:])
        return any(stop in tail for stop in stop_texts)

    def _round(self, prompt_logits: np.ndarray, size: int, temperature: float, max_new_tokens: int,
               may_stop_at_once: bool, rng: np.random.Generator,
               stop_texts: Sequence[str] | None) -> list[tuple[str, float]]:
        start = len(self.cached)
        for sequence in range(1, size):
            self.lib.llama_memory_seq_cp(self.memory, 0, sequence, -1, -1)
        tokens: list[list[int]] = [[] for _ in range(size)]
        sums = np.zeros(size)
        live = list(range(size))
        logits = np.repeat(prompt_logits[None, :], size, axis=0)
        # An empty tactic is no suggestion: without a prefix the first token may not end it.
        banned = None if may_stop_at_once else (self.stops if stop_texts is None else self.ends)
        try:
            while live:
                picks, logprobs = sample_tokens(logits, temperature, rng, banned)
                banned = None
                going: list[tuple[int, int, int]] = []
                for sequence, token, logprob in zip(live, picks.tolist(), logprobs.tolist(), strict=True):
                    tokens[sequence].append(token)
                    sums[sequence] += logprob
                    if not self._ended(token, tokens[sequence], stop_texts) and len(tokens[sequence]) < max_new_tokens:
                        going.append((token, start + len(tokens[sequence]) - 1, sequence))
                live = [sequence for _, _, sequence in going]
                if going:
                    self._decode(going, [True] * len(going))
                    logits = self._logits(len(going))
        finally:
            for sequence in range(1, size):
                self.lib.llama_memory_seq_rm(self.memory, sequence, -1, -1)
            self.lib.llama_memory_seq_rm(self.memory, 0, start, -1)
        return [(self.text(toks), float(total) / len(toks)) for toks, total in zip(tokens, sums, strict=True)]


class LlamaCppGenerator:
    """Generator over one GGUF model with llama.cpp; thread-safe (one lock), loads on first use."""

    def __init__(self, settings: GeneratorSettings):
        path = Path(settings.model).expanduser()
        if not path.is_file():
            raise ValueError(f"the llamacpp backend needs a GGUF model file (--gguf FILE); "
                             f"{settings.model!r} is not a file")
        if settings.num_beams > 0:
            raise ValueError("the llamacpp backend samples; beam search (num_beams) is not available with it")
        try:
            import llama_cpp
        except ImportError as exc:
            raise ImportError(INSTALL_HINT) from exc
        route_native_log(llama_cpp)
        self._llama_cpp = llama_cpp
        self.settings = settings
        self.path = path
        self.format = get_format(settings.prompt_format)
        self.proof_format = get_proof_format(settings.proof_format)
        self.offload_layers = gpu_layers(settings.device, llama_cpp.llama_supports_gpu_offload())  # fails now
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(settings.seed)
        self.model: LlamaModel | None = None

    def load(self) -> LlamaModel:
        """Load the model (once; safe to call from several threads)."""
        with self._lock:
            return self._loaded()

    def _loaded(self) -> LlamaModel:
        if self.model is None:
            threads = self.settings.cpu_threads or default_threads()
            self.model = LlamaModel(self._llama_cpp, self.path, threads, self.offload_layers)
            log.info("loaded %s with llama.cpp (%d threads, %s)", self.path, threads,
                     "GPU offload" if self.offload_layers else "CPU")
        return self.model

    def warmup(self) -> None:
        """Load the model and generate a few tokens, so the first request is not slow."""
        self.generate(GenerationRequest("⊢ True", "", num_samples=2, temperatures=(1.0,), max_new_tokens=4))

    def close(self) -> None:
        """Free the model now; a later request loads it again."""
        with self._lock:
            if self.model is not None:
                self.model.close()
                self.model = None

    def prompt(self, request: GenerationRequest, model: LlamaModel) -> Prompt:
        if request.proof is not None:
            return self.proof_format.render(request.proof, request.tactic_state, tokenizer=model.chat_template)
        return self.format.render(request.tactic_state, request.prefix, tokenizer=model.chat_template)

    def generate(self, request: GenerationRequest) -> list[Candidate]:
        """Next tactics (whole proofs for a ``proof`` request); a request's ``seed`` makes its
        samples reproducible, otherwise they continue the generator's seeded sequence."""
        whole = request.proof is not None
        with self._lock:
            model = self._loaded()
            prompt = self.prompt(request, model)
            tokens = model.tokenize(prompt.text + prompt.decoder_prefix)
            tokens = tokens[-model.prompt_budget(request.max_new_tokens):]
            prompt_logits = model.evaluate_prompt(tokens)
            rng = self._rng if request.seed is None else np.random.default_rng(request.seed)
            outputs: list[tuple[str, float]] = []
            for temperature in request.temperatures:
                n = request.num_samples if temperature > 0 else 1
                outputs += model.sample(prompt_logits, n, temperature, request.max_new_tokens,
                                        may_stop_at_once=whole or bool(request.prefix), rng=rng,
                                        stop_texts=self.proof_format.stop if whole else None)
        if whole:
            return postprocess_proofs(prompt.answer_start, outputs, self.proof_format.stop)
        return postprocess(request.prefix, outputs)
