"""torchvision backbones adapted to text lines: 32 x W input -> 1 x W/4 feature map.

Both keep torchvision's stem (stride-2 conv + stride-2 max-pool, so width is
divided by 4) and turn every later stride into (2, 1): height keeps shrinking to 1
while width, i.e. the number of CTC frames, stays at W/4. Teacher and student thus
emit the same T, which frame-level distillation needs. Weights are random: nothing
is downloaded.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import (
    resnet34,
    shufflenet_v2_x0_5,
    shufflenet_v2_x1_0,
    shufflenet_v2_x1_5,
    shufflenet_v2_x2_0,
)
from torchvision.models.shufflenetv2 import InvertedResidual

HEIGHT_STRIDE_ONLY = (2, 1)
SHUFFLENET_WIDTHS = {
    0.5: shufflenet_v2_x0_5,
    1.0: shufflenet_v2_x1_0,
    1.5: shufflenet_v2_x1_5,
    2.0: shufflenet_v2_x2_0,
}


def _adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    if in_channels == conv.in_channels:
        return conv
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        bias=conv.bias is not None,
    )


class ResNet34Backbone(nn.Module):
    """ResNet34 with layers 2-4 striding only in height; 512 output channels."""

    def __init__(self, in_channels: int = 1):
        super().__init__()
        net = resnet34(weights=None)
        net.conv1 = _adapt_first_conv(net.conv1, in_channels)
        for layer in (net.layer2, net.layer3, net.layer4):
            block = layer[0]
            block.conv1.stride = HEIGHT_STRIDE_ONLY
            block.downsample[0].stride = HEIGHT_STRIDE_ONLY
        self.body = nn.Sequential(
            net.conv1,
            net.bn1,
            net.relu,
            net.maxpool,
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.out_channels = 512

    def forward(self, x):
        return self.body(x)


class ChannelShuffle(nn.Module):
    """torchvision's channel shuffle as a module, taking the groups as separate tensors.

    Given the groups (a unit's two halves) it interleaves them in one stack-and-view,
    which exports to a single interleaving Concat; concatenating first and then
    view/transpose/view, as torchvision does, costs an extra copy per unit: 2-11% of a
    batch-1 run in onnxruntime (benchmarks/bench_speedups.py). Same channel order.
    Being a module lets the pruner (distill/pruning/graph.py) see each shuffle as one
    node: the channels it interleaves are coupled across a whole stage, so the pruner
    leaves every channel group that crosses a shuffle alone.
    """

    def __init__(self, groups: int = 2):
        super().__init__()
        self.groups = groups

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        if len(parts) == 1:  # one tensor: its channel groups
            parts = parts[0].chunk(self.groups, dim=1)
        if len(parts) != self.groups:
            raise ValueError(f"channel shuffle of {self.groups} groups got {len(parts)} tensors")
        b, c, h, w = parts[0].shape
        return torch.stack(parts, dim=2).view(b, c * self.groups, h, w)


class ShuffleUnit(InvertedResidual):
    """torchvision's ShuffleNetV2 unit with its shuffle as a :class:`ChannelShuffle`
    child (no parameters: state dicts are unchanged)."""

    shuffle: ChannelShuffle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            return self.shuffle(x1, self.branch2(x2))
        return self.shuffle(self.branch1(x), self.branch2(x))


def _with_shuffle_module(unit: InvertedResidual) -> ShuffleUnit:
    unit.__class__ = ShuffleUnit
    unit.shuffle = ChannelShuffle(2)
    return unit


class ShuffleNetV2Backbone(nn.Module):
    """ShuffleNetV2 with stages 2-4 striding only in height.

    ``conv5_channels`` optionally narrows the last 1x1 conv (1024 in torchvision),
    which sets the LSTM input width and so most of the sequence model's cost.
    """

    def __init__(self, in_channels: int = 1, width: float = 1.0, conv5_channels: int | None = None):
        super().__init__()
        if width not in SHUFFLENET_WIDTHS:
            raise ValueError(f"shufflenet width must be one of {sorted(SHUFFLENET_WIDTHS)}")
        net = SHUFFLENET_WIDTHS[width](weights=None)
        net.conv1[0] = _adapt_first_conv(net.conv1[0], in_channels)
        for stage in (net.stage2, net.stage3, net.stage4):
            unit = stage[0]
            unit.branch1[0].stride = HEIGHT_STRIDE_ONLY  # depthwise conv of the shortcut
            unit.branch2[3].stride = HEIGHT_STRIDE_ONLY  # depthwise conv of the main branch
            for u in stage:
                _with_shuffle_module(u)
        conv5 = net.conv5
        if conv5_channels:
            c_in = conv5[0].in_channels
            conv5 = nn.Sequential(
                nn.Conv2d(c_in, conv5_channels, 1, bias=False),
                nn.BatchNorm2d(conv5_channels),
                nn.ReLU(inplace=True),
            )
        self.body = nn.Sequential(net.conv1, net.maxpool, net.stage2, net.stage3, net.stage4, conv5)
        self.out_channels = conv5[0].out_channels

    def forward(self, x):
        return self.body(x)


def build_backbone(name: str, in_channels: int = 1, **kwargs) -> nn.Module:
    if name == "resnet34":
        return ResNet34Backbone(in_channels, **kwargs)
    if name == "shufflenet_v2":
        return ShuffleNetV2Backbone(in_channels, **kwargs)
    if name == "???":  # crnn_base.yaml leaves it to the architecture configs
        raise ValueError(
            "model.net.backbone is not set: use model=resnet34_crnn or =shufflenet_crnn"
        )
    raise ValueError(f"unknown backbone {name!r}; choose 'resnet34' or 'shufflenet_v2'")
