"""Proof checking on the REPL pool: source splitting (``source``) and whole-proof verification (``verify``)."""

from leanstep.check.source import Declaration, SourceSplit, declarations, split_source
from leanstep.check.verify import (
    ALLOWED_AXIOMS,
    VERDICTS,
    ResultCache,
    Snippet,
    Verifier,
    VerifyOptions,
    VerifyResult,
    verify_batch,
    verify_code,
)

__all__ = [
    "ALLOWED_AXIOMS", "VERDICTS", "Declaration", "ResultCache", "Snippet", "SourceSplit", "Verifier",
    "VerifyOptions", "VerifyResult", "declarations", "split_source", "verify_batch", "verify_code",
]
