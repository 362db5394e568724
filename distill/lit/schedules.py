"""Learning-rate schedules, stepped once per optimizer step."""

from __future__ import annotations

import math

import torch


def warmup_cosine(
    optimizer, total_steps: int, warmup_ratio: float = 0.05, min_lr_ratio: float = 0.01
):
    """Linear warm-up then cosine decay to ``min_lr_ratio`` of the base LR (per step)."""
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
