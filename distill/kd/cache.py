"""The teacher-label cache: a teacher's outputs stored once, read every epoch.

A cache is an LMDB in the DTRB layout (``image-%09d``; ``label-%09d``: the ground
truth, or the teacher's reading for an unlabeled image) with more keys:

- ``teacher-meta``: JSON naming the teacher (config, source, fingerprint), the
  student's charset its classes were mapped onto, the frame rate and top-k;
- per sample ``gt-%09d`` (present when the label is real), ``teacher-text-%09d`` (its
  reading, absent when the student's characters cannot write it),
  ``teacher-conf-%09d`` and ``teacher-topk-%09d`` (:func:`pack_topk`);
- ``teach-progress``, ``num-bad`` and ``bad-%09d``: how far the writer got, and the
  images it could not read.

:mod:`distill.kd.teach` writes it; :func:`open_with_cache` (the data configs'
``opener``) puts the stored outputs beside each sample, and :class:`CachedTeacher` turns
them into the teacher's outputs during training.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from distill.core.charset import Charset
from distill.core.sources import is_lmdb
from distill.data.lmdb import open_env, read_lmdb, sample_key
from distill.kd.outputs import TopKOutputs
from distill.kd.teachers import Teacher, same_charset

META = b"teacher-meta"
PROGRESS = b"teach-progress"
NUM_BAD = b"num-bad"


def pack_topk(probs: np.ndarray, k: int) -> bytes:
    """[frames, classes] -> frames, k, then k class indices (int16) and probabilities
    (float16) per frame, best first."""
    k = min(k, probs.shape[1])
    idx = np.argsort(-probs, axis=1)[:, :k]
    p = np.take_along_axis(probs, idx, 1)
    head = np.array([probs.shape[0], k], np.int32)
    return head.tobytes() + idx.astype(np.int16).tobytes() + p.astype(np.float16).tobytes()


def unpack_topk(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(indices [frames, k], probabilities [frames, k]) of :func:`pack_topk`."""
    frames, k = np.frombuffer(blob[:8], np.int32)
    n = int(frames) * int(k)
    idx = np.frombuffer(blob[8 : 8 + 2 * n], np.int16).reshape(frames, k)
    p = np.frombuffer(blob[8 + 2 * n : 8 + 4 * n], np.float16).reshape(frames, k)
    return idx.astype(np.int64), p.astype(np.float32)


def sample_fields(text: str | None, confidence: float, topk: bytes, real_label: bool) -> dict:
    """The cache's keys of one sample, as :meth:`LmdbWriter.add` takes them."""
    fields = {"teacher_conf": b"%.5f" % confidence, "teacher_topk": topk}
    if text is not None:
        fields["teacher_text"] = text.encode("utf-8")
    if real_label:
        fields["gt"] = b"1"
    return fields


def read_meta(path: str | Path) -> dict | None:
    """The cache's ``teacher-meta``, or None for a plain LMDB."""
    raw = read_lmdb(Path(path), lambda txn: txn.get(META))
    return json.loads(raw) if raw is not None else None


