"""Loss terms. CTC is computed in float32 on log-probabilities, masked to valid frames."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ctc_feasible(targets: torch.Tensor, target_lengths: torch.Tensor, frames: torch.Tensor):
    """True where a label fits its frames: CTC needs T >= length + repeated neighbours
    (a blank must separate two equal characters)."""
    if targets.shape[1] > 1:
        same = targets[:, 1:] == targets[:, :-1]
        inside = (
            torch.arange(targets.shape[1] - 1, device=targets.device)
            < (target_lengths - 1)[:, None]
        )
        repeats = (same & inside).sum(1)
    else:
        repeats = torch.zeros_like(target_lengths)
    return (target_lengths + repeats <= frames) & (target_lengths > 0)


def ctc_loss(
    logits: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor, frames: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Mean per-sample CTC loss over the samples whose labels fit their frames.

    ``logits`` [B, T, C]; ``frames`` the number of valid (unpadded) frames per sample.
    Returns the loss and how many samples were left out as too long for their image.
    """
    frames = frames.clamp(max=logits.shape[1])
    keep = ctc_feasible(targets, target_lengths, frames)
    with torch.autocast(logits.device.type, enabled=False):
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # [T, B, C]
        per_sample = F.ctc_loss(
            log_probs,
            targets,
            frames,
            target_lengths,
            blank=0,
            reduction="none",
            zero_infinity=True,
        )
    n_keep = keep.sum()
    loss = (per_sample * keep).sum() / n_keep.clamp(min=1)
    return loss, int((~keep).sum())
