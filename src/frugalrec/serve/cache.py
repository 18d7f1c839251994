"""A bounded LRU cache whose per-user entries can be invalidated without races.

A reader that started before an invalidation must not put its (stale) result back after it:
every fill carries the user's generation read at the start, and is dropped if an
invalidation bumped it meanwhile.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class UserCache:
    """LRU of ``(user, *rest) -> value`` with per-user invalidation."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: OrderedDict[tuple[Hashable, ...], Any] = OrderedDict()
        self._gen: dict[str, int] = {}
        self._keys: dict[str, set[tuple[Hashable, ...]]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def generation(self, user: str) -> int:
        with self._lock:
            return self._gen.get(user, 0)

    def get(self, key: tuple[Hashable, ...]) -> Any | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: tuple[Hashable, ...], value: Any, generation: int) -> None:
        """Store ``value`` unless ``key[0]``'s generation moved past ``generation``."""
        if self.capacity <= 0:
            return
        with self._lock:
            if self._gen.get(str(key[0]), 0) != generation:
                return
            self._data[key] = value
            self._data.move_to_end(key)
            self._keys.setdefault(str(key[0]), set()).add(key)
            while len(self._data) > self.capacity:
                old, _ = self._data.popitem(last=False)
                keys = self._keys.get(str(old[0]))
                if keys is not None:
                    keys.discard(old)
                    if not keys:
                        del self._keys[str(old[0])]

    def invalidate(self, user: str) -> None:
        """Drop every entry of ``user`` and refuse fills that started before now."""
        with self._lock:
            self._gen[user] = self._gen.get(user, 0) + 1
            for key in self._keys.pop(user, ()):
                self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._keys.clear()
            for u in self._gen:
                self._gen[u] += 1

    def __len__(self) -> int:
        return len(self._data)
