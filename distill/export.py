"""ONNX export of the recognizer (never a teacher or an adapter), parity check, INT8;
and TorchScript for libtorch deployments.

The exported graph takes ``image`` float32 [N, C, 32, W] (N and W dynamic) and
``widths`` int64 [N] (each line's valid width in pixels, so padding never changes a
reading) and returns ``logits`` [N, T, num_classes], T = ceil(W / width_per_frame).
Everything the predictor needs (charset, preprocessing, frame rate, blank index, model
name, training config) rides along in the metadata props, so the ``.onnx`` file alone
is enough.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from distill.ctc import greedy_decode, softmax
from distill.module import RecognizerModule
from distill.onnx_masks import name_masks
from distill.preprocess import PreprocessConfig, pad_batch, preprocess, valid_frames

log = logging.getLogger(__name__)

OPSET = 17
PARITY_WIDTHS = (32, 100, 320, 800)
PARITY_BATCHES = (1, 7)
PARITY_ATOL = 1e-3
NEAR_TIE = 1e-4  # a top-2 logit margin below this may flip under float rounding
TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript")
FORMATS = ("onnx", "torchscript")


class ExportError(RuntimeError):
    pass


class _LogitsOnly(nn.Module):
    """The deployable graph: logits only (no feature map)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image, widths):
        return self.net(image, widths)[0]


class _SortedForTracing(nn.Module):
    """The TorchScript graph: lines in any order. The traced LSTM packs sequences sorted
    by length (see CRNN.forward), so the batch is sorted longest first and put back."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image, widths):
        order = torch.argsort(widths, descending=True)
        logits = self.net(image[order], widths[order])[0]
        return logits[torch.argsort(order)]


def export_torchscript(module: RecognizerModule, out: str | Path, name: str) -> Path:
    """A traced TorchScript module ``(image, widths) -> logits`` like the ONNX graph;
    the metadata (charset, preprocessing, ...) rides along as ``metadata.json`` in the
    archive's extra files (``torch::jit::load(path, device, extra_files)`` reads it)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _SortedForTracing(module.net).eval().cpu()
    cfg = module.preprocess_cfg
    example = (torch.randn(2, cfg.channels, cfg.height, 128), torch.tensor([100, 128]))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on shapes; parity is checked after
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    extra = {"metadata.json": json.dumps(metadata(module, name), ensure_ascii=False)}
    torch.jit.save(traced, str(out), _extra_files=extra)
    return out


