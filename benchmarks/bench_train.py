"""Training throughput on this CPU: teacher and student images/s (fp32 and bf16 autocast)
at a fixed batch and width, and synthetic data lines/s per worker. Also says whether the
CPU has native bf16 and what ``trainer.precision=auto`` picks here: bf16 autocast is
about twice as fast as fp32 with avx512_bf16/AMX and about half as fast without.

    python -m benchmarks.bench_train [--batch 64] [--width 128] [--steps 8] [--out FILE]

Each model runs warm-up steps, then ``--steps`` timed AdamW steps; the median step
time is reported. Every model reads the same lines at its own input: the CRNNs 1x32xW,
PP-OCRv6 3x48x(1.5 W), fine-tuned whole and as the receipts recipe does (stem and first
three stages frozen; experiment=ppocrv6_receipts). ``--models ppocrv6,shufflenet1.0``
times those whose name holds one of the words. Writes benchmarks/results/train_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from distill.config import CONF_DIR
from distill.core import hardware
from distill.core.charset import Charset
from distill.core.preprocess import PreprocessConfig
from distill.data.augment import Augmenter
from distill.data.synth import SynthDataset
from distill.kd.losses import ctc_loss
from distill.lit.train import native_bf16, resolve_precision
from distill.models import build_model, freeze_modules

ROOT = Path(__file__).resolve().parent.parent

PPOCRV6 = dict(arch="ppocrv6", input=(3, 48))
MODELS = {
    "teacher_resnet34_lstm256x2": dict(backbone="resnet34", hidden=256, layers=2),
    "student_shufflenet1.0_lstm128x2": dict(
        backbone="shufflenet_v2", hidden=128, layers=2, backbone_args={"width": 1.0}
    ),
    "student_shufflenet0.5_c5-256_lstm96x2": dict(
        backbone="shufflenet_v2",
        hidden=96,
        layers=2,
        backbone_args={"width": 0.5, "conv5_channels": 256},
    ),
    "ppocrv6_small_whole": PPOCRV6,
    "ppocrv6_small_stages0-2_frozen": dict(
        PPOCRV6,
        freeze=["backbone.stem1", "backbone.stem2a", "backbone.stem2b", "backbone.stem3"]
        + ["backbone.stem4"]
        + [f"backbone.blocks.{i}" for i in range(10)],
    ),
}


def bench_model(net_cfg: dict, batch: int, width: int, steps: int, bf16: bool) -> dict:
    """``width``: of the line at height 32; a network reading taller input reads it wider."""
    torch.manual_seed(0)
    num_classes = 96
    net_cfg = dict(net_cfg)
    channels, height = net_cfg.pop("input", (1, 32))
    freeze = net_cfg.pop("freeze", [])
    model = build_model(num_classes, in_channels=channels, **net_cfg).train()
    freeze_modules(model, freeze)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    width = width * height // 32 // 8 * 8
    x = torch.randn(batch, channels, height, width)
    t = width // model.width_per_frame
    targets = torch.randint(1, num_classes, (batch, 10))
    lengths = torch.full((batch,), 10)
    frames = torch.full((batch,), t)
    widths = torch.full((batch,), width)  # the training path: valid widths, packed LSTM
    times = []
    for i in range(steps + 2):  # two warm-up steps
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model(x, widths)
        loss, _ = ctc_loss(logits, targets, lengths, frames)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    med = statistics.median(times)
    return {
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "trained_params_M": round(
            sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, 2
        ),
        "input": f"{channels}x{height}x{width}",
        "step_ms_median": round(med * 1000, 1),
        "images_per_s": round(batch / med, 1),
    }


def bench_synth(n: int, augment: bool) -> dict:
    ds = SynthDataset(
        Charset.resolve("ascii"),
        PreprocessConfig(),
        size=n,
        seed=0,
        augment=Augmenter(**synth_augment()) if augment else None,
    )
    ds[0]  # font cache warm-up
    start = time.perf_counter()
    for i in range(n):
        ds[i]
    return {"lines_per_s_per_worker": round(n / (time.perf_counter() - start), 1)}


def synth_augment() -> dict:
    """The augmentation probabilities of distill/conf/data/synth.yaml (what training uses)."""
    import yaml

    return yaml.safe_load((CONF_DIR / "data" / "synth.yaml").read_text())["augment"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--synth-lines", type=int, default=1000)
    ap.add_argument("--models", default="", help="comma-separated words; default: all")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_cpu.json"))
    args = ap.parse_args()

    res = {
        "setup": {
            "batch": args.batch,
            "input": f"1x32x{args.width}",
            "timed_steps": args.steps,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": hardware.describe(),
            "cores": os.cpu_count(),
            "native_bf16": native_bf16("cpu"),
            "precision_auto": resolve_precision("auto", "cpu"),
        },
        "models": {},
    }
    print(
        f"{res['setup']['cpu']}: native bf16 {res['setup']['native_bf16']}, "
        f"trainer.precision=auto -> {res['setup']['precision_auto']}",
        flush=True,
    )
    words = [w for w in args.models.split(",") if w]
    for name, cfg in MODELS.items():
        if words and not any(w in name for w in words):
            continue
        for precision, bf16 in (("fp32", False), ("bf16", True)):
            r = bench_model(cfg, args.batch, args.width, args.steps, bf16)
            res["models"][f"{name}/{precision}"] = r
            print(
                f"{name:40s} {precision}: {r['images_per_s']:7.1f} img/s "
                f"(median step {r['step_ms_median']} ms, {r['params_M']}M params)",
                flush=True,
            )
    for aug in (False, True):
        r = bench_synth(args.synth_lines, aug)
        key = "synth_en_augmented" if aug else "synth_en"
        res[key] = r
        print(f"{key:40s}: {r['lines_per_s_per_worker']:7.1f} lines/s per worker", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
