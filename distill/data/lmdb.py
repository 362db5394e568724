"""LMDBs in the DTRB layout (``num-samples``, ``image-%09d``, ``label-%09d``, 1-based):
the one writer, and read-only handles that survive DataLoader workers.

The label cache (:mod:`distill.kd.cache`) is such an LMDB with more keys per sample;
it writes them through :class:`LmdbWriter` too.
"""

from __future__ import annotations

import os
from pathlib import Path

import lmdb

from distill.core.sources import is_lmdb

MAP_SIZE = 1 << 40  # LMDB reserves address space only; the file grows with the data
NUM_SAMPLES = b"num-samples"


def sample_key(field: str, k: int) -> bytes:
    """The key of sample ``k``'s ``field``: ``image-000000001``, ``label-000000001``, ..."""
    return b"%s-%09d" % (field.encode(), k)


class LmdbWriter:
    """Appends samples to a DTRB LMDB, new or partly written.

    Samples and other keys wait in one write transaction until :meth:`commit`, which
    writes ``num-samples`` with them: an interrupted writer leaves the LMDB as it was at
    its last commit, never half a batch. ``count`` is the number of samples committed or
    pending."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(self.path), map_size=MAP_SIZE)
        self._txn = None
        self.count = int(self.get(NUM_SAMPLES) or 0)

    def get(self, key: bytes) -> bytes | None:
        """A committed (or pending) value."""
        if self._txn is not None:
            return self._txn.get(key)
        with self.env.begin() as txn:
            return txn.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        """A key outside the samples (metadata, progress)."""
        if self._txn is None:
            self._txn = self.env.begin(write=True)
        self._txn.put(key, value)

    def add(self, image: bytes, label: str, **fields: bytes) -> int:
        """Append a sample (encoded image bytes, its label, more ``field-%09d`` values);
        returns its 1-based key."""
        self.count += 1
        self.put(sample_key("image", self.count), image)
        self.put(sample_key("label", self.count), label.encode("utf-8"))
        for name, value in fields.items():
            self.put(sample_key(name.replace("_", "-"), self.count), value)
        return self.count

    def commit(self) -> None:
        self.put(NUM_SAMPLES, str(self.count).encode())
        self._txn.commit()
        self._txn = None

    def close(self) -> None:
        if self._txn is not None:  # never committed: dropped, as after a crash
            self._txn.abort()
            self._txn = None
        self.env.close()

    def __enter__(self) -> LmdbWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_ENVS: dict[tuple[int, str], object] = {}


def open_env(path: Path):
    """One read-only environment per folder and process: LMDB refuses to open the same
    folder twice in a process (train and val may share it), and a handle cannot cross
    into DataLoader workers, which therefore open their own."""
    key = (os.getpid(), str(path.resolve()))
    if key not in _ENVS:
        _ENVS[key] = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
    return _ENVS[key]


def read_lmdb(path: Path, read):
    """``read(txn)`` on an LMDB without keeping it open in this process (unless it is
    open already): DataLoader workers are forked from this process, and LMDB refuses to
    open in a child a folder that its parent holds open."""
    path = Path(path)
    if not is_lmdb(path):
        raise FileNotFoundError(f"not an LMDB folder (no data.mdb): {path}")
    key = (os.getpid(), str(path.resolve()))
    if key in _ENVS:
        with _ENVS[key].begin() as txn:
            return read(txn)
    env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
    try:
        with env.begin() as txn:
            return read(txn)
    finally:
        env.close()