def read_torchscript_metadata(path: str | Path) -> dict[str, str]:
    extra = {"metadata.json": ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra["metadata.json"])


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
        "width_per_frame": str(module.net.width_per_frame),
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
    widths = torch.tensor([128, 100])  # sorted: see CRNN.forward
    masks = getattr(module.net, "padding_mask", None)
    if masks is not None:
        masks.traced_strides.clear()
    with torch.no_grad(), warnings.catch_warnings():
        # the exporter warns about packed sequences and batch sizes; parity is checked below
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (dummy, widths),
            str(out),
            input_names=["image", "widths"],
            output_names=["logits"],
            dynamic_axes={
                "image": {0: "N", 3: "W"},
                "widths": {0: "N"},
                "logits": {0: "N", 1: "T"},
            },
            opset_version=OPSET,
            dynamo=False,  # the dynamo exporter fails on the dynamic width of the LSTM model
            do_constant_folding=True,
        )
    model = onnx.load(str(out))
    if masks is not None:  # named by stride, for the predictor's lean graph
        name_masks(model, masks.traced_strides)
    if simplify:
        import onnxslim

        model = onnxslim.slim(model)
    _set_metadata(model, metadata(module, name))
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def parity_inputs(
    cfg: PreprocessConfig, width: int, batch: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Realistic inputs for the parity check: rendered text lines of their own widths,
    padded to ``width``; returns the batch and the valid widths.

    Random noise would leave an untrained model with near-tied logits everywhere."""
    from distill.charset import Charset
    from distill.data.synth import SynthDataset

    fit = PreprocessConfig(**{**cfg.to_dict(), "max_width": -(-width // 4) * 4, "min_width": 4})
    ds = SynthDataset(Charset.resolve("ascii"), fit, size=batch, seed=seed, deterministic=True)
    x = np.zeros((batch, cfg.channels, cfg.height, width), np.float32)
    widths = np.zeros(batch, np.int64)
    for i in range(batch):
        a = preprocess(ds.render(i), fit)[:, :, :width]
        x[i, :, :, : a.shape[2]] = a
        widths[i] = a.shape[2]
    widths[0] = width  # one line fills the batch
    return x, widths


@dataclass
class ParityReport:
    rows: list[dict] = field(default_factory=list)
    runtime: str = "onnxruntime"

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.rows)

    def __str__(self) -> str:
        lines = [f"parity {self.runtime} vs PyTorch:"]
        for r in self.rows:
            status = "ok" if r["ok"] else "FAIL"
            tie = f", {r['near_ties']} near-tie frame(s)" if r["near_ties"] else ""
            lines.append(
                f"  batch {r['batch']} width {r['width']:4d}: max |diff| {r['max_abs_diff']:.2e}, "
                f"strings {r['strings_equal']}/{r['batch']} identical{tie}  [{status}]"
            )
        return "\n".join(lines)


def _runner(path: Path):
    """``run(x, widths) -> logits`` of an exported model: ONNX or TorchScript (``.pt``)."""
    if path.suffix in TORCHSCRIPT_SUFFIXES:
        scripted = torch.jit.load(str(path), map_location="cpu").eval()

        def run(x, valid):
            with torch.no_grad():
                return scripted(torch.from_numpy(x), torch.from_numpy(valid)).float().numpy()

        return run, "TorchScript"
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return (lambda x, valid: sess.run(None, {"image": x, "widths": valid})[0]), "onnxruntime"


def check_parity(
    module: RecognizerModule,
    onnx_path: str | Path,
    widths=None,
    batches=PARITY_BATCHES,
    atol: float = PARITY_ATOL,
) -> ParityReport:
    """Compare onnxruntime and PyTorch logits and decoded strings on several shapes, with
    lines of different valid widths in each batch; by default PARITY_WIDTHS plus the
    model's own ``max_width`` (1600 px for ~110-character document lines).

    A decoded string may differ only where PyTorch's own top-2 margin is a near tie
    (below 1e-4), which any float rounding can flip; that is reported, not hidden."""
    run, runtime = _runner(Path(onnx_path))
    report = ParityReport(runtime=runtime)
    net = module.net.eval()
    if widths is None:
        widths = sorted({*PARITY_WIDTHS, module.preprocess_cfg.max_width})
    for b in batches:
        for w in widths:
            x, valid = parity_inputs(module.preprocess_cfg, w, b)
            with torch.no_grad():
                ref = net(torch.from_numpy(x), torch.from_numpy(valid))[0].float().numpy()
            got = run(x, valid)
            if got.shape != ref.shape:
                raise ExportError(
                    f"{runtime} output shape {got.shape} != PyTorch {ref.shape} at {x.shape}"
                )
            diff = float(np.abs(got - ref).max())
            frames = valid_frames(valid, net.width_per_frame)
            ref_s = [i for i, _ in greedy_decode(softmax(ref), frames)]
            got_s = [i for i, _ in greedy_decode(softmax(got), frames)]
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

    from distill.hardware import has_vnni

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
    _copy_metadata(
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


def _copy_metadata(src, dst, extra: dict[str, str]) -> None:
    props = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    model = onnx.load(str(dst))
    _set_metadata(model, {**props, **extra})
    onnx.save(model, str(dst))


# ---------------------------------------------------------------- the export job


def evaluate_onnx(
    path: Path, arrays: list[np.ndarray], labels: list[str], protocol: str
) -> tuple[dict, list[str]]:
    """Accuracy and speed of an exported model on preprocessed validation lines; also
    returns its readings (to compare INT8 with FP32 line by line)."""
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


def validation_set(data, module: RecognizerModule, why: str = "INT8 export"):
    """The validation dataset of ``data`` (default: the data config the checkpoint was
    trained with), read the way the checkpoint reads images."""
    import hydra

    data = data or module.hparams.get("data")
    if not data:
        raise ValueError(
            f"{why} needs validation data: this checkpoint carries no data config; "
            "give one, e.g. data=labelfile 'data.val=[FILE]'"
        )
    datamodule = hydra.utils.instantiate(
        data,
        charset=module.charset.to_dict(),
        preprocess=module.preprocess_cfg.to_dict(),
        augment=None,
        num_workers=0,
        _convert_="all",
    )
    datamodule.setup("validate")
    if datamodule.val_set is None:
        raise ValueError(f"{why} needs validation data (data.val)")
    return datamodule.val_set


def validation_split(cfg, module: RecognizerModule):
    """The validation lines that score FP32 against INT8 and, after them, the disjoint
    lines that calibrate static INT8, from ``data`` (default: the data config the
    checkpoint was trained with). Returns (eval samples, calibration samples, set name)."""
    ds = validation_set(cfg.get("data"), module, "INT8 export (to calibrate and evaluate)")
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
    from distill.module import load_recognizer

    ckpt = Path(cfg.ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    module = load_recognizer(str(ckpt))
    name = cfg.get("name") or f"{module.hparams['net']['backbone']}-crnn-{module.charset.name}"
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
        export_torchscript(module, out, name)
        report = check_parity(module, out)
        print(report)
        if not report.ok:
            raise ExportError(f"{out}: TorchScript output does not match PyTorch (see above)")
        print(f"exported {out} ({out.stat().st_size / 2**20:.1f} MB, TorchScript)")
        return {"torchscript": str(out), "parity": report.rows}

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

    evaluation, calibration, set_name = validation_split(cfg, module)
    arrays, labels = [s["image"] for s in evaluation], [s["label"] for s in evaluation]
    int8 = out.with_name(out.stem + "_int8.onnx")
    keep = list(cfg.get("keep_float") or [])
    if cfg.quantize == "dynamic":
        quantize_dynamic(out, int8, keep)
    else:
        reduce_range = cfg.get("reduce_range")
        quantize_static(out, int8, calibration_batches(calibration), keep, reduce_range)
    fp32_row, fp32_texts = evaluate_onnx(out, arrays, labels, module.protocol)
    int8_row, int8_texts = evaluate_onnx(int8, arrays, labels, module.protocol)
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
