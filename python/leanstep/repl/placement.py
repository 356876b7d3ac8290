"""Which REPL a header goes to: the pool's placement rule, apart from processes and threads.

A REPL imports a header once and keeps its env for every later request; it
never frees one, so it holds at most ``headers_per_repl`` of them, and making
room for another means replacing the REPL and losing all it held. The rule:

* every header belongs to one group for good (:class:`HeaderGroups`): groups
  of ``headers_per_repl`` headers, in the order the pool first sees them. A
  REPL serves one group, so it always has room for its group's headers;
* a request goes to an idle REPL that holds its header (the most recently
  used one, :func:`holder`);
* else an idle REPL of its group imports it beside the others (:func:`importer`);
* else a new REPL starts for it while the pool has fewer than ``max_repls``;
* else the least recently used idle REPL is replaced by one for it (:func:`victim`).

The pool (``repl.pool``) adds what concurrency needs around this: while a
header's REPLs are busy, a queued request for it starts another REPL as long
as the pool is filling, and once it is full waits an import's worth before
taking one from another header (ski rental); the restart budget can defer a start.

Why groups: one request at a time, this rule is a stack algorithm in the
pool's size. Groups do not depend on ``max_repls``, and REPLs are replaced
least recently used first, so the groups a pool of n REPLs holds are always
among those n + 1 hold (LRU's inclusion property; Mattson et al., 1970), and a
group held since an earlier moment has imported every header asked of it
since. So a bigger pool never imports more. Without groups it fails: under the
pool's earlier rule (start a REPL while under ``max_repls``, else the least
recently used idle REPL imports the header if it has room, else is replaced),
headers asked in the order 5 3 5 1 1 0 1 5 2 0 with 2 per REPL found 5 envs
warm with 2 REPLs and 4 with 3. In ``headers_per_repl`` no rule that must
replace a full REPL is monotone (a fuller REPL is replaced later but loses
more; the tests show a trace), so ``leanstep plan`` replays a trace through
:class:`PoolModel` once per value.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, TypeVar

GROUPS_KEPT = 65536  # headers whose group is remembered; past that the longest unseen one is forgotten


class Repl(Protocol):
    """What the rule reads of a REPL (``repl.pool.Worker``, or a :class:`PoolModel` REPL)."""

    @property
    def envs(self) -> Container[str]: ...

    @property
    def group(self) -> int: ...

    @property
    def last_used(self) -> float: ...


R = TypeVar("R", bound=Repl)


class HeaderGroups:
    """Each header's group, fixed when first seen: the first ``size`` headers are group 0, the next group 1, ...

    Headers are remembered by digest; after :data:`GROUPS_KEPT` of them the one unseen longest is forgotten
    (and gets a new group if it comes back), so clients cannot grow this without bound.
    """

    def __init__(self, size: int, kept: int = GROUPS_KEPT) -> None:
        self.size = max(1, size)
        self._kept = kept
        self._groups: OrderedDict[bytes, int] = OrderedDict()
        self._next = 0
        self._filled = 0

    def of(self, header: str) -> int:
        key = hashlib.sha256(header.encode("utf-8", "surrogatepass")).digest()
        group = self._groups.get(key)
        if group is not None:
            self._groups.move_to_end(key)
            return group
        if self._filled == self.size:
            self._next += 1
            self._filled = 0
        self._filled += 1
        self._groups[key] = self._next
        if len(self._groups) > self._kept:
            self._groups.popitem(last=False)
        return self._next


def holder(idle: Iterable[R], header: str) -> R | None:
    """The idle REPL that serves ``header`` at once: one that holds it, the most recently used."""
    return max((r for r in idle if header in r.envs), key=lambda r: r.last_used, default=None)


def importer(idle: Iterable[R], group: int) -> R | None:
    """The idle REPL that imports a header of ``group`` beside its others: one of that group, least recently used."""
    return min((r for r in idle if r.group == group), key=lambda r: r.last_used, default=None)


def victim(idle: Iterable[R]) -> R | None:
    """The idle REPL replaced to make room: the least recently used."""
    return min(idle, key=lambda r: r.last_used, default=None)


class Placement(Enum):
    """How one request found its header's env."""

    HIT = "hit"  # a REPL held it
    IMPORT = "import"  # a REPL of its group imported it
    START = "start"  # a new REPL started for it
    REPLACE = "replace"  # a REPL was replaced by one for it


@dataclass
class ModelRepl:
    """A REPL in :class:`PoolModel`: the headers it holds, its group, when it was last used."""

    group: int
    envs: list[str] = field(default_factory=list)
    last_used: float = 0.0


class PoolModel:
    """The pool's header envs under one request at a time, by the pool's own rule (the functions above).

    ``leanstep plan`` replays a trace through one per pool size and ``headers_per_repl``; a test checks
    that the real pool, asked the same headers one at a time, starts, imports and replaces as this does.
    """

    def __init__(self, max_repls: int, headers_per_repl: int) -> None:
        self.max_repls = max_repls
        self.headers_per_repl = headers_per_repl
        self.groups = HeaderGroups(headers_per_repl)
        self.repls: list[ModelRepl] = []
        self._clock = 0

    def request(self, header: str) -> Placement:
        self._clock += 1
        group = self.groups.of(header)
        repl = holder(self.repls, header)
        placement = Placement.HIT
        if repl is None:
            repl = importer(self.repls, group)
            placement = Placement.IMPORT
        if repl is None and len(self.repls) < self.max_repls:
            repl = ModelRepl(group)
            self.repls.append(repl)
            placement = Placement.START
        if repl is None:
            replaced = victim(self.repls)
            assert replaced is not None  # max_repls >= 1 and every REPL is idle between requests
            self.repls.remove(replaced)
            repl = ModelRepl(group)
            self.repls.append(repl)
            placement = Placement.REPLACE
        if placement is not Placement.HIT:
            repl.envs.append(header)
        repl.last_used = self._clock
        return placement


__all__ = ["GROUPS_KEPT", "HeaderGroups", "ModelRepl", "Placement", "PoolModel", "Repl", "holder", "importer",
           "victim"]
