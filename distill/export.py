"""ONNX export of the recognizer (never a teacher or an adapter), parity check, INT8.

The exported graph takes ``image`` float32 [N, C, 32, W] (N and W dynamic) and returns
``logits`` [N, T, num_classes]. Everything the predictor needs (charset, preprocessing,
blank index, model name, training config) rides along in the metadata props, so the
``.onnx`` file alone is enough.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from distill.ctc import greedy_decode, softmax
from distill.module import RecognizerModule
from distill.preprocess import PreprocessConfig, preprocess

log = logging.getLogger(__name__)

OPSET = 17
PARITY_WIDTHS = (32, 100, 320, 800)
PARITY_BATCHES = (1, 7)
PARITY_ATOL = 1e-3
NEAR_TIE = 1e-4  # a top-2 logit margin below this may flip under float rounding


class ExportError(RuntimeError):
    pass


class _LogitsOnly(nn.Module):
    """The deployable graph: logits only (no feature map)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image):
        return self.net(image)[0]


def metadata(module: RecognizerModule, name: str, extra: dict | None = None) -> dict[str, str]:
    """String metadata props: everything inference needs, plus the training config."""
    cfg: PreprocessConfig = module.preprocess_cfg
    net_cfg = dict(module.hparams.get("net") or {})
    props = {
        "model_name": name,
        "charset": json.dumps(module.charset.chars, ensure_ascii=False),
        "charset_name": module.charset.name,
        "num_classes": str(module.charset.num_classes),
        "blank_index": str(module.charset.blank),
        "input_height": str(cfg.height),
        "input_channels": str(cfg.channels),
        "max_width": str(cfg.max_width),
        "min_width": str(cfg.min_width),
        "mean": repr(cfg.mean),
        "std": repr(cfg.std),
        "width_per_frame": "4",
        "train_config": json.dumps({"net": net_cfg, "protocol": module.protocol}),
    }
    props.update({k: str(v) for k, v in (extra or {}).items()})
    return props


def _set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def export_onnx(
    module: RecognizerModule, out: str | Path, name: str, simplify: bool = True
) -> Path:
    """Export ``module.net`` with dynamic batch and width; returns the written path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _LogitsOnly(module.net).eval().cpu()
    cfg = module.preprocess_cfg
    dummy = torch.randn(2, cfg.channels, cfg.height, 128)  # batch >= 2: no batch-1 folding
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (dummy,),
            str(out),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "N", 3: "W"}, "logits": {0: "N", 1: "T"}},
            opset_version=OPSET,
            dynamo=False,  # the dynamo exporter fails on the dynamic width of the LSTM model
            do_constant_folding=True,
        )
    model = onnx.load(str(out))
    if simplify:
        import onnxslim

        model = onnxslim.slim(model)
    _set_metadata(model, metadata(module, name))
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def parity_inputs(cfg: PreprocessConfig, width: int, batch: int, seed: int = 0) -> np.ndarray:
    """Realistic inputs for the parity check: rendered text lines, padded to ``width``.

    Random noise would leave an untrained model with near-tied logits everywhere."""
    from distill.charset import Charset
    from distill.data.synth import SynthDataset

    fit = PreprocessConfig(**{**cfg.to_dict(), "max_width": -(-width // 4) * 4, "min_width": 4})
    ds = SynthDataset(Charset.resolve("ascii"), fit, size=batch, seed=seed, deterministic=True)
    x = np.zeros((batch, cfg.channels, cfg.height, width), np.float32)
    for i in range(batch):
        a = preprocess(ds.render(i), fit)[:, :, :width]
        x[i, :, :, : a.shape[2]] = a
    return x


@dataclass
class ParityReport:
    rows: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.rows)

    def __str__(self) -> str:
        lines = ["parity onnxruntime vs PyTorch:"]
        for r in self.rows:
            status = "ok" if r["ok"] else "FAIL"
            tie = f", {r['near_ties']} near-tie frame(s)" if r["near_ties"] else ""
            lines.append(
                f"  batch {r['batch']} width {r['width']:4d}: max |diff| {r['max_abs_diff']:.2e}, "
                f"strings {r['strings_equal']}/{r['batch']} identical{tie}  [{status}]"
            )
        return "\n".join(lines)


def check_parity(
    module: RecognizerModule,
    onnx_path: str | Path,
    widths=PARITY_WIDTHS,
    batches=PARITY_BATCHES,
    atol: float = PARITY_ATOL,
) -> ParityReport:
    """Compare onnxruntime and PyTorch logits and decoded strings on several shapes.

    A decoded string may differ only where PyTorch's own top-2 margin is a near tie
    (below 1e-4), which any float rounding can flip; that is reported, not hidden."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    report = ParityReport()
    net = module.net.eval()
    for b in batches:
        for w in widths:
            x = parity_inputs(module.preprocess_cfg, w, b)
            with torch.no_grad():
                ref = net(torch.from_numpy(x))[0].float().numpy()
            got = sess.run(None, {"image": x})[0]
            if got.shape != ref.shape:
                raise ExportError(
                    f"ONNX output shape {got.shape} != PyTorch {ref.shape} at {x.shape}"
                )
            diff = float(np.abs(got - ref).max())
            ref_s = [i for i, _ in greedy_decode(softmax(ref))]
            got_s = [i for i, _ in greedy_decode(softmax(got))]
            top2 = np.sort(ref, axis=-1)[..., -2:]
            ties = (top2[..., 1] - top2[..., 0]) < NEAR_TIE
            flips = (ref.argmax(-1) != got.argmax(-1)) & ~ties
            equal = sum(a == c for a, c in zip(ref_s, got_s))
            ok = diff <= atol and (equal == b or not flips.any())
            report.rows.append(
                {
                    "batch": b,
                    "width": w,
                    "max_abs_diff": diff,
                    "strings_equal": equal,
                    "near_ties": int((ties & (ref.argmax(-1) != got.argmax(-1))).sum()),
                    "ok": bool(ok),
                }
            )
    return report


