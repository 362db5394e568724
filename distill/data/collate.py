"""Batching: right-padding with valid widths, and a width-bucketing batch sampler."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from distill.core.charset import Charset
from distill.core.preprocess import pad_batch


def encode_targets(texts: list[str | None], charset: Charset) -> dict[str, torch.Tensor]:
    """CTC targets [B, L] and lengths; a missing text (None) has length 0 and is left
    out of the loss (``has_target`` False)."""
    lengths = [len(t) if t is not None else 0 for t in texts]
    targets = torch.zeros(len(texts), max(max(lengths, default=0), 1), dtype=torch.long)
    for i, t in enumerate(texts):
        if t:
            targets[i, : len(t)] = torch.tensor(charset.encode(t), dtype=torch.long)
    return {
        "targets": targets,
        "target_lengths": torch.tensor(lengths, dtype=torch.long),
        "has_target": torch.tensor([t is not None for t in texts], dtype=torch.bool),
    }


class Collator:
    """Pads images to the widest sample (multiple of 4) and encodes labels for CTC.

    Unreadable samples (``None``) are dropped and counted in ``batch["skipped"]``. With
    ``encode=False`` (evaluation) labels may hold characters outside the charset.
    Unlabeled samples keep ``None`` as their label; raw teacher views pass through.
    """

    def __init__(self, charset: Charset, encode: bool = True):
        self.charset, self.encode = charset, encode

    def __call__(self, samples: list[dict | None]) -> dict | None:
        good = [s for s in samples if s is not None]
        skipped = len(samples) - len(good)
        if not good:
            return {"images": None, "skipped": skipped}
        images, widths = pad_batch([s["image"] for s in good])
        labels = [s["label"] for s in good]
        batch = {
            "images": torch.from_numpy(images),
            "widths": torch.from_numpy(widths),
            "labels": labels,
            "skipped": skipped,
        }
        for key in ("raw", "teacher_cache"):  # a teacher's view, a teacher's stored outputs
            if key in good[0]:
                batch[key] = [s.get(key) for s in good]
        if self.encode:
            batch.update(encode_targets(labels, self.charset))
        return batch


class BucketBatchSampler:
    """Groups samples of similar label length (a proxy for image width) into batches.

    Less padding means less wasted compute and fewer padded frames. Shards batches
    across distributed ranks itself (so set ``use_distributed_sampler=False``); every
    rank gets the same number of batches.
    """

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        bucket_batches: int = 50,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.bucket_batches, self.epoch = seed, bucket_batches, 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches already trained)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, batch: int) -> None:
        """The next pass over `epoch` starts at its `batch`-th batch (a resumed run)."""
        self.epoch, self._resume = epoch, (epoch, batch)

    @staticmethod
    def _world() -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _batches(self) -> list[np.ndarray]:
        n, bs = len(self.lengths), self.batch_size
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = rng.permutation(n)
            # sort within large random chunks: batches are homogeneous yet vary per epoch
            chunk = bs * self.bucket_batches
            chunks = np.split(order, range(chunk, n, chunk))
            order = np.concatenate([c[np.argsort(self.lengths[c], kind="stable")] for c in chunks])
        else:
            order = np.argsort(self.lengths, kind="stable")
        batches = [order[i : i + bs] for i in range(0, n, bs)]
        if self.drop_last and batches and len(batches[-1]) < bs:
            batches.pop()
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self):
        rank, world = self._world()
        batches = self._batches()
        if world > 1 and batches:
            per_rank = -(-len(batches) // world)
            # repeat a few batches so every rank steps the same number of times
            batches = [batches[i % len(batches)] for i in range(per_rank * world)][rank::world]
        if self._resume is not None and self._resume[0] == self.epoch:
            batches = batches[self._resume[1] :]
        self._resume = None
        for b in batches:
            yield b.tolist()

    def __len__(self) -> int:
        n, bs = len(self.lengths), self.batch_size
        n = n // bs if self.drop_last else -(-n // bs)
        _, world = self._world()
        return -(-n // world)
