"""Structured pruning: groups, exactness, plans, sensitivity, and the pruned checkpoint's life."""

import copy
import json

import pytest
import torch

from distill.models import build_model
from distill.models.resize import changed_shapes
from distill.pruning.graph import PruningGraph
from distill.pruning.measure import Batches, count_macs, count_params
from distill.pruning.plan import (
    Target,
    _largest_ratio,
    apply_plan,
    plan_by_sensitivity,
    plan_global,
    pruned_copy,
    sensitivity,
)

from .helpers import TINY, TINY_STUDENT, TINY_SYNTH, compose_cfg

NET = dict(
    backbone="shufflenet_v2",
    hidden=16,
    layers=1,
    backbone_args={"width": 0.5, "conv5_channels": 64},
)
SHAPE = (32, 1)  # height, channels


def tiny_net(seed=0, **over):
    torch.manual_seed(seed)
    net = build_model(11, **{**NET, **over}).eval()
    # random BatchNorm statistics: the pruned channels then matter to the output
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net


def lines(n=4, width=96, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 32, width, generator=g)
    widths = torch.tensor([width, width - 20, width - 40, 40][:n])
    return x, widths


def test_groups_are_the_unit_widths_and_the_lstm_input_and_the_stem_is_skipped():
    net = tiny_net()
    graph = PruningGraph(net, *SHAPE, skip=["backbone.body.0"])
    names = set(graph.groups)
    # 4 + 8 + 4 ShuffleNet units (their inner branch width) and conv5 -> LSTM input
    assert len(names) == 17
    assert "backbone.body.5.0" in names
    assert "rnn" in graph.groups["backbone.body.5.0"].members
    assert not any(n.startswith("backbone.body.0") for n in names)
    unit = graph.groups["backbone.body.3.2.branch2.0"]
    assert set(unit.members) >= {f"backbone.body.3.2.branch2.{i}" for i in (0, 1, 3, 4, 5)}


def test_pruning_keeps_frames_and_classes_and_reads_padded_lines_alike():
    net = tiny_net()
    x, widths = lines()
    t_before = net(x, widths)[0].shape
    graph = PruningGraph(net, *SHAPE)
    for name in list(graph.groups):
        graph.prune(name, 0.5)
    logits, _ = net(x, widths)
    assert logits.shape == t_before  # [B, W/4, classes]
    assert logits.shape[1] == x.shape[-1] // 4
    # a pruned net still reads a line the same alone and beside a wider one
    alone, _ = net(x[3:4, :, :, :40], widths[3:4])
    assert torch.allclose(alone[0], logits[3, :10], atol=1e-5)


def test_round_to_keeps_a_multiple_of_channels():
    net = tiny_net()
    graph = PruningGraph(net, *SHAPE, round_to=8)
    before = {n: g.channels for n, g in graph.groups.items()}
    for name in list(graph.groups):
        graph.prune(name, 0.3)
    after = {n: g.channels for n, g in graph.groups.items()}
    assert all(c % 8 == 0 for c in after.values())
    assert after["backbone.body.3.0.branch2.0"] == 40 < before["backbone.body.3.0.branch2.0"]
    assert net(*lines())[0].shape[-1] == 11


@pytest.mark.parametrize(
    "group", ["backbone.body.3.2.branch2.0", "backbone.body.5.0", "backbone.body.2.0.branch2.0"]
)
def test_removing_dead_channels_changes_no_output(group):
    """Channels whose every weight in the group is zero contribute nothing: removing
    them (lowest L1 first) must leave the logits as they were. This fails if a group
    crossed the channel shuffle or mapped the wrong indices."""
    net = tiny_net()
    modules = dict(net.named_modules())
    graph = PruningGraph(copy.deepcopy(net), *SHAPE)
    members = graph.groups[group].members
    n = graph.groups[group].channels
    dead = torch.arange(0, n, 3)
    for name in members:
        m = modules[name]
        if isinstance(m, torch.nn.Conv2d):
            depthwise = m.groups > 1 and m.groups == m.in_channels
            if name == group or depthwise:
                m.weight.data[dead] = 0
            else:  # the consumer: zero its input columns too (L1 over the group)
                m.weight.data[:, dead] = 0
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data[dead] = 0
            m.bias.data[dead] = 0
        elif isinstance(m, torch.nn.LSTM):
            m.weight_ih_l0.data[:, dead] = 0
            m.weight_ih_l0_reverse.data[:, dead] = 0
    x, widths = lines()
    before = net(x, widths)[0]
    graph = PruningGraph(net, *SHAPE)
    removed = graph.prune(group, len(dead) / n)
    assert removed == len(dead) and graph.groups[group].channels == n - len(dead)
    assert torch.allclose(net(x, widths)[0], before, atol=1e-5)


