"""Synthetic data speed per render profile, and what long lines cost in training.

1. Lines/s per worker for each profile and language: what one DataLoader worker makes
   (render + training augmentation + preprocessing to height 32, width <= 1600), with
   the median label length and image width. A worker must stay above what the student
   consumes (> 300 lines/s).
2. Student training at long widths: images/s and peak memory (VmHWM of a fresh process)
   for a batch of lines 256, 800 and 1600 px wide (about 20, 60 and 120 characters):
   the reason width bucketing matters.

    python -m benchmarks.bench_synth [--lines 300] [--batch 32] [--name synth]

Writes benchmarks/results/<name>.json and .md. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.results_io import write_results

ROOT = Path(__file__).resolve().parent.parent

STUDENT = dict(  # the student of distill/conf/experiment/ppocrv6_en.yaml
    backbone="shufflenet_v2", hidden=128, layers=1,
    backbone_args={"width": 1.0, "conv5_channels": 512},
)  # fmt: skip


def bench_profile(profile: str, lang: str, n: int) -> dict:
    import numpy as np

    from benchmarks.bench_train import synth_augment
    from distill.core.charset import Charset
    from distill.core.preprocess import PreprocessConfig
    from distill.data.augment import Augmenter
    from distill.data.synth import SynthDataset

    ds = SynthDataset(
        Charset.resolve("ascii" if lang == "en" else "zh"),
        PreprocessConfig(max_width=1600),
        size=n,
        lang=lang,
        seed=0,
        profiles=profile,
        augment=Augmenter(**synth_augment()),
    )
    for i in range(min(20, n)):  # font cache warm-up, as in a worker after a few batches
        ds[i]
    start = time.perf_counter()
    widths = [ds[i]["image"].shape[2] for i in range(n)]
    dt = time.perf_counter() - start
    return {
        "lines_per_s_per_worker": round(n / dt, 1),
        "median_chars": float(np.median(ds.label_lengths())),
        "max_chars": int(max(ds.label_lengths())),
        "median_width_px": float(np.median(widths)),
    }


WIDTH_PROBE = """
import json
from benchmarks.bench_train import bench_model
from distill.lit.train import resolve_precision
bf16 = resolve_precision("auto", "cpu") == "bf16-mixed"
r = bench_model({student!r}, {batch}, {width}, {steps}, bf16)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
r.update(peak_rss_mb=round(int(hwm) / 1024), precision="bf16" if bf16 else "fp32")
print(json.dumps(r))
"""


def bench_width(width: int, batch: int, steps: int) -> dict:
    code = WIDTH_PROBE.format(batch=batch, width=width, steps=steps, student=STUDENT)
    # a fresh process per width (its peak memory is the figure); run from the root, whose
    # benchmarks package it imports
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lines", type=int, default=300, help="lines timed per profile")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--widths", type=int, nargs="*", default=[256, 800, 1600])
    ap.add_argument("--langs", nargs="*", default=["en", "zh"])
    ap.add_argument("--name", default="synth")
    args = ap.parse_args()
    from distill.data.render import PROFILES

    res = {"setup": {"lines": args.lines, "batch": args.batch, "max_width": 1600}, "profiles": {}}
    rows = ["| profile | lang | lines/s per worker | median chars | max chars | median width px |"]
    rows.append("|---|---|---|---|---|---|")
    for lang in args.langs:
        for profile in PROFILES:
            r = bench_profile(profile, lang, args.lines)
            res["profiles"][f"{profile}/{lang}"] = r
            rows.append(
                f"| {profile} | {lang} | {r['lines_per_s_per_worker']} | {r['median_chars']:.0f} "
                f"| {r['max_chars']} | {r['median_width_px']:.0f} |"
            )
            print(rows[-1], flush=True)
    res["widths"] = {}
    rows += ["", f"Student training step, batch {args.batch}, one line width per batch:", ""]
    rows += ["| width px | ~chars | images/s | median step ms | peak RSS MB | precision |"]
    rows.append("|---|---|---|---|---|---|")
    for w in args.widths:
        r = bench_width(w, args.batch, args.steps)
        res["widths"][str(w)] = r
        rows.append(
            f"| {w} | {w // 13} | {r['images_per_s']} | {r['step_ms_median']} "
            f"| {r['peak_rss_mb']} | {r['precision']} |"
        )
        print(rows[-1], flush=True)
    speeds = [r["lines_per_s_per_worker"] for r in res["profiles"].values()]
    res["slowest_lines_per_s"] = min(speeds)
    res["command"] = "python -m benchmarks.bench_synth " + " ".join(sys.argv[1:])
    md = f"# {args.name}\n\n" + "\n".join(rows) + f"\n\nCommand: `{res['command']}`\n"
    write_results(args.name, res, md)
    print(f"median of the per-profile speeds: {statistics.median(speeds):.0f} lines/s")


if __name__ == "__main__":
    main()
