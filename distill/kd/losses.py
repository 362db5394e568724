"""Loss terms and their weighted sum.

Every term is a small module with one signature, ``term(student, teacher, batch)``
(``Outputs`` of the student and of the teacher, the batch dict), returning a scalar;
:class:`WeightedSumLoss` adds them with weights from config and logs each on its own.
A recipe (``distill/conf/kd/*.yaml``) lists its terms as ``{name: {_target_: Term,
weight: w, ...settings}}``: a new term is one class here and one yaml there. A term that
needs to see the two models first (an adapter's channels, the teacher's frame rate) has
``bind(student_net, teacher)``. CTC is computed in float32 on log-probabilities; every
term reads valid frames only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.kd.outputs import Outputs, TopKOutputs


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


class CaseFold:
    """Letter case out of CTC: each lower-case class scores the probability of either
    case and targets are written in lower case, so a label stored in upper case for
    mixed-case text (SROIE, SVT) teaches the characters without teaching their case,
    which the network keeps (from its pretrained weights or from a teacher's frames)."""

    def __init__(self, pairs: list[tuple[int, int]], num_classes: int):
        if not pairs:
            raise ValueError("case folding: the charset holds no letter in both cases")
        lower, upper = zip(*pairs)
        self.lower, self.upper = torch.tensor(lower), torch.tensor(upper)
        self.to_lower = torch.arange(num_classes)
        self.to_lower[self.upper] = self.lower

    def log_probs(self, log_probs: torch.Tensor) -> torch.Tensor:
        """[..., C] log-probabilities with log(p(lower) + p(upper)) on each lower class and
        (nearly) nothing on the upper ones: still a distribution, which ``F.ctc_loss``'s
        gradient assumes (it is computed as for a log-softmax; a finite floor instead of
        -inf keeps it free of NaN)."""
        lower, upper = self.lower.to(log_probs.device), self.upper.to(log_probs.device)
        merged = torch.logaddexp(log_probs[..., lower], log_probs[..., upper])
        out = log_probs.index_copy(-1, lower, merged)
        return out.index_fill(-1, upper, -1e4)

    def targets(self, targets: torch.Tensor) -> torch.Tensor:
        return self.to_lower.to(targets.device)[targets]


def ctc_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    frames: torch.Tensor,
    has_target: torch.Tensor | None = None,
    fold: CaseFold | None = None,
) -> tuple[torch.Tensor, int]:
    """Mean per-sample CTC loss over the samples that have a target that fits their frames.

    ``logits`` [B, T, C]; ``frames`` the number of valid (unpadded) frames per sample;
    ``has_target`` False for samples without a target (unlabeled, or a doubtful teacher
    reading); ``fold`` leaves letter case out (:class:`CaseFold`). Returns the loss and
    how many targets were left out as too long for their image.
    """
    if fold is not None:
        targets = fold.targets(targets)
    if int(frames.max()) > logits.shape[1]:
        raise ValueError(
            f"valid frames {frames.tolist()} exceed the {logits.shape[1]} frames of the logits"
        )
    if has_target is None:
        has_target = torch.ones_like(target_lengths, dtype=torch.bool)
    has_target = has_target.to(logits.device)
    feasible = ctc_feasible(targets, target_lengths, frames)
    keep = feasible & has_target
    with torch.autocast(logits.device.type, enabled=False):
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # [T, B, C]
        if fold is not None:
            log_probs = fold.log_probs(log_probs)
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
    return loss, int((has_target & ~feasible).sum())


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
    blank: bool = True,
) -> torch.Tensor:
    """tau^2 * KL between time-averaged distributions (each over its own valid frames),
    averaged over the batch: PP-OCRv4's alignment-free variant, which tolerates
    teachers and students with different T. With ``blank=False`` the blank is left out
    and the averages are distributions over characters only (the blank dominates most
    frames and would swamp the characters; PaddleOCR suppresses it too)."""

    def time_mean(logits, frames):
        p = (logits.float() / tau).softmax(-1)
        mask = frame_mask(frames.to(p.device), p.shape[1])[..., None]
        if not blank:
            p = p[..., 1:]
        m = (p * mask).sum(1)
        return m / m.sum(-1, keepdim=True).clamp(min=1e-8)

    p_t = time_mean(teacher_logits, teacher_frames)
    p_s = time_mean(student_logits, student_frames)
    eps = 1e-8
    kl = (p_t * ((p_t + eps).log() - (p_s + eps).log())).sum(-1)
    return tau**2 * kl.mean()


