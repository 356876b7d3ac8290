"""Prove the protocol layer on a recorded REPL transcript.

``python -m leanstep.repl.replay IN EXPECTED`` decodes every request in IN and
every response in EXPECTED into typed objects, re-encodes each, and exits 0
only if every re-encoded value equals the original as a JSON value. Any
difference is printed as a readable diff.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from leanstep.repl.protocol import (
    ProtocolError,
    Request,
    Response,
    decode_request,
    response_from_json,
    split_frames,
)

Decoder = Callable[[object], Request | Response]


@dataclass
class ReplayReport:
    requests: int = 0
    responses: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _pretty(value: object) -> list[str]:
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False).splitlines()


def _check(kind: str, index: int, original: object, decode: Decoder, report: ReplayReport) -> None:
    try:
        again = decode(original).to_json()
    except (ProtocolError, KeyError, TypeError) as exc:
        report.failures.append(f"{kind} {index}: does not decode: {exc}")
        return
    if again != original:
        diff = "\n".join(difflib.unified_diff(_pretty(original), _pretty(again), "recorded", "re-encoded", lineterm=""))
        report.failures.append(f"{kind} {index}: re-encoded value differs\n{diff}")


def replay(requests_path: Path, responses_path: Path) -> ReplayReport:
    """Round-trip every request and response of one transcript pair."""
    report = ReplayReport()
    passes: tuple[tuple[str, Path, Decoder], ...] = (("request", requests_path, decode_request),
                                                     ("response", responses_path, response_from_json))
    for kind, path, decode in passes:
        for index, block in enumerate(split_frames(path.read_text(encoding="utf-8")), start=1):
            try:
                original = json.loads(block)
            except json.JSONDecodeError as exc:
                report.failures.append(f"{kind} {index} in {path.name}: not JSON: {exc}")
                continue
            _check(kind, index, original, decode, report)
            if kind == "request":
                report.requests += 1
            else:
                report.responses += 1
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leanstep.repl.replay", description=__doc__.splitlines()[0])
    parser.add_argument("requests", type=Path, help="REPL input transcript (*.in)")
    parser.add_argument("responses", type=Path, help="recorded REPL output (*.expected.out)")
    args = parser.parse_args(argv)
    report = replay(args.requests, args.responses)
    for failure in report.failures:
        print(failure, file=sys.stderr)
    status = "ok" if report.ok else f"{len(report.failures)} failure(s)"
    print(f"{args.requests.name}: {report.requests} requests, {report.responses} responses: {status}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
