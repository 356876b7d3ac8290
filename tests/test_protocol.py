"""The protocol layer: typed requests and responses, proven on real REPL transcripts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import older_transcript_pairs, transcript_pairs

from leanstep.repl.protocol import (
    CommandRequest,
    CommandResponse,
    ErrorResponse,
    FileRequest,
    PickleEnvRequest,
    ProtocolError,
    TacticRequest,
    TacticResponse,
    UnpickleProofStateRequest,
    check_frame,
    decode_request,
    decode_response,
    encode_request,
    split_frames,
)
from leanstep.repl.replay import replay

PAIRS = transcript_pairs()
OLDER = older_transcript_pairs()
OLDER_PAIRS = [(tag, i, o) for tag, pairs in OLDER.items() for i, o in pairs]


def test_transcripts_are_present():
    # 57 pairs were recorded (core and Mathlib); the replay test below must see all of them.
    assert len(PAIRS) >= 50, "recorded REPL transcripts not found; set LEANSTEP_TRANSCRIPTS"
    assert any("Mathlib" in str(p) for p, _ in PAIRS)


@pytest.mark.parametrize("requests, responses", PAIRS, ids=[p.stem for p, _ in PAIRS])
def test_replay_round_trips_every_recorded_exchange(requests, responses):
    report = replay(requests, responses)
    assert report.ok, "\n".join(report.failures)
    assert report.requests > 0 and report.responses > 0


def test_transcripts_of_older_repl_releases_are_present():
    # tests/fixtures/repl-transcripts-older/INDEX.md: 25 + 51 + 51 + 63 pairs at four release tags.
    assert {tag: len(pairs) for tag, pairs in OLDER.items()} == {"v4.16.0": 51, "v4.19.0": 63, "v4.3.0": 25,
                                                                 "v4.9.0": 51}


@pytest.mark.parametrize("tag, requests, responses", OLDER_PAIRS,
                         ids=[f"{tag}-{p.stem}" for tag, p, _ in OLDER_PAIRS])
def test_replay_round_trips_what_older_repl_releases_printed(tag, requests, responses):
    report = replay(requests, responses)
    assert report.ok, f"{tag}:\n" + "\n".join(report.failures)
    assert report.requests > 0 and report.responses > 0


def _responses(path):
    return [decode_response(block) for block in split_frames(path.read_text(encoding="utf-8"))]


def test_a_tactic_answer_without_proof_status_decodes_as_a_tactic_answer():
    """Before v4.19.0 the REPL sends {"proofState", "goals"} and no proofStatus (readme: apply, then exact)."""
    older = OLDER["v4.16.0"]
    readme = next(out for i, out in older if i.stem == "readme")
    answers = _responses(readme)
    tactic_answers = [r for r in answers if isinstance(r, TacticResponse)]
    assert len(tactic_answers) == 2
    assert all(r.proof_status is None and not r.completed for r in tactic_answers)
    assert tactic_answers[-1].goals == ()
    assert all("proofStatus" not in r.to_json() for r in tactic_answers)
    current = _responses(next(out for i, out in PAIRS if i.stem == "readme"))
    assert [r.proof_status for r in current if isinstance(r, TacticResponse)][-1] == "Completed"


def test_tactic_entries_without_used_constants_stay_without_them():
    """v4.9.0's allTactics entries carry no usedConstants; re-encoding must not invent an empty list."""
    all_tactics = next(out for i, out in OLDER["v4.9.0"] if i.stem == "all_tactics")
    (answer,) = _responses(all_tactics)
    assert isinstance(answer, CommandResponse) and answer.tactics
    assert all(t.used_constants is None for t in answer.tactics)
    assert all("usedConstants" not in entry for entry in answer.to_json()["tactics"])
    (current,) = _responses(next(out for i, out in PAIRS if i.stem == "all_tactics"))
    assert all(t.used_constants is not None for t in current.tactics)


def test_a_proof_status_that_is_not_text_is_refused():
    with pytest.raises(ProtocolError, match="proofStatus must be a string"):
        decode_response('{"proofStatus": 3, "proofState": 1, "goals": []}')


