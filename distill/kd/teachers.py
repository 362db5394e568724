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
from pathlib import Path

import numpy as np
import torch

from distill.core.charset import Charset
from distill.core.ctc import greedy_decode
from distill.core.preprocess import PreprocessConfig, valid_frames
from distill.kd.outputs import Outputs
from distill.models.checkpoint import load_network

# fields that change what a teacher sees when it reads the student's batch
INPUT_FIELDS = ("height", "channels", "mean", "std", "channel_order")


class Teacher:
    """The interface every teacher implements.

    - ``charset``: the characters of the classes its outputs are over (class 0 is the
      blank), the student's once :meth:`bind` has mapped it;
    - ``preprocess``: how it reads images, when it reads the student's own batch tensor
      (then the student's height, channels and normalization must match it); None when
      it reads the raw images (``view``: which ones) with its own preprocessing;
    - ``width_per_frame``: pixels of the student's input per output frame (after bind);
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
    view: str | None = None

    def __call__(self, batch: dict) -> Outputs:
        raise NotImplementedError

    def to(self, device) -> Teacher:
        return self

    def bind(self, student: Charset, student_height: int) -> None:
        """Prepare to teach a student with this charset and input height (map the
        vocabulary and the frame rate, or refuse)."""

    def can_read(self, batch: dict) -> bool:
        """Whether it can say something about this batch (a cache only knows its own)."""
        return True

    def check_student_input(self, student: PreprocessConfig) -> None:
        """Raise when the student's batch would look different to this teacher than
        what it was trained on (the width limits do not: a CRNN reads any width). A
        teacher that reads raw images its own way (no ``preprocess``) takes any."""
        if self.preprocess is None:
            return
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
    """A recognizer trained by this framework (the ResNet34-CRNN, a fine-tuned PP-OCRv6,
    ...), read from its checkpoint with its charset and preprocessing.

    ``view`` null: it reads the student's batch tensor (both see the same augmented view;
    the student must read images as it does), and offers its feature map for the
    feature-MSE term. ``view`` clean or augmented: it reads the raw images with its own
    preprocessing (another height, channels or frame rate than the student's, as PP-OCRv6
    does: 48 px, BGR, one frame per 8 pixels), and can write a label cache
    (``python -m distill.teach --teacher checkpoint --set ckpt=PATH``)."""

    def __init__(self, ckpt: str, view: str | None = None):
        from distill.data.datasets import check_teacher_view

        if not ckpt or not Path(ckpt).is_file():
            raise FileNotFoundError(f"teacher.ckpt not found: {ckpt}")
        check_teacher_view(view)
        trained = load_network(ckpt)
        self.net = trained.net.requires_grad_(False).eval()
        self.charset = trained.charset
        self.reads = trained.preprocess  # how it reads an image
        self.view = view
        self.preprocess = None if view else trained.preprocess
        self.own_width_per_frame = self.width_per_frame = self.net.width_per_frame
        self.feat_channels = None if view else self.net.backbone.out_channels
        self.fingerprint = weights_fingerprint(self.net)
        self.source = str(ckpt)
        self.config = {"_target_": f"{__name__}.CheckpointTeacher", "ckpt": str(ckpt)}
        if view:
            self.config["view"] = view
        self.device = torch.device("cpu")

    def to(self, device) -> CheckpointTeacher:
        self.net.to(device)
        self.device = torch.device(device)
        return self

    def bind(self, student: Charset, student_height: int) -> None:
        same_charset(self, student)
        # its frames in the student's pixels (the same unless it reads at its own height)
        self.width_per_frame = self.own_width_per_frame * student_height / self.reads.height

    def read(self, images: list) -> dict:
        """Raw uint8 RGB images, read with its own preprocessing: class probabilities [N,
        T, classes], valid frames, readings and confidences (what the label cache keeps)."""
        from distill.core.preprocess import pad_batch, preprocess

        x, widths = pad_batch([preprocess(img, self.reads) for img in images])
        self.net.eval()
        with torch.no_grad():
            logits, _ = self.net(torch.from_numpy(x).to(self.device), torch.from_numpy(widths))
        probs = logits.float().softmax(-1).cpu().numpy()
        frames = valid_frames(widths, self.own_width_per_frame)
        decoded = greedy_decode(probs, frames)
        return {
            "probs": probs,
            "frames": frames,
            "texts": [self.charset.decode(idx) for idx, _ in decoded],
            "confidences": [c for _, c in decoded],
        }

    def __call__(self, batch: dict) -> Outputs:
        if self.view:
            said = self.read(batch["raw"])
            logits = torch.from_numpy(np.log(np.maximum(said["probs"], 1e-8))).to(self.device)
            frames = torch.from_numpy(said["frames"].astype(np.int64)).to(self.device)
            return Outputs(logits, frames, None, said["texts"], said["confidences"])
        self.net.eval()  # frozen: BatchNorm and dropout always in inference mode
        with torch.no_grad():
            logits, feat = self.net(batch["images"], batch["widths"])
        frames = valid_frames(batch["widths"], self.width_per_frame)
        decoded = greedy_decode(logits.float().softmax(-1).cpu().numpy(), frames.cpu().numpy())
        texts = [self.charset.decode(idx) for idx, _ in decoded]
        return Outputs(logits, frames, feat, texts, [c for _, c in decoded])


def build_teacher(cfg) -> Teacher | None:
    """The teacher a ``teacher`` config asks for, or None when it names no model
    (:func:`teacher_requested`); the teacher's own error (a missing file, a wrong model)
    surfaces instead of Hydra's wrapper around it."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf

    if not teacher_requested(cfg):
        return None
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    try:
        return instantiate(cfg, _convert_="all")
    except InstantiationException as e:
        if isinstance(e.__cause__, (FileNotFoundError, ValueError)):
            raise e.__cause__ from None
        raise


def same_charset(teacher: Teacher, student: Charset) -> None:
    if student.chars != teacher.charset.chars:
        raise ValueError(
            f"teacher charset ({teacher.source}: {teacher.charset.name}, {len(teacher.charset)} "
            f"chars) differs from the student's ({student.name}, {len(student)} chars): "
            "distill with the teacher's charset"
        )


def teacher_requested(cfg) -> bool:
    """A teacher config is active when it names a model: ``teacher.ckpt`` for the
    checkpoint kind (null there means: train without a teacher)."""
    if not cfg or "_target_" not in cfg:
        return False
    return "ckpt" not in cfg or bool(cfg.get("ckpt"))


def teacher_source(cfg) -> str | None:
    """What a run learned from, for its metrics.json: the teacher's checkpoint, ONNX
    file (``package:path`` when it ships inside a Python package) or label cache; None
    when it trained on its labels alone."""
    if not teacher_requested(cfg):
        return None
    path = str(cfg.get("ckpt") or cfg.get("path"))
    return f"{cfg['package']}:{path}" if cfg.get("package") else path


def resolve_preprocess(user: dict | None, teacher: Teacher | None) -> PreprocessConfig:
    """The student's preprocessing: the values the user set, the rest from the teacher
    (when it reads the student's batch) or the built-in defaults. Whether the teacher
    can read the result is checked by the DistillationModule."""
    shared = teacher is not None and teacher.preprocess is not None
    base = teacher.preprocess.to_dict() if shared else {}
    chosen = {k: v for k, v in dict(user or {}).items() if v is not None}
    return PreprocessConfig.from_dict({**base, **chosen})
