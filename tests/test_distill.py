"""Distillation: loss golden values, padding invariance, the frozen teacher, end to end."""

import math
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch

from distill.core.preprocess import valid_frames
from distill.kd.losses import (
    FrameKL,
    masked_feature_mse,
    masked_kl,
    mean_kl,
    resample_time,
    topk_kl,
)
from distill.kd.outputs import Outputs, TopKOutputs
from distill.kd.teachers import CheckpointTeacher, Teacher
from distill.lit.distillation import DistillationModule, argmax_agreement
from distill.lit.train import build_module, make_trainer, train
from distill.models.checkpoint import load_network

from .helpers import TINY, TINY_STUDENT, TINY_SYNTH, compose_cfg, recipe_loss

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


def test_mean_mode():
    t = torch.randn(2, 8, 5)
    s = torch.randn(2, 4, 5)
    value = mean_kl(t, s, torch.tensor([8, 6]), torch.tensor([4, 3]), tau=2.0)
    assert value.item() >= 0
    assert mean_kl(t, t, torch.tensor([8, 8]), torch.tensor([8, 8]), 2.0).item() == pytest.approx(
        0, abs=1e-6
    )


def test_resampling_hand_computed_per_sample():
    """3 valid teacher frames onto 6 student frames: destination frame j reads source
    position (j + 0.5) * 3 / 6 - 0.5, clamped to the valid frames."""
    eye = torch.eye(4)  # one-hot distributions over 4 classes
    p = torch.stack([torch.stack([eye[0], eye[1], eye[2], eye[3]])] * 2)  # [2, 4 frames, 4]
    logits = p.clamp_min(1e-12).log()
    # sample 0: 3 valid of 4 frames -> 6 frames; sample 1: 2 valid -> 3 frames
    out = resample_time(logits, torch.tensor([3, 2]), torch.tensor([6, 3]), 6).exp()
    expected0 = [
        eye[0],  # position -0.25 -> clamped to 0
        0.75 * eye[0] + 0.25 * eye[1],  # 0.25
        0.25 * eye[0] + 0.75 * eye[1],  # 0.75
        0.75 * eye[1] + 0.25 * eye[2],  # 1.25
        0.25 * eye[1] + 0.75 * eye[2],  # 1.75
        eye[2],  # 2.25 -> clamped to the last valid frame (never the padded 4th)
    ]
    # sample 1: (j + 0.5) * 2 / 3 - 0.5 = -1/6, 1/2, 7/6 -> clamp: 0, 0.5, 1
    expected1 = [eye[0], 0.5 * eye[0] + 0.5 * eye[1], eye[1]]
    assert torch.allclose(out[0], torch.stack(expected0), atol=1e-6)
    assert torch.allclose(out[1, :3], torch.stack(expected1), atol=1e-6)
    assert torch.allclose(out.sum(-1), torch.ones(2, 6), atol=1e-5)


@pytest.mark.parametrize("tau", [1.0, 2.0])
@pytest.mark.parametrize("same_frames", [False, True])
def test_topk_kl_equals_the_dense_kl_and_its_gradient(tau, same_frames):
    """A label cache's teacher (top-k + an even rest) gives the same frame KL, value and
    gradient, whether the loss builds its dense distribution or reads the top-k form:
    confident frames (rest below the 1e-8 floors), unsure ones, classes shared by
    neighbouring frames, resampled or not, and padded frames on both sides."""
    torch.manual_seed(0)
    b, t_teacher, c, k = 3, 9, 40, 4
    t_frames = torch.tensor([9, 5, 7])
    s_frames = t_frames.clone() if same_frames else torch.tensor([17, 11, 3])
    t_student = int(s_frames.max()) + 2  # padded frames too
    index = torch.stack([torch.randperm(c)[:k] for _ in range(b * t_teacher)]).view(b, t_teacher, k)
    for i in range(b):  # neighbours share two classes (a frame's own k stay distinct)
        for f in range(1, t_teacher, 2):
            shared = index[i, f - 1, :2]
            others = [x for x in torch.randperm(c).tolist() if x not in shared.tolist()]
            index[i, f] = torch.cat((shared, torch.tensor(others[: k - 2])))
    probs = torch.rand(b, t_teacher, k).softmax(-1) * torch.rand(b, t_teacher, 1)
    probs[0, :3] = torch.tensor([1.0 - 1e-6, 5e-7, 3e-7, 2e-7])  # confident: tiny rest
    rest = (1 - probs.sum(-1)).clamp(min=0) / (c - k)
    teacher = TopKOutputs(index, probs, rest, t_frames, c, texts=None, confidences=None)
    dense = Outputs(teacher.logits, t_frames)
    logits = torch.randn(b, t_student, c) * 3
    term = FrameKL(tau=tau, align="interpolate")
    values, grads = [], []
    for t in (teacher, dense):
        s = logits.clone().requires_grad_()
        if t is teacher:  # FrameKL reads the top-k form from TOPK_MIN_CLASSES classes on
            loss = topk_kl(teacher, s, s_frames, tau)
        else:
            loss = term(Outputs(s, s_frames), t, {})
        loss.backward()
        values.append(loss.detach())
        grads.append(s.grad)
    assert values[0] > 0.1  # a real divergence, not a trivial zero
    assert torch.allclose(values[0], values[1], rtol=1e-5, atol=1e-6), values
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-7)
    padded = torch.arange(t_student)[None, :] >= s_frames[:, None]
    assert grads[0][padded].abs().max() == 0


