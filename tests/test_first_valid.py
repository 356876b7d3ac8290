"""First valid wins (pass@k): once one snippet of a group is valid, the group's later snippets not yet started
are answered ``skipped`` instead of being checked; the groups are checked in turn so early wins save the most,
and concurrent batches take turns too. A batch's deadline skips what would start too late."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
from conftest import write_jsonl

import leanstep.check.verdict as codes
from leanstep.check.verdict import Trust
from leanstep.check.verify import (
    INVALID,
    MIN_CHECK_SECONDS,
    SKIPPED,
    TIMEOUT,
    VALID,
    Deduplicator,
    Outcome,
    ResultCache,
    Snippet,
    Verifier,
    VerifyOptions,
)
from leanstep.client import Client
from leanstep.verify_cli import main as verify_main
from server_fixtures import running_server, sim_pool, wait_until

HEADER = "import Mathlib\n\n"


def valid(name: str) -> str:
    return f"{HEADER}theorem {name} : 2 + 2 = 4 := by norm_num"


def invalid(name: str, delay: float = 0.0) -> str:
    slow = f"\n  -- sim: delay {delay}" if delay else ""
    return f"{HEADER}theorem {name} : 2 + 2 = 5 := by{slow}\n  norm_num"


def samples(group: str, verdicts: str) -> list[Snippet]:
    """One snippet per letter: ``v`` valid, ``i`` invalid; ids ``group-k``."""
    return [Snippet(f"{group}-{k}", valid(f"{group}_{k}") if v == "v" else invalid(f"{group}_{k}"), group=group)
            for k, v in enumerate(verdicts)]


@pytest.fixture(scope="module")
def pool():
    with sim_pool(max_repls=1) as pool:
        yield pool


@pytest.fixture
def serial(pool):
    """One check at a time on one REPL: the order of ``on_result`` is the order checks ran in."""
    with Verifier(pool, threads=1) as verifier:
        yield verifier


FIRST_VALID = VerifyOptions(timeout=10, trust=Trust.LENIENT, first_valid=True)


def run(verifier, snippets, options=FIRST_VALID):
    order: list[str] = []
    results = verifier.verify_batch(snippets, options, lambda _, result: order.append(result.id))
    return {r.id: r for r in results}, order


def test_a_groups_later_samples_are_skipped_once_one_is_valid(serial):
    batch = samples("a", "ivii") + samples("b", "iiii")
    results, _ = run(serial, batch)
    assert [results[f"a-{k}"].verdict for k in range(4)] == [INVALID, VALID, SKIPPED, SKIPPED]
    assert all(results[f"b-{k}"].verdict == INVALID for k in range(4)), "an unsolved group is checked whole"
    skipped = results["a-2"]
    assert [r.code for r in skipped.reasons] == [codes.GROUP_SOLVED]
    assert "'a-1'" in skipped.reasons[0].message and "'a'" in skipped.reasons[0].message
    assert skipped.time == 0 and skipped.messages == () and skipped.error.startswith("not checked")


def test_groups_are_checked_in_turn_and_ungrouped_snippets_keep_their_place(serial):
    batch = [*samples("a", "iii"), *samples("b", "ii"), Snippet("loose", invalid("loose"))]
    _, order = run(serial, batch)
    assert order == ["a-0", "b-0", "loose", "a-1", "b-1", "a-2"]


def test_without_first_valid_every_sample_is_checked_in_input_order(serial):
    batch = samples("a", "vvv") + samples("b", "vi")
    results, order = run(serial, batch, VerifyOptions(timeout=10, trust=Trust.LENIENT))
    assert order == [s.id for s in batch]
    assert [results[s.id].verdict for s in batch] == [VALID, VALID, VALID, VALID, INVALID]


def test_a_snippet_without_a_group_is_never_skipped(serial):
    batch = [*samples("a", "v"), Snippet("loose", valid("a_loose"))]
    results, _ = run(serial, batch)
    assert results["loose"].verdict == VALID


def test_skipped_answers_are_not_cached(serial):
    batch = samples("c", "vv")
    first, _ = run(serial, batch)
    assert first["c-1"].verdict == SKIPPED
    again, _ = run(serial, batch, VerifyOptions(timeout=10, trust=Trust.LENIENT))
    assert again["c-1"].verdict == VALID and not again["c-1"].cached


def test_a_valid_answer_from_the_cache_solves_its_group(serial):
    serial.verify(Snippet("warm", valid("d_0")), FIRST_VALID)
    results, order = run(serial, samples("d", "vv"))
    assert results["d-0"].cached and results["d-0"].verdict == VALID
    assert results["d-1"].verdict == SKIPPED and order[-1] == "d-1"


def test_a_copy_shared_with_an_unsolved_group_is_still_checked(serial):
    shared = invalid("shared", 0.0)
    batch = [Snippet("e-0", valid("e_0"), group="e"), Snippet("e-1", shared, group="e"),
             Snippet("f-0", shared, group="f")]
    results, _ = run(serial, batch)
    assert results["e-1"].verdict == INVALID and results["f-0"].verdict == INVALID


def test_concurrent_checks_skip_every_sibling_that_takes_the_repl_after_the_valid_one(pool):
    """Two checks in flight on one REPL: the valid sample and at most one sibling run; the rest are skipped."""
    batch = [Snippet("g-0", valid("g_0"), group="g")] + \
        [Snippet(f"g-{k}", invalid(f"g_{k}", 0.05), group="g") for k in range(1, 6)]
    with Verifier(pool, threads=2) as verifier:
        results, _ = run(verifier, batch)
    assert results["g-0"].verdict == VALID
    assert results["g-1"].verdict in (INVALID, SKIPPED)
    assert [results[f"g-{k}"].verdict for k in range(2, 6)] == [SKIPPED] * 4
    assert verifier.stats().verdicts[SKIPPED] >= 4


def test_a_sample_before_the_first_valid_one_is_checked_although_a_later_one_was_valid_first():
    """Checks run in parallel and end in any order: a later sample found valid first skips only the samples
    after it, so every sample before the group's first valid one gets a verdict (pass@k needs that index)."""
    plan = Deduplicator(ResultCache(0)).plan(samples("m", "ivi"), FIRST_VALID)
    first, second, third = plan.checks
    plan.resolve(second, Outcome(VALID))
    assert plan.skipped(first) is None
    skipped = plan.skipped(third)
    assert skipped.verdict == SKIPPED and "'m-1', before it in group 'm'" in skipped.reasons[0].message
    plan.resolve(first, Outcome(VALID))  # the earliest valid one is the group's winner from now on
    assert "'m-0'" in plan.skipped(third).reasons[0].message


