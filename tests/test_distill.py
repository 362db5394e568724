"""Distillation: loss golden values, padding invariance, the frozen teacher, end to end."""

import math
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
from torch import nn

from distill.losses import (
    DistillationLoss,
    masked_feature_mse,
    masked_kl,
    mean_kl,
    resample_time,
)
from distill.module import DistillationModule, argmax_agreement, load_recognizer
from distill.training import build_module, train

from .conftest import TINY, TINY_STUDENT, TINY_SYNTH, compose_cfg

# ------------------------------------------------------------------ golden values


def test_masked_kl_hand_computed_and_direction():
    # one sample, 3 frames, 2 classes; the third frame is padding
    t = torch.tensor([[[0.0, math.log(3)], [math.log(4), 0.0], [9.0, -9.0]]])  # p=[.25,.75],[.8,.2]
    s = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [-9.0, 9.0]]])  # p=[.5,.5]
    frames = torch.tensor([2])
    kl1 = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    kl2 = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    expected = (kl1 + kl2) / 2  # divided by valid frames, padded frame ignored
    assert masked_kl(t, s, frames, tau=1.0).item() == pytest.approx(expected, rel=1e-5)
    # the teacher is the target: swapping the arguments gives KL(student || teacher)
    reverse = (
        0.5 * math.log(0.5 / 0.25)
        + 0.5 * math.log(0.5 / 0.75)
        + 0.5 * math.log(0.5 / 0.8)
        + 0.5 * math.log(0.5 / 0.2)
    ) / 2
    assert masked_kl(s, t, frames, tau=1.0).item() == pytest.approx(reverse, rel=1e-5)
    assert abs(expected - reverse) > 0.01


def test_temperature_scaling():
    g = torch.Generator().manual_seed(0)
    t, s = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g)
    frames = torch.tensor([5, 3])
    tau = 3.0
    p_t = (t / tau).softmax(-1)
    kl = (p_t * (p_t.log() - (s / tau).log_softmax(-1))).sum(-1)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.float)
    expected = tau**2 * (kl * mask).sum() / 8
    assert masked_kl(t, s, frames, tau).item() == pytest.approx(expected.item(), rel=1e-5)


def test_feature_mse_hand_computed():
    s = torch.zeros(1, 2, 1, 3)
    t = torch.tensor([[[[1.0, 2.0, 100.0]], [[3.0, 0.0, 100.0]]]])  # column 3 is padding
    # columns: (1 + 9) / 2 = 5 and (4 + 0) / 2 = 2 -> mean over 2 valid columns = 3.5
    assert masked_feature_mse(s, t, torch.tensor([2])).item() == pytest.approx(3.5)


def test_mean_mode_and_resampling():
    t = torch.randn(2, 8, 5)
    s = torch.randn(2, 4, 5)
    value = mean_kl(t, s, torch.tensor([8, 6]), torch.tensor([4, 3]), tau=2.0)
    assert value.item() >= 0
    assert mean_kl(t, t, torch.tensor([8, 8]), torch.tensor([8, 8]), 2.0).item() == pytest.approx(
        0, abs=1e-6
    )
    r = resample_time(t, 4)
    assert r.shape == (2, 4, 5) and torch.allclose(r.exp().sum(-1), torch.ones(2, 4))


def test_argmax_agreement_counts_teacher_character_frames_only():
    def logits(best):
        return torch.nn.functional.one_hot(torch.tensor([best]), 4).float()

    t = logits([1, 0, 2, 3, 3])  # frame 2 is blank, frame 5 is padding
    s = logits([1, 2, 2, 0, 1])
    agree = argmax_agreement(t, s, torch.tensor([4]))
    assert agree.tolist() == [2.0, 3.0]  # frames 1 and 3 agree of the 3 character frames


def test_formula_repr():
    assert repr(DistillationLoss(1.0, 1.0, 0.01, 2.0)) == "loss = 1*ctc + 1*kl(tau=2) + 0.01*feat"
    assert repr(DistillationLoss(1.0, 0.5, 0.0, 4, mode="mean")) == (
        "loss = 1*ctc + 0.5*kl(tau=4, mean)"
    )
    with pytest.raises(ValueError, match="kd.mode"):
        DistillationLoss(mode="avg")


def _batch(width, valid, labels=((1, 2, 3), (4, 4))):
    b = len(valid)
    targets = torch.zeros(b, 3, dtype=torch.long)
    for i, lab in enumerate(labels):
        targets[i, : len(lab)] = torch.tensor(lab)
    return {
        "images": torch.zeros(b, 1, 32, width),
        "widths": torch.tensor(valid),
        "targets": targets,
        "target_lengths": torch.tensor([len(x) for x in labels]),
    }


def test_padding_invariance_of_every_term():
    """Extra padded columns (garbage logits and features there) change no loss term."""
    g = torch.Generator().manual_seed(1)
    loss = DistillationLoss(w_ctc=1.0, w_kl=1.0, w_feat=0.5, tau=2.0)
    t_valid = 10  # frames of the widest sample (40 px)
    s = {
        "logits": torch.randn(2, t_valid, 6, generator=g),
        "feat": torch.randn(2, 4, 1, t_valid, generator=g),
    }
    t = {
        "logits": torch.randn(2, t_valid, 6, generator=g),
        "feat": torch.randn(2, 4, 1, t_valid, generator=g),
    }
    base = loss(s, t, _batch(40, [40, 28]))
    pad = 6  # 24 more pixels of padding -> 6 more frames of garbage

    def grow(x, dim):
        extra = 50 * torch.randn(*x.shape[:dim], pad, *x.shape[dim + 1 :], generator=g)
        return torch.cat([x, extra], dim)

    s2 = {"logits": grow(s["logits"], 1), "feat": grow(s["feat"], 3)}
    t2 = {"logits": grow(t["logits"], 1), "feat": grow(t["feat"], 3)}
    padded = loss(s2, t2, _batch(64, [40, 28]))
    for k in ("ctc", "kl", "feat", "loss"):
        assert padded[k].item() == pytest.approx(base[k].item(), rel=1e-5), k


