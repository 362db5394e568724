"""Real data: label files and LMDBs (DTRB layout), their mixture, and charset filtering.

Every dataset yields ``{"image": float32 (C, 32, w), "label": str}`` (``label`` is None
for unlabeled images, which a teacher labels) or ``None`` for a sample whose image
cannot be read; the collate function drops and counts those, so a bad file costs one
sample, never the epoch. With ``teacher_view`` set, a sample also carries ``raw``: the
uint8 RGB image a teacher with its own preprocessing reads (the clean one or the
augmented one the student sees).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from distill.charset import UNKNOWN_POLICIES, Charset
from distill.labelfile import read_label_file
from distill.preprocess import ImageError, PreprocessConfig, decode_image, load_image, preprocess

log = logging.getLogger(__name__)


class EmptyDatasetError(ValueError):
    pass


def filter_labels(
    labels: list[str], charset: Charset, policy: str, source: str
) -> tuple[list[int], list[str]]:
    """Apply the unknown-character policy to labels; return kept indices and their labels.

    ``skip`` drops a sample with any unknown character, ``strip`` removes the unknown
    characters (dropping a label left empty), ``keep`` leaves labels as they are (for
    evaluation: the characters count as errors instead of vanishing from the score).
    The count is reported once per dataset, with examples; a dataset left empty is an
    error that says why.
    """
    if policy not in UNKNOWN_POLICIES:
        raise ValueError(
            f"unknown-character policy must be one of {UNKNOWN_POLICIES}, got {policy!r}"
        )
    kept_idx, kept, unknown_chars, affected, emptied = [], [], {}, 0, 0
    for i, label in enumerate(labels):
        if label is None:  # unlabeled: a teacher labels it
            kept_idx.append(i)
            kept.append(None)
            continue
        bad = charset.unknown(label) if policy != "keep" else []
        if bad:
            affected += 1
            for c in bad:
                unknown_chars[c] = unknown_chars.get(c, 0) + 1
            if policy == "skip":
                continue
            label = charset.strip(label)
        if not label.strip():
            emptied += 1
            continue
        kept_idx.append(i)
        kept.append(label)
    top = sorted(unknown_chars, key=unknown_chars.get, reverse=True)[:10]
    if affected:
        action = "dropped" if policy == "skip" else "stripped of unknown characters"
        log.warning(
            "%s: %d of %d labels %s (charset %r); most frequent unknown characters: %s",
            source,
            affected,
            len(labels),
            action,
            charset.name,
            "".join(top),
        )
    if not kept:
        raise EmptyDatasetError(
            f"{source}: no usable sample left: {len(labels)} labels read, {affected} with "
            f"characters outside charset {charset.name!r} (policy {policy!r}; most frequent "
            f"unknown characters: {''.join(top)!r}), {emptied} empty. Use a charset that covers "
            "the labels, or unknown=strip."
        )
    return kept_idx, kept


TEACHER_VIEWS = ("clean", "augmented")


def make_sample(img: np.ndarray, label, cfg: PreprocessConfig, augment=None, teacher_view=None):
    """The one way every dataset turns an image into a sample: augment, preprocess, and
    keep the teacher's view when a teacher reads raw images."""
    clean = img
    if augment is not None:
        img = augment(img)
    sample = {"image": preprocess(img, cfg), "label": label}
    if teacher_view:
        sample["raw"] = clean if teacher_view == "clean" else img
    return sample


def check_teacher_view(view) -> None:
    if view is not None and view not in TEACHER_VIEWS:
        raise ValueError(f"teacher view must be one of {TEACHER_VIEWS} or null, got {view!r}")


class _ImageDataset:
    """Shared tail of the real datasets: decode, augment, preprocess, report bad images."""

    def __init__(self, preprocess_cfg: PreprocessConfig, augment=None, teacher_view=None):
        check_teacher_view(teacher_view)
        self.preprocess_cfg, self.augment = preprocess_cfg, augment
        self.teacher_view = teacher_view
        self._warned: set[str] = set()

    def label_lengths(self) -> list[int]:
        return [len(t) if t is not None else 8 for t in self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    def _finish(self, read, source: str, label: str) -> dict | None:
        try:
            img = read()
        except ImageError as e:
            if source not in self._warned:
                self._warned.add(source)
                warnings.warn(f"skipping unreadable image: {e}", stacklevel=2)
            return None
        return make_sample(img, label, self.preprocess_cfg, self.augment, self.teacher_view)


class LabelFileDataset(_ImageDataset):
    """``relative/path<TAB>label`` lines, paths relative to the label file's folder."""

    def __init__(
        self,
        path: str | Path,
        charset: Charset,
        preprocess_cfg: PreprocessConfig,
        unknown: str = "skip",
        augment=None,
        teacher_view=None,
    ):
        super().__init__(preprocess_cfg, augment, teacher_view)
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"label file not found: {self.path}")
        pairs, malformed = read_label_file(self.path)
        paths, labels = [p for p, _ in pairs], [lab for _, lab in pairs]
        if malformed:
            log.warning(
                "%s: %d malformed line(s) without 'path<TAB>label' skipped (first: line %d)",
                self.path,
                len(malformed),
                malformed[0],
            )
        if not labels:
            raise EmptyDatasetError(f"{self.path}: no 'path<TAB>label' line found")
        idx, self.labels = filter_labels(labels, charset, unknown, str(self.path))
        self.paths = [paths[i] for i in idx]

    @property
    def name(self) -> str:
        return self.path.parent.name if self.path.stem in ("gt", "labels") else self.path.stem

    def __getitem__(self, i: int) -> dict | None:
        p = self.paths[i]
        return self._finish(lambda: load_image(p), str(p), self.labels[i])


