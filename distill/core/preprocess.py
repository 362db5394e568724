"""The one image -> array function shared by training, evaluation and ONNX inference.

numpy and OpenCV only (no torch), so the torch-free predictor uses the very same code
and a train/serve mismatch in resizing or normalization cannot creep in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

# Our networks emit one CTC frame per 4 pixels of width (T = ceil(W / 4)); a model
# records its own value (ONNX metadata ``width_per_frame``), which the reader passes here.
WIDTH_PER_FRAME = 4


class ImageError(ValueError):
    """An image that cannot be read or used; the message names the source."""


@dataclass(frozen=True)
class PreprocessConfig:
    height: int = 32
    channels: int = 1  # 1 = grayscale, 3 = RGB
    max_width: int = 800
    min_width: int = 8
    mean: float = 0.5
    std: float = 0.5
    channel_order: str = "rgb"  # of 3 channels: rgb, or bgr (as OpenCV reads; PP-OCR's)
    # widths times this after the aspect-kept resize: a network cut to a lower height
    # keeps its frames per character (1.5 at height 32 gives the frames of height 48)
    stretch: float = 1.0

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ValueError(f"preprocess.channels must be 1 or 3, got {self.channels}")
        if self.channel_order not in ("rgb", "bgr"):
            raise ValueError(
                f"preprocess.channel_order must be rgb or bgr, got {self.channel_order!r}"
            )
        if not self.stretch > 0:
            raise ValueError(f"preprocess.stretch must be > 0, got {self.stretch}")
        if self.max_width < self.min_width or self.max_width % WIDTH_PER_FRAME:
            raise ValueError(
                f"preprocess.max_width must be a multiple of {WIDTH_PER_FRAME} "
                f">= min_width, got {self.max_width}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> PreprocessConfig:
        d = dict(d or {})
        # None means "not set": the default (or, when distilling, the teacher's value)
        known = {k: d[k] for k in cls.__dataclass_fields__ if d.get(k) is not None}
        return cls(**known)


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to uint8 RGB (H, W, 3).

    Handles grayscale, palette, RGBA (composited on white) and 16-bit images.
    """
    if not data:
        raise ImageError(f"{source}: empty file")
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"{source}: not a decodable image")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX)
        img = img.astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        rgb = img[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        img = cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_BGR2RGB)
    else:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)
    if img.shape[0] < 2 or img.shape[1] < 2:
        raise ImageError(f"{source}: image too small ({img.shape[1]}x{img.shape[0]})")
    return img


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file to uint8 RGB; raises ImageError naming the path."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: {e.strerror or e}") from None
    return decode_image(data, str(path))


def resized_width(h: int, w: int, cfg: PreprocessConfig) -> int:
    """Width after resizing to cfg.height with the aspect ratio kept (times cfg.stretch),
    clamped to the limits."""
    width = round(w * cfg.height / max(h, 1) * cfg.stretch)
    return int(min(cfg.max_width, max(cfg.min_width, width)))


def preprocess(image: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """uint8 RGB or gray image -> float32 (C, height, w) normalized, w <= max_width, its
    channels in ``cfg.channel_order``.

    Keeps the aspect ratio (widened by ``cfg.stretch``); a line wider than max_width is
    squeezed to max_width.
    """
    if image.ndim == 3 and cfg.channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    elif image.ndim == 2 and cfg.channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    h, w = image.shape[:2]
    new_w = resized_width(h, w, cfg)
    interp = cv2.INTER_AREA if h > cfg.height else cv2.INTER_LINEAR
    image = cv2.resize(image, (new_w, cfg.height), interpolation=interp)
    x = image.astype(np.float32) * (1.0 / 255.0)
    x = (x - cfg.mean) / cfg.std
    if x.ndim == 2:
        return x[None]
    if cfg.channel_order == "bgr":
        x = x[:, :, ::-1]
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def pad_batch(
    arrays: list[np.ndarray], multiple: int = WIDTH_PER_FRAME, min_width: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Pad (C, H, w) arrays on the right with zeros to a common width (a multiple of
    ``multiple``, at least ``min_width``).

    Returns the (N, C, H, W) batch and each sample's valid width in pixels.
    """
    widths = np.array([a.shape[2] for a in arrays], dtype=np.int64)
    width = max(int(min_width), int(-(-widths.max() // multiple) * multiple))
    c, h = arrays[0].shape[:2]
    batch = np.zeros((len(arrays), c, h, width), dtype=np.float32)
    for i, a in enumerate(arrays):
        batch[i, :, :, : a.shape[2]] = a
    return batch, widths


def valid_frames(widths, width_per_frame: int = WIDTH_PER_FRAME):
    """The frames a model emits for lines of these widths: ``ceil(width / width_per_frame)``.

    The one frame-count function: applied to valid widths it gives the frames that see
    real pixels (losses, decoding, the predictor); applied to a batch width, the frame
    count T the model must emit (see ``check_frames``). numpy or torch integers.
    """
    if hasattr(widths, "div"):  # torch: truncating division exports to one ONNX Div
        return (widths + width_per_frame - 1).div(width_per_frame, rounding_mode="trunc")
    return (widths + width_per_frame - 1) // width_per_frame


def check_frames(t: int, batch_width: int, width_per_frame: int, who: str = "model") -> None:
    """Raise when a model's frame count disagrees with ``valid_frames`` (never clamp:
    a silent clamp would misalign every frame-level target)."""
    expected = valid_frames(int(batch_width), width_per_frame)
    if int(t) != expected:
        raise ValueError(
            f"{who} emitted {t} frames for a {batch_width}-pixel-wide batch, but "
            f"width_per_frame={width_per_frame} means {expected}: the model and its "
            "width_per_frame disagree"
        )
