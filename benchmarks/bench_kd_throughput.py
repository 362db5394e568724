"""Student training speed with a foreign teacher: online against the teacher-label cache.

    python -m benchmarks.bench_kd_throughput [--steps 60] [--batch 32]

Trains the same student (the ppocrv6_en experiment's) for ``--steps`` steps three ways,
one after the other in this process: on the cache's lines without a teacher, with
PP-OCRv6 read from the cache (teacher=cache), and with PP-OCRv6 running online on the
same lines (teacher=ppocrv6, which reads each raw image itself). Reports images/s over
the fit (data loading included) and writes benchmarks/results/kd_throughput.{json,md}.
Needs `make ppocrv6-cache` (the synthetic part of the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.results_io import write_results

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def run(overrides: list[str], out: Path) -> dict:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from distill.config import compose
    from distill.lit.train import train

    cfg = compose("train", overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    train(cfg)
    summary = json.loads((out / "metrics.json").read_text())
    images = summary["steps"] * cfg.data.batch_size
    return {
        "steps": summary["steps"],
        "wall_time_s": summary["wall_time_s"],
        "images_per_s": round(images / summary["wall_time_s"], 1),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args(argv)
    cache = ROOT / "data" / "generated" / "ppocrv6" / "synth_en"
    if not (cache / "data.mdb").is_file():
        ap.error(f"{cache} not found: run `make ppocrv6-cache` first")
    common = [
        "experiment=ppocrv6_en",
        f"data.train=[{cache}]",
        "data.train_ratios=null",
        f"data.batch_size={args.batch}",
        f"trainer.max_steps={args.steps}",
        "+trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "callbacks=none",
        "logger=[]",
        "test=false",
    ]
    modes = {
        "no teacher": ["teacher=checkpoint", "teacher.ckpt=null"],
        "PP-OCRv6 from the cache": [],
        "PP-OCRv6 online": ["teacher=ppocrv6", "teacher.path=models/PP-OCRv6_rec_small.onnx"],
    }
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, extra) in enumerate(modes.items()):
            rows[name] = run(common + extra, Path(tmp) / str(i))
            print(name, rows[name], flush=True)
    base = rows["no teacher"]["images_per_s"]
    md = [
        "# Student training speed: online teacher against the teacher-label cache",
        "",
        f"experiment=ppocrv6_en student, batch {args.batch}, {args.steps} steps on the "
        "cache's synthetic lines, 2 data workers, this machine's cores; images/s over the "
        "whole fit (data loading included).",
        "",
        "| teacher | images/s | vs no teacher |",
        "|---|---|---|",
    ]
    md += [
        f"| {k} | {r['images_per_s']:.1f} | {r['images_per_s'] / base:.2f}x |"
        for k, r in rows.items()
    ]
    command = f"python -m benchmarks.bench_kd_throughput --steps {args.steps} --batch {args.batch}"
    md += ["", "```", command, "```", ""]
    write_results("kd_throughput", {"rows": rows, "command": command}, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