def is_lmdb(path: str | Path) -> bool:
    return (Path(path) / "data.mdb").is_file()


_LMDB_ENVS: dict[tuple[int, str], object] = {}


def _lmdb_env(path: Path):
    """One read-only environment per folder and process: LMDB refuses to open the same
    folder twice in a process (train and val may share it), and a handle cannot cross
    into DataLoader workers, which therefore open their own."""
    import lmdb

    key = (os.getpid(), str(path.resolve()))
    if key not in _LMDB_ENVS:
        _LMDB_ENVS[key] = lmdb.open(
            str(path), readonly=True, lock=False, readahead=False, meminit=False
        )
    return _LMDB_ENVS[key]


def read_lmdb(path: Path, read):
    """``read(txn)`` on an LMDB without keeping it open in this process (unless it is
    open already): DataLoader workers are forked from this process, and LMDB refuses to
    open in a child a folder that its parent holds open."""
    import lmdb

    key = (os.getpid(), str(path.resolve()))
    if key in _LMDB_ENVS:
        with _LMDB_ENVS[key].begin() as txn:
            return read(txn)
    env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
    try:
        with env.begin() as txn:
            return read(txn)
    finally:
        env.close()


class LmdbDataset(_ImageDataset):
    """DTRB layout: ``num-samples``, ``image-%09d``, ``label-%09d``, 1-based keys.

    Labels are read once at start (for filtering and width bucketing); the environment
    is reopened lazily in each DataLoader worker. A teacher-label cache (written by
    ``python -m distill.teach``) is an LMDB too: its samples also carry the teacher's
    stored outputs (``teacher_cache``), and images that had no real label (no
    ``gt-%09d`` key) come unlabeled, as from a folder, with the teacher's reading at hand.
    """

    def __init__(
        self,
        path: str | Path,
        charset: Charset,
        preprocess_cfg: PreprocessConfig,
        unknown: str = "skip",
        augment=None,
        teacher_view=None,
    ):
        super().__init__(preprocess_cfg, augment, teacher_view)
        self.path = Path(path)
        if not is_lmdb(self.path):
            raise FileNotFoundError(f"not an LMDB folder (no data.mdb): {self.path}")

        def read_labels(txn):
            raw = txn.get(b"num-samples")
            if raw is None:
                raise ValueError(f"{self.path}: LMDB has no 'num-samples' key (not DTRB layout)")
            meta = txn.get(b"teacher-meta")
            meta = json.loads(meta) if meta is not None else None
            labels = []
            for k in range(1, int(raw) + 1):
                lab = txn.get(b"label-%09d" % k)
                lab = lab.decode("utf-8") if lab is not None else ""
                if meta is not None and txn.get(b"gt-%09d" % k) is None:
                    lab = None  # the stored label is the teacher's reading
                labels.append(lab)
            return meta, labels

        self.teacher_meta, labels = read_lmdb(self.path, read_labels)
        if self.teacher_meta is not None and self.teacher_meta["charset"]["chars"] != charset.chars:
            raise ValueError(
                f"{self.path}: teacher outputs stored for charset "
                f"{self.teacher_meta['charset']['name']!r}, not {charset.name!r}: write the "
                "cache with the student's charset (python -m distill.teach --charset ...)"
            )
        idx, self.labels = filter_labels(labels, charset, unknown, str(self.path))
        self.keys = [i + 1 for i in idx]

    def _open(self):
        return _lmdb_env(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    def __getitem__(self, i: int) -> dict | None:
        key = self.keys[i]
        source = f"{self.path}:image-{key:09d}"

        def read():
            with self._open().begin() as txn:
                data = txn.get(b"image-%09d" % key)
            if data is None:
                raise ImageError(f"{source}: missing key")
            return decode_image(data, source)

        sample = self._finish(read, source, self.labels[i])
        if sample is not None and self.teacher_meta is not None:
            sample["teacher_cache"] = self._teacher_outputs(key)
        return sample

    def _teacher_outputs(self, key: int) -> dict:
        from distill.teach import unpack_topk

        with self._open().begin() as txn:
            text = txn.get(b"teacher-text-%09d" % key)
            conf = txn.get(b"teacher-conf-%09d" % key)
            topk = txn.get(b"teacher-topk-%09d" % key)
        idx, p = unpack_topk(topk)
        return {
            "text": text.decode("utf-8") if text is not None else None,
            "confidence": float(conf) if conf is not None else 0.0,
            "index": idx,
            "probs": p,
        }


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class FolderDataset(_ImageDataset):
    """Unlabeled crops: every image under a folder (searched recursively), label None.

    A teacher labels them during training (or once, with ``python -m distill.teach``).
    Width bucketing uses each image's aspect ratio, read from its header."""

    def __init__(
        self, path: str | Path, preprocess_cfg: PreprocessConfig, augment=None, teacher_view=None
    ):
        super().__init__(preprocess_cfg, augment, teacher_view)
        self.path = Path(path)
        self.paths = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise EmptyDatasetError(
                f"{self.path}: folder holds no image ({sorted(IMAGE_SUFFIXES)})"
            )
        self.labels = [None] * len(self.paths)
        self._lengths: list[int] | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def label_lengths(self) -> list[int]:
        """Not label lengths (there are none) but a proxy of the same scale: the width
        the line takes at height 32, in units of 8 pixels."""
        if self._lengths is None:
            from PIL import Image

            lengths = []
            for p in self.paths:
                try:
                    with Image.open(p) as im:
                        w, h = im.size
                    lengths.append(max(1, round(w * 32 / max(h, 1) / 8)))
                except OSError:
                    lengths.append(1)
            self._lengths = lengths
        return self._lengths

    def __getitem__(self, i: int) -> dict | None:
        p = self.paths[i]
        return self._finish(lambda: load_image(p), str(p), None)


def open_dataset(
    source,
    charset: Charset,
    preprocess_cfg: PreprocessConfig,
    unknown: str = "skip",
    augment=None,
    teacher_view=None,
):
    """A dataset from a path (label file, LMDB folder, or a folder of unlabeled images)
    or a partial dataset factory."""
    if callable(source):
        return source(
            charset=charset,
            preprocess_cfg=preprocess_cfg,
            augment=augment,
            teacher_view=teacher_view,
        )
    path = Path(str(source))
    if is_lmdb(path):
        return LmdbDataset(path, charset, preprocess_cfg, unknown, augment, teacher_view)
    if path.is_file():
        return LabelFileDataset(path, charset, preprocess_cfg, unknown, augment, teacher_view)
    if path.is_dir():
        return FolderDataset(path, preprocess_cfg, augment, teacher_view)
    raise FileNotFoundError(
        f"data source not found: {path} (expected a label file, an LMDB folder or a folder "
        "of images)"
    )


class ConcatDataset:
    """Several datasets one after the other, keeping their label lengths."""

    def __init__(self, datasets: list):
        self.datasets = list(datasets)
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets])
        self.name = "+".join(getattr(d, "name", "data") for d in self.datasets)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def label_lengths(self) -> list[int]:
        return [n for d in self.datasets for n in d.label_lengths()]

    def __getitem__(self, i: int):
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.datasets[k][i - int(self.offsets[k])]


