"""Tiny language models built locally (nothing is downloaded), saved with
``save_pretrained`` so tests load them through the same ``from_pretrained`` path
real models take.

* :func:`build_tiny_causal`: a 2-layer GPT-NeoX with a word-level tokenizer whose
  end-of-sequence token is the newline, so every token sequence the model can
  produce decodes to a different tactic (beam-search tests rely on this).
* :func:`build_tiny_seq2seq`: a 2-layer byte-level T5 (ByT5 tokenizer, which
  needs no vocabulary file), the shape of LeanCopilot's tactic generator.
* :func:`build_bpe_causal`: a GPT-NeoX with a byte-level BPE tokenizer trained
  here on a few lines of Lean, the tokenizer scheme of Pythia (llmstep's models),
  which llama.cpp's GGUF format can carry; the word-level tokenizer above cannot
  be expressed in GGUF (llama.cpp knows SentencePiece, byte-level BPE, WordPiece
  and Unigram vocabularies only). :func:`write_gguf` writes such a model as an
  F32 GGUF file with the ``gguf`` package, and :func:`quantize_gguf` quantises
  one with llama.cpp's own quantiser, so the llama.cpp backend is tested on a
  file loaded by llama.cpp's real loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Words of the causal model's vocabulary: Lean-ish, none containing whitespace.
WORDS = (
    "intro intros apply exact simp rw rfl omega linarith norm_num constructor cases induction "
    "use refine have show calc aesop decide trivial assumption contradiction exfalso "
    "h h1 h2 hx hy n m k x y z a b c f g p q "
    "Nat Nat.succ Nat.add_comm Nat.mul_comm mul_comm add_comm add_zero zero_add le_refl "
    "( ) [ ] { } ⟨ ⟩ : := = ≠ ≤ < + * - ^ , . ← → ↔ ∀ ∃ ⊢ ∧ ∨ ¬ 0 1 2 True False at with"
).split()


def save_word_tokenizer(path: Path | str, vocab_size: int | None = None) -> int:
    """Save the causal models' word-level tokenizer (``WORDS``, newline as end of sequence) to
    ``path``, padded with filler words ``w<i>`` up to ``vocab_size`` when that is larger; returns its size."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "\n": 1}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    while vocab_size is not None and len(vocab) < vocab_size:
        vocab[f"w{len(vocab)}"] = len(vocab)
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="\n", pad_token="\n")
    # "\n" must be matched before whitespace splitting: the eos token does that.
    tokenizer.save_pretrained(path)
    return len(vocab)


def build_tiny_causal(path: Path | str, seed: int = 0) -> Path:
    """Save a tiny causal LM and its tokenizer to ``path``; returns the path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab_size = save_word_tokenizer(path)
    _save_gpt_neox(path, TINY_SHAPE, vocab_size=vocab_size, eos_id=1, seed=seed, init_std=0.3)
    return path


# The tiny GPT-NeoX both causal models share (``vocab_size`` comes from the tokenizer).
TINY_SHAPE: dict[str, Any] = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    rotary_pct=0.25,
    max_position_embeddings=512,
)


def _save_gpt_neox(path: Path, shape: dict[str, Any], vocab_size: int, eos_id: int, seed: int,
                   init_std: float | None) -> None:
    """Save a GPT-NeoX of ``shape`` with random weights; ``init_std`` (weight matrices only)
    replaces the default initialisation: larger weights give peaked, varied outputs."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        **{**shape, "vocab_size": vocab_size},
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        tie_word_embeddings=False,
    )
    model = GPTNeoXForCausalLM(config)
    if init_std is not None:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.normal_(0.0, init_std)
    model.save_pretrained(path)


def build_tiny_seq2seq(path: Path | str, seed: int = 0) -> Path:
    """Save a tiny byte-level T5 and a ByT5 tokenizer to ``path``; returns the path."""
    import torch
    from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = ByT5Tokenizer()
    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        is_encoder_decoder=True,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    model = T5ForConditionalGeneration(config)
    model.save_pretrained(path)
    return path


