"""Every cache of the server is monotone in its size, and `leanstep plan` computes each one's hits right.

The property tests drive the server's own classes on random traces: the result cache through the batch plan
that serves /verify, a worker's preamble envs (on a real simulated REPL) and goal states, and the pool's
header placement; a bigger cache must never hit less. The planner's one-pass curves must equal a replay
through those classes at every size, and the real pool, asked one header at a time, must place them as the
model the planner replays does.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import requests
from hypothesis import example, given, settings
from hypothesis import strategies as st

from leanstep.check.verdict import Verdict
from leanstep.check.verify import Deduplicator, Outcome, ResultCache, Snippet, VerifyOptions
from leanstep.cli import main as cli_main
from leanstep.perf.plan import header_plan, result_cache_plan
from leanstep.perf.trace import Segment, TraceEntry, read_trace
from leanstep.repl.launch import make_pool
from leanstep.repl.placement import Placement, PoolModel
from leanstep.repl.pool import GoalState, HeaderEnv, Worker
from leanstep.repl.process import ReplProcess
from leanstep.repl.protocol import CommandRequest
from conftest import SIM_ARGV
from server_fixtures import running_server, sim_config

HEADERS = [f"import Mathlib.H{k}" for k in range(8)]

# A snippet kind: which proof (a small alphabet, so that repeats happen), whether its verdict is definitive
# (valid/invalid: cached) and how long its check took; a request is a list of them, a trace a list of requests.
snippet_kinds = st.tuples(st.integers(0, 11), st.booleans(), st.sampled_from([0.1, 0.5, 2.0]))
requests_ = st.lists(st.tuples(st.lists(snippet_kinds, min_size=1, max_size=6), st.sampled_from([1.0, 60.0])),
                     min_size=1, max_size=25)


def outcome_of(definitive: bool, seconds: float) -> Outcome:
    return Outcome(Verdict.VALID if definitive else Verdict.TIMEOUT, time=seconds)


def code_of(proof: int) -> str:
    return f"import Mathlib\n\ntheorem p{proof} : {proof} + 1 = {proof + 1} := by norm_num"


def result_cache_hits(trace, size: int) -> int:
    """Serve ``trace`` through the batch plan /verify uses, on a result cache of ``size`` entries."""
    dedup = Deduplicator(ResultCache(size))
    kinds = {}  # a proof's verdict and cost are its own: the first time it is drawn fixes them
    for batch, timeout in trace:
        snippets = []
        for k, (proof, definitive, seconds) in enumerate(batch):
            kinds.setdefault(proof, (definitive, seconds))
            snippets.append(Snippet(f"s{k}", code_of(proof)))
        plan = dedup.plan(snippets, VerifyOptions(timeout=timeout))
        for check in plan.checks:
            proof = int(check.split.body.split()[1][1:])
            plan.resolve(check, outcome_of(*kinds[proof]))
    return dedup.cache.hits


@settings(max_examples=150, deadline=None)
@given(requests_, st.integers(0, 8))
def test_a_bigger_result_cache_never_hits_less(trace, size):
    assert result_cache_hits(trace, size + 1) >= result_cache_hits(trace, size)


@pytest.fixture(scope="module")
def sim_repl(tmp_path_factory):
    with ReplProcess(SIM_ARGV, name="plan-sim") as process:
        assert process.send(CommandRequest("import Mathlib"), timeout=30).env == 0
        yield process


def worker_on(process, tmp_path: Path, **slots) -> Worker:
    worker = Worker(1, "import Mathlib", tmp_path, **slots)
    worker.process = process
    worker.envs["import Mathlib"] = HeaderEnv(0, (), 0.0)
    return worker


def preamble_hits(process, texts, size: int) -> int:
    worker = worker_on(process, Path(tempfile.gettempdir()), preamble_slots=size)
    return sum(worker.preamble(f"def pre{t} := {t}", timeout=10).cached for t in texts)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=1, max_size=20), st.integers(0, 6))
def test_a_bigger_preamble_cache_never_elaborates_more(sim_repl, texts, size):
    assert preamble_hits(sim_repl, texts, size + 1) >= preamble_hits(sim_repl, texts, size)


def goal_state_hits(keys, size: int) -> int:
    worker = Worker(1, "", Path(tempfile.gettempdir()), goal_slots=size)
    hits = 0
    for key in keys:
        if worker.goal_state(str(key)) is not None:
            hits += 1
        else:
            worker.remember_goal_state(str(key), GoalState(key, (f"⊢ goal {key}",)))
    return hits


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=40), st.integers(0, 8))
def test_a_bigger_goal_state_cache_never_misses_more(keys, size):
    assert goal_state_hits(keys, size + 1) >= goal_state_hits(keys, size)


def placements(trace, max_repls: int, per_repl: int) -> list[Placement]:
    model = PoolModel(max_repls, per_repl)
    return [model.request(HEADERS[h]) for h in trace]


def warm(trace, max_repls: int, per_repl: int) -> int:
    return placements(trace, max_repls, per_repl).count(Placement.HIT)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=1, max_size=60), st.integers(1, 5), st.integers(1, 4))
@example([5, 3, 5, 1, 1, 0, 1, 5, 2, 0], 2, 2)  # the pool's earlier rule found 5 headers warm with 2 REPLs, 4 with 3
def test_a_bigger_pool_never_imports_more(trace, max_repls, per_repl):
    assert warm(trace, max_repls + 1, per_repl) >= warm(trace, max_repls, per_repl)


def test_more_headers_per_repl_can_import_more_which_is_why_plan_replays_each_value():
    trace = [0, 1, 2, 3, 2]  # 2 per REPL: {0,1} then {2,3}, and 2 is warm; 3 per REPL: {0,1,2} is replaced for 3
    assert warm(trace, 1, 2) == 1 and warm(trace, 1, 3) == 0


def test_the_real_pool_places_headers_as_the_model_does():
    """One request at a time, the pool starts, imports and replaces exactly where PoolModel does."""
    trace = [0, 1, 2, 0, 3, 4, 1, 5, 2, 2, 6, 0]
    model = PoolModel(2, 2)
    with make_pool(sim_config(max_repls=2, headers_per_repl=2)) as pool:
        for h in trace:
            before = pool.stats().counters
            with pool.acquire(HEADERS[h]):
                pass
            after = pool.stats().counters
            seen = (Placement.REPLACE if after.evicted > before.evicted else
                    Placement.START if after.started > before.started else
                    Placement.IMPORT if after.header_loads > before.header_loads else Placement.HIT)
            assert seen == model.request(HEADERS[h]), f"header {h}"


# --------------------------------------------------------------------------- the planner's passes


def entry(t: float, batch: int, header: int, key: int | None, *, definitive=True, seconds=0.1, timeout=60.0,
          cached=False) -> TraceEntry:
    return TraceEntry(t=t, batch=batch, header=f"h{header}", header_chars=10, key=None if key is None else f"k{key}",
                      copies=1, chars=100, verdict="valid" if definitive else "timeout", seconds=seconds,
                      cached=cached, timeout=timeout, import_s=1.0)


def replayed_cache_hits(entries, size: int) -> int:
    """The planner's reference model through the real ResultCache: each lookup, then a put on a miss."""
    cache = ResultCache(size)
    first = {}
    for e in entries:
        if e.key is None:
            continue
        first.setdefault(e.key, (e.definitive, e.seconds))
    cacheable = {e.key for e in entries if e.key is not None and e.definitive}
    for e in entries:
        if e.key is None:
            continue
        if cache.get(e.key, e.timeout) is None:
            cache.put(e.key, outcome_of(e.key in cacheable, first[e.key][1]))
    return cache.hits


