"""LightningModule that trains a student from labels and from a frozen teacher."""

from __future__ import annotations

import torch

from distill.core.metrics import RecognitionMetrics
from distill.core.preprocess import check_frames, valid_frames
from distill.data.collate import encode_targets
from distill.kd.losses import frame_mask
from distill.kd.outputs import Outputs
from distill.kd.recipe import Recipe
from distill.kd.targets import ctc_texts
from distill.kd.teachers import Teacher, build_teacher
from distill.lit.recognizer import RecognizerModule, plain


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

    ``teacher`` is a teacher config (``{"_target_": ..., ...}``, saved in the checkpoint,
    so ``load_from_checkpoint`` rebuilds the run) or a built :class:`Teacher`. The
    teacher is held outside the module's registered children: it is never in
    ``parameters()`` (so never in the optimizer), never in the checkpoint, and never
    switched to train mode by Lightning. A checkpoint records the teacher's fingerprint;
    resuming it with another teacher is an error.
    """

    def __init__(self, teacher: dict | Teacher, kd: dict | Recipe | None = None, **student):
        super().__init__(**student)
        if not isinstance(teacher, Teacher):
            teacher = build_teacher(plain(teacher))
        if teacher is None:
            raise ValueError("DistillationModule needs a teacher (teacher.ckpt=PATH, teacher=...)")
        recipe = kd if isinstance(kd, Recipe) else Recipe.from_config(plain(kd))
        self.hparams.update({"teacher": teacher.config, "kd": recipe.to_dict()})
        self._teacher_holder = [teacher]  # a list keeps it out of the registered children
        teacher.bind(self.charset, self.preprocess_cfg.height)
        teacher.check_student_input(self.preprocess_cfg)
        self.ctc_target, self.min_confidence = recipe.ctc_target, recipe.min_confidence
        self.loss = recipe.build_loss()
        self.loss.fold_case(self.case_fold)
        self.loss.bind(self.net, teacher)
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