def test_concurrent_batches_take_turns_on_the_checking_threads(pool):
    """Two batches wait while both checking threads are busy; then their checks alternate, where a thread pool
    that serves requests in arrival order would run one batch's queued checks before the other's."""
    order: list[str] = []
    with Verifier(pool, threads=2) as verifier:
        def batch(name: str, codes_: list[str]) -> threading.Thread:
            snippets = [Snippet(f"{name}-{k}", code) for k, code in enumerate(codes_)]
            thread = threading.Thread(target=verifier.verify_batch, args=(snippets, FIRST_VALID,
                                                                          lambda _, r: order.append(r.id)))
            thread.start()
            return thread

        busy = batch("x", [invalid("x_0", 1.0), invalid("x_1")])  # one on the REPL, one waiting for it
        wait_until(lambda: pool.stats().queue_depth >= 1, 10, "the second check never waited for the REPL")
        waiting = [batch(name, [invalid(f"{name}_{k}") for k in range(3)]) for name in ("a", "b")]
        for thread in (busy, *waiting):
            thread.join(30)
    assert order[:2] == ["x-0", "x-1"]
    batches = [entry[0] for entry in order[2:]]
    assert sorted(batches) == ["a", "a", "a", "b", "b", "b"]
    assert all(one != other for one, other in zip(batches, batches[1:])), order


def test_no_check_starts_once_the_deadline_is_near_but_the_cache_still_answers(serial):
    serial.verify(Snippet("warm", valid("n_0")), FIRST_VALID)
    batch = [Snippet("n-0", valid("n_0")), Snippet("n-1", invalid("n_1"))]
    options = VerifyOptions(timeout=10, trust=Trust.LENIENT, deadline=time.monotonic() + MIN_CHECK_SECONDS / 2)
    results, _ = run(serial, batch, options)
    assert results["n-0"].verdict == VALID and results["n-0"].cached
    late = results["n-1"]
    assert late.verdict == SKIPPED and [r.code for r in late.reasons] == [codes.DEADLINE] and late.time == 0