def _source_frames(src_frames, dst_frames, t_out: int):
    """For each destination frame, the two source frames it reads and the weight of the
    second (frame centres aligned), shared by :func:`resample_time` and :func:`topk_kl`."""
    j = torch.arange(t_out, device=dst_frames.device, dtype=torch.float32)[None, :]
    src = src_frames.to(dst_frames.device, torch.float32)[:, None]
    pos = ((j + 0.5) * src / dst_frames.to(torch.float32)[:, None] - 0.5).clamp(min=0)
    pos = torch.minimum(pos, src - 1)
    lo = pos.floor().long()
    hi = torch.minimum(lo + 1, src.long() - 1)
    return lo, hi, pos - lo.float()


def resample_time(
    logits: torch.Tensor, src_frames: torch.Tensor, dst_frames: torch.Tensor, t_out: int
) -> torch.Tensor:
    """Resample each sample's valid frames of [B, T', C] logits onto ``dst_frames`` of
    ``t_out`` frames, linearly in probability space (frame centres aligned: destination
    frame j reads source position (j + 0.5) * src / dst - 0.5). Returns
    log-probabilities, which softmax-based terms accept as logits; frames beyond
    ``dst_frames`` repeat the last valid one (they are masked anyway)."""
    probs = logits.float().softmax(-1)
    lo, hi, w = _source_frames(src_frames.to(logits.device), dst_frames.to(logits.device), t_out)
    w = w[..., None]
    take = lambda idx: probs.gather(1, idx[..., None].expand(-1, -1, probs.shape[-1]))  # noqa: E731
    out = (1 - w) * take(lo) + w * take(hi)
    return out.clamp_min(1e-8).log()


def topk_kl(teacher, student_logits: torch.Tensor, student_frames: torch.Tensor, tau: float):
    """:func:`masked_kl` of the teacher resampled onto the student's frames
    (:func:`resample_time`), computed from the teacher's top-k form
    (``teachers.TopKOutputs``) without ever building its [B, T, C] distribution.

    Each teacher frame is k probabilities plus one level shared by every other class, so
    the interpolated target is one level ``u`` plus at most 2k distinct classes. With
    ``t`` the tempered target and ``s`` the student's tempered logits, per frame
    ``KL = sum t log t - sum t s + logsumexp(s)``, where ``sum t s`` needs only the sum
    of ``s`` over all classes and ``s`` at those 2k classes. The floors of the dense path
    (1e-8 before each log) are applied the same way, so both agree to rounding."""
    idx, above, level, t_logt = _topk_target(teacher, student_frames, student_logits.shape[1], tau)
    per_frame = t_logt + _StudentCrossEntropy.apply(student_logits, idx, above, level, tau)
    mask = frame_mask(student_frames, per_frame.shape[1])
    return tau**2 * (per_frame * mask).sum() / mask.sum().clamp(min=1)


