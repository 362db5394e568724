"""What a model says about a batch, in the one form every loss term reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Outputs:
    """What a model said about a batch: ``logits`` [B, T, C] over the student's classes
    (logits or log-probabilities: every term applies a softmax), ``frames`` [B] the
    frames that see real pixels, optionally the backbone ``feat`` map [B, C', H', T];
    a teacher also gives its readings (``texts`` in the student's characters, None
    where it cannot be written with them; ``confidences``) and ``stats`` to log."""

    logits: torch.Tensor
    frames: torch.Tensor
    feat: torch.Tensor | None = None
    texts: list[str | None] | None = None
    confidences: list[float] | None = None
    stats: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.logits.shape))
        return f"{type(self).__name__}(logits {shape}, frames {self.frames.tolist()})"


class TopKOutputs(Outputs):
    """A teacher's frames as its top-k posteriors, the rest of each frame's mass spread
    evenly over the other classes (what a label cache stores): ``index`` and ``probs``
    [B, T', k], ``rest`` [B, T'] the probability of each class outside the top-k.

    The frame KL reads this form directly (``losses.topk_kl``): a dense [B, T', C]
    tensor over the 6,892 Chinese classes costs more than the student's own forward
    and backward passes. ``logits`` (log-probabilities) is built on first use only."""

    def __init__(self, index, probs, rest, frames, num_classes: int, texts, confidences):
        self.index, self.probs, self.rest = index, probs, rest
        self.num_classes = num_classes
        self.frames, self.feat, self.texts, self.confidences = frames, None, texts, confidences
        self.stats = {}
        self._dense: torch.Tensor | None = None

    def __repr__(self) -> str:  # never the dense tensor the class exists to avoid
        b, t, k = self.index.shape
        return (
            f"TopKOutputs(top {k} of {self.num_classes} classes, {b}x{t} frames, "
            f"frames {self.frames.tolist()})"
        )

    @property
    def logits(self) -> torch.Tensor:
        if self._dense is None:
            b, t, _ = self.probs.shape
            dense = self.rest[..., None].expand(b, t, self.num_classes).clone()
            dense.scatter_(-1, self.index, self.probs)
            dense /= dense.sum(-1, keepdim=True).clamp(min=1e-8)
            self._dense = dense.clamp(min=1e-8).log()
        return self._dense