def test_skipped_layer_is_untouched():
    """``skip`` keeps a layer's output channels; with the layer feeding it skipped too
    (the stem), its weights are exactly as they were."""
    net = tiny_net()
    keep = "backbone.body.2.0.branch2.0"
    skip = ["backbone.body.0", keep]
    weight_before = dict(net.named_modules())[keep].weight.detach().clone()
    plan, _ = plan_global(net, Target("params", 0.7, SHAPE), skip=skip)
    assert keep not in plan and plan
    pruned = pruned_copy(net, plan, SHAPE, skip=skip)
    assert torch.equal(dict(pruned.named_modules())[keep].weight, weight_before)
    assert count_params(pruned) <= 0.7 * count_params(net)
    with pytest.raises(ValueError, match="does not have"):
        apply_plan(copy.deepcopy(net), {keep: 0.5}, SHAPE, skip=skip)


def test_largest_ratio_reads_the_drop_curve_between_tested_ratios():
    ratios, drops = [0.2, 0.4, 0.6], [0.0, 0.1, 0.3]
    assert _largest_ratio(ratios, drops, 0.0) == 0.2
    assert _largest_ratio(ratios, drops, 0.05) == pytest.approx(0.3)
    assert _largest_ratio(ratios, drops, 1.0) == 0.6
    # a later recovery does not count: the curve is made non-decreasing
    assert _largest_ratio([0.2, 0.4], [0.2, 0.0], 0.1) == pytest.approx(0.1)


def synthetic_batches(n=16):
    from distill.core.charset import Charset
    from distill.core.preprocess import PreprocessConfig
    from distill.data.synth import SynthDataset

    ds = SynthDataset(
        Charset.resolve("digits"),
        PreprocessConfig(max_width=128),
        size=n,
        seed=5,
        deterministic=True,
        max_chars=5,
        profiles={"clean": 1.0},
    )
    return Batches([ds[i] for i in range(n)], batch_size=8)


def test_sensitivity_has_every_group_and_ratio_and_the_plan_meets_its_target():
    from distill.core.charset import Charset

    net = tiny_net()
    batches = synthetic_batches()
    ratios = [0.25, 0.5]
    table = sensitivity(net, batches, Charset.resolve("digits"), "exact", SHAPE, ratios)
    groups = PruningGraph(copy.deepcopy(net), *SHAPE).groups
    assert set(table["groups"]) == set(groups)
    for entry in table["groups"].values():
        assert set(entry["acc"]) == {"0.25", "0.5"}
        assert all(0.0 <= a <= 1.0 for a in entry["acc"].values())
    json.dumps(table)  # the table is written as JSON
    for metric, keep in (("params", 0.8), ("macs", 0.7)):
        target = Target(metric, keep, SHAPE)
        plan, _ = plan_by_sensitivity(table, net, target)
        pruned = pruned_copy(net, plan, SHAPE)
        assert target.measure(pruned) <= keep * target.measure(net)
        assert count_macs(pruned, *SHAPE) < count_macs(net, *SHAPE)
    with pytest.raises(ValueError, match="cannot be met"):
        plan_by_sensitivity(table, net, Target("params", 0.05, SHAPE))


def test_changed_shapes_rebuild_the_pruned_network():
    net = tiny_net()
    plan, _ = plan_global(net, Target("params", 0.6, SHAPE))
    pruned = pruned_copy(net, plan, SHAPE)
    shapes = changed_shapes(pruned, build_model(11, **NET))
    rebuilt = build_model(11, **NET, pruned_shapes=shapes).eval()
    rebuilt.load_state_dict(pruned.state_dict())
    x, widths = lines()
    assert torch.equal(rebuilt(x, widths)[0], pruned(x, widths)[0])
    assert rebuilt.backbone.out_channels == pruned.backbone.out_channels < 64


