"""Torch-free CPU inference with onnxruntime.

    python -m distill.predict MODEL.onnx INPUT... [--out FILE] [--json] [--batch N] [--threads N]

INPUT is any mix of images, folders (searched recursively) and label files
(``path<TAB>label`` lines). Prints ``path<TAB>text<TAB>confidence`` per line; with
labels it also prints metrics as JSON (n, acc, acc_nospace, cer, ned, ms_per_line,
lines_per_s). A missing, empty, undecodable or oversized file is reported with its path
and the run goes on; the exit code is 1 when any input failed, 0 otherwise.

Uses the very same preprocessing, CTC decoding and metrics code as training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.core.charset import Charset
from distill.core.ctc import greedy_decode_logits
from distill.core.labelfile import read_label_file
from distill.core.metrics import PROTOCOLS, RecognitionMetrics
from distill.core.preprocess import (
    WIDTH_PER_FRAME,
    ImageError,
    PreprocessConfig,
    check_frames,
    decode_image,
    pad_batch,
    preprocess,
    valid_frames,
)
from distill.core.sources import image_files, source_kind

MAX_FILE_BYTES = 50 << 20  # a text-line crop is never this large
MAX_PIXELS = 40_000_000


@dataclass
class Result:
    text: str
    confidence: float


def plan_batches(widths, max_batch: int, max_padding: float = 0.25) -> list[tuple[int, int]]:
    """Split lines sorted by width into batches of at most ``max_batch`` lines whose
    padding (columns beyond each line's own width) stays within ``max_padding`` of the
    columns read: a 100 px line is not padded to 1500 px because it shares a call with a
    long one. Returns [start, end) ranges over the sorted lines."""
    out, start = [], 0
    total = 0
    for i, w in enumerate(widths):
        n = i - start + 1
        padded = n * w  # sorted ascending: the newest line is the widest
        if i > start and (n > max_batch or padded > (1 + max_padding) * (total + w)):
            out.append((start, i))
            start, total = i, 0
        total += w
    if widths:
        out.append((start, len(widths)))
    return out


def _warn_if_int8_saturates(path: Path, meta: dict[str, str]) -> None:
    """Static INT8 made on a CPU with VNNI uses 8-bit weights, whose products saturate
    on an x86 CPU without it: the readings are then wrong, not merely less exact."""
    from distill.core.hardware import has_vnni

    static = meta.get("quantization", "").startswith("static")
    if static and meta.get("int8_reduce_range") != "true" and not has_vnni():
        print(
            f"warning: {path} is static INT8 with 8-bit weights, which saturate on this "
            "CPU (no VNNI): its readings may be wrong. Re-export it here "
            "(export.py quantize=static) or use the FP32 or dynamic INT8 model.",
            file=sys.stderr,
        )


class Recognizer:
    """Reads text lines with an exported model: ``Recognizer("m.onnx").recognize(images)``.

    ``images`` are uint8 RGB/gray numpy arrays or file paths; results keep input order.
    Lines are sorted by width and batched (at most ``batch_size`` per call, and no more
    than ``max_padding`` of a call's columns spent on padding), so padding stays small.
    """

    def __init__(
        self,
        model_path: str | Path,
        threads: int | None = None,
        batch_size: int = 16,
        max_padding: float = 0.25,
        spin: bool = True,
    ):
        import onnxruntime as ort

        self.path = Path(model_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"model not found: {self.path}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        if not spin:  # idle threads sleep instead of spinning: they leave the cores to a
            # server's own work (HTTP, decoding) between calls
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._opts = opts
        self.session = ort.InferenceSession(
            str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._lean_session = None  # built on first use: see _session_for
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.charset = Charset(
                json.loads(meta["charset"]), name=meta.get("charset_name", "model")
            )
            self.preprocess_cfg = PreprocessConfig(
                height=int(meta["input_height"]),
                channels=int(meta["input_channels"]),
                max_width=int(meta["max_width"]),
                min_width=int(meta.get("min_width", 8)),
                mean=float(meta["mean"]),
                std=float(meta["std"]),
                channel_order=meta.get("channel_order", "rgb"),
                stretch=float(meta.get("stretch", 1.0)),
            )
            self.blank = int(meta["blank_index"])
            self.width_per_frame = int(meta.get("width_per_frame", WIDTH_PER_FRAME))
        except KeyError as e:
            raise ValueError(
                f"{self.path}: metadata prop {e.args[0]!r} missing; export the model with export.py"
            ) from None
        # models exported before the ``widths`` input read padded columns (batch-dependent)
        self.takes_widths = "widths" in {i.name for i in self.session.get_inputs()}
        self.name = meta.get("model_name", self.path.stem)
        self.metadata = dict(meta)
        _warn_if_int8_saturates(self.path, self.metadata)
        self.batch_size = batch_size
        self.max_padding = max_padding

    def _session_for(self, widths: np.ndarray, batch_width: int):
        """The lean graph (distill/runtime/onnx_masks.py) when every line spans all the call's
        frames, as a single line always does; else the full graph."""
        frames = valid_frames(widths, self.width_per_frame)
        if not self.takes_widths or frames.min() * self.width_per_frame != batch_width:
            return self.session
        if self._lean_session is None:
            import onnx
            import onnxruntime as ort

            from distill.runtime.onnx_masks import without_frame_masks

            lean = without_frame_masks(onnx.load(str(self.path)), self.width_per_frame)
            self._lean_session = (
                self.session
                if lean is None
                else ort.InferenceSession(
                    lean.SerializeToString(),
                    sess_options=self._opts,
                    providers=["CPUExecutionProvider"],
                )
            )
        return self._lean_session

    def _run(self, arrays: list[np.ndarray]) -> list[Result]:
        batch, widths = pad_batch(arrays, self.width_per_frame)
        feed = {"image": batch, "widths": widths} if self.takes_widths else {"image": batch}
        logits = self._session_for(widths, batch.shape[-1]).run(None, feed)[0]
        check_frames(logits.shape[1], batch.shape[-1], self.width_per_frame, str(self.path))
        frames = valid_frames(widths, self.width_per_frame)
        decoded = greedy_decode_logits(logits, frames, blank=self.blank)
        return [Result(self.charset.decode(idx), conf) for idx, conf in decoded]

    def recognize_arrays(self, arrays: list[np.ndarray]) -> list[Result]:
        """Preprocessed (C, H, w) arrays -> results, batched by similar width."""
        order = np.argsort([a.shape[2] for a in arrays], kind="stable")
        widths = [arrays[k].shape[2] for k in order]
        results: list[Result | None] = [None] * len(arrays)
        for start, end in plan_batches(widths, self.batch_size, self.max_padding):
            chunk = order[start:end]
            for j, r in zip(chunk, self._run([arrays[k] for k in chunk])):
                results[j] = r
        return results

    def recognize(self, images) -> list[Result]:
        arrays = [preprocess(_as_image(x), self.preprocess_cfg) for x in images]
        return self.recognize_arrays(arrays)


def _as_image(x) -> np.ndarray:
    return read_image(x) if isinstance(x, (str, Path)) else x


def read_image(path: str | Path) -> np.ndarray:
    """Read a file with the size limits a service needs; ImageError names the path."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageError(f"{path}: {e.strerror or e}") from None
    if size > MAX_FILE_BYTES:
        raise ImageError(f"{path}: file too large ({size / 2**20:.0f} MB)")
    img = decode_image(path.read_bytes(), str(path))
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ImageError(f"{path}: image too large ({img.shape[1]}x{img.shape[0]} pixels)")
    return img


# ---------------------------------------------------------------- CLI


def collect(inputs: list[str]) -> tuple[list[tuple[Path, str | None]], list[str]]:
    """Expand inputs to (image path, label or None); also return input-level errors."""
    items, errors = [], []
    for raw in inputs:
        p = Path(raw)
        kind = source_kind(p)
        if kind == "folder":
            found = image_files(p)
            if not found:
                errors.append(f"{p}: folder holds no image")
            items += [(f, None) for f in found]
        elif kind == "labelfile":
            pairs, malformed = read_label_file(p)
            errors += [f"{p}:{n}: expected 'relative/path<TAB>label'" for n in malformed]
            items += pairs
        elif kind == "lmdb":
            errors.append(f"{p}: an LMDB: read it with eval.py, or give its images")
        else:
            items.append((p, None))  # a missing file is reported when read
    return items, errors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m distill.predict",
        description="Recognize text lines with an exported ONNX model (no torch needed).",
    )
    ap.add_argument("model", help="the .onnx file written by export.py")
    ap.add_argument("inputs", nargs="+", help="images, folders or label files")
    ap.add_argument("--out", help="write path<TAB>text<TAB>confidence lines to this file")
    ap.add_argument("--json", action="store_true", help="print results as JSON lines")
    ap.add_argument("--quiet", action="store_true", help="print only the metrics (label files)")
    ap.add_argument("--batch", type=int, default=16, help="lines per inference batch")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    ap.add_argument("--protocol", choices=PROTOCOLS, default="exact", help="metric protocol")
    args = ap.parse_args(argv)

    try:
        rec = Recognizer(args.model, threads=args.threads, batch_size=args.batch)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # onnxruntime's own errors for a non-model file
        print(f"error: {args.model}: cannot load model: {e}", file=sys.stderr)
        return 2

    items, errors = collect(args.inputs)
    arrays, kept = [], []
    start = time.perf_counter()  # timed: reading, preprocessing, inference, decoding
    for path, label in items:
        try:
            arrays.append(preprocess(read_image(path), rec.preprocess_cfg))
            kept.append((path, label))
        except ImageError as e:
            errors.append(str(e))
    results = rec.recognize_arrays(arrays) if arrays else []
    elapsed = time.perf_counter() - start
    for e in errors:
        print(f"error: {e}", file=sys.stderr)

    lines = [f"{p}\t{r.text}\t{r.confidence:.4f}" for (p, _), r in zip(kept, results)]
    if args.quiet:
        pass
    elif args.json:
        for (p, label), r in zip(kept, results):
            rec_json = {"path": str(p), "text": r.text, "confidence": round(r.confidence, 4)}
            if label is not None:
                rec_json["label"] = label
            print(json.dumps(rec_json, ensure_ascii=False))
    else:
        print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")

    labelled = [(label, r.text) for (_, label), r in zip(kept, results) if label is not None]
    if labelled:
        m = RecognitionMetrics(args.protocol)
        m.update([t for _, t in labelled], [g for g, _ in labelled])
        metrics = m.compute()
        n = len(results)
        metrics["ms_per_line"] = round(1000 * elapsed / max(n, 1), 3)
        metrics["lines_per_s"] = round(n / elapsed, 1) if elapsed > 0 else None
        print(json.dumps(metrics))
    if errors:
        print(f"{len(errors)} input(s) failed, {len(results)} recognized", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
