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
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from distill.charset import Charset
from distill.ctc import greedy_decode
from distill.preprocess import PreprocessConfig, valid_frames

# fields that change what a teacher sees when it reads the student's batch
INPUT_FIELDS = ("height", "channels", "mean", "std")


@dataclass
class Outputs:
    """What a model said about a batch: ``logits`` [B, T, C] over the student's classes
    (logits or log-probabilities: every term applies a softmax), ``frames`` [B] the
    frames that see real pixels, optionally the backbone ``feat`` map [B, C', H', T];
    a teacher also gives its readings (``texts`` in the student's characters, None
    where it cannot be written with them; ``confidences``) and ``stats`` to log."""

    logits: torch.Tensor
    frames: torch.Tensor
    feat: torch.Tensor | None = None
    texts: list[str | None] | None = None
    confidences: list[float] | None = None
    stats: dict[str, float] = field(default_factory=dict)


class TopKOutputs(Outputs):
    """A teacher's frames as its top-k posteriors, the rest of each frame's mass spread
    evenly over the other classes (what a label cache stores): ``index`` and ``probs``
    [B, T', k], ``rest`` [B, T'] the probability of each class outside the top-k.

    The frame KL reads this form directly (``losses.topk_kl``): a dense [B, T', C]
    tensor over the 6,892 Chinese classes costs more than the student's own forward
    and backward passes. ``logits`` (log-probabilities) is built on first use only."""

    def __init__(self, index, probs, rest, frames, num_classes: int, texts, confidences):
        self.index, self.probs, self.rest = index, probs, rest
        self.num_classes = num_classes
        self.frames, self.feat, self.texts, self.confidences = frames, None, texts, confidences
        self.stats = {}
        self._dense: torch.Tensor | None = None

    @property
    def logits(self) -> torch.Tensor:
        if self._dense is None:
            b, t, _ = self.probs.shape
            dense = self.rest[..., None].expand(b, t, self.num_classes).clone()
            dense.scatter_(-1, self.index, self.probs)
            dense /= dense.sum(-1, keepdim=True).clamp(min=1e-8)
            self._dense = dense.clamp(min=1e-8).log()
        return self._dense


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

    def bind(self, student: Charset, student_height: int) -> None:
        _same_charset(self, student)

    def __call__(self, batch: dict) -> Outputs:
        self.net.eval()  # frozen: BatchNorm and dropout always in inference mode
        with torch.no_grad():
            logits, feat = self.net(batch["images"], batch["widths"])
        frames = valid_frames(batch["widths"], self.width_per_frame)
        decoded = greedy_decode(logits.float().softmax(-1).cpu().numpy(), frames.cpu().numpy())
        texts = [self.charset.decode(idx) for idx, _ in decoded]
        return Outputs(logits, frames, feat, texts, [c for _, c in decoded])


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


def _same_charset(teacher: Teacher, student: Charset) -> None:
    if student.chars != teacher.charset.chars:
        raise ValueError(
            f"teacher charset ({teacher.source}: {teacher.charset.name}, {len(teacher.charset)} "
            f"chars) differs from the student's ({student.name}, {len(student)} chars): "
            "distill with the teacher's charset"
        )


class CachedTeacher(Teacher):
    """A teacher's outputs stored by ``python -m distill.teach``: nothing runs during
    training. ``path``: one of the cache LMDBs (it says which teacher, charset and frame
    rate); train on the cache LMDBs, whose samples carry the outputs."""

    def __init__(self, path: str):
        from distill.data.datasets import read_lmdb

        env_path = Path(path)
        if not (env_path / "data.mdb").is_file():
            raise FileNotFoundError(f"teacher cache not found (no data.mdb): {path}")
        raw = read_lmdb(env_path, lambda txn: txn.get(b"teacher-meta"))
        if raw is None:
            raise ValueError(
                f"{path}: an LMDB without teacher outputs: write one with distill.teach"
            )
        meta = json.loads(raw)
        self.meta = meta
        self.charset = Charset.resolve(meta["charset"])
        self.preprocess = None
        self.width_per_frame = float(meta["width_per_frame"])
        self.fingerprint = meta["fingerprint"]
        self.source = f"cache of {meta['source']}"
        self.config = {"_target_": f"{__name__}.CachedTeacher", "path": str(path)}
        self.device = torch.device("cpu")

    def to(self, device) -> CachedTeacher:
        self.device = torch.device(device)
        return self

    def bind(self, student: Charset, student_height: int) -> None:
        _same_charset(self, student)

    def can_read(self, batch: dict) -> bool:
        return bool(batch.get("teacher_cache")) and all(batch["teacher_cache"])

    def __call__(self, batch: dict) -> Outputs:
        if not self.can_read(batch):
            raise ValueError(
                "a batch without stored teacher outputs: with teacher=cache, train on the "
                "cache LMDBs written by distill.teach only"
            )
        items = batch["teacher_cache"]
        frames = [len(it["index"]) for it in items]
        c, k = self.charset.num_classes, max(it["index"].shape[1] for it in items)
        index = np.zeros((len(items), max(frames), k), np.int64)
        probs = np.zeros((len(items), max(frames), k), np.float32)
        for b, it in enumerate(items):
            f, kb = it["index"].shape
            index[b, :f, :kb], probs[b, :f, :kb] = it["index"], it["probs"]
        # the mass outside the stored top-k, spread over the other classes
        rest = np.clip(1.0 - probs.sum(-1), 0, None) / max(c - k, 1)
        to = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        return TopKOutputs(
            to(index),
            to(probs),
            to(rest),
            torch.tensor(frames, dtype=torch.long, device=self.device),
            c,
            texts=[it["text"] for it in items],
            confidences=[it["confidence"] for it in items],
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