def test_argmax_agreement_counts_teacher_character_frames_only():
    def logits(best):
        return torch.nn.functional.one_hot(torch.tensor([best]), 4).float()

    t = logits([1, 0, 2, 3, 3])  # frame 2 is blank, frame 5 is padding
    s = logits([1, 2, 2, 0, 1])
    agree = argmax_agreement(t, s, torch.tensor([4]))
    assert agree.tolist() == [2.0, 3.0]  # frames 1 and 3 agree of the 3 character frames


def test_recipes_build_their_terms_with_the_formula_repr():
    """Every recipe of distill/conf/kd is built from its yaml, term by term."""
    loss = recipe_loss("feature", teacher_channels=8)
    assert repr(loss) == "loss = 1*ctc + 1*kl(tau=2) + 0.01*feat"
    assert loss.terms["feat"].adapter.out_channels == 8  # the adapter is the term's own
    assert repr(recipe_loss("frame_kl")) == "loss = 1*ctc + 1*kl(tau=2)"
    assert repr(recipe_loss("labels")) == "loss = 1*ctc"
    assert repr(recipe_loss("pseudo_frame_kl")) == "loss = 1*ctc + 1*kl(tau=1)"
    assert repr(recipe_loss("mean_kl", ["kd.terms.kl.weight=0.5", "kd.terms.kl.tau=4"])) == (
        "loss = 1*ctc + 0.5*kl(tau=4, mean of characters)"
    )
    assert repr(recipe_loss("frame_kl", ["kd.terms.kl.weight=0"])) == "loss = 1*ctc"
    # align=auto follows the teacher: strict when it reads the student's batch
    assert recipe_loss("frame_kl").terms["kl"].align == "strict"
    assert recipe_loss("frame_kl", reads_batch=False).terms["kl"].align == "interpolate"
    with pytest.raises(ValueError, match="align must be one of"):
        recipe_loss("frame_kl", ["kd.terms.kl.align=sideways"])
    with pytest.raises(ValueError, match="feature map"):
        recipe_loss("feature", teacher_channels=None)


def test_a_recipe_names_its_mistakes():
    from distill.kd.recipe import Recipe

    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['w_kl'\]"):
        Recipe.from_config({"w_kl": 1.0, "terms": {}})
    with pytest.raises(ValueError, match="kd.ctc_target must be one of"):
        Recipe.from_config({"ctc_target": "oracle", "terms": {"ctc": {"_target_": "x"}}})
    with pytest.raises(ValueError, match="kd.terms.kl: no _target_"):
        Recipe.from_config({"terms": {"kl": {"weight": 1.0}}}).build_loss()
    assert not Recipe.from_config(compose_kd("labels")).needs_teacher
    assert Recipe.from_config(compose_kd("pseudo_labels")).needs_teacher  # its readings
    assert Recipe.from_config(compose_kd("frame_kl")).needs_teacher


def compose_kd(name):
    from distill.config import compose

    return compose("train", [f"kd={name}"]).kd


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
    loss = recipe_loss("feature", ["kd.terms.feat.weight=0.5"], teacher_channels=4)
    t_valid = 10  # frames of the widest sample (40 px)
    frames = valid_frames(torch.tensor([40, 28]))
    s = Outputs(
        torch.randn(2, t_valid, 6, generator=g), frames, torch.randn(2, 4, 1, t_valid, generator=g)
    )
    t = Outputs(
        torch.randn(2, t_valid, 6, generator=g), frames, torch.randn(2, 4, 1, t_valid, generator=g)
    )
    base = loss(s, t, _batch(40, [40, 28]))
    pad = 6  # 24 more pixels of padding -> 6 more frames of garbage

    def grow(x, dim):
        extra = 50 * torch.randn(*x.shape[:dim], pad, *x.shape[dim + 1 :], generator=g)
        return torch.cat([x, extra], dim)

    s2 = Outputs(grow(s.logits, 1), frames, grow(s.feat, 3))
    t2 = Outputs(grow(t.logits, 1), frames, grow(t.feat, 3))
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
            f"teacher.ckpt={teacher_ckpt}" if teacher_ckpt else "teacher.ckpt=null",
            "trainer.max_steps=4",
            "trainer.val_check_interval=2",
            "test=false",
            *extra,
        ],
        out,
    )