@torch.no_grad()
def _topk_target(teacher, student_frames: torch.Tensor, t_out: int, tau: float):
    """The tempered target of :func:`topk_kl` on the student's frames: the listed classes
    ``idx`` [B, T, 2k], the target above its level there (a class listed twice counts
    half each time), the level of every other class, and ``sum t log t`` per frame."""
    c, k = teacher.num_classes, teacher.index.shape[-1]
    # the dense path's first floor and renormalization, per teacher frame
    p = teacher.probs.float().clamp(min=1e-8)
    r = teacher.rest.float().clamp(min=1e-8)
    z = p.sum(-1) + (c - k) * r
    p, r = p / z[..., None], r / z
    lo, hi, w = _source_frames(teacher.frames, student_frames, t_out)  # [B, T]

    def at(x, frames):  # x [B, T', ...] at the given source frames [B, T]
        index = frames.view(*frames.shape, *[1] * (x.dim() - 2))
        return x.gather(1, index.expand(-1, -1, *x.shape[2:]))

    idx_lo, idx_hi = at(teacher.index, lo), at(teacher.index, hi)  # [B, T, k]
    r_lo, r_hi = at(r, lo), at(r, hi)  # [B, T]
    d_lo = (at(p, lo) - r_lo[..., None]) * (1 - w)[..., None]  # above each frame's level
    d_hi = (at(p, hi) - r_hi[..., None]) * w[..., None]
    idx = torch.cat((idx_lo, idx_hi), -1)  # a class may be listed twice
    level = (1 - w) * r_lo + w * r_hi
    q = (
        level[..., None]
        + ((idx[..., :, None] == idx_lo[..., None, :]) * d_lo[..., None, :]).sum(-1)
        + ((idx[..., :, None] == idx_hi[..., None, :]) * d_hi[..., None, :]).sum(-1)
    ).clamp(min=1e-8)  # the second floor
    u = level.clamp(min=1e-8)
    once = 1.0 / (idx[..., :, None] == idx[..., None, :]).sum(-1)
    others = c - once.sum(-1)  # classes at the level
    lq, lu = q.log() / tau, u.log() / tau  # tempered, before normalization
    log_z = torch.logsumexp(torch.cat((lq + once.log(), (lu + others.log())[..., None]), -1), -1)
    lt_q, lt_u = lq - log_z[..., None], lu - log_z
    t_q, t_u = lt_q.exp(), lt_u.exp()
    t_logt = (once * t_q * lt_q).sum(-1) + others * t_u * lt_u
    return idx, once * (t_q - t_u[..., None]), t_u, t_logt


class _StudentCrossEntropy(torch.autograd.Function):
    """Per frame ``logsumexp(s) - sum_c t(c) s(c)`` with ``s = logits / tau`` and a target
    ``t`` that is ``level`` everywhere plus ``above`` at the classes ``idx``; its gradient
    is ``(softmax(s) - t) / tau``, written in place into one [B, T, C] buffer (autograd
    would keep several such buffers alive)."""

    @staticmethod
    def forward(ctx, logits, idx, above, level, tau):
        s = logits.float() / tau
        lse = torch.logsumexp(s, -1)
        dot = level * s.sum(-1) + (above * s.gather(-1, idx)).sum(-1)
        ctx.save_for_backward(logits, lse, idx, above, level)
        ctx.tau = tau
        return lse - dot

    @staticmethod
    def backward(ctx, grad):
        logits, lse, idx, above, level = ctx.saved_tensors
        g = (logits.float() / ctx.tau).sub_(lse[..., None]).exp_()  # softmax(s)
        g.sub_(level[..., None]).scatter_add_(-1, idx, -above)
        g.mul_((grad / ctx.tau)[..., None])
        return g.to(logits.dtype), None, None, None, None


def masked_feature_mse(
    student_feat: torch.Tensor, teacher_feat: torch.Tensor, frames: torch.Tensor
) -> torch.Tensor:
    """Mean squared error over channels, height and the valid columns of [B, C, H, T]
    maps (the student's already mapped to the teacher's channels and size)."""
    diff = (student_feat.float() - teacher_feat.float()).pow(2).mean(dim=(1, 2))  # [B, T]
    mask = frame_mask(frames, diff.shape[1])
    return (diff * mask).sum() / mask.sum().clamp(min=1)


# ---------------------------------------------------------------- terms


class CTCTerm(torch.nn.Module):
    """CTC of the student on the batch's targets (the labels, or the teacher's readings
    where the recipe's ``ctc_target`` says so). ``stats["too_long"]``: targets left out
    because their image has too few frames for them."""

    uses_teacher = False
    fold: CaseFold | None = None  # set by fold_case: the model's ctc_case

    def __repr__(self) -> str:
        return "ctc" if self.fold is None else "ctc(caseless)"

    def fold_case(self, fold: CaseFold | None) -> None:
        self.fold = fold

    def forward(self, student: Outputs, teacher: Outputs | None, batch: dict) -> torch.Tensor:
        loss, too_long = ctc_loss(
            student.logits,
            batch["targets"],
            batch["target_lengths"],
            student.frames,
            batch.get("has_target"),
            self.fold,
        )
        self.stats = {"too_long": too_long}
        return loss


def _check_tau(tau: float) -> float:
    if tau <= 0:
        raise ValueError(f"kd: a KL term's tau must be > 0, got {tau}")
    return float(tau)


