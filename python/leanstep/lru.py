"""One least-recently-used map, for every cache of the server (results, preamble envs, goal states).

LRU is a stack algorithm: a bigger cache holds at any moment everything a
smaller one would, so it never misses more (Mattson et al., 1970), and one pass
over a trace gives its hit ratio at every size (``leanstep plan``). The
property tests check that for each cache built on this class. Not
thread-safe: its owners lock.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most ``capacity`` entries (0: none); a hit or a put makes an entry the most recently used."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, int(capacity))
        self._data: OrderedDict[K, V] = OrderedDict()

    def peek(self, key: K) -> V | None:
        """The entry, without making it the most recently used."""
        return self._data.get(key)

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def touch(self, key: K) -> None:
        """Make ``key`` (present) the most recently used."""
        self._data.move_to_end(key)

    def put(self, key: K, value: V) -> None:
        if not self.capacity:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


__all__ = ["LruCache"]