def test_teacher_stays_frozen_and_out_of_checkpoint(teacher_ckpt, tmp_path):
    cfg = _distill_cfg(
        teacher_ckpt, tmp_path, "callbacks=model_checkpoint", "kd=feature", "kd.ctc_target=auto"
    )
    L.seed_everything(0)
    model = build_module(cfg)
    assert isinstance(model, DistillationModule)
    assert isinstance(model.teacher, CheckpointTeacher)
    teacher_net = model.teacher.net
    before = {k: v.clone() for k, v in teacher_net.state_dict().items()}
    assert any("running_mean" in k for k in before)
    teacher_params = {id(p) for p in teacher_net.parameters()}
    assert not teacher_params & {id(p) for p in model.parameters()}

    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    cbs = [hydra.utils.instantiate(c) for c in cfg.callbacks.values() if "_target_" in c]
    trainer = make_trainer(cfg.trainer, callbacks=cbs, logger=False)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 4

    opt_params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert not opt_params & teacher_params
    assert not teacher_net.training
    for k, v in teacher_net.state_dict().items():
        assert torch.equal(v, before[k]), f"teacher {k} changed"

    last = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert not any("teacher" in k for k in ckpt["state_dict"])
    assert any(k.startswith("loss.terms.feat.adapter.") for k in ckpt["state_dict"])
    assert ckpt["distillation"]["teacher"] == str(teacher_ckpt)
    assert ckpt["distillation"]["teacher_fingerprint"] == model.teacher.fingerprint
    # the student alone comes back out of a distillation checkpoint
    student = load_network(last)
    assert sum(p.numel() for p in student.net.parameters()) < 0.1 * sum(
        before[k].numel() for k in before
    )
    # ... and the whole distillation module, teacher included, with load_from_checkpoint
    again = DistillationModule.load_from_checkpoint(last)
    assert again.teacher.fingerprint == model.teacher.fingerprint
    assert repr(again.loss) == repr(model.loss) and again.ctc_target == "auto"
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k

    # resume from last: continues the distillation run
    cfg = _distill_cfg(
        teacher_ckpt,
        tmp_path,
        "trainer.max_steps=6",
        "ckpt_path=last",
        "kd=feature",
        "kd.ctc_target=auto",
    )
    train(cfg)
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 6


def test_resume_with_another_teacher_is_refused(teacher_ckpt, tmp_path):
    cfg = _distill_cfg(teacher_ckpt, tmp_path, "trainer.max_steps=2")
    train(cfg)
    other = torch.load(teacher_ckpt, map_location="cpu", weights_only=False)
    key = next(k for k in other["state_dict"] if k.endswith("head.weight"))
    other["state_dict"][key] = other["state_dict"][key] + 0.01  # a different teacher
    torch.save(other, tmp_path / "other.ckpt")
    resume = _distill_cfg(
        tmp_path / "other.ckpt", tmp_path, "trainer.max_steps=4", "ckpt_path=last"
    )
    with pytest.raises(ValueError, match="distilled from teacher .* resume with the same teacher"):
        train(resume)
    with pytest.raises(ValueError, match="fingerprint"):
        DistillationModule.load_from_checkpoint(
            tmp_path / "checkpoints" / "last.ckpt",
            teacher={
                "_target_": "distill.kd.teachers.CheckpointTeacher",
                "ckpt": str(tmp_path / "other.ckpt"),
            },
        )


def test_unreadable_batch_gives_a_zero_loss_tied_to_every_parameter(teacher_ckpt, tmp_path):
    """Under DDP every rank must join the gradient all-reduce, even with nothing to read."""
    for model in (
        build_module(_distill_cfg(teacher_ckpt, tmp_path)),
        build_module(_distill_cfg(None, tmp_path)),
    ):
        loss = model.training_step({"images": None, "skipped": 8}, 0)
        assert loss.item() == 0.0 and loss.requires_grad
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert grads and all(g is not None and not g.any() for g in grads)