class FrameKL(torch.nn.Module):
    """``tau^2 * KL(teacher_tau || student_tau)`` per valid frame.

    ``align``: ``strict`` wants the teacher's frames to be the student's (a teacher that
    reads the student's batch, like our CRNNs); ``interpolate`` resamples each line's
    valid teacher frames onto the student's (a teacher with its own input size and frame
    rate); ``auto`` picks strict for a teacher that reads the student's batch, else
    interpolate."""

    uses_teacher = True
    ALIGNS = ("auto", "strict", "interpolate")
    # a label cache's top-k form pays above this many classes: 5.3x faster at 6,892,
    # 2x slower at 96 (benchmarks/bench_topk_kl.py), where the dense tensor is small
    TOPK_MIN_CLASSES = 1024

    def __init__(self, tau: float = 2.0, align: str = "auto"):
        super().__init__()
        if align not in self.ALIGNS:
            raise ValueError(f"kd: FrameKL align must be one of {self.ALIGNS}, got {align!r}")
        self.tau, self.align = _check_tau(tau), align

    def __repr__(self) -> str:
        return f"kl(tau={self.tau:g})"

    # a teacher at the student's frame rate may end a line a frame or two apart (PP-OCR
    # pads and reads one frame past the end): those lines align frame by frame
    SAME_RATE_SLACK = 2
    same_rate = False  # set by bind

    def bind(self, student_net, teacher) -> None:
        if self.align == "auto":
            self.align = "strict" if teacher.preprocess is not None else "interpolate"
        rate = getattr(teacher, "width_per_frame", None)
        self.same_rate = rate is not None and abs(rate - student_net.width_per_frame) < 1e-6

    def check_alignment(self, t_frames: int, s_frames: int, where: str = "") -> None:
        """Strict frame KL compares frame by frame: unequal T needs interpolate."""
        if t_frames != s_frames and self.align == "strict":
            raise ValueError(
                f"teacher and student emit different frame counts{where} (teacher T="
                f"{t_frames}, student T={s_frames}); strict frame KL needs equal T: use "
                "kd.terms.kl.align=interpolate or kd=mean_kl"
            )

    def forward(self, student: Outputs, teacher: Outputs, batch: dict) -> torch.Tensor:
        if isinstance(teacher, TopKOutputs) and teacher.num_classes >= self.TOPK_MIN_CLASSES:
            self.check_alignment(int(teacher.frames.max()), int(student.frames.max()))
            return topk_kl(teacher, student.logits, student.frames, self.tau)
        t_logits, t_s = teacher.logits, student.logits.shape[1]
        t_frames = teacher.frames.to(student.frames.device)
        framewise = (
            t_logits[:, :t_s]
            if t_logits.shape[1] >= t_s
            else F.pad(t_logits, (0, 0, 0, t_s - t_logits.shape[1]))
        )
        if torch.equal(t_frames, student.frames):
            # the same valid frames: only the padding may differ in length
            t_logits = framewise
        else:
            self.check_alignment(int(teacher.frames.max()), int(student.frames.max()))
            resampled = resample_time(t_logits, teacher.frames, student.frames, t_s)
            if self.same_rate:
                # resampling n + 1 frames onto n shifts every spike by a fraction of a
                # frame and splits it between two: a space's single frame sinks below
                # the blank and the student learns to drop spaces
                near = (t_frames - student.frames).abs() <= self.SAME_RATE_SLACK
                framewise = framewise.float().log_softmax(-1)
                t_logits = torch.where(near[:, None, None], framewise, resampled)
            else:
                t_logits = resampled
        return masked_kl(t_logits, student.logits, student.frames, self.tau)


class MeanKL(torch.nn.Module):
    """``tau^2 * KL`` between the time-averaged distributions of teacher and student
    (PP-OCRv4's alignment-free variant: any two frame rates). ``blank=False`` compares
    distributions over the characters only (the blank dominates most frames)."""

    uses_teacher = True

    def __init__(self, tau: float = 2.0, blank: bool = True):
        super().__init__()
        self.tau, self.blank = _check_tau(tau), bool(blank)

    def __repr__(self) -> str:
        return f"kl(tau={self.tau:g}, mean" + ("" if self.blank else " of characters") + ")"

    def forward(self, student: Outputs, teacher: Outputs, batch: dict) -> torch.Tensor:
        return mean_kl(
            teacher.logits, student.logits, teacher.frames, student.frames, self.tau, self.blank
        )


