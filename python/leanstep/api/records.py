"""Our own flat records: a result as ``leanstep verify`` writes it (one JSONL line), and snippets as we read them.

A snippet record may use the field names of the data people bring: ``id``,
``custom_id`` (Kimina's) or ``name`` for the id, and ``code``, ``proof``
(Kimina's) or ``full_proof`` for the text, ``statement`` or
``formal_statement`` (the datasets' name) for the formal statement the proof
must prove, and ``group`` or ``problem_id`` for the problem a sample belongs to
(for "first valid wins"); the first one present wins (and ``header`` for a problem
``leanstep eval`` proves). The CLI reads its JSONL input with it, and the Python APIs (``Client.verify``,
``RayVerifier.verify``) accept such dicts next to the domain's own inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from leanstep.api.common import verdict_json
from leanstep.check.verify import Snippet, SnippetLike, VerifyResult, as_snippet

ID_FIELDS = ("id", "custom_id", "name")
CODE_FIELDS = ("code", "proof", "full_proof")
STATEMENT_FIELDS = ("statement", "formal_statement")
GROUP_FIELDS = ("group", "problem_id")
HEADER_FIELDS = ("header",)


def json_objects(path: Path, what: str = "a JSON object") -> Iterator[tuple[int, dict[str, Any]]]:
    """The objects of a JSON-lines file with their line numbers (blank lines skipped); a line that is not a JSON
    object is a ValueError naming the file and the line (``what`` says what was expected)."""
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno}: expected {what}")  # noqa: TRY004 - one error type for bad input
            yield lineno, obj


def json_line(record: Mapping[str, Any]) -> str:
    """One line of the JSON-lines files the commands write: the record, its text not ``\\u``-escaped, then a
    newline."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def snippet_from_record(record: Mapping[str, Any], default_id: str | int) -> Snippet:
    """A snippet from a record; ``default_id`` (a line number, an index) when it names none."""
    sid = next((record[k] for k in ID_FIELDS if k in record), default_id)
    code = next((record[k] for k in CODE_FIELDS if k in record), None)
    if not isinstance(code, str):
        raise ValueError(f"snippet {str(sid)!r} has no `code` (or `proof`) string")  # noqa: TRY004
    statement = next((record[k] for k in STATEMENT_FIELDS if record.get(k) is not None), None)
    if statement is not None and not isinstance(statement, str):
        raise ValueError(f"snippet {str(sid)!r}: `statement` must be a string")
    group = next((record[k] for k in GROUP_FIELDS if record.get(k) is not None), None)
    if group is not None and (isinstance(group, bool) or not isinstance(group, (str, int))):
        raise ValueError(f"snippet {str(sid)!r}: `group` must be a string or an integer")
    return Snippet(str(sid), code, statement, None if group is None else str(group))



def problem_from_record(record: Mapping[str, Any], default_id: str | int) -> tuple[str, str, str]:
    """``(id, header, statement)`` of a problem to prove (``leanstep eval``'s input): the id as for snippets,
    ``header`` (imports and ``open`` lines; default none), and the ``statement`` or ``formal_statement``."""
    pid = next((record[k] for k in ID_FIELDS if k in record), default_id)
    statement = next((record[k] for k in STATEMENT_FIELDS if record.get(k) is not None), None)
    if not isinstance(statement, str):
        raise ValueError(f"problem {str(pid)!r} has no `statement` (or `formal_statement`) string")  # noqa: TRY004
    header = next((record[k] for k in HEADER_FIELDS if record.get(k) is not None), "")
    if not isinstance(header, str):
        raise ValueError(f"problem {str(pid)!r}: `header` must be a string")  # noqa: TRY004
    return str(pid), header, statement


def snippet_of(item: SnippetLike | Mapping[str, Any], index: int) -> Snippet:
    """A snippet from anything the Python APIs take: a record, or what ``check.verify.as_snippet`` reads."""
    if isinstance(item, Mapping):
        return snippet_from_record(item, index)
    return as_snippet(item, index)


def result_record(result: VerifyResult) -> dict[str, Any]:
    """Our flat record of a result: Kimina's fields without its nesting, plus ``verdict``, the ``trust`` it was
    checked at and its ``reasons`` (``{"code", "message"}`` objects, as in the server's answers)."""
    out: dict[str, Any] = {"id": result.id, **verdict_json(result.verdict, result.trust, result.reasons),
                           "time": round(result.time, 6)}
    if result.error is not None:
        out["error"] = result.error
    if result.repl_message is not None:
        out["repl_message"] = result.repl_message
    out["messages"] = [m.to_json() for m in result.messages]
    out["sorries"] = [s.to_json() for s in result.sorries]
    if result.axioms is not None:
        out["axioms"] = result.axioms
    if result.infotree is not None:
        out["infotree"] = result.infotree
    if result.cached:
        out["cached"] = True
    return out


__all__ = ["CODE_FIELDS", "GROUP_FIELDS", "HEADER_FIELDS", "ID_FIELDS", "STATEMENT_FIELDS", "json_objects",
           "problem_from_record", "result_record",
           "snippet_from_record", "snippet_of"]
