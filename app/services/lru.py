"""The in-process caches' one container: least recently used first out, within a budget."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def _one(_value: object) -> int:
    return 1


class Lru(OrderedDict[K, V]):
    """At most ``limit`` entries; with ``weigh``, at most ``limit`` of total weight (the bytes of
    the pages kept, say: an entry heavier than the whole budget is not kept, nor anything else).
    ``keep``: the most recently used entries never evicted, however heavy (the budget is then
    exceeded by them alone)."""

    def __init__(self, limit: int, weigh: Callable[[V], int] = _one, *, keep: int = 0) -> None:
        super().__init__()
        self.limit = limit
        self.weigh = weigh
        self.keep = keep
        self.used = 0

    def recall(self, key: K) -> V | None:
        """The entry, now the most recently used; None if not kept."""
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def remember(self, key: K, value: V) -> V:
        if key in self:
            self.used -= self.weigh(self.pop(key))
        self[key] = value
        self.used += self.weigh(value)
        while self.used > self.limit and len(self) > self.keep:
            self.used -= self.weigh(self.popitem(last=False)[1])
        return value
