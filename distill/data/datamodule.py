"""The LightningDataModule: builds train/val/test datasets from config and batches them."""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning as L
from torch.utils.data import DataLoader

from distill.core.charset import Charset
from distill.core.preprocess import PreprocessConfig
from distill.data.augment import Augmenter
from distill.data.collate import BucketBatchSampler, Collator
from distill.data.datasets import ConcatDataset, MixedDataset, open_dataset

log = logging.getLogger(__name__)


def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, (str, bytes)) or callable(x):
        return [x]
    return list(x)


class ResumableLoader(DataLoader):
    """The training loader, resumable mid-epoch.

    A checkpoint records the epoch and how many of its batches were trained on; a run
    resumed from it goes on with the next batch of the same order. A plain loader would
    restart the epoch: its first batches seen twice, its last ones never.
    """

    def __init__(self, *args, progress: Callable[[], tuple[int, int]], **kwargs):
        super().__init__(*args, **kwargs)
        self.progress = progress  # -> (batches trained this epoch, batches per epoch)

    def state_dict(self) -> dict:
        done, per_epoch = self.progress()
        return {"epoch": self.batch_sampler.epoch, "batches_done": done, "per_epoch": per_epoch}

    def load_state_dict(self, state: dict) -> None:
        epoch, done = state["epoch"], state["batches_done"]
        if done >= state["per_epoch"]:  # saved on the epoch's last batch
            epoch, done = epoch + 1, 0
        self.batch_sampler.resume_at(epoch, done)


class OCRDataModule(L.LightningDataModule):
    """Sources are label-file paths, LMDB folders, or partial dataset factories (synth).

    - ``train``: one or more sources, concatenated, or mixed with ``train_ratios``;
    - ``val``: one or more sources, concatenated (``val/acc`` picks the checkpoint);
    - ``test``: each source is its own test set with its own metrics.
    Labels with characters outside the charset follow ``unknown`` for train and val
    and ``test_unknown`` (default ``keep``: they count as errors) for test. ``opener``
    makes a dataset of a source (default :func:`open_dataset`; the data configs give
    :func:`distill.kd.cache.open_with_cache`, which puts a label cache's stored teacher
    outputs beside each sample).
    """

    def __init__(
        self,
        charset: str | list[str] | Charset = "ascii",
        preprocess: dict | None = None,
        train=None,
        val=None,
        test=None,
        train_ratios: list[float] | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        unknown: str = "skip",
        test_unknown: str = "keep",
        augment: dict | None = None,
        bucket: bool = True,
        seed: int = 0,
        teacher_view: str | None = None,
        labels_from_teacher: bool = False,
        opener: Callable | None = None,
    ):
        super().__init__()
        self.charset = Charset.resolve(charset)
        self.preprocess_cfg = PreprocessConfig.from_dict(preprocess)
        self.train_sources, self.val_sources = _as_list(train), _as_list(val)
        self.test_sources = _as_list(test)
        self.train_ratios = list(train_ratios) if train_ratios else None
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.bucket, self.seed = num_workers, bucket, seed
        self.unknown, self.test_unknown = unknown, test_unknown
        self.augment = Augmenter(**augment) if augment is not None else None
        # set by train() from the teacher: the raw view it reads, and whether it labels
        self.teacher_view, self.labels_from_teacher = teacher_view, labels_from_teacher
        self.opener = opener or open_dataset
        self.train_set = self.val_set = None
        self.test_sets: list = []

    def _open(self, sources, unknown, augment=None, teacher_view=None) -> list:
        return [
            self.opener(s, self.charset, self.preprocess_cfg, unknown, augment, teacher_view)
            for s in sources
        ]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            if not self.train_sources:
                raise ValueError("data.train is empty: give a label file, an LMDB folder or synth")
            sets = self._open(self.train_sources, self.unknown, self.augment, self.teacher_view)
            unlabeled = [d.name for d in sets if None in getattr(d, "labels", ())]
            if unlabeled and not self.labels_from_teacher:
                raise ValueError(
                    f"training data {unlabeled} has no labels: give a teacher to label it "
                    "(teacher.ckpt=PATH or teacher=ppocrv6)"
                )
            if self.train_ratios:
                self.train_set = MixedDataset(sets, self.train_ratios, seed=self.seed)
            else:
                self.train_set = sets[0] if len(sets) == 1 else ConcatDataset(sets)
            log.info("train data: %s, %d samples", self.train_set.name, len(self.train_set))
        if stage in (None, "fit", "validate") and self.val_set is None and self.val_sources:
            sets = self._open(self.val_sources, self.unknown, teacher_view=self.teacher_view)
            if any(None in getattr(d, "labels", ()) for d in sets):
                raise ValueError("validation data needs labels: some of it has none")
            self.val_set = sets[0] if len(sets) == 1 else ConcatDataset(sets)
            log.info("val data: %s, %d samples", self.val_set.name, len(self.val_set))
        if stage in (None, "test") and not self.test_sets:
            self.test_sets = self._open(self.test_sources, self.test_unknown)

    @property
    def test_names(self) -> list[str]:
        names = [getattr(d, "name", f"test{i}") for i, d in enumerate(self.test_sets)]
        # two sets with the same folder name stay distinguishable
        return [n if names.count(n) == 1 else f"{n}{i}" for i, n in enumerate(names)]

    def _loader(
        self, dataset, batch_size: int, shuffle: bool, encode: bool, resume: bool = False
    ) -> DataLoader:
        lengths = dataset.label_lengths() if self.bucket else [0] * len(dataset)
        kwargs = dict(
            batch_sampler=BucketBatchSampler(lengths, batch_size, shuffle=shuffle, seed=self.seed),
            collate_fn=Collator(self.charset, encode=encode),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=False,
        )
        if resume:
            return ResumableLoader(dataset, progress=self._train_progress, **kwargs)
        return DataLoader(dataset, **kwargs)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True, encode=True, resume=True)

    def _train_progress(self) -> tuple[int, int]:
        """Batches trained in the current epoch, and batches per epoch (0, 0 without a Trainer)."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return done, int(min(trainer.num_training_batches, 2**62))

    def val_dataloader(self):
        if self.val_set is None:
            return []
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False, encode=True)

    def test_dataloader(self):
        return [self._loader(d, self.eval_batch_size, False, encode=False) for d in self.test_sets]


def validation_set(data: dict | None, charset: Charset, preprocess: PreprocessConfig, why: str):
    """The validation dataset of a data config (e.g. the one a checkpoint was trained
    with), read with the given charset and preprocessing, without augmentation; ``why``
    names the job that needs it in the errors."""
    import hydra

    if not data:
        raise ValueError(
            f"{why} needs validation data: this checkpoint carries no data config; "
            "give one, e.g. data=labelfile 'data.val=[FILE]'"
        )
    datamodule = hydra.utils.instantiate(
        data,
        charset=charset.to_dict(),
        preprocess=preprocess.to_dict(),
        augment=None,
        num_workers=0,
        _convert_="all",
    )
    datamodule.setup("validate")
    if datamodule.val_set is None:
        raise ValueError(f"{why} needs validation data (data.val)")
    return datamodule.val_set