class CachedDataset:
    """A label cache's samples with the teacher's stored outputs beside each one
    (``teacher_cache``: its reading, confidence and top-k per frame), around the plain
    DTRB :class:`LmdbDataset` of its images and labels. Samples without a real label (no
    ``gt-%09d``) come unlabeled, as from a folder, with the teacher's reading at hand: a
    model trained without a teacher never takes it for a label."""

    def __init__(self, lmdb_dataset, meta: dict):
        self.dataset, self.meta, self.path = lmdb_dataset, meta, lmdb_dataset.path

    @classmethod
    def open(cls, path, charset, preprocess_cfg, unknown="skip", augment=None, teacher_view=None):
        from distill.data.datasets import LmdbDataset

        path = Path(path)
        meta = read_meta(path)
        if meta["charset"]["chars"] != charset.chars:
            raise ValueError(
                f"{path}: teacher outputs stored for charset {meta['charset']['name']!r}, "
                f"not {charset.name!r}: write the cache with the student's charset "
                "(python -m distill.teach --charset ...)"
            )

        def real_labels(txn) -> list[str | None]:
            stored = LmdbDataset.read_labels(txn, path)
            return [
                lab if txn.get(sample_key("gt", k)) is not None else None
                for k, lab in enumerate(stored, start=1)
            ]

        # the unknown-character policy applies to the real labels only
        labels = read_lmdb(path, real_labels)
        dataset = LmdbDataset(path, charset, preprocess_cfg, unknown, augment, teacher_view, labels)
        return cls(dataset, meta)

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def labels(self) -> list[str | None]:
        return self.dataset.labels

    def label_lengths(self) -> list[int]:
        return self.dataset.label_lengths()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict | None:
        sample = self.dataset[i]
        if sample is not None:
            sample["teacher_cache"] = self.outputs(self.dataset.keys[i])
        return sample

    def outputs(self, key: int) -> dict:
        with open_env(self.path).begin() as txn:
            text = txn.get(sample_key("teacher-text", key))
            conf = txn.get(sample_key("teacher-conf", key))
            topk = txn.get(sample_key("teacher-topk", key))
        idx, p = unpack_topk(topk)
        return {
            "text": text.decode("utf-8") if text is not None else None,
            "confidence": float(conf) if conf is not None else 0.0,
            "index": idx,
            "probs": p,
        }


def open_with_cache(
    source, charset, preprocess_cfg, unknown="skip", augment=None, teacher_view=None
):
    """:func:`distill.data.datasets.open_dataset`, except that a label cache opens as a
    :class:`CachedDataset` (the data configs' ``opener``)."""
    from distill.data.datasets import open_dataset

    args = (charset, preprocess_cfg, unknown, augment, teacher_view)
    if isinstance(source, (str, Path)) and is_lmdb(source) and read_meta(source) is not None:
        return CachedDataset.open(source, *args)
    return open_dataset(source, *args)


class CachedTeacher(Teacher):
    """A teacher's outputs stored by ``python -m distill.teach``: nothing runs during
    training. ``path``: one of the cache LMDBs (it says which teacher, charset and frame
    rate); train on the cache LMDBs, whose samples carry the outputs."""

    def __init__(self, path: str):
        if not (Path(path) / "data.mdb").is_file():
            raise FileNotFoundError(f"teacher cache not found (no data.mdb): {path}")
        meta = read_meta(path)
        if meta is None:
            raise ValueError(
                f"{path}: an LMDB without teacher outputs: write one with distill.teach"
            )
        self.meta = meta
        self.charset = Charset.resolve(meta["charset"])
        self.preprocess = None
        self.width_per_frame = float(meta["width_per_frame"])
        self.fingerprint = meta["fingerprint"]
        self.source = f"cache of {meta['source']}"
        self.config = {"_target_": f"{__name__}.CachedTeacher", "path": str(path)}
        self.device = torch.device("cpu")

    def to(self, device) -> CachedTeacher:
        self.device = torch.device(device)
        return self

    def bind(self, student: Charset, student_height: int) -> None:
        same_charset(self, student)

    def can_read(self, batch: dict) -> bool:
        return bool(batch.get("teacher_cache")) and all(batch["teacher_cache"])

    def __call__(self, batch: dict) -> TopKOutputs:
        if not self.can_read(batch):
            raise ValueError(
                "a batch without stored teacher outputs: with teacher=cache, train on the "
                "cache LMDBs written by distill.teach only"
            )
        items = batch["teacher_cache"]
        frames = [len(it["index"]) for it in items]
        c, k = self.charset.num_classes, max(it["index"].shape[1] for it in items)
        index = np.zeros((len(items), max(frames), k), np.int64)
        probs = np.zeros((len(items), max(frames), k), np.float32)
        for b, it in enumerate(items):
            f, kb = it["index"].shape
            index[b, :f, :kb], probs[b, :f, :kb] = it["index"], it["probs"]
        # the mass outside the stored top-k, spread over the other classes
        rest = np.clip(1.0 - probs.sum(-1), 0, None) / max(c - k, 1)
        to = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        return TopKOutputs(
            to(index),
            to(probs),
            to(rest),
            torch.tensor(frames, dtype=torch.long, device=self.device),
            c,
            texts=[it["text"] for it in items],
            confidences=[it["confidence"] for it in items],
        )