def test_a_check_that_starts_before_the_deadline_ends_by_it(serial):
    options = VerifyOptions(timeout=30, trust=Trust.LENIENT, deadline=time.monotonic() + 1.0)
    started = time.monotonic()
    result = serial.verify(Snippet("slow", invalid("o_slow", 5.0)), options)
    assert result.verdict == TIMEOUT and time.monotonic() - started < 4
    assert "deadline" in result.reasons[0].message


# --------------------------------------------------------------------------- the wire, the client, the CLI


@pytest.fixture(scope="module")
def server():
    with running_server(max_repls=1, trust="lenient") as running:
        yield running


def test_verify_route_answers_skipped_with_its_reason_and_kiminas_error_field(server):
    codes_ = [{"custom_id": f"h-{k}", "proof": valid(f"h_{k}") if k == 0 else invalid(f"h_{k}"), "group": "h"}
              for k in range(4)]
    answer = requests.post(server.url + "/verify", json={"codes": codes_, "first_valid": True}, timeout=60).json()
    by_id = {r["custom_id"]: r for r in answer["results"]}
    assert by_id["h-0"]["verdict"] == "valid"
    for k in (2, 3):
        entry = by_id[f"h-{k}"]
        assert entry["verdict"] == "skipped" and "response" not in entry
        assert entry["error"].startswith("not checked") and entry["reasons"][0]["code"] == "group_solved"
    exact = requests.post(server.url + "/verify", json={"codes": codes_, "first_valid": True, "wire": "kimina-exact",
                                                        "disable_cache": True}, timeout=60).json()
    skipped = next(r for r in exact["results"] if r["custom_id"] == "h-3")
    assert set(skipped) == {"custom_id", "error"}


@pytest.mark.parametrize("group", [True, [1], {"a": 1}, 1.5])
def test_a_group_that_is_not_a_string_or_an_integer_is_a_422_naming_the_field(server, group):
    body = {"codes": [{"custom_id": "x", "proof": valid("x"), "group": group}], "first_valid": True}
    answer = requests.post(server.url + "/verify", json=body, timeout=30)
    assert answer.status_code == 422 and "codes.0.group" in answer.json()["detail"]


def test_integer_groups_are_groups(server):
    body = {"snippets": [{"id": f"i-{k}", "code": valid(f"i_{k}"), "group": 7} for k in range(3)],
            "first_valid": True, "reuse": False}
    results = requests.post(server.url + "/api/check", json=body, timeout=60).json()["results"]
    assert [r["verdict"] for r in results][2] == "skipped"


def test_the_client_keeps_each_group_in_one_request(server):
    """Groups of 6 with batch_size 4: were a group split, its last two samples would be checked elsewhere."""
    batch = [Snippet(f"{g}-{k}", valid(f"{g}_{k}") if k == 0 else invalid(f"{g}_{k}", 0.02), group=g)
             for g in ("j", "k") for k in range(6)]
    with Client(server.url) as client:
        results = client.verify(batch, batch_size=4, max_workers=1, timeout=30, reuse=False, first_valid=True)
    assert [r.id for r in results] == [s.id for s in batch]
    for g in ("j", "k"):
        verdicts = [r.verdict for r in results if r.id.startswith(f"{g}-")]
        assert verdicts[0] == VALID and verdicts[2:] == [SKIPPED] * 4


def test_leanstep_verify_first_valid_writes_skipped_records(tmp_path, capsys):
    records = [{"id": f"l-{k}", "code": valid(f"l_{k}") if k == 0 else invalid(f"l_{k}"), "problem_id": "l"}
               for k in range(4)]
    source = write_jsonl(tmp_path / "samples.jsonl", *records)
    out = tmp_path / "out.jsonl"
    rc = verify_main([str(source), "--repl", "sim", "--max-repls", "1", "--sandbox", "none", "--trust", "lenient",
                      "--first-valid", "--no-progress", "-o", str(out)])
    assert rc == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["verdict"] for w in written][2:] == ["skipped", "skipped"]
    assert written[3]["reasons"][0]["code"] == "group_solved"
    skipped = sum(w["verdict"] == "skipped" for w in written)
    assert f"/ {skipped} skipped in" in capsys.readouterr().err