class MixedDataset:
    """Draws from several datasets with given ratios (e.g. 70% synthetic, 30% your crops).

    The draw is fixed by ``seed`` at construction, so label lengths are known for
    width bucketing; ``size`` defaults to the total size of the sources.
    """

    def __init__(self, datasets: list, ratios: list[float], size: int | None = None, seed: int = 0):
        if len(ratios) != len(datasets):
            raise ValueError(f"mixed data: {len(datasets)} sources but {len(ratios)} ratios")
        p = np.asarray(ratios, dtype=np.float64)
        if (p < 0).any() or p.sum() <= 0:
            raise ValueError(f"mixed data: ratios must be >= 0 with a positive sum, got {ratios}")
        self.datasets, self.ratios = list(datasets), (p / p.sum()).tolist()
        size = size or sum(len(d) for d in datasets)
        rng = np.random.default_rng([seed, 0x313])
        self.which = rng.choice(len(datasets), size=size, p=p / p.sum())
        self.index = np.array([rng.integers(len(datasets[k])) for k in self.which], dtype=np.int64)
        self.name = (
            "mix("
            + ",".join(
                f"{getattr(d, 'name', 'data')}:{r:.2f}" for d, r in zip(self.datasets, self.ratios)
            )
            + ")"
        )

    def __len__(self) -> int:
        return len(self.which)

    def label_lengths(self) -> list[int]:
        lengths = [d.label_lengths() for d in self.datasets]
        return [lengths[k][j] for k, j in zip(self.which.tolist(), self.index.tolist())]

    def __getitem__(self, i: int):
        return self.datasets[int(self.which[i])][int(self.index[i])]