def test_skipped_counts_too_long_labels_in_both_modes(teacher_ckpt, tmp_path):
    logged = {}
    for name, ckpt in (("kd", teacher_ckpt), ("baseline", None)):
        model = build_module(_distill_cfg(ckpt, tmp_path))
        model.log = lambda key, value, name=name, **kw: logged.setdefault(name, {}).__setitem__(
            key, value
        )
        batch = _batch(8, [8, 8], labels=((1, 2, 3), (4, 4)))  # 2 frames: both too long
        batch["labels"], batch["skipped"] = ["123", "44"], 1
        model.training_step(batch, 0)
    assert logged["kd"]["train/skipped"] == logged["baseline"]["train/skipped"] == 3.0


def test_fast_dev_run_logs_every_term(teacher_ckpt, tmp_path):
    cfg = _distill_cfg(teacher_ckpt, tmp_path, "debug=fdr", "kd=feature")
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


class HalfRateTeacher(Teacher):
    """A teacher with one frame per 8 pixels (like a W/8 backbone), built on a real one."""

    def __init__(self, inner: CheckpointTeacher):
        self.inner = inner
        self.charset, self.preprocess = inner.charset, inner.preprocess
        self.width_per_frame, self.feat_channels = 8, inner.feat_channels
        self.fingerprint, self.source, self.config = "half", "half-rate", {}

    def __call__(self, batch):
        out = self.inner(batch)
        frames = valid_frames(batch["widths"], 8)
        return Outputs(out.logits[:, ::2], frames, out.feat[..., ::2])


def _student_kwargs(cfg):
    from omegaconf import OmegaConf

    student = OmegaConf.to_container(cfg.model, resolve=True)
    student.pop("_target_")
    return student


def test_t_mismatch_error_and_alignment_options(teacher_ckpt, tmp_path):
    half = HalfRateTeacher(CheckpointTeacher(str(teacher_ckpt)))
    cfg = _distill_cfg(teacher_ckpt, tmp_path)
    build_module(cfg)  # resolves the config in place
    with pytest.raises(ValueError, match=r"teacher T=16, student T=32"):
        DistillationModule(teacher=half, kd=cfg.kd, **_student_kwargs(cfg))
    for extra in (["kd.terms.kl.align=interpolate"], ["kd=mean_kl"]):
        cfg = _distill_cfg(teacher_ckpt, tmp_path, *extra)
        build_module(cfg)
        model = DistillationModule(teacher=half, kd=cfg.kd, **_student_kwargs(cfg))
        dm = hydra.utils.instantiate(cfg.data, _convert_="all")
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        loss = model.training_step(batch, 0)
        assert torch.isfinite(loss) and loss.requires_grad


def test_preprocessing_comes_from_the_teacher_unless_set(teacher_ckpt, tmp_path):
    """The design card's command: `train.py model=student teacher.ckpt=PATH`, no preprocess
    flags, takes the teacher's preprocessing (this teacher: max_width 128)."""
    overrides = [o for o in TINY if not o.startswith("preprocess.")]
    cfg = compose_cfg(
        "train",
        ["debug=limit", *overrides, *TINY_SYNTH, *TINY_STUDENT, f"teacher.ckpt={teacher_ckpt}"],
        tmp_path,
    )
    model = build_module(cfg)
    assert model.preprocess_cfg == model.teacher.preprocess
    assert model.preprocess_cfg.max_width == 128 and cfg.preprocess.max_width == 128
    # a width limit the user sets is theirs: it does not change how the teacher sees a line
    model = build_module(_distill_cfg(teacher_ckpt, tmp_path, "preprocess.max_width=256"))
    assert model.preprocess_cfg.max_width == 256


def test_charset_and_preprocess_mismatch_errors(teacher_ckpt, tmp_path):
    with pytest.raises(ValueError, match=r"teacher charset .* differs"):
        build_module(_distill_cfg(teacher_ckpt, tmp_path, "charset=ascii"))
    with pytest.raises(ValueError, match=r"reads images differently .*'mean': \(0.5, 0.4\)"):
        build_module(_distill_cfg(teacher_ckpt, tmp_path, "preprocess.mean=0.4"))
    with pytest.raises(ValueError, match=r"'height': \(32, 48\)"):
        build_module(_distill_cfg(teacher_ckpt, tmp_path, "preprocess.height=48"))
    with pytest.raises(FileNotFoundError, match="teacher.ckpt not found"):
        build_module(_distill_cfg(tmp_path / "nope.ckpt", tmp_path))


