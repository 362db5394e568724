"""Real data: label files and LMDBs (DTRB layout), their mixture, and charset filtering.

Every dataset yields ``{"image": float32 (C, 32, w), "label": str}`` (``label`` is None
for unlabeled images, which a teacher labels) or ``None`` for a sample whose image
cannot be read; the collate function drops and counts those, so a bad file costs one
sample, never the epoch. With ``teacher_view`` set, a sample also carries ``raw``: the
uint8 RGB image a teacher with its own preprocessing reads (the clean one or the
augmented one the student sees).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from distill.core.charset import UNKNOWN_POLICIES, Charset
from distill.core.labelfile import read_label_file
from distill.core.preprocess import (
    ImageError,
    PreprocessConfig,
    decode_image,
    load_image,
    preprocess,
)
from distill.core.sources import IMAGE_SUFFIXES, image_files, is_image_file, source_kind
from distill.data.lmdb import NUM_SAMPLES, open_env, read_lmdb, sample_key

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


class LmdbDataset(_ImageDataset):
    """DTRB layout: ``num-samples``, ``image-%09d``, ``label-%09d``, 1-based keys.

    Labels are read once at start (for filtering and width bucketing); the environment
    is reopened lazily in each DataLoader worker. ``keys`` holds the LMDB key of each
    kept sample (what a label cache attached beside it looks its outputs up by);
    ``labels`` given replace the stored ones (None: an unlabeled sample)."""

    def __init__(
        self,
        path: str | Path,
        charset: Charset,
        preprocess_cfg: PreprocessConfig,
        unknown: str = "skip",
        augment=None,
        teacher_view=None,
        labels: list[str | None] | None = None,
    ):
        super().__init__(preprocess_cfg, augment, teacher_view)
        self.path = Path(path)
        self.charset, self.unknown = charset, unknown
        if labels is None:
            labels = read_lmdb(self.path, lambda txn: self.read_labels(txn, self.path))
        idx, self.labels = filter_labels(labels, charset, unknown, str(self.path))
        self.keys = [i + 1 for i in idx]

    @staticmethod
    def read_labels(txn, path) -> list[str]:
        """Every stored label, in key order (key k at index k - 1)."""
        raw = txn.get(NUM_SAMPLES)
        if raw is None:
            raise ValueError(f"{path}: LMDB has no 'num-samples' key (not DTRB layout)")
        return [
            (txn.get(sample_key("label", k)) or b"").decode("utf-8") for k in range(1, int(raw) + 1)
        ]

    @property
    def name(self) -> str:
        return self.path.name

    def __getitem__(self, i: int) -> dict | None:
        key = self.keys[i]
        source = f"{self.path}:image-{key:09d}"

        def read():
            with open_env(self.path).begin() as txn:
                data = txn.get(sample_key("image", key))
            if data is None:
                raise ImageError(f"{source}: missing key")
            return decode_image(data, source)

        return self._finish(read, source, self.labels[i])


class FolderDataset(_ImageDataset):
    """Unlabeled crops: every image under a folder (searched recursively), label None.

    A teacher labels them during training (or once, with ``python -m distill.teach``).
    Width bucketing uses each image's aspect ratio, read from its header."""

    def __init__(
        self, path: str | Path, preprocess_cfg: PreprocessConfig, augment=None, teacher_view=None
    ):
        super().__init__(preprocess_cfg, augment, teacher_view)
        self.path = Path(path)
        self.paths = image_files(self.path)
        if not self.paths:
            raise EmptyDatasetError(
                f"{self.path}: folder holds no image ({', '.join(IMAGE_SUFFIXES)})"
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
    kind = source_kind(path)
    if kind == "lmdb":
        return LmdbDataset(path, charset, preprocess_cfg, unknown, augment, teacher_view)
    if kind == "folder":
        return FolderDataset(path, preprocess_cfg, augment, teacher_view)
    if kind == "image" and is_image_file(path):
        raise ValueError(
            f"data source {path}: one image; a data source is a label file, an LMDB folder "
            "or a folder of images"
        )
    if kind != "missing":  # a label file (its reader names what is wrong with it)
        return LabelFileDataset(path, charset, preprocess_cfg, unknown, augment, teacher_view)
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
