"""Cache planning from a trace: the hit ratio of every cache size, each in one pass (``leanstep plan``).

**Result cache.** It is an LRU, a stack algorithm: at every moment a cache of
``c + 1`` entries holds what one of ``c`` holds, so one pass over the lookups
gives the hits at every size (Mattson, Gecsei, Slutz and Traiger, "Evaluation
techniques for storage hierarchies", IBM Systems Journal 9(2), 1970): a lookup
hits exactly in the caches larger than its *stack distance*, the number of
distinct keys used since its own last use, counted here with a Fenwick tree
in O(log n) a lookup. The replay takes each snippet's verdict as fixed: a key
that was ever valid or invalid is cacheable, its lookups are LRU references;
one that only ever timed out or failed is never cached (it misses at every
size). A cached answer slower than the lookup's own timeout misses at every
size and is stored again, as the server does. Identical snippets of one
request are answered by their batch whatever the size; they are counted apart.

**Header envs.** The checks that reached the pool, in the order they started,
are replayed through the pool's placement rule (``repl.placement``) one at a
time. For a fixed ``headers_per_repl`` that rule is LRU over header groups, so
one pass gives every pool size too: a check finds its header warm in a pool of
``n`` REPLs exactly when its group's stack distance is at most ``n`` now and
was at most ``n`` at every use of the group since the header's own last use
(else the group's REPL was replaced in between). In ``headers_per_repl`` the
rule is not monotone, so each value gets its own pass. The tests check both
passes against a direct replay through ``ResultCache`` and ``PoolModel``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from leanstep.perf.trace import Segment, TraceEntry
from leanstep.repl.placement import HeaderGroups

UNREACHED = 0  # a distance that no cache size reaches (a first use, or a miss at every size)


class _Fenwick:
    """Prefix sums over positions 1..n with point updates, O(log n) each."""

    def __init__(self, size: int) -> None:
        self._tree = [0] * (size + 1)

    def add(self, position: int, delta: int) -> None:
        while position < len(self._tree):
            self._tree[position] += delta
            position += position & -position

    def prefix(self, position: int) -> int:
        total = 0
        while position > 0:
            total += self._tree[position]
            position -= position & -position
        return total


class StackDistances:
    """LRU stack distances of a reference string, one reference at a time (Mattson's pass).

    ``use(key)`` returns how deep ``key`` was in the LRU stack (1: the most recently used; ``UNREACHED`` for a
    first use) and makes it the most recently used.
    """

    def __init__(self, references: int) -> None:
        self._marks = _Fenwick(references)
        self._last: dict[object, int] = {}
        self._clock = 0

    def use(self, key: object) -> int:
        self._clock += 1
        previous = self._last.get(key)
        distance = UNREACHED
        if previous is not None:
            distance = self._marks.prefix(self._clock - 1) - self._marks.prefix(previous) + 1
            self._marks.add(previous, -1)
        self._marks.add(self._clock, 1)
        self._last[key] = self._clock
        return distance


@dataclass(frozen=True)
class Curve:
    """Hits at every size from one pass: ``hits_at(size)`` counts the references whose distance is within it."""

    references: int
    distances: tuple[int, ...]  # histogram: distances[d] references at stack distance d (index 0 unused)

    def hits_at(self, size: int) -> int:
        return sum(self.distances[1:max(0, min(size, len(self.distances) - 1)) + 1])

    def ratio_at(self, size: int) -> float:
        return self.hits_at(size) / self.references if self.references else 0.0

    @property
    def ceiling(self) -> float:
        """The hit ratio of an unbounded cache."""
        return sum(self.distances[1:]) / self.references if self.references else 0.0

    def smallest_size_for(self, ratio: float) -> int | None:
        """The smallest size whose hit ratio reaches ``ratio`` (None: no size does)."""
        hits = 0
        for size in range(1, len(self.distances)):
            hits += self.distances[size]
            if self.references and hits / self.references >= ratio:
                return size
        return None


def _curve(distances: Iterable[int], references: int) -> Curve:
    histogram: list[int] = [0]
    for distance in distances:
        if distance != UNREACHED:
            if distance >= len(histogram):
                histogram.extend([0] * (distance + 1 - len(histogram)))
            histogram[distance] += 1
    return Curve(references, tuple(histogram))


@dataclass(frozen=True)
class ResultCachePlan:
    """The result cache over a trace: lookups (distinct snippets of each request that used the cache), their
    hits at every size, and the snippets their own request answered (identical copies)."""

    curve: Curve
    snippets: int
    batch_duplicates: int


def result_cache_plan(segments: Sequence[Segment]) -> ResultCachePlan:
    """One Mattson pass per segment (each server run starts empty)."""
    distances: list[int] = []
    lookups = snippets = duplicates = 0
    for segment in segments:
        entries = segment.entries
        snippets += sum(e.copies for e in entries)
        duplicates += sum(e.copies - 1 for e in entries if e.key is not None)
        cacheable = {e.key for e in entries if e.key is not None and e.definitive}
        seconds: dict[str, float] = {}
        for e in entries:
            if e.key is not None and not e.cached and e.definitive:
                seconds.setdefault(e.key, e.seconds)
        stack = StackDistances(len(entries))
        for e in entries:
            if e.key is None:
                continue
            lookups += 1
            if e.key not in cacheable:
                continue
            distance = stack.use(e.key)
            too_slow = seconds.get(e.key, 0.0) > e.timeout  # the cached answer could have timed out now
            distances.append(UNREACHED if too_slow else distance)
    return ResultCachePlan(_curve(distances, lookups), snippets, duplicates)


@dataclass(frozen=True)
class HeaderPlan:
    """Header envs over a trace for one ``headers_per_repl``: checks that reached the pool, how many found
    their header warm at every pool size, and the import seconds the misses cost at every size."""

    headers_per_repl: int
    curve: Curve
    miss_import_seconds: tuple[float, ...]  # by pool size (index 0 unused): summed import cost of the misses

    def import_seconds_at(self, max_repls: int) -> float:
        return self.miss_import_seconds[min(max_repls, len(self.miss_import_seconds) - 1)]


def pool_checks(segment: Segment) -> list[TraceEntry]:
    """The entries of a segment that took a REPL, in the order they started."""
    checked = [e for e in segment.entries if not e.cached and e.verdict != "skipped"]
    return sorted(checked, key=lambda e: e.t - e.seconds)


def header_plan(segments: Sequence[Segment], headers_per_repl: int, max_repls: int,
                default_import_s: float = 1.0) -> HeaderPlan:
    """One pass per segment for one ``headers_per_repl``: every pool size from 1 to ``max_repls``."""
    distances: list[int] = []
    costs: list[float] = []
    for segment in segments:
        checks = pool_checks(segment)
        import_s = {e.header: e.import_s for e in checks if e.import_s}
        groups = HeaderGroups(headers_per_repl)
        stack = StackDistances(len(checks))
        since: dict[str, int] = {}  # header -> deepest its group has been since the header's last use
        members: dict[int, list[str]] = {}
        for e in checks:
            group = groups.of(e.header)
            depth = stack.use(group)
            depth = max_repls + 1 if depth == UNREACHED else depth
            for header in members.setdefault(group, []):
                since[header] = max(since[header], depth)
            previous = since.get(e.header)
            distances.append(UNREACHED if previous is None or previous > max_repls else previous)
            if previous is None:
                members[group].append(e.header)
            since[e.header] = 0
            costs.append(import_s.get(e.header, default_import_s))
    hit_cost = [0.0] * (max_repls + 1)  # import seconds of the references at each distance
    for distance, cost in zip(distances, costs, strict=True):
        if distance != UNREACHED:
            hit_cost[distance] += cost
    miss_seconds = [0.0] * (max_repls + 1)
    saved = 0.0
    for size in range(1, max_repls + 1):
        saved += hit_cost[size]
        miss_seconds[size] = sum(costs) - saved
    return HeaderPlan(headers_per_repl, _curve(distances, len(distances)), tuple(miss_seconds))


@dataclass(frozen=True)
class Recommendation:
    """Settings that reach a target hit ratio, or why none does."""

    target: float
    cache_size: int | None
    cache_ceiling: float  # the hit ratio of an unbounded result cache
    max_repls: int | None
    headers_per_repl: int
    header_ceiling: float


def recommend(results: ResultCachePlan, headers: Sequence[HeaderPlan], target: float) -> Recommendation:
    """The smallest result cache, and the smallest pool (with the fewest headers per REPL among the pools of that
    size), that reach ``target``; without one, the best the trace allows."""
    by_memory = sorted(headers, key=lambda p: p.headers_per_repl)
    reaching = [(size, plan) for plan in by_memory if (size := plan.curve.smallest_size_for(target)) is not None]
    if reaching:
        max_repls, chosen = min(reaching, key=lambda pair: pair[0])  # min keeps the fewest headers per REPL on ties
    else:
        max_repls, chosen = None, max(by_memory, key=lambda p: p.curve.ceiling)
    return Recommendation(target, results.curve.smallest_size_for(target), results.curve.ceiling, max_repls,
                          chosen.headers_per_repl, chosen.curve.ceiling)


__all__ = ["UNREACHED", "Curve", "HeaderPlan", "Recommendation", "ResultCachePlan", "StackDistances",
           "header_plan", "pool_checks", "recommend", "result_cache_plan"]
