"""Tiny language models built locally (nothing is downloaded), saved with
``save_pretrained`` so tests load them through the same ``from_pretrained`` path
real models take.

* :func:`build_tiny_causal`: a 2-layer GPT-NeoX with a word-level tokenizer whose
  end-of-sequence token is the newline, so every token sequence the model can
  produce decodes to a different tactic (beam-search tests rely on this).
* :func:`build_tiny_seq2seq`: a 2-layer byte-level T5 (ByT5 tokenizer, which
  needs no vocabulary file), the shape of LeanCopilot's tactic generator.
"""

from __future__ import annotations

from pathlib import Path

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
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab_size = save_word_tokenizer(path)

    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        rotary_pct=0.25,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=1,
        tie_word_embeddings=False,
    )
    model = GPTNeoXForCausalLM(config)
    with torch.no_grad():  # larger weights than the default init: peaked, varied outputs
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    model.save_pretrained(path)
    return path


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