def test_replay_command_line_passes_and_reports_a_difference(tmp_path):
    good_in, good_out = PAIRS[0]
    ok = subprocess.run([sys.executable, "-m", "leanstep.repl.replay", str(good_in), str(good_out)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.expected.out"
    bad.write_text('{"env": 0, "surprise": 1}\n\n', encoding="utf-8")
    failed = subprocess.run([sys.executable, "-m", "leanstep.repl.replay", str(good_in), str(bad)],
                            capture_output=True, text=True)
    assert failed.returncode == 1
    assert "surprise" in failed.stderr


def test_encoding_is_one_line_plus_one_blank_line_with_escaped_newlines():
    wire = encode_request(CommandRequest("theorem t : 1 = 1 := by\n  rfl", env=3))
    assert wire.endswith(b"\n\n") and wire.count(b"\n") == 2
    assert json.loads(wire) == {"cmd": "theorem t : 1 = 1 := by\n  rfl", "env": 3}


def test_non_ascii_is_sent_as_utf8():
    wire = encode_request(CommandRequest("example : ∀ x : ℕ, x = x := fun _ => rfl"))
    assert "ℕ".encode() in wire


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: CommandRequest("def f := 1", env=-1), "env must be a non-negative integer"),
        (lambda: CommandRequest("def f := 1", env="3"), "env must be a non-negative integer"),
        (lambda: CommandRequest("def f := 1", env=True), "env must be a non-negative integer"),
        (lambda: CommandRequest("def f := 1", all_tactics="true"), "allTactics must be a boolean"),
        (lambda: CommandRequest("def f := 1", infotree="everything"), "infotree must be one of"),
        (lambda: CommandRequest(42), "cmd must be a string"),
        (lambda: CommandRequest("def f := 1\x00"), "NUL"),
        (lambda: CommandRequest("def f := '\ud800'"), "not valid Unicode"),
        (lambda: TacticRequest("", 0), "tactic must not be empty"),
        (lambda: TacticRequest("rfl", -2), "proofState must be a non-negative integer"),
        (lambda: FileRequest(""), "path must not be empty"),
        (lambda: PickleEnvRequest(1.5, "a.olean"), "env must be a non-negative integer"),
        (lambda: UnpickleProofStateRequest("p.olean", env=-1), "env must be a non-negative integer"),
    ],
)
def test_requests_that_would_kill_the_repl_are_rejected_before_sending(make, fragment):
    with pytest.raises(ProtocolError, match=fragment):
        make()


@pytest.mark.parametrize("line", ["# comment", "-- comment", "   ", '{"cmd":\n"x"}'])
def test_frames_the_repl_would_skip_or_corrupt_are_rejected(line):
    with pytest.raises(ProtocolError):
        check_frame(line)


def test_decode_request_follows_the_repl_dispatch_order():
    # An object with env, proofState and pickleTo pickles the *environment* (protocol §3.1).
    assert isinstance(decode_request({"env": 1, "proofState": 2, "pickleTo": "x"}), PickleEnvRequest)
    assert isinstance(decode_request({"cmd": "x", "env": 0, "pickleTo": "y"}), PickleEnvRequest)
    assert decode_request({"cmd": "x", "env": None}) == CommandRequest("x")
    with pytest.raises(ProtocolError, match="not a REPL request"):
        decode_request({"hello": 1})


def test_responses_decode_into_their_kinds():
    tactic = decode_response('{"proofStatus": "Completed", "proofState": 2, "goals": []}')
    assert isinstance(tactic, TacticResponse) and tactic.completed
    open_goals = decode_response(
        '{"proofStatus": "Incomplete: contains sorry", "proofState": 1, "goals": [],'
        ' "messages": [{"severity": "error", "pos": {"line": 0, "column": 0},'
        ' "endPos": {"line": 0, "column": 0}, "data": "Unknown identifier"}]}'
    )
    assert not open_goals.completed and open_goals.goals == () and open_goals.errors
    command = decode_response('{"env": 4, "messages": [{"severity": "warning", "pos": {"line": 1, "column": 2},'
                              ' "endPos": null, "data": "declaration uses `sorry`"}]}')
    assert isinstance(command, CommandResponse) and command.env == 4 and not command.errors
    assert command.messages[0].end_pos is None
    thrown = decode_response('{"message": "Lean error:\\n<input>:1:1: unknown tactic"}')
    assert isinstance(thrown, ErrorResponse) and thrown.is_lean_error


def test_pretty_printed_multiline_response_with_a_long_line_decodes():
    long_goal = "x" * 3_000_000
    text = '{"sorries":\n [{"proofState": 0,\n   "goal": "' + long_goal + '"}],\n "env": 0}'
    response = decode_response(text)
    assert response.sorries[0].goal == long_goal


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"weird": true}', '{"env": "zero"}', '{"proofStatus": "x"}'])
def test_garbage_is_a_protocol_error(text):
    with pytest.raises(ProtocolError):
        decode_response(text)
