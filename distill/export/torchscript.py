"""TorchScript for libtorch deployments: ``(image, widths) -> logits`` like the ONNX graph."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from distill.export.onnx import metadata
from distill.models.checkpoint import TrainedNetwork

SUFFIXES = (".pt", ".ts", ".torchscript")


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


def export_torchscript(trained: TrainedNetwork, out: str | Path, name: str) -> Path:
    """A traced TorchScript module; the metadata (charset, preprocessing, ...) rides along
    as ``metadata.json`` in the archive's extra files (``torch::jit::load(path, device,
    extra_files)`` reads it)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _SortedForTracing(trained.net).eval().cpu()
    cfg = trained.preprocess
    example = (torch.randn(2, cfg.channels, cfg.height, 128), torch.tensor([100, 128]))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on shapes; parity is checked after
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    extra = {"metadata.json": json.dumps(metadata(trained, name), ensure_ascii=False)}
    torch.jit.save(traced, str(out), _extra_files=extra)
    return out


def read_torchscript_metadata(path: str | Path) -> dict[str, str]:
    extra = {"metadata.json": ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra["metadata.json"])
