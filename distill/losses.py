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


def frame_mask(frames: torch.Tensor, t: int) -> torch.Tensor:
    """[B, T] float mask: 1 on the frames that see real pixels, 0 on padding."""
    return (torch.arange(t, device=frames.device)[None, :] < frames[:, None]).float()


def masked_kl(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, frames: torch.Tensor, tau: float
) -> torch.Tensor:
    """tau^2 * KL(teacher_tau || student_tau), summed over classes and valid frames and
    divided by the number of valid frames (not by batch, not by padded T).

    The teacher's softened probabilities are the target; padded frames count for nothing.
    """
    t_logp = (teacher_logits.float() / tau).log_softmax(-1)
    s_logp = (student_logits.float() / tau).log_softmax(-1)
    per_frame = (t_logp.exp() * (t_logp - s_logp)).sum(-1)  # [B, T]
    mask = frame_mask(frames, per_frame.shape[1])
    return tau**2 * (per_frame * mask).sum() / mask.sum().clamp(min=1)


def mean_kl(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    teacher_frames: torch.Tensor,
    student_frames: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """tau^2 * KL between time-averaged distributions (each over its own valid frames),
    averaged over the batch: PP-OCRv4's alignment-free variant, which tolerates
    teachers and students with different T."""

    def time_mean(logits, frames):
        p = (logits.float() / tau).softmax(-1)
        mask = frame_mask(frames, p.shape[1])[..., None]
        return (p * mask).sum(1) / mask.sum(1).clamp(min=1)

    p_t = time_mean(teacher_logits, teacher_frames)
    p_s = time_mean(student_logits, student_frames)
    eps = 1e-8
    kl = (p_t * ((p_t + eps).log() - (p_s + eps).log())).sum(-1)
    return tau**2 * kl.mean()


def resample_time(logits: torch.Tensor, t: int) -> torch.Tensor:
    """Resample [B, T', C] teacher logits to T frames, linearly in probability space
    (returned as log-probabilities, which softmax-based terms accept as logits)."""
    probs = logits.float().softmax(-1).transpose(1, 2)  # [B, C, T']
    probs = F.interpolate(probs, size=t, mode="linear", align_corners=False)
    probs = probs / probs.sum(1, keepdim=True)
    return probs.clamp_min(1e-8).log().transpose(1, 2)


def masked_feature_mse(
    student_feat: torch.Tensor, teacher_feat: torch.Tensor, frames: torch.Tensor
) -> torch.Tensor:
    """Mean squared error over channels, height and the valid columns of [B, C, H, T]
    maps (the student's already mapped to the teacher's channels and size)."""
    diff = (student_feat.float() - teacher_feat.float()).pow(2).mean(dim=(1, 2))  # [B, T]
    mask = frame_mask(frames, diff.shape[1])
    return (diff * mask).sum() / mask.sum().clamp(min=1)


def frames_for(widths: torch.Tensor, t: int, input_width: int) -> torch.Tensor:
    """Valid frames of a model that maps ``input_width`` pixels to ``t`` frames."""
    return torch.clamp(torch.ceil(widths.float() * t / input_width).long(), max=t)


class DistillationLoss(torch.nn.Module):
    """``w_ctc * ctc + w_kl * tau^2 * KL(teacher || student) + w_feat * feature MSE``.

    A weighted sum of named terms; a term with weight 0 is not computed. ``mode=frame``
    compares frame by frame (T must match, or ``align=interpolate`` resamples the
    teacher along time); ``mode=mean`` compares time-averaged distributions.
    """

    MODES = ("frame", "mean")
    ALIGNS = ("strict", "interpolate")

    def __init__(
        self,
        w_ctc: float = 1.0,
        w_kl: float = 1.0,
        w_feat: float = 0.01,
        tau: float = 2.0,
        mode: str = "frame",
        align: str = "strict",
    ):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"kd.mode must be one of {self.MODES}, got {mode!r}")
        if align not in self.ALIGNS:
            raise ValueError(f"kd.align must be one of {self.ALIGNS}, got {align!r}")
        if tau <= 0:
            raise ValueError(f"kd.tau must be > 0, got {tau}")
        self.weights = {"ctc": w_ctc, "kl": w_kl, "feat": w_feat}
        self.tau, self.mode, self.align = tau, mode, align

    def __repr__(self) -> str:
        kl = f"kl(tau={self.tau:g}" + (", mean)" if self.mode == "mean" else ")")
        names = {"ctc": "ctc", "kl": kl, "feat": "feat"}
        terms = [f"{w:g}*{names[k]}" for k, w in self.weights.items() if w]
        return "loss = " + " + ".join(terms or ["0"])

    def check_alignment(self, t_frames: int, s_frames: int, where: str = "") -> None:
        """Frame KL compares frame by frame: unequal T needs interpolate or mean mode."""
        if t_frames != s_frames and self.mode == "frame" and self.align != "interpolate":
            raise ValueError(
                f"teacher and student emit different frame counts{where} (teacher T="
                f"{t_frames}, student T={s_frames}); frame KL needs equal T: use "
                "kd.align=interpolate or kd.mode=mean"
            )

    def kl(self, t_logits, s_logits, widths, input_width) -> torch.Tensor:
        t_frames = frames_for(widths, t_logits.shape[1], input_width)
        s_frames = frames_for(widths, s_logits.shape[1], input_width)
        if self.mode == "mean":
            return mean_kl(t_logits, s_logits, t_frames, s_frames, self.tau)
        if t_logits.shape[1] != s_logits.shape[1]:
            self.check_alignment(t_logits.shape[1], s_logits.shape[1])
            t_logits = resample_time(t_logits, s_logits.shape[1])
        return masked_kl(t_logits, s_logits, s_frames, self.tau)

    def forward(self, student: dict, teacher: dict, batch: dict) -> dict[str, torch.Tensor]:
        """``student``/``teacher``: {"logits", "feat"} (student "feat" already adapted).
        Returns every computed term and their weighted sum under "loss"."""
        widths, input_width = batch["widths"], batch["images"].shape[-1]
        terms: dict[str, torch.Tensor] = {}
        if self.weights["ctc"]:
            s_frames = frames_for(widths, student["logits"].shape[1], input_width)
            terms["ctc"], _ = ctc_loss(
                student["logits"], batch["targets"], batch["target_lengths"], s_frames
            )
        if self.weights["kl"]:
            terms["kl"] = self.kl(teacher["logits"], student["logits"], widths, input_width)
        if self.weights["feat"]:
            t_feat = teacher["feat"]
            s_feat = student["feat"]
            if s_feat.shape[2:] != t_feat.shape[2:]:
                s_feat = F.interpolate(s_feat, size=t_feat.shape[2:], mode="bilinear")
            frames = frames_for(widths, t_feat.shape[-1], input_width)
            terms["feat"] = masked_feature_mse(s_feat, t_feat, frames)
        total = sum(self.weights[k] * v for k, v in terms.items())
        terms["loss"] = total if terms else torch.zeros((), device=widths.device)
        return terms
