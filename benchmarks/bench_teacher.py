"""How to read with a foreign teacher, and how fast: an ONNX teacher's accuracy under
each preprocessing choice, and its lines/s by batch size and threads.

    python -m benchmarks.bench_teacher --teacher ppocrv6 \\
        --devset ../shared/devsets/iiit5k_300/labels.tsv:scene \\
        --devset ../shared/devsets/sroie_500/labels.tsv:caseless

Accuracy: every line read alone (batch 1) with the channel order (BGR as PaddleOCR
feeds OpenCV images, or RGB), right-padded to at least 320 px or read at its own width,
at its own aspect ratio or stretched 4/3 wider (so it emits as many frames as the
student), decoding the frames that see ink or one more; readings mapped onto the ascii
charset. The last row reads each line after the training augmentation (the view
a teacher gets with ``teacher.view=augmented``). Speed: lines/s over the first 256
lines of the first dev set, sorted by width, at batch 1, 8 and 32 with 1 and 2 threads.
Writes benchmarks/results/teacher_NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from benchmarks.results_io import write_results
from distill.config import CONF_DIR
from distill.core.charset import Charset
from distill.core.labelfile import read_label_file
from distill.core.metrics import score, split_protocol
from distill.kd.onnx import OnnxTeacher
from distill.runtime.predict import read_image

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = [  # (channel order, min width, stretch, frames read past the ink, view)
    ("bgr", 320, 1.0, 0, "clean"),
    ("bgr", 320, 1.0, 1, "clean"),
    ("rgb", 320, 1.0, 1, "clean"),
    ("bgr", 8, 1.0, 1, "clean"),
    ("bgr", 320, 4 / 3, 1, "clean"),
    ("bgr", 320, 1.0, 1, "augmented"),
]


def augmented(images: list) -> list:
    """The images as a student sees them in training (distill/conf/data/synth.yaml's
    augmentation, every transform drawn with its training probability; seeded)."""
    import numpy as np
    import yaml

    from distill.data.augment import Augmenter

    probs = yaml.safe_load((CONF_DIR / "data" / "synth.yaml").read_text())["augment"]
    aug = Augmenter(**probs)
    np.random.seed(0)
    return [aug(img) for img in images]


def teacher_config(name: str) -> dict:
    cfg = OmegaConf.load(CONF_DIR / "teacher" / f"{name}.yaml")
    t = OmegaConf.to_container(cfg.teacher)
    t.pop("_target_")
    return t


def build(base: dict, charset: str = "ascii", **change) -> OnnxTeacher:
    teacher = OnnxTeacher(**{**base, **change})
    teacher.bind(Charset.resolve(charset), 32)
    return teacher


def accuracy(teacher: OnnxTeacher, images, labels, protocol: str) -> dict:
    texts = []
    for img in images:
        said = teacher.read([img])["texts"][0]
        texts.append(teacher.vocab.map_text(said) or "")
    m = score(texts, labels, protocol)
    return {"acc": m["acc"], "acc_nospace": m["acc_nospace"], "cer": m["cer"]}


def speed(teacher_cfg: dict, images, batch: int, threads: int) -> float:
    teacher = build(teacher_cfg, threads=threads)
    order = sorted(images, key=lambda im: im.shape[1] / im.shape[0])
    teacher.read(order[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(order), batch):
        teacher.read(order[i : i + batch])
    return len(order) / (time.perf_counter() - start)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--teacher", default="ppocrv6", help="a config in distill/conf/teacher/")
    ap.add_argument(
        "--devset", action="append", required=True, help="LABELFILE[:PROTOCOL], exact if none"
    )
    ap.add_argument("--speed-lines", type=int, default=256)
    ap.add_argument(
        "--configured-only",
        action="store_true",
        help="only the teacher as configured (no preprocessing variants, no speed)",
    )
    ap.add_argument("--name", default=None, help="results file suffix (default: the teacher)")
    ap.add_argument("--charset", default="ascii", help="the charset readings are mapped onto")
    args = ap.parse_args(argv)
    base = teacher_config(args.teacher)
    sets = []
    for spec in args.devset:
        path, protocol = split_protocol(spec)
        pairs, _ = read_label_file(Path(path))
        sets.append(
            (
                Path(path).parent.name,
                [read_image(p) for p, _ in pairs],
                [t for _, t in pairs],
                protocol,
            )
        )
    rows = []
    views = {"clean": [s[1] for s in sets], "augmented": [augmented(s[1]) for s in sets]}
    variants = VARIANTS[1:2] if args.configured_only else VARIANTS  # [1]: as configured
    for order, min_width, stretch, margin, view in variants:
        teacher = build(
            base,
            args.charset,
            channel_order=order,
            min_width=min_width,
            stretch=stretch,
            frame_margin=margin,
        )
        row = {
            "channel_order": order,
            "min_width": min_width,
            "stretch": round(stretch, 3),
            "frame_margin": margin,
            "view": view,
        }
        for (name, _, labels, protocol), images in zip(sets, views[view]):
            row[name] = accuracy(teacher, images, labels, protocol)
            print(row, flush=True)
        rows.append(row)
    images = sets[0][1][: args.speed_lines]
    speeds = []
    for threads in () if args.configured_only else (1, 2):
        for batch in (1, 8, 32):
            lps = speed(base, images, batch, threads)
            speeds.append({"threads": threads, "batch": batch, "lines_per_s": round(lps, 1)})
            print(speeds[-1], flush=True)
    report = {
        "teacher": args.teacher,
        "accuracy": rows,
        "speed": speeds,
        "speed_set": sets[0][0],
        "command": "python -m benchmarks.bench_teacher " + " ".join(argv or sys.argv[1:]),
    }
    names = [s[0] for s in sets]
    md = [
        f"# Teacher {args.teacher}: preprocessing and speed",
        "",
        f"Each line read alone; readings mapped onto the {args.charset} charset; "
        + ", ".join(f"{n}: {p} protocol" for n, _, _, p in sets)
        + ".",
        "",
        "| image | channel order | padded to | stretch | frames past the ink | "
        + " | ".join(f"{n} acc | {n} acc w/o spaces | {n} CER" for n in names)
        + " |",
        "|---|---|---|---|---|" + "---|---|---|" * len(names),
    ]
    for r in rows:
        padded = f">= {r['min_width']} px" if r["min_width"] > 8 else "own width"
        md.append(
            f"| {r['view']} | {r['channel_order']} | {padded} "
            f"| {r['stretch']:g} | {r['frame_margin']} | "
            + " | ".join(
                f"{100 * r[n]['acc']:.1f}% | {100 * r[n]['acc_nospace']:.1f}% | "
                f"{100 * r[n]['cer']:.1f}%"
                for n in names
            )
            + " |"
        )
    if speeds:
        md += [
            "",
            f"Speed ({len(images)} lines of {sets[0][0]}, sorted by width, own process):",
            "",
            "| threads | batch | lines/s |",
            "|---|---|---|",
        ]
        md += [f"| {s['threads']} | {s['batch']} | {s['lines_per_s']:.1f} |" for s in speeds]
    md += ["", "```", report["command"], "```", ""]
    write_results(f"teacher_{args.name or args.teacher}", report, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
