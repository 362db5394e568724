"""The prune.py job: checkpoint in, sensitivity table and plot, plan, pruned checkpoint out.

The pruned checkpoint is an ordinary checkpoint of this framework: its network config
gains ``pruned_shapes`` (distill/models/resize.py), so eval.py, export.py, a teacher and
``train.py init_ckpt=...`` (fine-tuning) load it as they load any other.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import OmegaConf

from distill.data.datamodule import validation_set
from distill.models import build_model
from distill.models.checkpoint import TrainedNetwork, load_network, save_network
from distill.models.resize import changed_shapes
from distill.pruning.measure import model_figures, torch_latency_ms, validation_sample
from distill.pruning.plan import (
    Target,
    channel_scores,
    plan_by_sensitivity,
    plan_global,
    plot_sensitivity,
    pruned_copy,
    sensitivity,
)

log = logging.getLogger(__name__)
MODES = ("sensitivity", "global")


def save_pruned(trained: TrainedNetwork, net, out: Path, info: dict) -> Path:
    """A checkpoint that rebuilds ``net``: the source's hyper-parameters with the changed
    shapes added to the network config, and the pruned weights."""
    net_cfg = {k: v for k, v in trained.net_config.items() if k != "pruned_shapes"}
    reference = build_model(trained.charset.num_classes, **net_cfg)
    hp = {**trained.hparams, "net": {**net_cfg, "pruned_shapes": changed_shapes(net, reference)}}
    return save_network(out, hp, net, {"pruning": info})


def run_prune(cfg) -> dict:
    ckpt = Path(cfg.ckpt)
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    trained = load_network(ckpt)
    net = trained.net
    shape = (trained.preprocess.height, trained.preprocess.channels)
    skip = cfg.get("skip")
    skip = list(getattr(net, "prune_skip", ()) if skip is None else skip)
    importance = str(cfg.get("importance") or "l1")
    round_to = int(cfg.get("round_to") or 1)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    data = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else None
    data = data or trained.hparams.get("data")
    ds = validation_set(data, trained.charset, trained.preprocess, "pruning (to measure accuracy)")
    taylor_lines = int(cfg.importance_samples) if importance == "taylor" else 0
    batches, grad_batches = validation_sample(ds, cfg.seed, cfg.eval_samples, taylor_lines)
    log.info("validation: %d lines of %s", batches.n, ds.name)
    if grad_batches is not None:
        log.info("taylor importance: the network's reading of %d more lines", grad_batches.n)
    scores = channel_scores(net, shape, skip, importance, grad_batches, trained.charset)

    target = Target(cfg.target.metric, float(cfg.target.keep), shape)
    table_path = Path(cfg.sensitivity) if cfg.get("sensitivity") else out_dir / "sensitivity.json"
    table = None
    if cfg.mode == "sensitivity" or cfg.get("sensitivity"):
        if table_path.is_file():
            table = json.loads(table_path.read_text())
            made = (
                sorted(table.get("skip", [])),
                table.get("round_to"),
                table.get("importance", "l1"),
            )
            if made != (sorted(skip), round_to, importance):
                raise ValueError(
                    f"{table_path} was computed with skip={table.get('skip')}, "
                    f"round_to={table.get('round_to')}, importance={made[2]}, not "
                    f"skip={skip}, round_to={round_to}, importance={importance}: "
                    "run the analysis again (another hydra.run.dir)"
                )
            log.info("sensitivity: %s (kept from an earlier run)", table_path)
        else:
            ratios = [float(r) for r in cfg.ratios]
            table = sensitivity(
                net,
                batches,
                trained.charset,
                trained.protocol,
                shape,
                ratios,
                skip,
                round_to,
                scores,
            )
            table["ckpt"] = str(ckpt)
            table["importance"] = importance
            table_path.write_text(json.dumps(table, indent=1) + "\n")
            plot_sensitivity(table, table_path.with_suffix(".png"))
            log.info("sensitivity: %s and %s", table_path, table_path.with_suffix(".png"))

    if cfg.mode == "sensitivity":
        plan, knob = plan_by_sensitivity(table, net, target, skip, round_to, scores)
        how = f"per-group ratios, accuracy-drop budget {knob:.4f} per group, {importance}"
    else:
        plan, knob = plan_global(net, target, skip, float(cfg.max_ratio), round_to, scores)
        how = f"global {importance} threshold at quantile {knob:.4f}"
    pruned = pruned_copy(net, plan, shape, skip, round_to, scores)

    before = {
        **model_figures(net, *shape),
        "acc": batches.accuracy(net, trained.charset, trained.protocol)["acc"],
    }
    after = {
        **model_figures(pruned, *shape),
        "acc": batches.accuracy(pruned, trained.charset, trained.protocol)["acc"],
    }
    before["torch_ms"] = torch_latency_ms(net, *shape)
    after["torch_ms"] = torch_latency_ms(pruned, *shape)
    info = {
        "source": str(ckpt),
        "mode": cfg.mode,
        "target": {"metric": target.metric, "keep": target.keep},
        "how": how,
        "plan": {k: v for k, v in plan.items() if v > 0},
        "skip": skip,
        "importance": importance,
        "round_to": round_to,
        "before": before,
        "after_no_finetune": after,
        "validation": {"set": ds.name, "lines": batches.n},
    }
    out = Path(cfg.out) if cfg.get("out") else out_dir / "pruned.ckpt"
    save_pruned(trained, pruned, out, info)
    (out_dir / "plan.json").write_text(json.dumps(info, indent=1) + "\n")

    print(f"\npruned {ckpt} ({cfg.mode}: {how}; target {target})")
    print(f"{'':12s} {'params':>10s} {'MMACs':>8s} {'torch ms':>9s} {'acc':>7s}")
    for label, row in (("original", before), ("pruned", after)):
        print(
            f"{label:12s} {row['params']:10,d} {row['macs'] / 1e6:8.1f} {row['torch_ms']:9.2f} "
            f"{100 * row['acc']:6.1f}%"
        )
    print(f"\nsaved {out}\nfine-tune it (the unpruned model as teacher):")
    print(
        f"  python train.py experiment=... init_ckpt={out} teacher=checkpoint teacher.ckpt={ckpt}"
    )
    print("or without a teacher (the ablation):")
    print(f"  python train.py experiment=... init_ckpt={out} teacher=checkpoint")
    return info
