"""LightningModule for supervised CTC training of a CRNN recognizer.

The checkpoint is self-contained: its hyper-parameters hold the network config, the
charset's characters, the preprocessing and the data config, so
:func:`distill.models.checkpoint.load_network` alone rebuilds a network that reads text
exactly as it was trained to (and export finds its validation data).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from distill.core.charset import Charset
from distill.core.ctc import greedy_decode
from distill.core.metrics import RecognitionMetrics
from distill.core.preprocess import PreprocessConfig, valid_frames
from distill.kd.losses import CaseFold, supervised_loss
from distill.kd.outputs import Outputs
from distill.models import build_model, freeze_modules
from distill.models.checkpoint import TrainedNetwork, load_network


def plain(x):
    """A config as plain containers (checkpoints keep no OmegaConf objects)."""
    if isinstance(x, (DictConfig, ListConfig)):
        return OmegaConf.to_container(x, resolve=True)
    return x


CTC_CASES = ("keep", "fold")


class RecognizerModule(L.LightningModule):
    """Supervised CTC training of a CRNN; the base of :class:`DistillationModule`."""

    def __init__(
        self,
        net: dict,
        charset: str | list[str] | dict = "ascii",
        preprocess: dict | None = None,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        protocol: str = "exact",
        data: dict | None = None,
        ctc_case: str = "keep",
        freeze: list[str] | None = None,
    ):
        """``ctc_case``: ``keep``, or ``fold`` to leave letter case out of CTC (labels
        stored in one case for mixed-case text; :class:`~distill.kd.losses.CaseFold`).
        ``freeze``: the network's modules that do not train (``backbone.blocks.0``: a
        module and everything in it)."""
        super().__init__()
        if ctc_case not in CTC_CASES:
            raise ValueError(f"model.ctc_case must be one of {CTC_CASES}, got {ctc_case!r}")
        self.charset = Charset.resolve(plain(charset))
        self.preprocess_cfg = PreprocessConfig.from_dict(plain(preprocess))
        net = dict(plain(net))
        if net.get("in_channels") is None:
            net["in_channels"] = self.preprocess_cfg.channels
        if net["in_channels"] != self.preprocess_cfg.channels:
            raise ValueError(
                f"model.net.in_channels={net['in_channels']} but preprocess.channels="
                f"{self.preprocess_cfg.channels}: they must agree"
            )
        self.save_hyperparameters(
            {
                "net": net,
                "charset": self.charset.to_dict(),
                "preprocess": self.preprocess_cfg.to_dict(),
                "optimizer": plain(optimizer),
                "scheduler": plain(scheduler),
                "protocol": protocol,
                "data": plain(data),
                "ctc_case": ctc_case,
                "freeze": list(plain(freeze) or []),
            },
            logger=False,
        )
        self.net = build_model(self.charset.num_classes, **net)
        freeze_modules(self.net, self.hparams.freeze)
        self.case_fold = (
            CaseFold(self.charset.case_pairs(), self.charset.num_classes)
            if ctc_case == "fold"
            else None
        )
        self.loss = supervised_loss()
        self.loss.fold_case(self.case_fold)
        self.protocol = protocol
        self.val_metrics = RecognitionMetrics(protocol)
        self.test_metrics: list[RecognitionMetrics] = []
        self.test_results: dict[str, dict] = {}

    @classmethod
    def from_network(cls, trained: TrainedNetwork) -> RecognizerModule:
        """A module around a network read from a checkpoint (to evaluate it)."""
        module = cls(
            trained.net_config,
            trained.charset.to_dict(),
            trained.preprocess.to_dict(),
            protocol=trained.protocol,
            data=trained.hparams.get("data"),
        )
        module.net = trained.net
        return module.eval()

    @classmethod
    def from_checkpoint_file(cls, path: str) -> RecognizerModule:
        return cls.from_network(load_network(path))

    def trained_network(self) -> TrainedNetwork:
        """The network with its charset, preprocessing and run config (to export it)."""
        return TrainedNetwork(
            self.net, self.charset, self.preprocess_cfg, self.protocol, dict(self.hparams)
        )

    def forward(self, images: torch.Tensor, widths: torch.Tensor | None = None):
        return self.net(images, widths)

    def student_outputs(self, batch: dict) -> Outputs:
        logits, feat = self.net(batch["images"], batch["widths"])
        return Outputs(logits, valid_frames(batch["widths"], self.net.width_per_frame), feat)

    def teacher_outputs(self, batch: dict) -> Outputs | None:
        return None

    # ------------------------------------------------------------ decoding
    def decode(
        self, logits: torch.Tensor, frames: torch.Tensor, charset: Charset | None = None
    ) -> tuple[list[str], list[float]]:
        charset = charset or self.charset
        probs = logits.float().softmax(-1).cpu().numpy()
        out = greedy_decode(probs, frames.cpu().numpy(), blank=charset.blank)
        return [charset.decode(i) for i, _ in out], [c for _, c in out]

    # ------------------------------------------------------------ training
    def _zero_loss(self) -> torch.Tensor:
        """A zero loss tied to every trainable parameter: a batch whose images were all
        unreadable still takes part in DDP's gradient all-reduce, so no rank waits."""
        return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0

    def training_step(self, batch, batch_idx):
        if batch["images"] is None:
            self.log("train/skipped", float(batch["skipped"]), reduce_fx="sum", batch_size=1)
            return self._zero_loss()
        student = self.student_outputs(batch)
        terms = self.loss(student, self.teacher_outputs(batch), batch)
        bs = len(batch["labels"])
        for name, value in terms.items():
            if name == "stats":
                continue
            key = "train/loss" if name == "loss" else f"train/loss_{name}"
            self.log(key, value, prog_bar=name == "loss", batch_size=bs)
        # unreadable images (dropped by the collator) + labels too long for their image
        skipped = batch["skipped"] + terms["stats"].get("too_long", 0)
        self.log("train/skipped", float(skipped), reduce_fx="sum", batch_size=bs)
        return terms["loss"]

    def validation_step(self, batch, batch_idx):
        if batch["images"] is None:
            return None
        student = self.student_outputs(batch)
        loss = self.loss.terms["ctc"](student, None, batch)
        self.log("val/loss", loss, sync_dist=True, batch_size=len(batch["labels"]))
        preds, confs = self.decode(student.logits, student.frames)
        self.val_metrics.update(preds, batch["labels"])
        return {"preds": preds, "confidences": confs, "outputs": student}

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
        student = self.student_outputs(batch)
        preds, _ = self.decode(student.logits, student.frames)
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
