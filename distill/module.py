"""LightningModule for supervised CTC training of a CRNN recognizer.

The checkpoint is self-contained: its hyper-parameters hold the network config, the
charset's characters, the preprocessing and the data config, so
``load_from_checkpoint(path)`` alone rebuilds a recognizer that reads text exactly as it
was trained to (and export finds its validation data).
"""

from __future__ import annotations

import inspect
import math

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from distill.charset import Charset
from distill.ctc import greedy_decode
from distill.data.collate import encode_targets
from distill.losses import DistillationLoss, SupervisedLoss, frame_mask
from distill.metrics import RecognitionMetrics
from distill.models import build_model
from distill.preprocess import PreprocessConfig, check_frames, valid_frames
from distill.teachers import Outputs, Teacher, build_teacher


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
    ):
        super().__init__()
        self.charset = Charset.resolve(_plain(charset))
        self.preprocess_cfg = PreprocessConfig.from_dict(_plain(preprocess))
        net = dict(_plain(net))
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
                "optimizer": _plain(optimizer),
                "scheduler": _plain(scheduler),
                "protocol": protocol,
                "data": _plain(data),
            },
            logger=False,
        )
        self.net = build_model(self.charset.num_classes, **net)
        self.loss = SupervisedLoss()
        self.protocol = protocol
        self.val_metrics = RecognitionMetrics(protocol)
        self.test_metrics: list[RecognitionMetrics] = []
        self.test_results: dict[str, dict] = {}

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
    own = inspect.signature(RecognizerModule.__init__).parameters
    module = RecognizerModule(**{k: v for k, v in hp.items() if k in own})
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


CTC_TARGETS = ("label", "teacher", "auto")


def ctc_texts(labels, teacher: Outputs, policy: str, min_confidence: float = 0.0):
    """The CTC target of each sample, and how many come from the teacher.

    - ``label``: the ground truth (unlabeled samples get none);
    - ``teacher``: the teacher's reading, when it is confident enough (>= min_confidence)
      and writable in the student's characters; else none;
    - ``auto``: the ground truth, except that an unlabeled sample takes the teacher's
      reading (as above) and a label the teacher matches up to letter case takes the
      teacher's casing (datasets that store upper-case labels for mixed-case text).
    """
    texts, from_teacher = [], 0
    for label, said, conf in zip(labels, teacher.texts, teacher.confidences):
        sure = bool(said) and conf >= min_confidence
        if policy == "label":
            text = label
        elif policy == "teacher" or label is None:
            text = said if sure else None
        else:
            text = said if sure and said.casefold() == label.casefold() else label
        from_teacher += text is not None and text == said and text != label
        texts.append(text)
    return texts, from_teacher


class DistillationModule(RecognizerModule):
    """Trains the student from labels and from a frozen teacher.

    ``teacher`` is a teacher config (``{"_target_": ..., ...}``, saved in the checkpoint,
    so ``load_from_checkpoint`` rebuilds the run) or a built :class:`Teacher`. The
    teacher is held outside the module's registered children: it is never in
    ``parameters()`` (so never in the optimizer), never in the checkpoint, and never
    switched to train mode by Lightning. A checkpoint records the teacher's fingerprint;
    resuming it with another teacher is an error.
    """

    def __init__(self, teacher: dict | Teacher, kd: dict | None = None, **student):
        super().__init__(**student)
        if not isinstance(teacher, Teacher):
            teacher = build_teacher(_plain(teacher))
        kd = dict(_plain(kd) or {})
        self.hparams.update({"teacher": teacher.config, "kd": kd})
        self._teacher_holder = [teacher]  # a list keeps it out of the registered children
        teacher.bind(self.charset, self.preprocess_cfg.height)
        teacher.check_student_input(self.preprocess_cfg)
        terms = dict(kd)  # the loss terms' settings; the rest choose the CTC targets
        self.ctc_target = terms.pop("ctc_target", "label")
        if self.ctc_target not in CTC_TARGETS:
            raise ValueError(f"kd.ctc_target must be one of {CTC_TARGETS}, got {self.ctc_target!r}")
        self.min_confidence = float(terms.pop("min_confidence", 0.0))
        s_channels = self.net.backbone.out_channels
        self.loss = DistillationLoss(**terms, feat_channels=(s_channels, teacher.feat_channels))
        self._check_frames()
        self._teacher_metrics = RecognitionMetrics(self.protocol)
        self._agree = torch.zeros(2, dtype=torch.float64)

    @property
    def teacher(self) -> Teacher:
        return self._teacher_holder[0]

    def _check_frames(self) -> None:
        """Frame KL needs equal frame counts: fail at start, naming both, not mid-run."""
        width = 128
        self.loss.check_alignment(
            valid_frames(width, self.teacher.width_per_frame),
            valid_frames(width, self.net.width_per_frame),
            f" for a {width}-pixel line",
        )

    def teacher_outputs(self, batch: dict) -> Outputs:
        out = self.teacher(batch)
        if self.teacher.preprocess is not None:  # it read the student's batch tensor
            check_frames(
                out.logits.shape[1],
                batch["images"].shape[-1],
                self.teacher.width_per_frame,
                f"teacher {self.teacher.source}",
            )
        if self.ctc_target != "label":
            texts, from_teacher = ctc_texts(
                batch["labels"], out, self.ctc_target, self.min_confidence
            )
            batch.update(
                {k: v.to(self.device) for k, v in encode_targets(texts, self.charset).items()}
            )
            out.stats["teacher_targets"] = from_teacher / max(len(texts), 1)
        for k, v in out.stats.items():
            self.log(f"train/{k}", v, batch_size=len(batch["labels"]))
        return out

    def on_fit_start(self) -> None:
        self.teacher.to(self.device)
        self.print(f"{self.loss!r}   (teacher: {self.teacher.source})")

    def on_validation_start(self) -> None:
        self.teacher.to(self.device)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._teacher_metrics.reset()
        self._agree = torch.zeros(2, dtype=torch.float64)

    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch, batch_idx)
        if out is None or not self.teacher.can_read(batch):
            return out
        teacher = self.teacher(batch)
        self._teacher_metrics.update([t or "" for t in teacher.texts], batch["labels"])
        student = out["outputs"]
        if student.logits.shape[1] == teacher.logits.shape[1]:
            self._agree += argmax_agreement(
                teacher.logits, student.logits, student.frames, self.charset.blank
            )
        return out

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        teacher = self._reduced(self._teacher_metrics)
        # NaN when the teacher read none of the validation lines (a cache knows only its own)
        self.log("val/teacher_acc", teacher["acc"] if teacher["n"] else float("nan"))
        agree = self.trainer.strategy.reduce(self._agree.to(self.device), reduce_op="sum")
        # NaN while the teacher emits no character at all: agreement is undefined then
        self.log("val/agreement", float(agree[0] / agree[1]) if agree[1] else float("nan"))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["distillation"] = {
            "teacher": self.teacher.source,
            "teacher_fingerprint": self.teacher.fingerprint,
            "loss": repr(self.loss),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resuming (or reloading) a run with another teacher would silently mix two
        teachers' targets in one student: refuse it."""
        saved = checkpoint.get("distillation") or {}
        fingerprint = saved.get("teacher_fingerprint")
        if fingerprint and fingerprint != self.teacher.fingerprint:
            raise ValueError(
                f"this checkpoint was distilled from teacher {saved.get('teacher')} "
                f"(fingerprint {fingerprint}), but the teacher now is {self.teacher.source} "
                f"(fingerprint {self.teacher.fingerprint}): resume with the same teacher, "
                "or start a new run (another hydra.run.dir)"
            )
