"""vLLM backend: in-process ``vllm.LLM``, one call for all samples of a temperature.

vLLM is an optional dependency (``pip install leanstep[vllm]``) and is imported
only when this generator is built.
"""

from __future__ import annotations

import threading
from typing import Any

from .base import Candidate, GenerationRequest, GeneratorSettings, postprocess, postprocess_proofs
from .prompts import Prompt, get_format
from .proofs import get_proof_format

INSTALL_HINT = "the vllm backend needs vLLM: pip install leanstep[vllm]"


def _mean_logprob(output: Any) -> float:
    """Mean token log-probability of one vLLM CompletionOutput (0.0 when unknown)."""
    total = getattr(output, "cumulative_logprob", None)
    n = len(getattr(output, "token_ids", ()) or ())
    if total is None:
        logprobs = getattr(output, "logprobs", None) or []
        values: list[float] = []
        for tok, entry in zip(getattr(output, "token_ids", ()), logprobs, strict=False):  # logprobs may stop early
            lp = entry.get(tok) if isinstance(entry, dict) else None
            if lp is not None:  # a vLLM Logprob, or a bare float from older versions
                values.append(float(lp.logprob if hasattr(lp, "logprob") else lp))
        if not values:
            return 0.0
        total, n = sum(values), len(values)
    return float(total) / max(1, n)


class VLLMGenerator:
    """Generator running a model in-process with vLLM (GPU)."""

    def __init__(self, settings: GeneratorSettings):
        try:
            import vllm
        except ImportError as exc:
            raise ImportError(INSTALL_HINT) from exc
        self._vllm = vllm
        self.settings = settings
        self.format = get_format(settings.prompt_format)
        self.proof_format = get_proof_format(settings.proof_format)
        dtype = settings.dtype if settings.dtype not in ("", "auto") else "auto"
        self.llm = vllm.LLM(model=settings.model, dtype=dtype, trust_remote_code=settings.trust_remote_code)
        self.tokenizer = self.llm.get_tokenizer()
        self._lock = threading.Lock()

    def warmup(self) -> None:
        self.generate(GenerationRequest("⊢ True", "", num_samples=2, temperatures=(1.0,), max_new_tokens=4))

    def generate(self, request: GenerationRequest) -> list[Candidate]:
        """Next tactics (stop at the newline), or whole proofs (stop at the proof format's closing fence)."""
        prompt: Prompt
        if request.proof is not None:
            prompt = self.proof_format.render(request.proof, request.tactic_state, tokenizer=self.tokenizer)
            stop = list(self.proof_format.stop) or None
        else:
            prompt = self.format.render(request.tactic_state, request.prefix, tokenizer=self.tokenizer)
            stop = ["\n"]
        text = prompt.text + prompt.decoder_prefix
        outputs: list[tuple[str, float]] = []
        with self._lock:
            if self.settings.num_beams > 0:
                outputs += self._beam(text, request)
            else:
                for temperature in request.temperatures:
                    params = self._vllm.SamplingParams(
                        n=request.num_samples if temperature > 0 else 1,
                        temperature=temperature,
                        max_tokens=request.max_new_tokens,
                        stop=stop,
                        logprobs=0,
                        seed=request.seed,
                    )
                    result = self.llm.generate([text], params, use_tqdm=False)[0]
                    outputs += [(o.text, _mean_logprob(o)) for o in result.outputs]
        if request.proof is not None:
            return postprocess_proofs(prompt.answer_start, outputs, self.proof_format.stop)
        return postprocess(request.prefix, outputs)

    def _beam(self, text: str, request: GenerationRequest) -> list[tuple[str, float]]:
        try:
            from vllm.sampling_params import BeamSearchParams
        except ImportError as exc:  # pragma: no cover - old vLLM
            raise RuntimeError("this vLLM version has no beam search (BeamSearchParams)") from exc
        params = BeamSearchParams(beam_width=self.settings.num_beams, max_tokens=request.max_new_tokens)
        result = self.llm.beam_search([{"prompt": text}], params)[0]
        out = []
        for seq in result.sequences:
            # Beam sequences hold the prompt too; keep what follows it.
            body = seq.text.removeprefix(text)
            n = max(1, len(seq.tokens) - len(self.tokenizer(text)["input_ids"]))
            out.append((body, float(seq.cum_logprob) / n))
        return out