trace_entries = st.lists(st.tuples(st.integers(0, 9), st.booleans(), st.sampled_from([0.1, 5.0]),
                                   st.sampled_from([1.0, 60.0])), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(trace_entries)
def test_the_result_cache_curve_equals_a_replay_at_every_size(items):
    # a key keeps the verdict and cost it first had (the planner's model of a deterministic checker)
    fixed = {}
    entries = []
    for t, (key, definitive, seconds, timeout) in enumerate(items):
        definitive, seconds = fixed.setdefault(key, (definitive, seconds))
        entries.append(entry(t, t, 0, key, definitive=definitive, seconds=seconds, timeout=timeout))
    plan = result_cache_plan([Segment("", tuple(entries))])
    assert plan.curve.references == len(entries)
    for size in range(0, 12):
        assert plan.curve.hits_at(size) == replayed_cache_hits(entries, size), size


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=1, max_size=50), st.integers(1, 4))
def test_the_header_curve_equals_the_pool_model_at_every_pool_size(trace, per_repl):
    entries = tuple(entry(t, t, h, t) for t, h in enumerate(trace))
    plan = header_plan([Segment("", entries)], per_repl, max_repls=6)
    for size in range(1, 7):
        model = PoolModel(size, per_repl)
        hits = [model.request(f"h{h}") for h in trace].count(Placement.HIT)
        assert plan.curve.hits_at(size) == hits, size