def test_kl_term_reads_the_top_k_form_of_large_charsets_only(monkeypatch):
    import distill.kd.losses as losses

    calls = []
    monkeypatch.setattr(losses, "topk_kl", lambda *a: calls.append(a[0].num_classes) or 0.0)
    frames = torch.tensor([4])
    for c in (losses.FrameKL.TOPK_MIN_CLASSES, 96):
        index = torch.arange(8).repeat(1, 4, 1)
        teacher = TopKOutputs(
            index,
            torch.full((1, 4, 8), 0.1),
            torch.full((1, 4), 0.2 / (c - 8)),
            frames,
            c,
            None,
            None,
        )
        losses.FrameKL(tau=1.0)(Outputs(torch.randn(1, 4, c), frames), teacher, {})
    assert calls == [losses.FrameKL.TOPK_MIN_CLASSES]


def test_case_folded_ctc_ignores_the_labels_case_and_keeps_the_networks():
    """Folded CTC scores p(a) + p(A) for a letter: an upper-case label costs what its
    lower-case form costs, less than either unfolded, and the gradient keeps the ratio
    of the two cases (case is learned elsewhere)."""
    from distill.core.charset import Charset
    from distill.kd.losses import CaseFold, ctc_loss

    cs = Charset.resolve("ascii")
    fold = CaseFold(cs.case_pairs(), cs.num_classes)
    assert len(cs.case_pairs()) == 26
    torch.manual_seed(0)
    logits = torch.randn(2, 12, cs.num_classes, requires_grad=True)
    frames = torch.tensor([12, 9])

    def loss(text, f):
        t = torch.tensor([cs.encode(text)] * 2)
        return ctc_loss(logits, t, torch.tensor([len(text)] * 2), frames, fold=f)[0]

    up, low, mixed = loss("SALE", fold), loss("sale", fold), loss("SaLe", fold)
    assert torch.allclose(up, low) and torch.allclose(up, mixed)
    assert up < loss("SALE", None) and up < loss("sale", None)
    # d loss / d z_a = p_a * (1 - ...) and d/d z_A = p_A * (same): on every frame, the
    # two cases' gradients stand in the ratio of their probabilities
    (g,) = torch.autograd.grad(up, logits)
    a, big_a = cs.index["a"], cs.index["A"]
    p = logits.detach().softmax(-1)
    moved = g[..., a].abs() > 1e-6
    assert moved.any()
    assert torch.allclose(
        (g[..., a] / g[..., big_a])[moved], (p[..., a] / p[..., big_a])[moved], rtol=1e-3
    )


def test_ctc_case_and_freeze_are_model_settings(tmp_path):
    from distill.lit.recognizer import RecognizerModule

    net = {"backbone": "shufflenet_v2", "hidden": 16, "layers": 1}
    m = RecognizerModule(net, "ascii", ctc_case="fold", freeze=["backbone"])
    assert repr(m.loss) == "loss = 1*ctc(caseless)"
    assert all(not p.requires_grad for p in m.net.backbone.parameters())
    assert any(p.requires_grad for p in m.net.parameters())
    with pytest.raises(ValueError, match="no module 'backbone.nope'"):
        RecognizerModule(net, "ascii", freeze=["backbone.nope"])
    with pytest.raises(ValueError, match="ctc_case"):
        RecognizerModule(net, "ascii", ctc_case="upper")


def test_a_teacher_at_the_students_frame_rate_aligns_frame_by_frame():
    """PP-OCRv6 reads one frame past a line's end: its n + 1 frames are the student's n,
    frame by frame. Resampling n + 1 onto n would split each spike between two frames
    (the student then learns to drop spaces); a teacher at another rate is resampled."""
    from types import SimpleNamespace

    torch.manual_seed(0)
    s_logits = torch.randn(2, 10, 6) * 4
    extra = torch.randn(2, 1, 6)
    t_logits = torch.cat([s_logits, extra], 1).log_softmax(-1)
    student = Outputs(s_logits, torch.tensor([10, 8]))
    teacher = Outputs(t_logits, torch.tensor([11, 9]))
    net = SimpleNamespace(width_per_frame=8)
    same = FrameKL(tau=1.0, align="interpolate")
    same.bind(net, SimpleNamespace(preprocess=None, width_per_frame=8.0))
    other = FrameKL(tau=1.0, align="interpolate")
    other.bind(net, SimpleNamespace(preprocess=None, width_per_frame=4.0))
    assert same.same_rate and not other.same_rate
    assert float(same(student, teacher, {})) < 1e-5
    assert float(other(student, teacher, {})) > 0.1
