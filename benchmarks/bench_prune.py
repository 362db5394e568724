"""Pruned students side by side, in one run: size, multiply-adds, speed, memory, accuracy.

    python -m benchmarks.bench_prune --row original=ORIG.ckpt --row "pruned 40%"=P.ckpt \\
        [--row ...] --devset ../shared/devsets/iiit5k_300/labels.tsv:scene \\
        [--devset FILE:PROTOCOL ...] [--name NAME] [--timing-lines 100]

Each checkpoint (as prune.py and train.py init_ckpt=... write them) is exported to ONNX
(parity checked), then measured with the same images and thread settings: parameters,
multiply-adds of a 320-px line at the model's height, ONNX file size, ms/line at batch 1
(2 threads; the models take turns reading them, and the speed-up is taken within each
turn, so drift of a shared machine hits them alike), peak resident memory of a process
that loads the model and reads the timing lines, and accuracy on each dev set. Writes
benchmarks/results/prune_NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.labelsets import load_labelled
from benchmarks.results_io import write_results
from benchmarks.timing import take_turns
from distill.core.metrics import score, split_protocol
from distill.runtime.predict import Recognizer

ROOT = Path(__file__).resolve().parent.parent

# VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across fork+exec
PEAK_RSS = """
import sys
from distill.runtime.predict import Recognizer, read_image
rec = Recognizer(sys.argv[1], threads=2, batch_size=1)
for path in sys.argv[2:]:
    rec.recognize([read_image(path)])
status = open("/proc/self/status").read().split("VmHWM:")[1]
print(int(status.split()[0]))
"""


def export(ckpt: Path, out: Path) -> dict:
    from distill.export.onnx import export_onnx
    from distill.export.parity import check_parity
    from distill.models.checkpoint import load_network
    from distill.pruning.measure import count_macs, count_params

    module = load_network(str(ckpt))
    export_onnx(module, out, out.stem)
    report = check_parity(module, out)
    if not report.ok:
        raise SystemExit(f"{ckpt}: ONNX does not match PyTorch\n{report}")
    shape = (module.preprocess.height, module.preprocess.channels)
    return {
        "params": count_params(module.net),
        "macs_M": count_macs(module.net, *shape) / 1e6,
        "onnx_mb": out.stat().st_size / 2**20,
        "protocol": module.protocol,
    }


def peak_rss_mb(model: Path, image_paths: list[str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(model), *image_paths],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return int(out.stdout.split()[-1]) / 1024  # kB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--row", action="append", required=True, help="NAME=CHECKPOINT")
    ap.add_argument(
        "--devset", action="append", required=True, help="LABELFILE[:PROTOCOL], exact if none"
    )
    ap.add_argument("--name", default="en_student")
    ap.add_argument("--timing-lines", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=15, help="timing rounds, models taking turns")
    args = ap.parse_args()

    rows = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_prune_"))
    for i, spec in enumerate(args.row):
        name, _, ckpt = spec.partition("=")
        print(f"exporting {name}: {ckpt}", flush=True)
        onnx_path = tmp / f"model{i}.onnx"
        rows[name] = {"ckpt": ckpt, "onnx": str(onnx_path), **export(Path(ckpt), onnx_path)}

    devsets = []
    for spec in args.devset:
        path, protocol = split_protocol(spec)
        paths, images, labels = load_labelled(path)
        devsets.append((Path(path).parent.name, protocol, paths, images, labels))
    timing_paths = devsets[0][2][: args.timing_lines]
    timing_images = devsets[0][3][: args.timing_lines]

    singles = {name: Recognizer(r["onnx"], threads=2, batch_size=1) for name, r in rows.items()}
    # a model reads all the timing lines in its turn: interleaving line by line let the
    # last model's spinning threads steal the next one's core
    times = take_turns(
        [lambda img, rec=rec: rec.recognize([img]) for rec in singles.values()],
        [timing_images] * args.rounds,
    )
    rounds = {name: [statistics.median(turn) for turn in t] for name, t in zip(rows, times)}
    # A shared machine's speed drifts by tens of percent over seconds: the speed-up is the
    # median of per-round ratios to the first row, which ran beside it in the same round.
    first = next(iter(rows))
    for name, r in rows.items():
        r["ms_per_line"] = 1000 * statistics.median(rounds[name])
        r["speedup"] = statistics.median(a / b for a, b in zip(rounds[first], rounds[name]))
        r["peak_rss_mb"] = peak_rss_mb(Path(r["onnx"]), [str(p) for p in timing_paths])
        rec = Recognizer(r["onnx"], threads=2, batch_size=16)
        for set_name, protocol, _, images, labels in devsets:
            texts = [x.text for x in rec.recognize(images)]
            m = score(texts, labels, protocol)
            r[f"acc_{set_name}"] = m["acc"]
            r[f"cer_{set_name}"] = m["cer"]

    base = next(iter(rows.values()))
    head = "| model | params | MMACs | ONNX MB | ms/line (b=1) | speed-up | peak RSS MB |"
    sets = [d[0] for d in devsets]
    head += "".join(f" {s} acc |" for s in sets)
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in rows.items():
        cells = [
            name,
            f"{r['params'] / 1e6:.2f}M ({r['params'] / base['params']:.0%})",
            f"{r['macs_M']:.0f} ({r['macs_M'] / base['macs_M']:.0%})",
            f"{r['onnx_mb']:.2f}",
            f"{r['ms_per_line']:.2f}",
            f"{r['speedup']:.2f}x",
            f"{r['peak_rss_mb']:.0f}",
            *[f"{100 * r[f'acc_{s}']:.1f}%" for s in sets],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    md = (
        f"# Pruning: {args.name}\n\n"
        f"`python -m benchmarks.bench_prune {shlex.join(sys.argv[1:])}`\n\n"
        f"Batch 1, 2 threads: {args.rounds} rounds in which each model reads "
        f"{len(timing_images)} lines of {devsets[0][0]} in turn; ms/line is the median of the "
        "rounds' medians, speed-up the median of the rounds' ratios to the first row. MMACs "
        "of one 320-px line at the model's height; peak RSS of a process reading those lines.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    write_results(f"prune_{args.name}", {"rows": rows, "argv": sys.argv[1:]}, md)
    print(json.dumps({k: v["ms_per_line"] for k, v in rows.items()}))


if __name__ == "__main__":
    main()