# ------------------------------------------------------------------ teacher handling


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> Path:
    """A tiny ResNet34-CRNN teacher trained for two steps by the real train()."""
    out = tmp_path_factory.mktemp("teacher")
    cfg = compose_cfg(
        "train",
        [
            "model=teacher",
            "debug=limit",
            *TINY,
            *TINY_SYNTH,
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "test=false",
        ],
        out,
    )
    train(cfg)
    return out / "checkpoints" / "last.ckpt"


def _distill_cfg(teacher_ckpt, out, *extra):
    return compose_cfg(
        "train",
        [
            "debug=limit",
            *TINY,
            *TINY_SYNTH,
            *TINY_STUDENT,
            f"teacher.ckpt={teacher_ckpt}",
            "trainer.max_steps=4",
            "trainer.val_check_interval=2",
            "test=false",
            *extra,
        ],
        out,
    )


def test_teacher_stays_frozen_and_out_of_checkpoint(teacher_ckpt, tmp_path):
    cfg = _distill_cfg(teacher_ckpt, tmp_path, "callbacks=model_checkpoint")
    L.seed_everything(0)
    model = build_module(cfg)
    assert isinstance(model, DistillationModule)
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    assert any("running_mean" in k for k in before)
    teacher_params = {id(p) for p in model.teacher.parameters()}
    assert not teacher_params & {id(p) for p in model.parameters()}

    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    cbs = [hydra.utils.instantiate(c) for c in cfg.callbacks.values() if "_target_" in c]
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=cbs, logger=False)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 4

    opt_params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert not opt_params & teacher_params
    assert not model.teacher.training
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, before[k]), f"teacher {k} changed"

    ckpt = torch.load(
        tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert not any("teacher" in k for k in ckpt["state_dict"])
    assert any(k.startswith("adapter.") for k in ckpt["state_dict"])
    assert ckpt["distillation"]["teacher_ckpt"] == str(teacher_ckpt)
    # the student alone comes back out of a distillation checkpoint
    student = load_recognizer(tmp_path / "checkpoints" / "last.ckpt")
    assert sum(p.numel() for p in student.parameters()) < 0.1 * sum(
        before[k].numel() for k in before
    )

    # resume from last: continues the distillation run
    cfg = _distill_cfg(teacher_ckpt, tmp_path, "trainer.max_steps=6", "ckpt_path=last")
    train(cfg)
    ckpt = torch.load(
        tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert ckpt["global_step"] == 6


def test_fast_dev_run_logs_every_term(teacher_ckpt, tmp_path):
    cfg = _distill_cfg(teacher_ckpt, tmp_path, "debug=fdr")
    metrics = train(cfg)
    for k in (
        "train/loss",
        "train/loss_ctc",
        "train/loss_kl",
        "train/loss_feat",
        "val/acc",
        "val/teacher_acc",
        "val/agreement",
    ):
        assert k in metrics, k
    assert metrics["train/loss"] == pytest.approx(
        metrics["train/loss_ctc"] + metrics["train/loss_kl"] + 0.01 * metrics["train/loss_feat"],
        rel=1e-4,
    )


class HalfTime(nn.Module):
    """A teacher whose T is half the student's (like a W/8 backbone)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        logits, feat = self.net(x)
        return logits[:, ::2], feat[..., ::2]


def test_t_mismatch_error_and_alignment_options(teacher_ckpt, tmp_path):
    model = build_module(_distill_cfg(teacher_ckpt, tmp_path))
    teacher = load_recognizer(teacher_ckpt)
    with pytest.raises(ValueError, match=r"teacher T=16, student T=32"):
        model.set_teacher(HalfTime(teacher.net), teacher.charset, teacher.preprocess_cfg)
    for extra in (["kd.align=interpolate"], ["kd.mode=mean"]):
        model = build_module(_distill_cfg(teacher_ckpt, tmp_path, *extra))
        model.set_teacher(HalfTime(teacher.net), teacher.charset, teacher.preprocess_cfg)
        dm = hydra.utils.instantiate(_distill_cfg(teacher_ckpt, tmp_path).data, _convert_="all")
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        loss = model.training_step(batch, 0)
        assert torch.isfinite(loss) and loss.requires_grad


def test_charset_and_preprocess_mismatch_errors(teacher_ckpt, tmp_path):
    with pytest.raises(ValueError, match=r"teacher charset .* differs"):
        build_module(_distill_cfg(teacher_ckpt, tmp_path, "charset=ascii"))
    with pytest.raises(ValueError, match=r"max_width': \(128, 256\)"):
        build_module(_distill_cfg(teacher_ckpt, tmp_path, "preprocess.max_width=256"))
    with pytest.raises(FileNotFoundError, match="teacher.ckpt not found"):
        build_module(_distill_cfg(tmp_path / "nope.ckpt", tmp_path))
