"""The ways a proof is looked for, by name (the wire, the flags and the prover share them), and the reason a
proving stops at once: its caller left."""

from __future__ import annotations

from typing import Literal, get_args

# search: best-first over next tactics on a proof session; whole: complete proofs sampled
# and repaired with Lean's errors; auto: search first, then whole proofs with the time left.
Strategy = Literal["search", "whole", "auto"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
# ``stopped`` when the caller (a client that hung up or cancelled) no longer waits: nothing starts after it.
CALLER_LEFT = "client_left"