# What the BPE tokenizer is trained on: the words above, prompts of the proofstep
# format and a few tactic lines, so that common Lean words are single tokens.
BPE_CORPUS = (
    " ".join(WORDS),
    "[GOAL]n : Nat\nh : 0 < n\n⊢ n + 0 = n[PROOFSTEP]simp",
    "[GOAL]a b : Nat\n⊢ a + b = b + a[PROOFSTEP]rw [Nat.add_comm]",
    "intro h\nsimp at h\nexact h.1\napply Nat.succ_le_of_lt\nomega\nlinarith [h1, h2]\n",
)
EOS = "<|endoftext|>"


def build_bpe_causal(path: Path | str, seed: int = 0, shape: dict[str, Any] | None = None,
                     vocab_size: int | None = None, init_std: float | None = 0.3) -> Path:
    """Save a GPT-NeoX (:data:`TINY_SHAPE` unless ``shape`` is given) with a byte-level BPE
    tokenizer to ``path``; returns the path.

    The tokenizer is Pythia's scheme (byte-level pre-tokenizer with GPT-2's split rule,
    ``<|endoftext|>`` as end of sequence, no BOS added), trained here to about 400 tokens.
    ``vocab_size`` makes the model's vocabulary larger than the tokenizer's, as Pythia pads
    its 50277 tokens to 50304 rows: a Pythia-shaped benchmark model keeps its real output
    layer. The newline is a token of its own, and the model's end of a tactic.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(BPE_CORPUS * 3, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=EOS, eos_token=EOS, pad_token=EOS)
    tokenizer.save_pretrained(path)
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    _save_gpt_neox(path, shape or TINY_SHAPE, vocab_size=max(vocab_size or 0, len(tokenizer)), eos_id=eos_id,
                   seed=seed, init_std=init_std)
    return path


def write_gguf(model_dir: Path | str, target: Path | str) -> Path:
    """Write the GPT-NeoX model saved in ``model_dir`` (by :func:`build_bpe_causal`) to
    ``target`` as an F32 GGUF file; returns ``target``.

    The layout is what llama.cpp's ``gptneox`` loader reads: hyper-parameters under
    ``gptneox.*``, the tokenizer as a ``gpt2`` (byte-level BPE) vocabulary with GPT-2's
    pre-tokenizer and its merges, and tensors under llama.cpp's names, the fused
    query/key/value matrix regrouped from per-head (q, k, v) triples into whole q, k and v
    blocks. Vocabulary rows beyond the tokenizer's are unused padding tokens.
    """
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, target = Path(model_dir), Path(target)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    cfg = model.config
    heads, hidden = cfg.num_attention_heads, cfg.hidden_size
    rope = cfg.rope_parameters
    writer = gguf.GGUFWriter(target, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.GPTNEOX])
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(hidden)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(heads)
    writer.add_rope_dimension_count(int(rope["partial_rotary_factor"] * (hidden // heads)))
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    writer.add_parallel_residual(cfg.use_parallel_residual)
    writer.add_layer_norm_eps(cfg.layer_norm_eps)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    special = set(tokenizer.all_special_ids)
    tokens, types = [], []
    for i in range(cfg.vocab_size):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_add_bos_token(False)
    gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=cfg.vocab_size).add_to_gguf(writer, quiet=True)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPTNEOX, cfg.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"{model_dir}: no GGUF name for tensor {name}")
        data = tensor.detach().float()
        if name.endswith("attention.query_key_value.weight"):
            data = data.reshape(heads, 3, hidden // heads, hidden).transpose(0, 1).reshape(3 * hidden, hidden)
        elif name.endswith("attention.query_key_value.bias"):
            data = data.reshape(heads, 3, hidden // heads).transpose(0, 1).reshape(3 * hidden)
        writer.add_tensor(gguf_name, data.contiguous().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def quantize_gguf(source: Path | str, target: Path | str, kind: str) -> Path:
    """Quantise a GGUF file with llama.cpp's quantiser (``kind``: Q8_0, Q4_0 or Q4_K_M); returns ``target``."""
    import ctypes

    import llama_cpp

    ftypes = {"Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "Q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
              "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftypes[kind]
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if status != 0:
        raise RuntimeError(f"quantising {source} to {kind} failed (llama.cpp status {status})")
    return Path(target)