# ---------------------------------------------------------------- INT8


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
    _copy_metadata(fp32, out, {"quantization": "dynamic int8 (LSTM, MatMul, Gemm)"})
    return Path(out)


def quantize_static(
    fp32: str | Path, out: str | Path, calibration: list[np.ndarray], keep_float: list[str] = ()
) -> Path:
    """Static QDQ INT8 of the convolutions, calibrated on real batches, then dynamic INT8
    of the LSTM and MatMul/Gemm."""
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
            return None if x is None else {"image": x}

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
        nodes_to_exclude=_matching_nodes(pre, keep_float),
    )
    quantize_dynamic(conv, out, keep_float)
    for tmp in (pre, conv):
        tmp.unlink(missing_ok=True)
    _copy_metadata(fp32, out, {"quantization": "static QDQ int8 convs + dynamic int8 LSTM/MatMul"})
    return out


def _matching_nodes(path, patterns) -> list[str]:
    """Names of the nodes whose name contains any of ``patterns`` (e.g. 'head')."""
    if not patterns:
        return []
    graph = onnx.load(str(path)).graph
    return [n.name for n in graph.node if any(p in n.name for p in patterns)]


def _copy_metadata(src, dst, extra: dict[str, str]) -> None:
    props = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    model = onnx.load(str(dst))
    _set_metadata(model, {**props, **extra})
    onnx.save(model, str(dst))


# ---------------------------------------------------------------- the export job


def evaluate_onnx(path: Path, arrays: list[np.ndarray], labels: list[str], protocol: str) -> dict:
    """Accuracy and speed of an exported model on preprocessed validation lines."""
    from distill.metrics import score
    from distill.predict import Recognizer

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
    m = score([r.text for r in batched], labels, protocol)
    return {
        "file": str(path),
        "size_mb": round(path.stat().st_size / 2**20, 2),
        "acc": m["acc"],
        "cer": m["cer"],
        "ms_per_line_batch1": round(1000 * single_s / n1, 2),
        "lines_per_s_batched": round(len(arrays) / batched_s, 1),
    }


def run_export(cfg) -> dict:
    """export.py: ONNX FP32 (+ INT8), parity check, accuracy and latency side by side."""
    import hydra

    from distill.module import load_recognizer

    ckpt = Path(cfg.ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    module = load_recognizer(str(ckpt))
    name = cfg.get("name") or f"{module.hparams['net']['backbone']}-crnn-{module.charset.name}"
    out = Path(cfg.out) if cfg.get("out") else ckpt.parent.parent / f"{name}.onnx"
    if cfg.quantize not in ("none", "dynamic", "static"):
        raise ValueError(f"quantize must be none, dynamic or static, got {cfg.quantize!r}")

    export_onnx(module, out, name)
    report = check_parity(module, out)
    print(report)
    if not report.ok:
        raise ExportError(f"{out}: ONNX output does not match PyTorch (see the table above)")
    n_params = sum(p.numel() for p in module.net.parameters())
    print(f"exported {out} ({out.stat().st_size / 2**20:.1f} MB, {n_params / 1e6:.2f}M params)")
    summary = {"fp32": str(out), "parity": report.rows}
    if cfg.quantize == "none":
        return summary

    datamodule = hydra.utils.instantiate(
        cfg.data,
        charset=module.charset.to_dict(),
        preprocess=module.preprocess_cfg.to_dict(),
        augment=None,
        num_workers=0,
        _convert_="all",
    )
    datamodule.setup("validate")
    if datamodule.val_set is None:
        raise ValueError("INT8 export needs validation data (data.val) to calibrate and evaluate")
    ds = datamodule.val_set
    samples = [ds[i] for i in range(min(len(ds), cfg.eval_samples))]
    samples = [s for s in samples if s is not None]
    arrays, labels = [s["image"] for s in samples], [s["label"] for s in samples]
    int8 = out.with_name(out.stem + "_int8.onnx")
    keep = list(cfg.get("keep_float") or [])
    if cfg.quantize == "dynamic":
        quantize_dynamic(out, int8, keep)
    else:
        loader = datamodule.val_dataloader()
        calib = []
        for batch in loader:
            calib.append(batch["images"].numpy())
            if len(calib) >= cfg.calibration_batches:
                break
        quantize_static(out, int8, calib, keep)
    rows = {
        "fp32": evaluate_onnx(out, arrays, labels, module.protocol),
        f"int8-{cfg.quantize}": evaluate_onnx(int8, arrays, labels, module.protocol),
    }
    print(f"\nvalidation ({len(arrays)} lines, {ds.name}):")
    print(
        f"{'model':14s} {'MB':>6s} {'acc':>7s} {'CER':>7s} {'ms/line (b=1)':>14s} {'lines/s':>8s}"
    )
    for k, r in rows.items():
        print(
            f"{k:14s} {r['size_mb']:6.2f} {100 * r['acc']:6.1f}% {100 * r['cer']:6.1f}% "
            f"{r['ms_per_line_batch1']:14.2f} {r['lines_per_s_batched']:8.1f}"
        )
    summary.update({"int8": str(int8), "validation": rows})
    return summary