def test_pruned_checkpoint_fine_tunes_resumes_evaluates_and_exports(tmp_path, label_dir):
    """prune.py on a real checkpoint; train.py init_ckpt= fine-tunes it (a step, then a
    resume); eval and export (parity, INT8) load it like any checkpoint."""
    from distill.export.run import run_export
    from distill.lit.train import evaluate, train
    from distill.models.checkpoint import load_network
    from distill.pruning.run import run_prune

    base = [
        "debug=limit",
        *TINY,
        *TINY_SYNTH,
        *TINY_STUDENT,
        "trainer.max_steps=2",
        "trainer.limit_train_batches=2",
        "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1",
        "callbacks=default",
        "test=false",
    ]
    original_dir = tmp_path / "original"
    train(compose_cfg("train", base, original_dir))
    original = original_dir / "checkpoints" / "last.ckpt"

    prune_dir = tmp_path / "prune"
    info = run_prune(
        compose_cfg(
            "prune",
            [f"ckpt={original}", "ratios=[0.5]", "eval_samples=8", "target.keep=0.75"],
            prune_dir,
        )
    )
    pruned = prune_dir / "pruned.ckpt"
    assert (prune_dir / "sensitivity.json").is_file() and (prune_dir / "sensitivity.png").is_file()
    assert info["after_no_finetune"]["params"] <= 0.75 * info["before"]["params"]
    module = load_network(str(pruned))
    assert sum(p.numel() for p in module.net.parameters()) == info["after_no_finetune"]["params"]

    # fine-tune with the unpruned model as teacher: one run, then a resume
    ft_dir = tmp_path / "finetune"
    ft = [
        *base,
        f"init_ckpt={pruned}",
        f"teacher.ckpt={original}",
        "kd=feature",
        "kd.terms.feat.weight=0.1",
    ]
    train(compose_cfg("train", ft, ft_dir))
    train(
        compose_cfg(
            "train",
            [*ft, "trainer.max_steps=3", "trainer.limit_train_batches=3", "ckpt_path=last"],
            ft_dir,
        )
    )
    last = ft_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 3
    tuned = load_network(str(last))
    assert sum(p.numel() for p in tuned.net.parameters()) == info["after_no_finetune"]["params"]
    assert not torch.equal(tuned.net.head.weight, module.net.head.weight)  # it trained

    results = evaluate(
        compose_cfg(
            "eval",
            [f"ckpt_path={last}", f"data.test=[{label_dir}/gt.txt]", "data.num_workers=0"],
            tmp_path / "eval",
        )
    )
    assert list(results.values())[0]["n"] == 6

    summary = run_export(
        compose_cfg(
            "export",
            [f"ckpt={last}", f"out={tmp_path}/pruned.onnx", "quantize=dynamic", "eval_samples=8"],
            tmp_path / "export",
        )
    )
    assert summary["parity"] and all(r["ok"] for r in summary["parity"])  # export raises otherwise
    assert (tmp_path / "pruned_int8.onnx").is_file()
    assert 0.0 <= summary["validation"]["int8-dynamic"]["acc"] <= 1.0


def test_init_ckpt_of_another_architecture_is_a_clear_error(tmp_path):
    from distill.lit.train import build_module

    ckpt = tmp_path / "other.ckpt"
    torch.save({"hyper_parameters": {"net": {**NET, "hidden": 24}}, "state_dict": {}}, ckpt)
    cfg = compose_cfg("train", [*TINY, *TINY_STUDENT, f"init_ckpt={ckpt}"], tmp_path)
    with pytest.raises(ValueError, match=r"hidden=24.*hidden=32"):
        build_module(cfg)
    cfg = compose_cfg(
        "train", [*TINY, *TINY_STUDENT, f"init_ckpt={tmp_path}/missing.ckpt"], tmp_path
    )
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        build_module(cfg)


def test_the_resnet34_teacher_prunes_too():
    """Residual blocks: DepGraph couples each stage's outputs through its additions."""
    torch.manual_seed(0)
    net = build_model(11, backbone="resnet34", hidden=16, layers=1).eval()
    x, widths = lines(n=2)
    shape_before = net(x, widths)[0].shape
    plan, _ = plan_global(net, Target("params", 0.7, SHAPE))
    pruned = pruned_copy(net, plan, SHAPE)
    assert count_params(pruned) <= 0.7 * count_params(net)
    assert pruned(x, widths)[0].shape == shape_before
    rebuilt = build_model(
        11,
        backbone="resnet34",
        hidden=16,
        layers=1,
        pruned_shapes=changed_shapes(
            pruned, build_model(11, backbone="resnet34", hidden=16, layers=1)
        ),
    ).eval()
    rebuilt.load_state_dict(pruned.state_dict())
    assert torch.equal(rebuilt(x, widths)[0], pruned(x, widths)[0])


# PP-OCRv6's recognizer (random weights: its structure is what is tested here; the
# imported network is pruned end to end in test_ppocrv6.py)
V6_SHAPE = (48, 3)


def v6_net(seed=0):
    from distill.models.ppocrv6 import PPOCRv6Rec

    torch.manual_seed(seed)
    return PPOCRv6Rec(11).eval()


def v6_lines():
    x = torch.randn(2, 3, 48, 160, generator=torch.Generator().manual_seed(2))
    return x, torch.tensor([160, 72])


def test_ppocrv6_groups_are_the_stage_streams_the_block_widths_and_squeeze_excite():
    from distill.pruning.plan import group_label

    graph = PruningGraph(v6_net(), *V6_SHAPE)
    labels = {group_label(n) for n in graph.groups}
    assert {"stages 0-1 stream", "stage2 stream", "stage3 stream"} <= labels
    assert {f"block{i} hidden" for i in range(13)} <= labels
    assert {f"block{i} SE" for i in (0, 4, 6, 8, 11)} <= labels
    # the last stage's residual stream is read by the neck, whose own width stays
    stream = graph.groups["backbone.blocks.12.compress"]
    assert {"neck.skip.0", "neck.local_pw.0", "backbone.blocks.10.compress"} <= set(stream.members)
    assert "backbone.stem4" in graph.groups["backbone.blocks.2.compress"].members
    assert not any(n.startswith("neck") for n in graph.groups)


