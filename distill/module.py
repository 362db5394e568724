"""LightningModule for supervised CTC training of a CRNN recognizer.

The checkpoint is self-contained: its hyper-parameters hold the network config, the
charset's characters and the preprocessing, so ``load_from_checkpoint(path)`` alone
rebuilds a recognizer that reads text exactly as it was trained to.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from distill.charset import Charset
from distill.ctc import greedy_decode
from distill.losses import ctc_loss
from distill.metrics import RecognitionMetrics
from distill.models import build_model
from distill.preprocess import PreprocessConfig, valid_frames


def _plain(x):
    if isinstance(x, (DictConfig, ListConfig)):
        return OmegaConf.to_container(x, resolve=True)
    return x


def warmup_cosine(
    optimizer, total_steps: int, warmup_ratio: float = 0.05, min_lr_ratio: float = 0.01
):
    """Linear warm-up then cosine decay to ``min_lr_ratio`` of the base LR (per step)."""
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class RecognizerModule(L.LightningModule):
    def __init__(
        self,
        net: dict,
        charset: str | list[str] = "ascii",
        preprocess: dict | None = None,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        protocol: str = "exact",
    ):
        super().__init__()
        self.charset = Charset.resolve(_plain(charset))
        self.preprocess_cfg = PreprocessConfig.from_dict(_plain(preprocess))
        net = dict(_plain(net))
        channels = net.setdefault("in_channels", self.preprocess_cfg.channels)
        if channels != self.preprocess_cfg.channels:
            raise ValueError(
                f"model.net.in_channels={channels} but preprocess.channels="
                f"{self.preprocess_cfg.channels}: they must agree"
            )
        self.save_hyperparameters(
            {
                "net": net,
                "charset": list(self.charset.chars),
                "preprocess": self.preprocess_cfg.to_dict(),
                "optimizer": _plain(optimizer),
                "scheduler": _plain(scheduler),
                "protocol": protocol,
            },
            logger=False,
        )
        self.net = build_model(self.charset.num_classes, **net)
        self.protocol = protocol
        self.val_metrics = RecognitionMetrics(protocol)
        self.test_metrics: list[RecognitionMetrics] = []
        self.test_results: dict[str, dict] = {}

    def forward(self, images: torch.Tensor):
        return self.net(images)

    # ------------------------------------------------------------ decoding
    def decode(self, logits: torch.Tensor, widths: torch.Tensor) -> tuple[list[str], list[float]]:
        probs = logits.float().softmax(-1).cpu().numpy()
        frames = valid_frames(widths.cpu().numpy())
        out = greedy_decode(probs, frames, blank=self.charset.blank)
        return [self.charset.decode(i) for i, _ in out], [c for _, c in out]

    # ------------------------------------------------------------ training
    def _supervised_loss(self, logits, batch) -> tuple[torch.Tensor, int]:
        return ctc_loss(
            logits, batch["targets"], batch["target_lengths"], valid_frames(batch["widths"])
        )

    def training_step(self, batch, batch_idx):
        if batch["images"] is None:
            return None
        logits, _ = self.net(batch["images"])
        loss, too_long = self._supervised_loss(logits, batch)
        bs = len(batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log(
            "train/skipped", float(batch["skipped"] + too_long), reduce_fx="sum", batch_size=bs
        )
        return loss

    def validation_step(self, batch, batch_idx):
        if batch["images"] is None:
            return None
        logits, _ = self.net(batch["images"])
        loss, _ = self._supervised_loss(logits, batch)
        self.log("val/loss", loss, sync_dist=True, batch_size=len(batch["labels"]))
        preds, confs = self.decode(logits, batch["widths"])
        self.val_metrics.update(preds, batch["labels"])
        return {"preds": preds, "confidences": confs}

    def _reduced(self, metrics: RecognitionMetrics) -> dict[str, float]:
        """Add the metric sums of all processes, then compute the ratios."""
        sums = torch.tensor([metrics.sums[k] for k in metrics.FIELDS], dtype=torch.float64)
        sums = self.trainer.strategy.reduce(sums.to(self.device), reduce_op="sum")
        total = RecognitionMetrics(metrics.protocol)
        total.add_sums(dict(zip(metrics.FIELDS, sums.cpu().tolist())))
        return total.compute()

    def on_validation_epoch_start(self) -> None:
        self.val_metrics.reset()

    def on_validation_epoch_end(self) -> None:
        results = self._reduced(self.val_metrics)
        for k in ("acc", "acc_nospace", "cer", "ned"):
            self.log(f"val/{k}", results[k], prog_bar=k in ("acc", "cer"))

    # ------------------------------------------------------------ test
    def on_test_epoch_start(self) -> None:
        n = len(self.trainer.test_dataloaders or [])
        self.test_metrics = [RecognitionMetrics(self.protocol) for _ in range(max(n, 1))]
        self.test_results = {}

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        if batch["images"] is None:
            return None
        logits, _ = self.net(batch["images"])
        preds, _ = self.decode(logits, batch["widths"])
        self.test_metrics[dataloader_idx].update(preds, batch["labels"])

    def on_test_epoch_end(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        names = getattr(dm, "test_names", None) or [
            f"test{i}" for i in range(len(self.test_metrics))
        ]
        for name, metrics in zip(names, self.test_metrics):
            results = self._reduced(metrics)
            self.test_results[name] = results
            for k in ("acc", "acc_nospace", "cer", "ned"):
                self.log(f"test/{name}/{k}", results[k], add_dataloader_idx=False)

    # ------------------------------------------------------------ optim
    def configure_optimizers(self):
        opt_cfg = self.hparams.optimizer or {
            "_target_": "torch.optim.AdamW",
            "_partial_": True,
            "lr": 1e-3,
        }
        optimizer = instantiate(opt_cfg)(params=[p for p in self.parameters() if p.requires_grad])
        if not self.hparams.scheduler:
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if not np.isfinite(total):
            raise ValueError(
                "the LR schedule needs a finite run: set trainer.max_steps or max_epochs"
            )
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer, total_steps=int(total))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