class FeatureMSE(torch.nn.Module):
    """MSE between the student's feature map, mapped to the teacher's channels by its
    own 1x1 adapter (trained with the student, left out of export), and the teacher's,
    over the teacher's valid columns. The adapter is made by :meth:`bind`."""

    uses_teacher = True

    def __init__(self):
        super().__init__()
        self.adapter: torch.nn.Conv2d | None = None

    def __repr__(self) -> str:
        return "feat"

    def bind(self, student_net, teacher) -> None:
        if teacher.feat_channels is None:
            raise ValueError(
                f"kd: the feature term needs a teacher with a feature map; {teacher.source} "
                "has none: choose a recipe without it (kd=frame_kl)"
            )
        self.adapter = torch.nn.Conv2d(student_net.backbone.out_channels, teacher.feat_channels, 1)

    def forward(self, student: Outputs, teacher: Outputs, batch: dict) -> torch.Tensor:
        s_feat, t_feat = self.adapter(student.feat), teacher.feat
        if s_feat.shape[2:] != t_feat.shape[2:]:
            s_feat = F.interpolate(s_feat, size=t_feat.shape[2:], mode="bilinear")
        return masked_feature_mse(s_feat, t_feat, teacher.frames)


class WeightedSumLoss(torch.nn.Module):
    """``loss = sum(w_k * term_k)`` over named terms; a term with weight 0 is left out.

    Returns every computed term and their sum under ``"loss"``, plus the terms'
    ``stats`` (counts to log) under ``"stats"``."""

    def __init__(self, terms: dict[str, tuple[float, torch.nn.Module]]):
        super().__init__()
        kept = {k: (float(w), t) for k, (w, t) in terms.items() if w}
        self.weights = {k: w for k, (w, _) in kept.items()}
        self.terms = torch.nn.ModuleDict({k: t for k, (_, t) in kept.items()})

    @classmethod
    def from_config(cls, terms: dict) -> WeightedSumLoss:
        """The sum of a recipe's ``terms``: ``{name: {_target_: Term, weight: w, ...}}``."""
        from hydra.errors import InstantiationException
        from hydra.utils import instantiate

        built = {}
        for name, spec in (terms or {}).items():
            spec = dict(spec)
            if "_target_" not in spec:
                raise ValueError(f"kd.terms.{name}: no _target_ (the term's class)")
            weight = spec.pop("weight", 1.0)
            try:
                built[name] = (weight, instantiate(spec))
            except InstantiationException as e:  # a wrong setting: say which term's
                if isinstance(e.__cause__, (TypeError, ValueError)):
                    raise ValueError(f"kd.terms.{name}: {e.__cause__}") from None
                raise
        return cls(built)

    @property
    def uses_teacher(self) -> bool:
        return any(t.uses_teacher for t in self.terms.values())

    def bind(self, student_net, teacher) -> None:
        for term in self.terms.values():
            if hasattr(term, "bind"):
                term.bind(student_net, teacher)

    def fold_case(self, fold: CaseFold | None) -> None:
        """Letter case in or out of every CTC term (the model's ``ctc_case``)."""
        for term in self.terms.values():
            if hasattr(term, "fold_case"):
                term.fold_case(fold)

    def check_alignment(self, t_frames: int, s_frames: int, where: str = "") -> None:
        for term in self.terms.values():
            if hasattr(term, "check_alignment"):
                term.check_alignment(t_frames, s_frames, where)

    def __repr__(self) -> str:
        parts = [f"{self.weights[k]:g}*{t!r}" for k, t in self.terms.items()]
        return "loss = " + " + ".join(parts or ["0"])

    def forward(self, student: Outputs, teacher: Outputs | None, batch: dict) -> dict:
        out, stats = {}, {}
        for name, term in self.terms.items():
            out[name] = term(student, teacher, batch)
            stats.update(getattr(term, "stats", {}))
        out["loss"] = sum(self.weights[k] * v for k, v in out.items())
        out["stats"] = stats
        return out


def supervised_loss() -> WeightedSumLoss:
    """CTC on the labels alone: the loss of a model trained without a teacher."""
    return WeightedSumLoss({"ctc": (1.0, CTCTerm())})
