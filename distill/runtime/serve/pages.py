"""Whole images with several lines: a text detector finds them, our model reads them.

The detector is PP-OCRv6's (ONNX, in the ``rapidocr`` wheel: ``pip install
'distill[page]'``), run through rapidocr itself so its post-processing (box
unclipping, reading order, mapping back to the original image) is the reference one.
Each box is cut out and straightened with rapidocr's perspective crop; the lines of a
page then go to the recognizer together, so the dynamic batcher reads them in one batch.
"""

from __future__ import annotations

import threading

import numpy as np

DETECTORS = ("ppocrv6",)


class DetectorMissing(RuntimeError):
    pass


class TextDetector:
    """Line boxes of an RGB image, in reading order (top to bottom, left to right)."""

    def __init__(self, name: str = "ppocrv6", threads: int | None = None):
        if name not in DETECTORS:
            raise ValueError(f"unknown detector {name!r}; choose one of {DETECTORS}")
        try:
            from rapidocr import RapidOCR
            from rapidocr.utils.process_img import get_rotate_crop_image
        except ImportError:
            raise DetectorMissing(
                "page mode needs PP-OCRv6's text detector from the rapidocr wheel: "
                "pip install 'distill[page]'"
            ) from None
        params = {"Global.use_cls": False, "Global.use_rec": False, "Global.log_level": "error"}
        if threads:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = int(threads)
        self.engine = RapidOCR(params=params)
        self._crop = get_rotate_crop_image
        self._lock = threading.Lock()  # one detector session, called from worker threads
        self.name = name

    def boxes(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Each line's 4 corners [[x, y] x 4] (float32, original image coordinates)."""
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        with self._lock:
            out = self.engine(bgr, use_det=True, use_cls=False, use_rec=False)
        boxes = getattr(out, "boxes", None)
        return [] if boxes is None else [np.asarray(b, np.float32) for b in boxes]

    def lines(self, rgb: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(boxes, RGB crops of the lines, straightened), in reading order."""
        boxes = self.boxes(rgb)
        crops = [self._crop(rgb, box.copy()) for box in boxes]
        return boxes, crops
