"""Lightning callbacks: training throughput and a TensorBoard panel of validation samples."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
from PIL import Image, ImageDraw, ImageFont


class ThroughputMonitor(L.Callback):
    """Logs ``train/images_per_s``: images per wall-clock second, data loading included.
    When stdout is not a terminal (a run under nohup, a CI log) the live progress bar
    shows nothing, so every ``print_every`` steps it also prints one line: step, speed,
    the mean loss since the previous line (one step's loss swings several-fold with the
    lengths of its lines) and the time left."""

    def __init__(self, print_every: int = 200):
        self._last = None
        self.print_every = print_every
        self._mark: tuple[int, float] | None = None
        self._losses: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None and batch.get("labels"):
            rate = len(batch["labels"]) * trainer.world_size / max(now - self._last, 1e-9)
            pl_module.log("train/images_per_s", rate, on_step=True, on_epoch=False, prog_bar=True)
        self._last = now
        if self.print_every and trainer.is_global_zero and not sys.stdout.isatty():
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is not None:
                self._losses.append(float(loss))
            self._print_line(trainer, now)

    def _print_line(self, trainer, now: float) -> None:
        step = trainer.global_step
        if self._mark is None:  # the first step of this (possibly resumed) run
            self._mark = (step, now)
            self._losses.clear()
            return
        if step % self.print_every:
            return
        (step0, t0), self._mark = self._mark, (step, now)
        per_step = (now - t0) / max(step - step0, 1)
        line = f"step {step}"
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        if total:
            line += f"/{total} ({step / total:.0%})"
        line += f", {per_step:.2f} s/step"
        if self._losses:
            line += f", mean loss {sum(self._losses) / len(self._losses):.3f}"
            self._losses.clear()
        if total:
            line += f", {_duration(per_step * (total - step))} left"
        print(line, flush=True)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _panel_font(texts: list[str], size: int = 14):
    """A font that has every character of ``texts`` (CJK labels need a CJK font)."""
    from distill.data.fonts import FontLibrary

    text = "".join(texts)
    try:
        lib = FontLibrary()
        # the font covering the most of the text (all of it, when one does)
        need = {ord(c) for c in text if not c.isspace()}
        best = max(lib.faces, key=lambda f: len(need & f.coverage))
        return ImageFont.truetype(best.path, size, index=best.index)
    except FileNotFoundError:
        pass
    return ImageFont.load_default()


def render_samples(images: np.ndarray, widths, labels, preds, confs, mean=0.5, std=0.5, font=None):
    """A uint8 RGB panel: each image with 'GT / prediction (confidence)' under it,
    green when the prediction is right and red when it is wrong."""
    font = font or _panel_font(list(labels) + list(preds))
    rows = []
    for img, w, gt, pr, cf in zip(images, widths, labels, preds, confs):
        x = np.clip((img[:, :, : int(w)] * std + mean) * 255, 0, 255).astype(np.uint8)
        x = np.repeat(x, 3, axis=0) if x.shape[0] == 1 else x
        line = Image.fromarray(x.transpose(1, 2, 0))
        caption = f"GT: {gt}   PR: {pr}  ({cf:.2f})"
        cw = int(font.getlength(caption)) + 8
        row = Image.new("RGB", (max(line.width, cw), line.height + 20), (255, 255, 255))
        row.paste(line, (0, 0))
        colour = (0, 130, 0) if gt == pr else (200, 0, 0)
        ImageDraw.Draw(row).text((4, line.height + 2), caption, fill=colour, font=font)
        rows.append(row)
    width = max(r.width for r in rows)
    panel = Image.new("RGB", (width, sum(r.height + 4 for r in rows)), (230, 230, 230))
    y = 0
    for r in rows:
        panel.paste(r, (0, y))
        y += r.height + 4
    return np.asarray(panel)


class ValidationSamples(L.Callback):
    """Each validation, writes an image panel of the first ``n`` validation samples with
    their ground truth and prediction to TensorBoard (``val/samples``)."""

    def __init__(self, n: int = 12):
        self.n = n
        self._font = None

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        if batch_idx != 0 or dataloader_idx != 0 or not outputs or trainer.sanity_checking:
            return
        writer = getattr(trainer.logger, "experiment", None)
        if writer is None or not hasattr(writer, "add_image") or not trainer.is_global_zero:
            return
        k = min(self.n, len(batch["labels"]))
        labels, preds = batch["labels"][:k], outputs["preds"][:k]
        if self._font is None:
            self._font = _panel_font(pl_module.charset.chars)
        cfg = pl_module.preprocess_cfg
        panel = render_samples(
            batch["images"][:k].float().cpu().numpy(),
            batch["widths"][:k].tolist(),
            labels,
            preds,
            outputs["confidences"][:k],
            cfg.mean,
            cfg.std,
            self._font,
        )
        writer.add_image("val/samples", panel, trainer.global_step, dataformats="HWC")


class LastCheckpoint(L.Callback):
    """``last.ckpt`` every N training steps, on a crash, and at the very end of training.

    Lightning's ``save_last`` only follows the monitored checkpoints (written at
    validation), so the steps after the last validation would be lost; resuming with
    ``ckpt_path=last`` loses at most N steps. The file is written beside the old one and
    renamed over it, so a crash while saving never leaves a broken ``last.ckpt``.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 100):
        if every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be >= 1, got {every_n_train_steps}")
        self.path = Path(dirpath) / "last.ckpt"
        self.every = every_n_train_steps
        self._saved_step = -1

    def _save(self, trainer: L.Trainer) -> None:
        if (
            trainer.fast_dev_run
            or trainer.sanity_checking
            or trainer.global_step == self._saved_step
        ):
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # all ranks call it; global rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # under DDP the other ranks are not here to join the save: keep the periodic file
        if trainer.world_size == 1 and trainer.global_step > 0:
            self._save(trainer)


class WallClock(L.Callback):
    """Training wall time summed over every resumed part of a run: the time so far
    rides in the checkpoint and is added back on resume."""

    def __init__(self):
        self.before = 0.0
        self._start: float | None = None

    @property
    def elapsed(self) -> float:
        now = time.monotonic()
        return self.before + (now - self._start if self._start is not None else 0.0)

    def on_fit_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()

    def state_dict(self) -> dict:
        return {"elapsed_s": self.elapsed}

    def load_state_dict(self, state_dict: dict) -> None:
        self.before = float(state_dict.get("elapsed_s", 0.0))
