"""INT8 models from an exported FP32 one, with onnxruntime's quantization.

Dynamic INT8 suits the sequence part (LSTM, MatMul, Gemm); static QDQ INT8, calibrated
on real lines, suits the convolutions. The kind of INT8 and its settings ride along in
the model's metadata (``quantization``, ``int8_per_channel``, ``int8_reduce_range``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from distill.core.hardware import has_vnni
from distill.core.preprocess import pad_batch
from distill.export.onnx import copy_metadata, read_metadata


def quantize_dynamic(fp32: str | Path, out: str | Path, keep_float: list[str] = ()) -> Path:
    """Dynamic INT8 for the sequence part (LSTM -> DynamicQuantizeLSTM, MatMul, Gemm).

    Convolutions stay float: dynamic ConvInteger is slower than float on CPU."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    ort_quantize_dynamic(
        str(fp32),
        str(out),
        op_types_to_quantize=["LSTM", "MatMul", "Gemm"],
        weight_type=QuantType.QInt8,
        nodes_to_exclude=_matching_nodes(fp32, keep_float),
    )
    copy_metadata(fp32, out, {"quantization": "dynamic int8 (LSTM, MatMul, Gemm)"})
    return Path(out)


# onnxruntime fusions that would hide a convolution from the quantizer (it quantizes
# Conv nodes only) or tie the graph to this CPU's memory layout
_CONV_FUSIONS = ["ConvActivationFusion", "ConvAddActivationFusion", "NchwcTransformer"]


def fuse_activations(fp32: str | Path, out: str | Path) -> Path:
    """The FP32 graph with onnxruntime's extended fusions applied (GELU's Div-Erf-Add-Mul
    chain becomes one Gelu node, x * sigmoid(x) one QuickGelu), convolutions left alone.

    onnxruntime fuses these at load time in FP32, but once Q/DQ nodes sit around the
    convolutions it no longer does, and the unfused chains took about a fifth of the
    static INT8 PP-OCRv6 network's time (make int8-fusion: infer_*_int8_fusion.md). Fused
    first, the quantizer keeps them whole. The metadata is kept."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(
        str(fp32), options, providers=["CPUExecutionProvider"], disabled_optimizers=_CONV_FUSIONS
    )
    return Path(out)


def quantize_static(
    fp32: str | Path,
    out: str | Path,
    calibration: list[tuple[np.ndarray, np.ndarray]],
    keep_float: list[str] = (),
    reduce_range: bool | None = None,
    fuse: bool = True,
) -> Path:
    """Static QDQ INT8 of the convolutions, calibrated on real batches ((images, valid
    widths) pairs), then dynamic INT8 of the LSTM and MatMul/Gemm; activation chains
    fused first (:func:`fuse_activations`; ``fuse=False`` to measure what that buys).

    Weights are quantized per output channel (depthwise filters differ in range by 30x
    and more). On an x86 CPU without VNNI, onnxruntime multiplies uint8 activations by
    int8 weights through 16-bit sums that saturate, and such a model reads garbage;
    ``reduce_range`` keeps the weights in 7 bits so the sums cannot overflow. None
    chooses it by this CPU (on without VNNI); the choice is in the model's metadata
    (``int8_reduce_range``), and the predictor warns when a model made without it runs on
    a CPU that needs it."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
    )
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self, batches):
            self.it = iter(batches)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"image": x[0], "widths": x[1]}

    if reduce_range is None:
        reduce_range = not has_vnni()
    out = Path(out)
    fused = out.with_suffix(".fused.onnx")
    pre = out.with_suffix(".pre.onnx")
    conv = out.with_suffix(".conv.onnx")
    if fuse:
        fuse_activations(fp32, fused)
    quant_pre_process(str(fused if fuse else fp32), str(pre), skip_symbolic_shape=True)
    ort_quantize_static(
        str(pre),
        str(conv),
        Reader(calibration),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv"],
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=reduce_range,
        nodes_to_exclude=_matching_nodes(pre, keep_float),
    )
    quantize_dynamic(conv, out, keep_float)
    for tmp in (fused, pre, conv):
        tmp.unlink(missing_ok=True)
    copy_metadata(
        fp32,
        out,
        {
            "quantization": "static QDQ int8 convs + dynamic int8 LSTM/MatMul",
            "int8_per_channel": "true",
            "int8_reduce_range": str(reduce_range).lower(),
            "int8_fused_activations": str(fuse).lower(),
        },
    )
    return out


