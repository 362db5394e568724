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
from distill.export.onnx import copy_metadata


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


def quantize_static(
    fp32: str | Path,
    out: str | Path,
    calibration: list[tuple[np.ndarray, np.ndarray]],
    keep_float: list[str] = (),
    reduce_range: bool | None = None,
) -> Path:
    """Static QDQ INT8 of the convolutions, calibrated on real batches ((images, valid
    widths) pairs), then dynamic INT8 of the LSTM and MatMul/Gemm.

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
    pre = out.with_suffix(".pre.onnx")
    conv = out.with_suffix(".conv.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
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
    for tmp in (pre, conv):
        tmp.unlink(missing_ok=True)
    copy_metadata(
        fp32,
        out,
        {
            "quantization": "static QDQ int8 convs + dynamic int8 LSTM/MatMul",
            "int8_per_channel": "true",
            "int8_reduce_range": str(reduce_range).lower(),
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
