"""OpenAI-compatible completions backend (a vLLM or SGLang server, or any
service speaking ``POST {base_url}/completions``), over plain HTTP with requests.

One request per temperature asks for all samples (``n``); ``logprobs`` gives each
choice's token log-probabilities, whose mean is the candidate's score. There is
no tokenizer here, so the ``chat`` format renders its plain-instruction form.
"""

from __future__ import annotations

import math
from typing import Any

import requests

from .base import Candidate, GenerationRequest, GeneratorSettings, postprocess, postprocess_proofs
from .prompts import Prompt, get_format
from .proofs import get_proof_format


class OpenAIError(RuntimeError):
    """The completions endpoint could not be reached or gave an unusable answer."""


def _choice_score(choice: dict[str, Any]) -> float:
    logprobs = choice.get("logprobs") or {}
    values = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
    values = [v for v in (values or []) if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(values) / len(values) if values else 0.0


class OpenAIGenerator:
    """Generator calling an OpenAI-compatible ``/completions`` endpoint."""

    def __init__(self, settings: GeneratorSettings, session: requests.Session | None = None):
        if not settings.openai_base_url:
            raise ValueError("the openai backend needs a base URL (e.g. http://localhost:8000/v1)")
        self.settings = settings
        self.format = get_format(settings.prompt_format)
        self.proof_format = get_proof_format(settings.proof_format)
        self.url = settings.openai_base_url.rstrip("/") + "/completions"
        self.timeout = settings.request_timeout
        self.session = session or requests.Session()
        self.headers = {"Content-Type": "application/json"}
        if settings.openai_api_key:
            self.headers["Authorization"] = f"Bearer {settings.openai_api_key}"

    def warmup(self) -> None:
        """Nothing to load locally; one tiny request checks the endpoint answers."""
        self.generate(GenerationRequest("⊢ True", "", num_samples=1, temperatures=(0.0,), max_new_tokens=1))

    def prompt(self, request: GenerationRequest) -> Prompt:
        if request.proof is not None:
            return self.proof_format.render(request.proof, request.tactic_state)
        return self.format.render(request.tactic_state, request.prefix)

    def payload(self, request: GenerationRequest, temperature: float) -> dict[str, Any]:
        """The completions request: a tactic stops at the newline, a whole proof at its format's stop strings."""
        prompt = self.prompt(request)
        body: dict[str, Any] = {
            "model": self.settings.model,
            "prompt": prompt.text + prompt.decoder_prefix,
            "n": request.num_samples if temperature > 0 else 1,
            "temperature": temperature,
            "max_tokens": request.max_new_tokens,
            "logprobs": 1,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        stop = ["\n"] if request.proof is None else list(self.proof_format.stop)
        if stop:
            body["stop"] = stop
        if self.settings.num_beams > 0:  # vLLM's extension of the completions API
            body.update(n=self.settings.num_beams, use_beam_search=True, best_of=self.settings.num_beams,
                        temperature=0.0)
        return body

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = self.session.post(self.url, json=body, headers=self.headers, timeout=self.timeout)
        except requests.Timeout as exc:
            raise OpenAIError(f"{self.url} did not answer within {self.timeout:g} s") from exc
        except requests.RequestException as exc:
            raise OpenAIError(f"cannot reach {self.url}: {exc}") from exc
        if resp.status_code != 200:
            raise OpenAIError(f"{self.url} answered HTTP {resp.status_code}: {resp.text[:500]}")
        try:
            data = resp.json()
        except ValueError as exc:
            raise OpenAIError(f"{self.url} answered with invalid JSON: {resp.text[:200]!r}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise OpenAIError(f"{self.url} answered without a 'choices' list: {str(data)[:200]}")
        return data

    def generate(self, request: GenerationRequest) -> list[Candidate]:
        temperatures = (0.0,) if self.settings.num_beams > 0 else request.temperatures
        outputs: list[tuple[str, float]] = []
        for temperature in temperatures:
            data = self._post(self.payload(request, temperature))
            outputs += [(choice["text"], _choice_score(choice)) for choice in data["choices"]
                        if isinstance(choice, dict) and isinstance(choice.get("text"), str)]
        if request.proof is not None:
            return postprocess_proofs(self.prompt(request).answer_start, outputs, self.proof_format.stop)
        return postprocess(request.prefix, outputs)
