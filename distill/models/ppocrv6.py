"""PP-OCRv6's text-line recognizer (PaddleOCR, Apache-2.0) as a trainable PyTorch network,
in the deploy form of its ONNX graph: each convolution with its BatchNorm folded into a
bias, the three branches of each depthwise convolution merged into one.

- **Backbone** (PP-LCNetV4, ``small``): a stem of a 3x3 stride-2 convolution, two branches
  (a 2x2 max-pool; two 2x2 convolutions, both padded SAME: one column and row after the
  image) concatenated, a 3x3 stride-2 and a 1x1 convolution; then MetaFormer blocks, each a
  3x3 depthwise convolution (optionally squeeze-excited) and a 1x1 expand / GELU / 1x1
  compress, with a residual around the second half when the shape allows. Stages 4 and 5
  halve the height only, so a line of height 48 leaves it 3 rows high at 1/4 of its width.
- **Neck** (the light SVTR of PP-OCRv6): an average over the height and pairs of columns
  (one frame per 8 input pixels; the ONNX graph's [3, 2] pool at height 48, which follows
  the feature height here, so the same weights read at 32 or 64 px), a 1x1 skip branch, a
  1x1 and a 1x7 depthwise convolution with BatchNorm and Swish, two attention blocks of
  dimension 120 (8 heads, LayerNorm, an MLP of 240), a LayerNorm and the skip added back.
- **Head**: one linear layer onto the classes (blank, the dictionary, the space).

Plain ``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.Linear`` and ``nn.LayerNorm`` throughout, so
pruning and quantization see standard layers. ``forward(x, widths)`` follows the CRNNs'
contract: logits [B, T, C] (before the softmax the ONNX graph ends with) and the backbone's
feature map; with ``widths`` every line reads as it would alone (padded columns are zeroed
before each layer that mixes columns, the squeeze-excite means and the attention see the
valid columns only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.core.preprocess import valid_frames

# PP-LCNetV4 "small" for recognition: per stage, blocks of (in, out, height stride, SE)
SMALL = {
    "stem": (48, 24, 96),  # first conv out, branch mid, stem out
    "stages": [
        [(96, 96, 1, True)],
        [(96, 96, 1, False), (96, 96, 1, False)],
        [(96, 192, 2, False)] + [(192, 192, 1, i % 2 == 0) for i in range(6)],
        [(192, 384, 2, False), (384, 384, 1, True), (384, 384, 1, False)],
    ],
    "neck_dim": 120,
    "heads": 8,
    "depth": 2,
}
WIDTH_PER_FRAME = 8


def column_mask(x: torch.Tensor, widths: torch.Tensor | None, stride: int) -> torch.Tensor | None:
    """[B, 1, 1, W] float mask of the columns of ``x`` (at ``stride`` input pixels a
    column) that see a line's valid pixels; None when every column does."""
    if widths is None:
        return None
    valid = valid_frames(widths, stride)
    return (torch.arange(x.shape[-1], device=x.device)[None, :] < valid[:, None]).to(x.dtype)[
        :, None, None, :
    ]


def masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


def pad_same_2x2(x: torch.Tensor) -> torch.Tensor:
    """SAME padding of a 2x2 kernel at stride 1: one zero column and row after the image."""
    return F.pad(x, (0, 1, 0, 1))


