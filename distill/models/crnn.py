"""CRNN: a CNN backbone, a height-collapsing neck, a BiLSTM and a linear CTC head."""

from __future__ import annotations

import torch
from torch import nn

from distill.models.backbones import build_backbone


class CRNN(nn.Module):
    """Returns CTC logits [B, T, num_classes] and the backbone feature map [B, C, H', T].

    T = W / 4 for every backbone. The neck is a mean over height (exports to a plain
    ReduceMean; no AdaptiveAvgPool2d((None, 1)), which ONNX handles badly).
    """

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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.backbone(x)
        seq = feats.mean(dim=2).permute(0, 2, 1)  # [B, T, C]
        seq, _ = self.rnn(seq)
        return self.head(seq), feats


def build_model(num_classes: int, **net) -> CRNN:
    """Build a CRNN from a config dict (the ``net`` block of a model config)."""
    return CRNN(num_classes=num_classes, **net)