def calibration_batches(samples: list[dict], batch_size: int = 16) -> list[tuple]:
    """Validation samples as padded (images, widths) batches of like widths, the way
    ``quantize_static`` reads its calibration data."""
    order = sorted(samples, key=lambda s: s["image"].shape[2])
    return [
        pad_batch([s["image"] for s in order[i : i + batch_size]])
        for i in range(0, len(order), batch_size)
    ]


def _matching_nodes(path, patterns) -> list[str]:
    """Names of the nodes whose name contains any of ``patterns`` (e.g. 'head')."""
    if not patterns:
        return []
    graph = onnx.load(str(path)).graph
    return [n.name for n in graph.node if any(p in n.name for p in patterns)]


def calibration_from_labelfiles(model: str | Path, labelfiles: list, lines: int) -> list:
    """Calibration batches for an exported model: ``lines`` images in all, an even share
    from the start of each label file (a mix of the kinds of text the model will read),
    preprocessed as the model's metadata says (no checkpoint needed)."""
    from distill.core.labelfile import read_label_file
    from distill.core.preprocess import preprocess
    from distill.runtime.predict import Recognizer, read_image

    cfg = Recognizer(model).preprocess_cfg
    share = max(1, lines // len(labelfiles))
    samples = []
    for labelfile in labelfiles:
        pairs, _ = read_label_file(labelfile)
        if not pairs:
            raise ValueError(f"{labelfile}: no image lines to calibrate on")
        samples += [{"image": preprocess(read_image(p), cfg)} for p, _ in pairs[:share]]
    return calibration_batches(samples)


def main(argv: list[str] | None = None) -> None:
    """INT8 twin of a model already exported (its checkpoint is not needed):

    python -m distill.export.quantize MODEL.onnx OUT.onnx [--mode static --calibration
        LABELS.tsv [--calibration MORE.tsv ...]] [--lines 256] [--reduce-range auto|on|off]
        [--keep-float head] [--no-fuse]
    """
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("model", help="an FP32 model written by export.py")
    ap.add_argument("out")
    ap.add_argument("--mode", choices=("dynamic", "static"), default="dynamic")
    ap.add_argument(
        "--calibration",
        action="append",
        default=[],
        help="static: a label file of lines like the model's (repeat for a mix: the lines "
        "are shared evenly between the files)",
    )
    ap.add_argument("--lines", type=int, default=256, help="static: calibration lines in all")
    ap.add_argument(
        "--reduce-range",
        choices=("auto", "on", "off"),
        default="auto",
        help="static: 7-bit weights, needed on x86 CPUs without VNNI (auto: this CPU's need; "
        "on: a model to run on any CPU)",
    )
    ap.add_argument("--keep-float", action="append", default=[], help="node names left FP32")
    ap.add_argument(
        "--no-fuse",
        action="store_true",
        help="static: leave GELU and other activation chains unfused (slower; to compare)",
    )
    a = ap.parse_args(argv)
    if not Path(a.model).is_file():
        ap.error(f"model not found: {a.model}")
    if a.mode == "static":
        if not a.calibration:
            ap.error("--mode static needs --calibration LABELS.tsv (lines like the model's)")
        for labelfile in a.calibration:
            if not Path(labelfile).is_file():
                ap.error(f"--calibration: no such label file {labelfile}")
        batches = calibration_from_labelfiles(a.model, a.calibration, a.lines)
        reduce_range = {"auto": None, "on": True, "off": False}[a.reduce_range]
        out = quantize_static(a.model, a.out, batches, a.keep_float, reduce_range, not a.no_fuse)
    else:
        out = quantize_dynamic(a.model, a.out, a.keep_float)
    meta = read_metadata(out)
    print(f"wrote {out} ({Path(out).stat().st_size / 2**20:.1f} MB; {meta.get('quantization')}, "
          f"reduce_range {meta.get('int8_reduce_range', '-')})")  # fmt: skip


if __name__ == "__main__":
    main()
