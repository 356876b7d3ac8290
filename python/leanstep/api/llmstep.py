"""llmstep's server contract, ``POST /``: ``{"tactic_state", "prefix", "context"}`` in, ``{"suggestions": [str]}`` out.

The unmodified llmstep tactic talks to this route, so it takes exactly those
fields and answers bare texts, best first, without the invalid ones (the
tactic cannot use them and has no field to say why).
"""

from __future__ import annotations

from leanstep.api.common import LeanText, StrictModel
from leanstep.check.tactics import CandidateStatus
from leanstep.suggest import SuggestRequest, SuggestResult


class LlmstepBody(StrictModel):
    """llmstep's request."""

    tactic_state: str
    prefix: str = ""
    context: LeanText | None = None

    def to_request(self) -> SuggestRequest:
        return SuggestRequest(tactic_state=self.tactic_state, prefix=self.prefix, context=self.context)


def llmstep_answer_json(result: SuggestResult) -> dict[str, list[str]]:
    return {"suggestions": [s.text for s in result.suggestions if s.status != CandidateStatus.INVALID]}


__all__ = ["LlmstepBody", "llmstep_answer_json"]