def test_a_pruned_ppocrv6_keeps_its_frames_masks_its_padding_and_rebuilds():
    net = v6_net()
    x, widths = v6_lines()
    shape_before = net(x, widths)[0].shape
    macs_before = count_macs(net, *V6_SHAPE)
    graph = PruningGraph(net, *V6_SHAPE, round_to=8)
    for name in list(graph.groups):
        graph.prune(name, 0.5)
    assert count_macs(net, *V6_SHAPE) < 0.35 * macs_before
    logits = net(x, widths)[0]
    assert logits.shape == shape_before  # [B, W/8, classes]
    alone = net(x[1:, :, :, :72], widths[1:])[0]
    assert torch.allclose(alone[0], logits[1, :9], atol=1e-4)
    full = build_model(11, arch="ppocrv6")
    rebuilt = build_model(11, arch="ppocrv6", pruned_shapes=changed_shapes(net, full)).eval()
    rebuilt.load_state_dict(net.state_dict())
    assert torch.equal(rebuilt(x, widths)[0], logits)


def test_taylor_importance_removes_a_loud_channel_that_nothing_reads_and_l1_keeps():
    """A hidden channel of block 5 with weights 50x larger than the rest, whose output
    the compression ignores: its L1 norm is the largest of the group, its Taylor score
    (|weight x gradient|) exactly 0, so Taylor prunes it first."""
    from distill.core.charset import Charset
    from distill.pruning.plan import channel_scores

    charset = Charset("0123456789")
    net = v6_net()
    block, k = net.backbone.blocks[5], 3
    block.expand.weight.data[k] *= 50
    block.compress.weight.data[:, k] = 0
    rng = torch.Generator().manual_seed(3)
    samples = [
        {"image": torch.randn(3, 48, w, generator=rng).numpy(), "label": "1"}
        for w in (64, 96, 128, 160)
    ]
    batches = Batches(samples, batch_size=2)
    group = "backbone.blocks.5.expand"
    l1 = channel_scores(net, V6_SHAPE)[group]
    taylor = channel_scores(net, V6_SHAPE, importance="taylor", batches=batches, charset=charset)
    assert int(l1.argmax()) == k
    assert float(taylor[group][k]) == 0.0 and float(taylor[group].max()) > 0
    assert all(float(s.max()) > 0 for s in taylor.values())  # every group got gradients
    pruned = pruned_copy(net, {group: 0.01}, V6_SHAPE, scores=taylor)
    kept = dict(pruned.named_modules())[group].weight
    assert kept.shape[0] == 384 - 3 and kept.abs().max() < block.expand.weight[k].abs().max()
    assert net.backbone.blocks[5].expand.weight.grad is None  # scored on a copy
    with pytest.raises(ValueError, match="needs lines"):
        channel_scores(net, V6_SHAPE, importance="taylor")
    with pytest.raises(ValueError, match="importance must be one of"):
        channel_scores(net, V6_SHAPE, importance="hessian")


def test_a_skip_the_network_lacks_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"skip names modules .*'backbone.body.0'"):
        PruningGraph(v6_net(), *V6_SHAPE, skip=["backbone.body.0"])


def test_prune_rounds_tabulates_each_cut_and_its_recovery(tmp_path, monkeypatch):
    from benchmarks import prune_rounds, results_io

    monkeypatch.setattr(results_io, "RESULTS", tmp_path / "results")
    for k, (macs, after) in enumerate([(800e6, 0.477), (640e6, 0.167)], start=1):
        folder = tmp_path / "rounds" / f"round{k}"
        folder.mkdir(parents=True)
        plan = {
            "source": "x.ckpt",
            "how": "...",
            "mode": "global",
            "importance": "taylor",
            "target": {"metric": "macs", "keep": 0.8},
            "before": {"macs": 1000e6 if k == 1 else 800e6, "params": 3e6, "acc": 0.89},
            "after_no_finetune": {"macs": macs, "params": 2e6, "acc": after},
            "validation": {"set": "val", "lines": 300},
        }
        (folder / "plan.json").write_text(json.dumps(plan))
    prune_rounds.main([str(tmp_path / "rounds"), "--name", "t"])
    md = (tmp_path / "results" / "prune_rounds_t.md").read_text()
    assert "| round1 | 800 (80%) |" in md and "| round2 | 640 (64%) |" in md
    assert "47.7%" in md and "not run" in md and "taylor importance" in md
