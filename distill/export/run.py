"""The export.py job: a checkpoint in; ONNX FP32 (+ INT8) or TorchScript out, each
checked against PyTorch, with accuracy and latency side by side."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from distill.data.datamodule import validation_set
from distill.export.onnx import ExportError, export_onnx
from distill.export.parity import check_parity
from distill.export.quantize import calibration_batches, quantize_dynamic, quantize_static
from distill.export.torchscript import SUFFIXES as TORCHSCRIPT_SUFFIXES
from distill.export.torchscript import export_torchscript
from distill.models.checkpoint import TrainedNetwork, load_network

FORMATS = ("onnx", "torchscript")


def evaluate_onnx(
    path: Path, arrays: list[np.ndarray], labels: list[str], protocol: str
) -> tuple[dict, list[str]]:
    """Accuracy and speed of an exported model on preprocessed validation lines; also
    returns its readings (to compare INT8 with FP32 line by line)."""
    from distill.core.metrics import score
    from distill.runtime.predict import Recognizer

    rec = Recognizer(path, batch_size=16)
    rec.recognize_arrays(arrays[:16])  # warm-up
    start = time.perf_counter()
    batched = rec.recognize_arrays(arrays)
    batched_s = time.perf_counter() - start
    single = Recognizer(path, batch_size=1)
    n1 = min(len(arrays), 64)
    start = time.perf_counter()
    single.recognize_arrays(arrays[:n1])
    single_s = time.perf_counter() - start
    texts = [r.text for r in batched]
    m = score(texts, labels, protocol)
    row = {
        "file": str(path),
        "size_mb": round(path.stat().st_size / 2**20, 2),
        "acc": m["acc"],
        "cer": m["cer"],
        "ms_per_line_batch1": round(1000 * single_s / n1, 2),
        "lines_per_s_batched": round(len(arrays) / batched_s, 1),
    }
    return row, texts


def validation_split(cfg, trained: TrainedNetwork):
    """The validation lines that score FP32 against INT8 and, after them, the disjoint
    lines that calibrate static INT8, from ``data`` (default: the data config the
    checkpoint was trained with). Returns (eval samples, calibration samples, set name)."""
    data = cfg.get("data") or trained.hparams.get("data")
    why = "INT8 export (to calibrate and evaluate)"
    ds = validation_set(data, trained.charset, trained.preprocess, why)
    n_eval = min(len(ds), cfg.eval_samples)
    n_calib = cfg.calibration_lines if cfg.quantize == "static" else 0
    if cfg.quantize == "static" and len(ds) < n_eval + n_calib:
        n_eval = len(ds) - n_calib
        if n_eval < 1:
            raise ValueError(
                f"validation set {ds.name} has {len(ds)} lines: static INT8 needs "
                f"calibration_lines={n_calib} plus lines to evaluate on, kept apart"
            )
    samples = [ds[i] for i in range(n_eval + n_calib)]
    keep = lambda part: [s for s in part if s is not None]  # noqa: E731
    return keep(samples[:n_eval]), keep(samples[n_eval:]), ds.name


def run_export(cfg) -> dict:
    """export.py: ONNX FP32 (+ INT8), parity check, accuracy and latency side by side."""
    ckpt = Path(cfg.ckpt)
    trained = load_network(ckpt)
    net = trained.net_config
    family = f"{net['backbone']}-crnn" if "backbone" in net else net.get("arch", "net")
    name = cfg.get("name") or f"{family}-{trained.charset.name}"
    fmt = cfg.get("format") or "onnx"
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    suffix = ".onnx" if fmt == "onnx" else ".pt"
    out = Path(cfg.out) if cfg.get("out") else ckpt.parent.parent / f"{name}{suffix}"
    if cfg.quantize not in ("none", "dynamic", "static"):
        raise ValueError(f"quantize must be none, dynamic or static, got {cfg.quantize!r}")
    if fmt == "torchscript":
        if cfg.quantize != "none":
            raise ValueError("INT8 is an ONNX export: use format=onnx with quantize=...")
        if out.suffix not in TORCHSCRIPT_SUFFIXES:
            raise ValueError(f"a TorchScript file ends in {'/'.join(TORCHSCRIPT_SUFFIXES)}: {out}")
        export_torchscript(trained, out, name)
        report = check_parity(trained, out)
        print(report)
        if not report.ok:
            raise ExportError(f"{out}: TorchScript output does not match PyTorch (see above)")
        print(f"exported {out} ({out.stat().st_size / 2**20:.1f} MB, TorchScript)")
        return {"torchscript": str(out), "parity": report.rows}

    export_onnx(trained, out, name)
    report = check_parity(trained, out)
    print(report)
    if not report.ok:
        raise ExportError(f"{out}: ONNX output does not match PyTorch (see the table above)")
    n_params = sum(p.numel() for p in trained.net.parameters())
    print(f"exported {out} ({out.stat().st_size / 2**20:.1f} MB, {n_params / 1e6:.2f}M params)")
    summary = {"fp32": str(out), "parity": report.rows}
    if cfg.quantize == "none":
        return summary

    evaluation, calibration, set_name = validation_split(cfg, trained)
    arrays, labels = [s["image"] for s in evaluation], [s["label"] for s in evaluation]
    int8 = out.with_name(out.stem + "_int8.onnx")
    keep = list(cfg.get("keep_float") or [])
    if cfg.quantize == "dynamic":
        quantize_dynamic(out, int8, keep)
    else:
        reduce_range = cfg.get("reduce_range")
        quantize_static(out, int8, calibration_batches(calibration), keep, reduce_range)
    fp32_row, fp32_texts = evaluate_onnx(out, arrays, labels, trained.protocol)
    int8_row, int8_texts = evaluate_onnx(int8, arrays, labels, trained.protocol)
    int8_row["agreement_with_fp32"] = sum(a == b for a, b in zip(fp32_texts, int8_texts)) / max(
        len(arrays), 1
    )
    rows = {"fp32": fp32_row, f"int8-{cfg.quantize}": int8_row}
    print(
        f"\nvalidation ({len(arrays)} lines of {set_name}"
        + (f"; calibrated on {len(calibration)} other lines" if calibration else "")
        + "):"
    )
    print(
        f"{'model':14s} {'MB':>6s} {'acc':>7s} {'CER':>7s} {'ms/line (b=1)':>14s} "
        f"{'lines/s':>8s} {'same text as FP32':>18s}"
    )
    for k, r in rows.items():
        agree = r.get("agreement_with_fp32")
        print(
            f"{k:14s} {r['size_mb']:6.2f} {100 * r['acc']:6.1f}% {100 * r['cer']:6.1f}% "
            f"{r['ms_per_line_batch1']:14.2f} {r['lines_per_s_batched']:8.1f} "
            f"{'' if agree is None else f'{100 * agree:.1f}%':>18s}"
        )
    summary.update(
        {
            "int8": str(int8),
            "validation": rows,
            "eval_lines": len(arrays),
            "calibration_lines": len(calibration),
        }
    )
    return summary
