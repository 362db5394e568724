"""Teachers: frozen models that give a student its targets, behind one interface.

A teacher is chosen by config (``teacher.ckpt=PATH`` picks :class:`CheckpointTeacher`)
and called on a training batch; it returns :class:`Outputs` (logits, valid frames and,
when it has one, a feature map) under ``torch.no_grad()``. It is never a registered
child of the LightningModule, so it is never trained, never in the optimizer and never
in the student's checkpoint; its ``fingerprint`` lets a resumed run check that it
still distills from the same teacher.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from distill.charset import Charset
from distill.preprocess import PreprocessConfig, valid_frames

# fields that change what a teacher sees when it reads the student's batch
INPUT_FIELDS = ("height", "channels", "mean", "std")


@dataclass
class Outputs:
    """What a model said about a batch: ``logits`` [B, T, C] (logits or log-probabilities:
    every term applies a softmax), ``frames`` [B] the frames that see real pixels, and
    optionally the backbone ``feat`` map [B, C', H', T]."""

    logits: torch.Tensor
    frames: torch.Tensor
    feat: torch.Tensor | None = None


class Teacher:
    """The interface every teacher implements.

    - ``charset``: the characters of its classes (class 0 is the blank);
    - ``preprocess``: how it reads images, when it reads the student's own batch tensor
      (then the student's height, channels and normalization must match it);
    - ``width_per_frame``: pixels of the student's input per output frame;
    - ``feat_channels``: channels of its feature map, or None when it has none;
    - ``fingerprint``: identifies its weights; ``config``: how to build it again.
    """

    charset: Charset
    preprocess: PreprocessConfig
    width_per_frame: int
    feat_channels: int | None = None
    fingerprint: str
    config: dict
    source: str

    def __call__(self, batch: dict) -> Outputs:
        raise NotImplementedError

    def to(self, device) -> Teacher:
        return self

    def check_student_input(self, student: PreprocessConfig) -> None:
        """Raise when the student's batch would look different to this teacher than
        what it was trained on (the width limits do not: a CRNN reads any width)."""
        diff = {
            k: (getattr(self.preprocess, k), getattr(student, k))
            for k in INPUT_FIELDS
            if getattr(self.preprocess, k) != getattr(student, k)
        }
        if diff:
            raise ValueError(
                f"teacher ({self.source}) reads images differently from the student's "
                f"preprocessing (field: (teacher, student)): {diff}; leave preprocess.* unset "
                "to take the teacher's values"
            )


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's parameters and buffers (names, shapes and values)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class CheckpointTeacher(Teacher):
    """A recognizer trained by this framework (e.g. the ResNet34-CRNN), read from its
    checkpoint with its charset and preprocessing. It reads the student's batch tensor,
    so both see the same augmented view, and it offers its feature map for the
    feature-MSE term."""

    def __init__(self, ckpt: str):
        from distill.module import load_recognizer

        if not ckpt or not Path(ckpt).is_file():
            raise FileNotFoundError(f"teacher.ckpt not found: {ckpt}")
        module = load_recognizer(str(ckpt))
        self.net = module.net.requires_grad_(False).eval()
        self.charset = module.charset
        self.preprocess = module.preprocess_cfg
        self.width_per_frame = self.net.width_per_frame
        self.feat_channels = self.net.backbone.out_channels
        self.fingerprint = weights_fingerprint(self.net)
        self.source = str(ckpt)
        self.config = {"_target_": f"{__name__}.CheckpointTeacher", "ckpt": str(ckpt)}

    def to(self, device) -> CheckpointTeacher:
        self.net.to(device)
        return self

    def __call__(self, batch: dict) -> Outputs:
        self.net.eval()  # frozen: BatchNorm and dropout always in inference mode
        with torch.no_grad():
            logits, feat = self.net(batch["images"], batch["widths"])
        return Outputs(logits, valid_frames(batch["widths"], self.width_per_frame), feat)


def build_teacher(cfg: dict) -> Teacher:
    """Instantiate a teacher config, surfacing the teacher's own error (a missing file, a
    wrong model) instead of Hydra's wrapper around it."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(cfg, _convert_="all")
    except InstantiationException as e:
        if isinstance(e.__cause__, (FileNotFoundError, ValueError)):
            raise e.__cause__ from None
        raise


def teacher_requested(cfg) -> bool:
    """A teacher config is active when it names a model: ``teacher.ckpt`` for the
    checkpoint kind (null there means: train without a teacher)."""
    if not cfg or "_target_" not in cfg:
        return False
    return "ckpt" not in cfg or bool(cfg.get("ckpt"))


def resolve_preprocess(user: dict | None, teacher: Teacher | None) -> PreprocessConfig:
    """The student's preprocessing: the values the user set, the rest from the teacher
    (when it reads the student's batch) or the built-in defaults."""
    base = teacher.preprocess.to_dict() if teacher is not None else {}
    chosen = {k: v for k, v in dict(user or {}).items() if v is not None}
    resolved = PreprocessConfig.from_dict({**base, **chosen})
    if teacher is not None:
        teacher.check_student_input(resolved)
    return resolved
