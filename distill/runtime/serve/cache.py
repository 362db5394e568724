"""Results of images seen before, keyed by the hash of their bytes: bounded in entries
and in bytes, least recently used out first."""

from __future__ import annotations

import hashlib
import sys
import threading
from collections import OrderedDict


def image_key(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _deep_size(value) -> int:
    """Bytes of a result: a page's lines and boxes count, not only the outer dict."""
    if isinstance(value, dict):
        items = value.items()
        return sys.getsizeof(value) + sum(_deep_size(k) + _deep_size(v) for k, v in items)
    if isinstance(value, (list, tuple)):
        return sys.getsizeof(value) + sum(_deep_size(v) for v in value)
    if hasattr(value, "__dict__"):
        return sys.getsizeof(value) + _deep_size(vars(value))
    return sys.getsizeof(value)


class ResultCache:
    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 << 20):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: str):
        with self._lock:
            if key not in self._items:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key][0]

    def put(self, key: str, value) -> None:
        if not self.enabled:
            return
        size = sys.getsizeof(key) + _deep_size(value)
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._items and (
                len(self._items) > self.max_entries or self._bytes > self.max_bytes
            ):
                self._bytes -= self._items.popitem(last=False)[1][1]
