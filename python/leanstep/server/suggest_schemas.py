"""Request models of ``POST /suggest`` and llmstep's ``POST /``, validated strictly.

Strict types: ``"n": "8"`` or ``"check": "true"`` are rejected with a message
naming the field rather than guessed at. Unknown fields are ignored, so a newer
editor tactic that sends more (a request id, a client version) still works. File
text that goes to Lean (``context``, ``source``) must be text the REPL accepts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leanstep.suggest import SuggestRequest

__all__ = ["LlmstepBody", "Position", "SuggestBody"]

MAX_SAMPLES = 256
MAX_TIMEOUT_S = 600.0


def _lean_text(value: str | None) -> str | None:
    """``value`` if the REPL's protocol accepts it. It refuses NUL and lone surrogates; caught only
    there, they fail every checking lane and the editor gets unchecked suggestions, not a 422."""
    if value is None:
        return None
    nul = value.find("\x00")
    if nul >= 0:
        raise ValueError(f"contains a NUL character (at character {nul}), which Lean source cannot hold")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"is not valid Unicode text ({exc.reason} at character {exc.start})") from None
    return value


class Position(BaseModel):
    """The call's position in ``source``: 1-based line, 0-based column in Unicode code points."""

    model_config = ConfigDict(strict=True, extra="ignore")
    line: int = Field(ge=1)
    column: int = Field(ge=0)


class SuggestBody(BaseModel):
    """``POST /suggest`` (DESIGN §3.1)."""

    model_config = ConfigDict(strict=True, extra="ignore")
    tactic_state: str
    prefix: str = ""
    context: str | None = None
    source: str | None = None
    position: Position | None = None
    file_name: str | None = None
    n: int | None = Field(default=None, ge=1, le=MAX_SAMPLES)
    check: bool = True
    timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    include_invalid: bool = False

    @field_validator("context", "source")
    @classmethod
    def _file_text(cls, value: str | None) -> str | None:
        return _lean_text(value)

    @model_validator(mode="after")
    def _source_needs_position(self) -> SuggestBody:
        if (self.source is None) != (self.position is None):
            missing = "position" if self.position is None else "source"
            raise ValueError(f"`source` and `position` go together: `{missing}` is missing")
        return self

    def to_request(self) -> SuggestRequest:
        return SuggestRequest(
            tactic_state=self.tactic_state,
            prefix=self.prefix,
            context=self.context,
            source=self.source,
            position=(self.position.line, self.position.column) if self.position else None,
            file_name=self.file_name,
            n=self.n,
            check=self.check,
            timeout=self.timeout,
            include_invalid=self.include_invalid,
        )


class LlmstepBody(BaseModel):
    """llmstep's request: ``{"tactic_state", "prefix", "context"}``."""

    model_config = ConfigDict(strict=True, extra="ignore")
    tactic_state: str
    prefix: str = ""
    context: str | None = None

    @field_validator("context")
    @classmethod
    def _file_text(cls, value: str | None) -> str | None:
        return _lean_text(value)

    def to_request(self) -> SuggestRequest:
        return SuggestRequest(tactic_state=self.tactic_state, prefix=self.prefix, context=self.context)
