"""The ONNX graph of a recognizer, in the project's contract.

The exported graph takes ``image`` float32 [N, C, H, W] (N and W dynamic) and
``widths`` int64 [N] (each line's valid width in pixels, so padding never changes a
reading) and returns ``logits`` [N, T, num_classes], T = ceil(W / width_per_frame).
Everything the predictor needs (charset, preprocessing, frame rate, blank index, model
name, training config) rides along in the metadata props, so the ``.onnx`` file alone
is enough.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from distill.models.checkpoint import TrainedNetwork
from distill.runtime.onnx_masks import name_masks

OPSET = 17


class ExportError(RuntimeError):
    pass


class _LogitsOnly(nn.Module):
    """The deployable graph: logits only (no feature map)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image, widths):
        return self.net(image, widths)[0]


def metadata(trained: TrainedNetwork, name: str, extra: dict | None = None) -> dict[str, str]:
    """String metadata props: everything inference needs, plus the training config."""
    cfg = trained.preprocess
    props = {
        "model_name": name,
        "charset": json.dumps(trained.charset.chars, ensure_ascii=False),
        "charset_name": trained.charset.name,
        "num_classes": str(trained.charset.num_classes),
        "blank_index": str(trained.charset.blank),
        "input_height": str(cfg.height),
        "input_channels": str(cfg.channels),
        "max_width": str(cfg.max_width),
        "min_width": str(cfg.min_width),
        "mean": repr(cfg.mean),
        "std": repr(cfg.std),
        "channel_order": cfg.channel_order,
        "stretch": repr(cfg.stretch),
        "width_per_frame": str(trained.net.width_per_frame),
        "train_config": json.dumps({"net": trained.net_config, "protocol": trained.protocol}),
    }
    props.update({k: str(v) for k, v in (extra or {}).items()})
    return props


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def read_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata props (its weights are not read when stored apart)."""
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def copy_metadata(src, dst, extra: dict[str, str]) -> None:
    """``dst``'s metadata: ``src``'s, updated with ``extra``."""
    props = read_metadata(src)
    model = onnx.load(str(dst))
    set_metadata(model, {**props, **extra})
    onnx.save(model, str(dst))


def export_onnx(trained: TrainedNetwork, out: str | Path, name: str, simplify: bool = True) -> Path:
    """Export ``trained.net`` with dynamic batch and width; returns the written path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _LogitsOnly(trained.net).eval().cpu()
    cfg = trained.preprocess
    dummy = torch.randn(2, cfg.channels, cfg.height, 128)  # batch >= 2: no batch-1 folding
    widths = torch.tensor([128, 100])  # sorted: see CRNN.forward
    masks = getattr(trained.net, "padding_mask", None)
    if masks is not None:
        masks.traced_strides.clear()
    with torch.no_grad(), warnings.catch_warnings():
        # the exporter warns about packed sequences and batch sizes; parity is checked after
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
    set_metadata(model, metadata(trained, name))
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out