def test_each_server_run_starts_with_empty_caches():
    run = tuple(entry(t, t, 0, 1) for t in range(3))
    plan = result_cache_plan([Segment("a", run), Segment("b", run)])
    assert plan.curve.references == 6 and plan.curve.hits_at(10) == 4


# --------------------------------------------------------------------------- serve --trace, leanstep plan


def test_serve_traces_digests_and_sizes_and_plan_reads_them(tmp_path, capsys):
    trace = tmp_path / "trace.jsonl"
    codes = [{"custom_id": str(k), "proof": code_of(k % 5)} for k in range(10)]
    with running_server(trace=str(trace), trust="lenient") as server:
        for _ in range(3):
            answer = requests.post(server.url + "/verify", json={"codes": codes}, timeout=60)
            assert answer.status_code == 200
    text = trace.read_text()
    assert "theorem" not in text and "Mathlib" not in text, "a trace holds no source text"
    (segment,) = read_trace(trace)
    assert len(segment.entries) == 15  # 5 distinct proofs per request
    first, later = segment.entries[:5], segment.entries[5:]
    assert all(not e.cached and e.copies == 2 for e in first) and all(e.cached for e in later)
    assert {e.verdict for e in segment.entries} == {"valid"} and len({e.header for e in segment.entries}) == 1

    png = tmp_path / "plan.png"
    out_json = tmp_path / "plan.json"
    assert cli_main(["plan", str(trace), "--png", str(png), "--json", str(out_json), "--max-repls", "4",
                     "--target", "0.6"]) == 0
    printed = capsys.readouterr().out
    assert "Result cache" in printed and "Header envs" in printed
    assert "--cache-size 5\n" in printed and "--max-repls 1 or more, --headers-per-repl 1" in printed
    assert png.stat().st_size > 0
    data = json.loads(out_json.read_text())
    assert data["batch_duplicates"] == 15 and data["recommendation"]["cache_size"] == 5
    assert data["result_cache"]["lookups"] == 15 and data["header_envs"][0]["checks"] == 5


@pytest.mark.parametrize("content, message", [
    ('{"t": 1}\n', "before the trace's first format line"),
    ('{"format": "other", "version": 1}\n', "not a leanstep-trace"),
    ('{"format": "leanstep-trace", "version": 1}\nnot json\n', ":2: not JSON"),
    ('{"format": "leanstep-trace", "version": 1}\n{"t": 1}\n', ":2: not a trace record"),
])
def test_plan_refuses_what_is_not_a_trace_and_says_where(tmp_path, capsys, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    assert cli_main(["plan", str(path)]) == 2
    assert message in capsys.readouterr().err