class SqueezeExcite(nn.Module):
    """x * hardsigmoid(expand(relu(reduce(mean of x)))), the mean over valid columns."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.expand = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            s = x.mean(dim=(2, 3), keepdim=True)
        else:
            s = (x * mask).sum(dim=(2, 3), keepdim=True) / (mask.sum(-1, keepdim=True) * x.shape[2])
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(s))))


class MetaFormerBlock(nn.Module):
    """Token mixer: a 3x3 depthwise convolution (height stride 1 or 2), squeeze-excited or
    not; channel mixer: 1x1 to twice the input channels, GELU, 1x1 to the output channels,
    added to the mixer's output when the shapes are equal."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, se: bool = False):
        super().__init__()
        self.dw = nn.Conv2d(c_in, c_in, 3, stride=(stride, 1), padding=1, groups=c_in)
        self.se = SqueezeExcite(c_in) if se else None
        self.expand = nn.Conv2d(c_in, 2 * c_in, 1)
        self.compress = nn.Conv2d(2 * c_in, c_out, 1)
        self.residual = c_in == c_out and stride == 1

    def token_mixer(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The depthwise convolution, squeeze-excited or not: the part a residual skips."""
        y = self.dw(masked(x, mask))
        return y if self.se is None else self.se(y, mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        y = self.token_mixer(x, mask)
        z = self.compress(F.gelu(self.expand(y)))
        return y + z if self.residual else z


class PPLCNetV4(nn.Module):
    """The backbone: [B, 3, H, W] -> [B, 384, H/16, W/4]."""

    def __init__(self, in_channels: int = 3, config: dict = SMALL):
        super().__init__()
        c0, mid, c_stem = config["stem"]
        self.stem1 = nn.Conv2d(in_channels, c0, 3, stride=2, padding=1)
        self.stem2a = nn.Conv2d(c0, mid, 2)
        self.stem2b = nn.Conv2d(mid, c0, 2)
        self.stem3 = nn.Conv2d(2 * c0, c0, 3, stride=2, padding=1)
        self.stem4 = nn.Conv2d(c0, c_stem, 1)
        self.blocks = nn.ModuleList(
            MetaFormerBlock(*spec) for stage in config["stages"] for spec in stage
        )
        self.out_channels = config["stages"][-1][-1][1]

    def forward(self, x: torch.Tensor, widths: torch.Tensor | None = None) -> torch.Tensor:
        x = F.relu(self.stem1(masked(x, column_mask(x, widths, 1))))
        m2 = column_mask(x, widths, 2)
        x = masked(x, m2)
        a = F.relu(self.stem2b(pad_same_2x2(masked(F.relu(self.stem2a(pad_same_2x2(x))), m2))))
        b = F.max_pool2d(pad_same_2x2(x), 2, stride=1)  # zero padding: x >= 0 (after ReLU)
        x = F.relu(self.stem3(masked(torch.cat([b, a], 1), m2)))
        x = F.relu(self.stem4(x))
        m4 = column_mask(x, widths, 4)  # every later stage keeps the width
        for block in self.blocks:
            x = block(x, m4)
        return x


class ConvBNSwish(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel=(1, 1), groups: int = 1):
        pad = (kernel[0] // 2, kernel[1] // 2)
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, padding=pad, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.SiLU(),
        )


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)  # [B, heads, N, N]
        if key_bias is not None:  # padded frames are no keys
            attn = attn + key_bias
        out = attn.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.fc1 = nn.Linear(dim, mlp_ratio * dim)
        self.fc2 = nn.Linear(mlp_ratio * dim, dim)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_bias)
        return x + self.fc2(F.silu(self.fc1(self.norm2(x))))


class LightSVTRNeck(nn.Module):
    """[B, 384, H', W/4] -> [B, T, 120], T = W/8."""

    def __init__(self, c_in: int = 384, dim: int = 120, heads: int = 8, depth: int = 2):
        super().__init__()
        self.skip = ConvBNSwish(c_in, dim)
        self.local_pw = ConvBNSwish(c_in, dim)
        self.local_dw = ConvBNSwish(dim, dim, kernel=(1, 7), groups=dim)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, feat: torch.Tensor, widths: torch.Tensor | None = None) -> torch.Tensor:
        # the average over the height and pairs of columns (ONNX: AveragePool [3, 2] at 48 px)
        z = F.avg_pool2d(masked(feat, column_mask(feat, widths, 4)).mean(2, keepdim=True), (1, 2))
        m8 = column_mask(z, widths, WIDTH_PER_FRAME)
        skip = self.skip(z)
        h = self.local_pw(z)
        h = h + self.local_dw(masked(h, m8))
        tokens = h.flatten(2).transpose(1, 2)  # [B, T, dim]
        key_bias = None if m8 is None else (m8[:, :, 0, :] - 1.0)[:, :, None, :] * 1e9
        for block in self.blocks:
            tokens = block(tokens, key_bias)
        tokens = self.norm(tokens)
        return tokens + skip.flatten(2).transpose(1, 2)


class PPOCRv6Rec(nn.Module):
    """PP-OCRv6's recognizer (small): backbone, neck, CTC head. ``num_classes`` includes
    the blank (class 0) and, for PP-OCRv6's own dictionary, the space (the last class)."""

    width_per_frame = WIDTH_PER_FRAME
    # structured pruning keeps these widths: the neck's 120 channels are split into
    # attention heads and normalized together (distill/pruning/graph.py)
    unprunable = ("neck",)
    prune_skip = ()

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        variant: str = "small",
        bn_statistics: str = "frozen",
    ):
        super().__init__()
        if bn_statistics not in ("frozen", "train"):
            raise ValueError(f"bn_statistics must be frozen or train, got {bn_statistics!r}")
        # the neck's three BatchNorms keep the statistics PP-OCRv6 was trained with: a
        # fine-tuning batch of a few lines moves them far (one step of 4 lines took the
        # sample lines from 98% to 50%); their scale and shift still train
        self.bn_statistics = bn_statistics
        if in_channels != 3:
            raise ValueError(
                f"PP-OCRv6 reads 3 channels (preprocess.channels=3), not {in_channels}"
            )
        if variant != "small":
            raise ValueError(f"PP-OCRv6 variant must be 'small', got {variant!r}")
        self.backbone = PPLCNetV4(in_channels, SMALL)
        self.neck = LightSVTRNeck(self.backbone.out_channels, SMALL["neck_dim"], SMALL["heads"])
        self.head = nn.Linear(SMALL["neck_dim"], num_classes)
        self.in_channels, self.num_classes = in_channels, num_classes

    def train(self, mode: bool = True) -> PPOCRv6Rec:
        super().train(mode)
        if mode and self.bn_statistics == "frozen":
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(
        self, x: torch.Tensor, widths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """T = ceil(W / 8): a batch whose width is no multiple of 8 is padded to one (always
        a Pad, so an exported graph does it for any width)."""
        x = F.pad(x, (0, (-x.shape[-1]) % WIDTH_PER_FRAME))
        feat = self.backbone(x, widths)
        return self.head(self.neck(feat, widths)), feat
