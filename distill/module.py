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
from distill.losses import DistillationLoss, ctc_loss, frame_mask
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
        charset: str | list[str] | dict = "ascii",
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
                "charset": self.charset.to_dict(),
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
        return {"preds": preds, "confidences": confs, "logits": logits}

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


def load_recognizer(path: str, map_location: str = "cpu") -> RecognizerModule:
    """The recognizer of any checkpoint made here: teacher, student or distillation.

    Only the network is read (a distillation checkpoint also holds the feature
    adapter, which inference does not need)."""
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    try:
        hp = ckpt["hyper_parameters"]
        state = ckpt["state_dict"]
    except KeyError as e:
        raise ValueError(f"{path}: not a checkpoint of this framework (no {e.args[0]})") from None
    module = RecognizerModule(**hp)
    module.load_state_dict({k: v for k, v in state.items() if k.startswith("net.")})
    return module.eval()


def argmax_agreement(t_logits, s_logits, frames, blank: int = 0) -> torch.Tensor:
    """[agreeing frames, frames] over the valid frames where the teacher's best class is
    a character: does the student put the same characters where the teacher does?"""
    mask = frame_mask(frames, t_logits.shape[1]).bool()
    t_best, s_best = t_logits.argmax(-1), s_logits.argmax(-1)
    mask &= t_best != blank
    agree = (s_best[mask] == t_best[mask]).sum()
    return torch.tensor([float(agree), float(mask.sum())], dtype=torch.float64)


class DistillationModule(RecognizerModule):
    """Trains the student from labels and from a frozen teacher.

    The teacher is held outside the module's registered children: it is never in
    ``parameters()`` (so never in the optimizer), never in the checkpoint, and never
    switched to train mode by Lightning, so its BatchNorm statistics cannot move.
    """

    def __init__(self, teacher_ckpt: str, kd: dict | None = None, **student):
        super().__init__(**student)
        kd = dict(_plain(kd) or {})
        self.kd_loss = DistillationLoss(**kd)
        teacher = load_recognizer(teacher_ckpt)
        self.set_teacher(teacher.net, teacher.charset, teacher.preprocess_cfg, teacher_ckpt)
        self._teacher_metrics = RecognitionMetrics(self.protocol)
        self._agree = torch.zeros(2, dtype=torch.float64)

    @property
    def teacher(self) -> torch.nn.Module:
        return self._teacher_holder[0]

    def set_teacher(self, net, charset, preprocess_cfg, source: str = "teacher") -> None:
        """Attach a frozen teacher after checking it reads and writes like the student."""
        if charset.chars != self.charset.chars:
            raise ValueError(
                f"teacher charset ({source}: {charset.name}, {len(charset)} chars) differs from "
                f"the student's ({self.charset.name}, {len(self.charset)} chars): distill with the "
                "teacher's charset"
            )
        if preprocess_cfg != self.preprocess_cfg:
            diff = {
                k: (v, getattr(self.preprocess_cfg, k))
                for k, v in preprocess_cfg.to_dict().items()
                if getattr(self.preprocess_cfg, k) != v
            }
            raise ValueError(
                "teacher preprocessing differs from the student's data config "
                f"(field: (teacher, student)): {diff}; set preprocess.* to the teacher's values"
            )
        net.requires_grad_(False)
        net.eval()
        self._teacher_holder = [net]  # a list keeps it out of the registered children
        self._teacher_source = source
        was_training = self.net.training
        self.net.eval()  # the probe must not touch the student's BatchNorm statistics
        with torch.no_grad():
            x = torch.zeros(2, self.preprocess_cfg.channels, self.preprocess_cfg.height, 128)
            t_logits, t_feat = net(x)
            s_logits, s_feat = self.net(x)
        self.net.train(was_training)
        self.kd_loss.check_alignment(t_logits.shape[1], s_logits.shape[1], " for a 128-pixel line")
        if self.kd_loss.weights["feat"] and not hasattr(self, "adapter"):
            # 1x1 conv from the student's feature channels to the teacher's
            self.adapter = torch.nn.Conv2d(s_feat.shape[1], t_feat.shape[1], 1)

    def on_fit_start(self) -> None:
        self.teacher.to(self.device)
        self.print(str(self.kd_loss) + f"   (teacher: {self._teacher_source})")

    def on_validation_start(self) -> None:
        self.teacher.to(self.device)

    def train(self, mode: bool = True):
        super().train(mode)
        if hasattr(self, "_teacher_holder"):
            self.teacher.eval()  # frozen: BatchNorm and dropout always in inference mode
        return self

    def _teacher_forward(self, images):
        with torch.no_grad():
            logits, feat = self.teacher(images)
        return {"logits": logits, "feat": feat}

    def _student_forward(self, images):
        logits, feat = self.net(images)
        if hasattr(self, "adapter"):
            feat = self.adapter(feat)
        return {"logits": logits, "feat": feat}

    def training_step(self, batch, batch_idx):
        if batch["images"] is None:
            return None
        student = self._student_forward(batch["images"])
        teacher = self._teacher_forward(batch["images"])
        terms = self.kd_loss(student, teacher, batch)
        bs = len(batch["labels"])
        for name, value in terms.items():
            key = "train/loss" if name == "loss" else f"train/loss_{name}"
            self.log(key, value, prog_bar=name == "loss", batch_size=bs)
        self.log("train/skipped", float(batch["skipped"]), reduce_fx="sum", batch_size=bs)
        return terms["loss"]

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._teacher_metrics.reset()
        self._agree = torch.zeros(2, dtype=torch.float64)

    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch, batch_idx)
        if out is None:
            return None
        t_logits = self._teacher_forward(batch["images"])["logits"]
        preds, _ = self.decode(t_logits, batch["widths"])
        self._teacher_metrics.update(preds, batch["labels"])
        if out["logits"].shape[1] == t_logits.shape[1]:
            self._agree += argmax_agreement(
                t_logits, out["logits"], valid_frames(batch["widths"]), self.charset.blank
            )
        return out

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log("val/teacher_acc", self._reduced(self._teacher_metrics)["acc"])
        agree = self.trainer.strategy.reduce(self._agree.to(self.device), reduce_op="sum")
        # NaN while the teacher emits no character at all: agreement is undefined then
        self.log("val/agreement", float(agree[0] / agree[1]) if agree[1] else float("nan"))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["distillation"] = {
            "teacher_ckpt": self._teacher_source,
            "loss": repr(self.kd_loss),
        }
