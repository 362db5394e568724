"""Right padding that a network cannot see: a line reads the same in any batch.

A batch pads every line on the right to the widest one. Without care, the padded
columns leak into the valid frames twice: every convolution whose kernel spans
several columns mixes the first padded columns into the last valid ones (BatchNorm and
ReLU turn zero padding into non-zero activations), and the backward LSTM reads the
whole padding before the line. ``PaddingMask`` zeroes the padded columns at the input
of every width-mixing layer, which is exactly what the layer's own zero padding does
at the border of a line that is alone in its batch; the LSTM is then run on packed
sequences (exported as ONNX LSTM ``sequence_lens``).
"""

from __future__ import annotations

import torch
from torch import nn

from distill.core.preprocess import valid_frames


def mixes_columns(module: nn.Module) -> bool:
    """Layers whose output column depends on neighbouring input columns."""
    if isinstance(module, nn.Conv2d):
        return module.kernel_size[1] > 1
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k = module.kernel_size
        return (k if isinstance(k, int) else k[1]) > 1
    return False


class PaddingMask:
    """Zeroes the padded columns at the input of each width-mixing layer of ``body``.

    Each such layer's width stride (relative to the network input) is measured once with
    a probe; during a forward pass under :meth:`widths`, its input is multiplied by a
    column mask ``column < ceil(valid_width / stride)``. Zero is what the layer's own
    padding holds at a line's border; max-pooling follows ReLU, so a zero equals its
    ``-inf`` padding there.
    """

    def __init__(self, body: nn.Module, in_channels: int, probe_width: int = 64):
        self._widths: torch.Tensor | None = None
        self._masks: dict[int, torch.Tensor] = {}
        self.strides: dict[nn.Module, int] = {}
        # the stride of each mask in the order an export trace applied them: export.py
        # names the mask nodes with them (distill/runtime/onnx_masks.py)
        self.traced_strides: list[int] = []
        layers = [m for m in body.modules() if mixes_columns(m)]
        seen: dict[nn.Module, int] = {}
        handles = [
            m.register_forward_pre_hook(lambda m, args: seen.__setitem__(m, args[0].shape[-1]))
            for m in layers
        ]
        was_training = body.training
        with torch.no_grad():
            out = body.eval()(torch.zeros(1, in_channels, 32, probe_width))
        body.train(was_training)
        self.out_stride = _exact_stride(probe_width, out.shape[-1], body)
        for h in handles:
            h.remove()
        for m in layers:
            self.strides[m] = _exact_stride(probe_width, seen[m], m)
            m.register_forward_pre_hook(self._mask_input)

    def _mask_input(self, module: nn.Module, args):
        if self._widths is None:
            return None
        x = args[0]
        stride = self.strides[module]
        if torch.jit.is_tracing():
            self.traced_strides.append(stride)
        mask = self._masks.get(stride)
        if mask is None:
            valid = valid_frames(self._widths, stride)  # ceil(width / stride)
            columns = torch.arange(x.shape[-1], device=x.device)
            mask = (columns[None, :] < valid[:, None]).to(x.dtype)[:, None, None, :]
            self._masks[stride] = mask
        return (x * mask,) + tuple(args[1:])

    def run(self, body: nn.Module, x: torch.Tensor, widths: torch.Tensor | None) -> torch.Tensor:
        """``body(x)`` with the columns beyond each sample's valid width masked out."""
        self._widths, self._masks = widths, {}
        try:
            return body(x)
        finally:
            self._widths, self._masks = None, {}


def _exact_stride(width: int, seen: int, module: nn.Module) -> int:
    stride, rest = divmod(width, seen)
    if rest:
        raise ValueError(f"{type(module).__name__}: width stride {width}/{seen} is not an integer")
    return stride
