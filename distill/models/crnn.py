"""CRNN: a CNN backbone, a height-collapsing neck, a BiLSTM and a linear CTC head."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from distill.core.preprocess import check_frames, valid_frames
from distill.models.backbones import build_backbone
from distill.models.padding import PaddingMask
from distill.models.resize import apply_shapes


class CRNN(nn.Module):
    """Returns CTC logits [B, T, num_classes] and the backbone feature map [B, C, H', T].

    ``T = ceil(W / width_per_frame)`` (4 for every backbone here). Given each line's valid
    width, ``forward(x, widths)`` reads every line exactly as it would read it alone:
    padded columns are masked inside the backbone and the LSTM runs on packed
    sequences. The neck is a mean over height (exports to a plain ReduceMean; no
    AdaptiveAvgPool2d((None, 1)), which ONNX handles badly).
    """

    # prune.py keeps these output widths unless told otherwise: the stem convolution
    # next to the input (little to save, much to lose)
    prune_skip = ("backbone.body.0",)

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        in_channels: int = 1,
        hidden: int = 256,
        layers: int = 2,
        dropout: float = 0.0,
        backbone_args: dict | None = None,
    ):
        super().__init__()
        self.backbone = build_backbone(backbone, in_channels, **(backbone_args or {}))
        self.padding_mask = PaddingMask(self.backbone, in_channels)
        self.width_per_frame = self.padding_mask.out_stride
        self.rnn = nn.LSTM(
            self.backbone.out_channels,
            hidden,
            num_layers=layers,
            bidirectional=True,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.head = nn.Linear(2 * hidden, num_classes)
        self.in_channels = in_channels
        self.num_classes = num_classes

    def forward(
        self, x: torch.Tensor, widths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``widths``: each line's valid width in pixels (None: every line fills ``x``)."""
        feats = self.padding_mask.run(self.backbone, x, widths)
        t = feats.shape[-1]
        if not torch.jit.is_tracing():
            check_frames(t, x.shape[-1], self.width_per_frame, type(self.backbone).__name__)
        seq = feats.mean(dim=2).permute(0, 2, 1)  # [B, T, C]
        if widths is None:
            seq, _ = self.rnn(seq)
        else:
            frames = valid_frames(widths, self.width_per_frame)
            if not torch.jit.is_tracing() and (int(frames.max()) > t or int(frames.min()) < 1):
                raise ValueError(
                    f"valid widths {widths.tolist()} do not fit a {x.shape[-1]}-pixel batch"
                )
            # ONNX's LSTM takes unsorted sequence_lens: exporting with enforce_sorted=True
            # leaves out the sort and unsort operators (the example batch is sorted)
            packed = pack_padded_sequence(
                seq, frames.cpu(), batch_first=True, enforce_sorted=torch.jit.is_tracing()
            )
            seq, _ = self.rnn(packed)
            seq, _ = pad_packed_sequence(seq, batch_first=True, total_length=t)
        return self.head(seq), feats


ARCHS = ("crnn", "ppocrv6")


def build_model(
    num_classes: int, pruned_shapes: dict | None = None, arch: str = "crnn", **net
) -> nn.Module:
    """Build a network from a config dict (the ``net`` block of a model config): a CRNN,
    or ``arch: ppocrv6`` PP-OCRv6's recognizer (distill/models/ppocrv6.py); a pruned
    network's config adds the shapes its pruning changed (distill/models/resize.py)."""
    if arch == "crnn":
        model = CRNN(num_classes=num_classes, **net)
    elif arch == "ppocrv6":
        from distill.models.ppocrv6 import PPOCRv6Rec

        model = PPOCRv6Rec(num_classes=num_classes, **net)
    else:
        raise ValueError(f"model.net.arch must be one of {ARCHS}, got {arch!r}")
    return apply_shapes(model, pruned_shapes or {})


def freeze_modules(net: torch.nn.Module, names: list[str]) -> None:
    """Stop the named modules (and all inside them) from training; an unknown name is an
    error that lists the network's top modules."""
    modules = dict(net.named_modules())
    for name in names:
        if name not in modules:
            tops = ", ".join(n for n, _ in net.named_children())
            raise ValueError(
                f"model.freeze: the network has no module {name!r} (its modules: {tops}; "
                "nested ones by dotted path, e.g. backbone.blocks.0)"
            )
        for p in modules[name].parameters():
            p.requires_grad_(False)
