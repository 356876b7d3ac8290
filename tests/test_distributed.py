"""The Ray scale-out: a real local Ray cluster, real actors, real simulated REPL processes.

One Ray instance for the whole file (starting Ray costs seconds); each test builds the
verifier it needs. Actors reserve no CPU (the default), so several verifiers fit on
a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from leanstep import config as config_mod
from leanstep.api.records import result_record
from leanstep.check.verify import ERROR, INVALID, SKIPPED, VALID, Snippet, Verifier, VerifyOptions

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install leanstep[ray])")

from leanstep import cluster  # noqa: E402
from leanstep.cluster import RayTarget, RayVerifier  # noqa: E402

HEADER_A = "import Mathlib"
HEADER_B = "import Aesop"


@pytest.fixture(scope="session")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def sim_config() -> config_mod.Config:
    return config_mod.load({"repl": "sim", "max_repls": 2, "sandbox": "none"}, environ={})


def make(config: config_mod.Config, **kwargs) -> RayVerifier:
    kwargs.setdefault("num_actors", 2)
    return RayVerifier(config=config, **kwargs)


@pytest.fixture(scope="module")
def verifier(ray_cluster, sim_config):
    v = make(sim_config)
    yield v
    v.close()


def mixed_snippets(n: int, tag: str) -> list[Snippet]:
    """Valid, invalid (false statement, sorry) and header-less snippets over two headers."""
    out = []
    for i in range(n):
        header = HEADER_A if i % 2 else HEADER_B
        kind = i % 5
        if kind == 0:
            body = f"theorem {tag}{i} : {i} + 1 = {i + 2} := by decide"  # false
        elif kind == 1:
            body = f"theorem {tag}{i} (x : ℕ) : x + {i} = {i} + x := by sorry"
        elif kind == 2:
            header = ""
            body = f"theorem {tag}{i} : {i} * 2 = {2 * i} := by norm_num"
        else:
            body = f"theorem {tag}{i} (x : ℕ) : x + {i} = {i} + x := by omega"
        code = f"{header}\n\n{body}\n" if header else body + "\n"
        out.append(Snippet(f"{tag}-{i}", code))
    return out


def comparable(result) -> dict:
    """A result without what depends on which REPL ran it (time, proof-state ids, cache flag)."""
    obj = result_record(result)
    obj.pop("time", None)
    obj.pop("cached", None)
    for sorry in obj.get("sorries", []):
        sorry.pop("proofState", None)
    return obj


def actor_reports(v: RayVerifier):
    reports = v.status()
    assert all(r is not None for r in reports)
    return reports


# --------------------------------------------------------------------------- #


def test_results_in_input_order_and_equal_to_local(verifier, sim_config):
    snippets = mixed_snippets(30, "order")
    results = verifier.verify(snippets)
    assert [r.id for r in results] == [s.id for s in snippets]

    from leanstep.repl.launch import make_pool

    pool = make_pool(sim_config)
    pool.start()
    try:
        with Verifier(pool, cache_size=0) as local:
            expected = local.verify_batch(snippets, VerifyOptions(timeout=sim_config.timeout))
    finally:
        pool.shutdown()
    assert [comparable(r) for r in results] == [comparable(r) for r in expected]
    verdicts = Counter(r.verdict for r in results)
    assert verdicts[VALID] > 0 and verdicts[INVALID] > 0 and verdicts[ERROR] == 0


def test_verify_iter_streams_each_index_once(verifier):
    snippets = mixed_snippets(20, "stream")
    seen = list(verifier.verify_iter(snippets, batch_size=3))
    assert sorted(i for i, _ in seen) == list(range(len(snippets)))
    assert all(result.id == snippets[i].id for i, result in seen)


def test_work_spreads_over_both_actors(verifier):
    before = {r.slot: r.verified for r in actor_reports(verifier)}
    code = "import Mathlib\n\ntheorem spread{i} (x : ℕ) : x + {i} = {i} + x := by omega\n"
    results = verifier.verify([Snippet(str(i), code.format(i=i)) for i in range(40)], reuse=False)
    assert all(r.verdict == VALID for r in results)
    after = {r.slot: r.verified for r in actor_reports(verifier)}
    assert all(after[s] > before[s] for s in after), (before, after)
    assert sum(after.values()) - sum(before.values()) == 40


def test_header_affinity_keeps_each_header_on_one_actor(ray_cluster, sim_config):
    snippets = []
    for i in range(24):
        header = HEADER_A if i % 2 else HEADER_B
        snippets.append(Snippet(str(i), f"{header}\n\ntheorem aff{i} (x : ℕ) : x + {i} = {i} + x := by omega\n"))
    with make(sim_config) as v:
        results = v.verify(snippets, batch_size=2, max_workers=2)
        assert all(r.verdict == VALID for r in results)
        reports = actor_reports(v)
    warm = [set(h for h in r.warm_headers if h) for r in reports]
    assert all(len(w) == 1 for w in warm), warm  # each actor imported one header only
    assert warm[0] | warm[1] == {HEADER_A, HEADER_B}
    assert all(r.repls_evicted == 0 for r in reports)
    assert all(r.verified == 12 for r in reports), [r.verified for r in reports]


def test_identical_snippets_are_verified_once(verifier):
    codes = [f"import Mathlib\n\ntheorem dup{k} (x : ℕ) : x + {k} = {k} + x := by omega\n" for k in range(3)]
    codes.append("import Mathlib\n\ntheorem dupbad : 2 + 2 = 5 := by norm_num\n")
    snippets = [Snippet(f"id-{i}", codes[i % len(codes)]) for i in range(40)]
    before_actors = sum(r.verified for r in actor_reports(verifier))
    before = verifier.stats()

    results = verifier.verify(snippets)

    assert [r.id for r in results] == [s.id for s in snippets]
    for i, r in enumerate(results):
        assert r.verdict == (INVALID if i % len(codes) == 3 else VALID)
        assert r.cached == (i >= len(codes))  # the first of each code ran; the others share its answer
    after = verifier.stats()
    assert after.snippets - before.snippets == len(snippets)
    assert after.cache.misses - before.cache.misses == len(codes)  # one look-up per distinct code
    assert after.cache.batch_duplicates - before.cache.batch_duplicates == len(snippets) - len(codes)
    assert sum(r.verified for r in actor_reports(verifier)) - before_actors == len(codes)

    # Again: every answer comes from the driver's cache, no actor is asked.
    again = verifier.verify(snippets)
    assert [comparable(r) for r in again] == [comparable(r) for r in results]
    assert all(r.cached for r in again)
    assert verifier.stats().cache.hits - after.cache.hits == len(codes)
    assert sum(r.verified for r in actor_reports(verifier)) - before_actors == len(codes)

    # reuse=False: no de-duplication, every snippet runs.
    verifier.verify(snippets[:8], reuse=False)
    assert sum(r.verified for r in actor_reports(verifier)) - before_actors == len(codes) + 8


def _delayed(n: int, tag: str, delay: float) -> list[Snippet]:
    return [Snippet(f"{tag}-{i}", f"import Mathlib\n\n-- sim: delay {delay}\n"
                                  f"theorem {tag}{i} (x : ℕ) : x + {i} = {i} + x := by omega\n") for i in range(n)]


def _gone(pids: list[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def test_actor_killed_mid_batch_loses_nothing(ray_cluster, sim_config):
    snippets = _delayed(24, "kill", 0.3)
    with make(sim_config) as v:
        victim = v.actor_handles()[0]
        seen: list[tuple[int, object]] = []
        killed_pids: list[int] = []
        for index, result in v.verify_iter(snippets):
            seen.append((index, result))
            if not killed_pids:
                killed_pids = ray.get(victim.repl_pids.remote())
                ray.kill(victim, no_restart=True)
        counters = v.counters()
        # the replacement actor works
        assert v.actor_handles()[0] is not victim
        assert v.verify([snippets[0].code])[0].verdict == VALID

    by_index = Counter(i for i, _ in seen)
    assert sorted(by_index) == list(range(len(snippets))) and set(by_index.values()) == {1}
    assert Counter(r.id for _, r in seen) == Counter(s.id for s in snippets)
    assert all(r.verdict == VALID for _, r in seen), [r.error for _, r in seen if r.verdict != VALID]
    assert counters.retried_sub_batches >= 1 and counters.actors_recreated >= 1
    assert killed_pids and _gone(killed_pids, 15), "the killed actor's REPLs are still running"


def test_retries_spent_give_error_results_not_a_hang(ray_cluster, sim_config):
    snippets = _delayed(8, "spent", 0.3)
    with make(sim_config, num_actors=1, max_attempts=1) as v:
        victim = v.actor_handles()[0]
        seen = []
        for index, result in v.verify_iter(snippets, batch_size=2):
            seen.append((index, result))
            if len(seen) == 1:
                ray.kill(victim, no_restart=True)
    assert sorted(i for i, _ in seen) == list(range(len(snippets)))
    lost = [r for _, r in seen if r.verdict == ERROR]
    assert lost and all("lost" in r.error for r in lost)
    assert all(r.verdict in (VALID, ERROR) for _, r in seen)


def test_verify_batch_is_the_batch_verifier_call(verifier, sim_config):
    """``BatchVerifier``: verify_batch(snippets, options, on_result) streams every result once; stats() counts them."""
    snippets = mixed_snippets(10, "app")
    streamed = {}
    before = verifier.stats().snippets
    results = verifier.verify_batch(snippets, VerifyOptions(timeout=30), on_result=streamed.__setitem__)
    assert [r.id for r in results] == [s.id for s in snippets]
    assert streamed == dict(enumerate(results))
    stats = verifier.stats()
    assert stats.snippets - before == len(snippets) and sum(stats.verdicts.values()) == stats.snippets
    assert stats.cache.max_entries == sim_config.cache_size


def test_verify_cli_hook(ray_cluster, tmp_path: Path):
    from leanstep import verify_cli

    source = tmp_path / "proofs.jsonl"
    snippets = mixed_snippets(12, "cli")
    source.write_text("".join(json.dumps({"id": s.id, "code": s.code}) + "\n" for s in snippets))
    output = tmp_path / "results.jsonl"
    parser = argparse.ArgumentParser()
    verify_cli.add_arguments(parser)
    args = parser.parse_args([str(source), "--ray", "--ray-actors", "2", "--repl", "sim", "--max-repls", "2",
                              "--sandbox", "none", "--no-progress", "-o", str(output)])
    assert args.ray == "" and args.ray_actors == 2
    assert verify_cli.run(args) == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["id"] for line in lines] == [s.id for s in snippets]
    assert {line["verdict"] for line in lines} <= {VALID, INVALID}


def test_missing_ray_says_how_to_install(monkeypatch, sim_config):
    from leanstep.repl.launch import SetupError

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install leanstep\[ray\]"):
        cluster.import_ray()
    with pytest.raises(SetupError, match=r"pip install leanstep\[ray\]"):
        cluster.make_verifier(RayTarget(), sim_config)


def test_the_http_front_fans_verify_out_over_the_cluster(ray_cluster, sim_config):
    """`leanstep serve --ray`: the services it builds answer /verify on the cluster's actors, not the front's pool,
    and /health and /metrics count what the cluster answered."""
    import requests

    from leanstep.server.app import create_app
    from leanstep.server.services import build_services
    from leanstep.server.wsgi import serve_in_thread

    codes = [{"custom_id": f"h{i}", "proof": f"theorem front{i} : {i} + 1 = {i + 1} := by norm_num"} for i in range(6)]
    codes.append(codes[0])  # answered by the driver, from its copy
    services = build_services(sim_config, cluster=RayTarget(num_actors=1), suggest=False)
    try:
        assert isinstance(services.verifier, RayVerifier)
        with serve_in_thread(create_app(services)) as url:
            reply = requests.post(url + "/verify", json={"codes": codes}, timeout=120).json()
            health = requests.get(url + "/health", timeout=30).json()
            metrics = requests.get(url + "/metrics", timeout=30).text
        checked = sum(r.verified for r in actor_reports(services.verifier))
        front_requests = services.pool.stats().counters.requests
    finally:
        services.close()
    assert [r["custom_id"] for r in reply["results"]] == [c["custom_id"] for c in codes]
    assert all(r["verdict"] == "valid" for r in reply["results"])
    assert checked == len(codes) - 1 and front_requests == 0  # nothing ran on the front's own REPLs
    assert health["cache"]["batch_duplicates"] == 1 and health["cache"]["misses"] == len(codes) - 1
    assert f'leanstep_snippets_total{{verdict="valid"}} {float(len(codes))}' in metrics
    assert ray.is_initialized()  # the services used the running Ray and left it running


def test_first_valid_skips_what_is_not_yet_sent_once_a_group_is_solved(verifier):
    """A group's sub-batches not yet sent when one of its samples is valid are answered ``skipped``."""
    delay = "\n  -- sim: delay 0.2"
    snippets = [Snippet(f"{g}-{k}", f"{HEADER_A}\n\ntheorem fv_{g}_{k} : 2 + 2 = {4 if k == 0 else 5} := by"
                                    f"{delay if k else ''}\n  norm_num\n", group=g)
                for g in ("p", "q") for k in range(12)]
    results = verifier.verify_batch(snippets, VerifyOptions(timeout=30, first_valid=True, use_cache=False))
    by_id = {r.id: r for r in results}
    assert by_id["p-0"].verdict == VALID and by_id["q-0"].verdict == VALID
    skipped = [r for r in results if r.verdict == SKIPPED]
    assert len(skipped) >= 8, Counter(r.verdict for r in results)
    assert all(r.reasons[0].code == "group_solved" for r in skipped)
    assert all(r.verdict in (INVALID, SKIPPED) for r in results if not r.id.endswith("-0"))


def test_a_deadline_reaches_the_actors_as_the_time_left_and_stops_what_would_start_too_late(verifier):
    """The deadline is this process's clock, so the router sends each sub-batch the time left as its timeout;
    a check that could not start before the deadline is answered ``skipped`` (reason ``deadline``)."""
    slow = Snippet("slow", f"{HEADER_A}\n\ntheorem dl_slow : 2 + 2 = 5 := by\n  -- sim: delay 5\n  norm_num\n")
    started = time.monotonic()
    (result,) = verifier.verify_batch([slow], VerifyOptions(timeout=30, use_cache=False, deadline=started + 1.5))
    assert result.verdict == "timeout" and "deadline" in result.reasons[0].message
    assert time.monotonic() - started < 5
    late = verifier.verify_batch([slow], VerifyOptions(timeout=30, use_cache=False, deadline=time.monotonic()))
    assert [(r.verdict, r.reasons[0].code) for r in late] == [(SKIPPED, "deadline")]
