"""Does a line read the same whatever batch it is in? Readings at batch 1 against batch 64.

    python -m benchmarks.bench_batch_invariance MODEL.onnx [MODEL2.onnx ...] \\
        --labels ../shared/devsets/iiit5k_300/labels.tsv ../shared/devsets/sroie_500/labels.tsv \\
        --synthetic 200 --name en_student

Reads every line alone (batch 1) and in batches of 64, twice: sorted by width as the
predictor batches them, and in input order as a service batches whatever arrives
together (neighbours of any width). Counts the lines whose text changes and the
largest confidence change. Also times each model side by side in the same run (what
masking the padding costs): median ms per line at batch 1 and lines/s at batch 64,
2 threads, models interleaved over 3 rounds. Writes
benchmarks/results/batch_invariance_NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.results_io import write_results
from distill.core.labelfile import read_label_file
from distill.core.preprocess import ImageError, preprocess
from distill.runtime.predict import Recognizer, read_image

ROOT = Path(__file__).resolve().parent.parent


def load_lines(label_files: list[Path], per_file: int, synthetic: int) -> list[tuple[str, object]]:
    """(source, image) pairs: the first ``per_file`` images of each label file, then
    ``synthetic`` rendered English lines."""
    lines = []
    for f in label_files:
        pairs, _ = read_label_file(f)
        for path, _ in pairs[:per_file]:
            try:
                lines.append((f.parent.name, read_image(path)))
            except ImageError as e:
                print(f"skipped: {e}", file=sys.stderr)
    if synthetic:
        from distill.core.charset import Charset
        from distill.core.preprocess import PreprocessConfig
        from distill.data.synth import SynthDataset

        ds = SynthDataset(
            Charset.resolve("ascii"),
            PreprocessConfig(),
            size=synthetic,
            seed=11,
            deterministic=True,
        )
        lines += [("synthetic", ds.render(i)) for i in range(synthetic)]
    return lines


def readings(rec: Recognizer, arrays: list[np.ndarray], batch: int, sort: bool):
    if sort:
        rec.batch_size = batch
        return rec.recognize_arrays(arrays)
    out = []
    for i in range(0, len(arrays), batch):  # input order: neighbours of any width
        out += rec._run(arrays[i : i + batch])
    return out


def compare(model: Path, images: list[np.ndarray]) -> dict:
    rec = Recognizer(model, threads=2)
    arrays = [preprocess(img, rec.preprocess_cfg) for img in images]
    alone = readings(rec, arrays, 1, sort=True)
    row = {"model": str(model), "takes_widths": rec.takes_widths, "lines": len(arrays)}
    for mode, sort in (("sorted", True), ("input_order", False)):
        batched = readings(rec, arrays, 64, sort)
        changed = [i for i, (a, b) in enumerate(zip(alone, batched)) if a.text != b.text]
        row[mode] = {
            "changed_lines": len(changed),
            "changed_share": round(len(changed) / max(len(arrays), 1), 4),
            "max_confidence_change": round(
                max(abs(a.confidence - b.confidence) for a, b in zip(alone, batched)), 6
            ),
        }
    return row


def timings(models: list[Path], images: list[np.ndarray], rounds: int = 3, n1: int = 200) -> dict:
    """Median ms/line at batch 1 (over ``n1`` lines) and lines/s at batch 64 (all lines),
    each model in turn within every round so that machine noise hits all alike."""
    recs = {m: Recognizer(m, threads=2) for m in models}
    arrays = {m: [preprocess(img, r.preprocess_cfg) for img in images] for m, r in recs.items()}
    per_line = {m: [] for m in models}
    batched = {m: [] for m in models}
    for _ in range(rounds):
        for m, rec in recs.items():
            rec.batch_size = 1
            for a in arrays[m][:n1]:
                start = time.perf_counter()
                rec.recognize_arrays([a])
                per_line[m].append(1000 * (time.perf_counter() - start))
            rec.batch_size = 64
            start = time.perf_counter()
            rec.recognize_arrays(arrays[m])
            batched[m].append(len(arrays[m]) / (time.perf_counter() - start))
    return {
        str(m): {
            "ms_per_line_batch1_median": round(statistics.median(per_line[m]), 3),
            "lines_per_s_batch64_median": round(statistics.median(batched[m]), 1),
        }
        for m in models
    }


def markdown(report: dict) -> str:
    lines = [
        f"# Batch invariance: {report['name']}",
        "",
        f"{report['lines']} lines ({', '.join(f'{k}: {v}' for k, v in report['sources'].items())}),"
        " each read alone (batch 1) and in batches of 64.",
        "",
        "| model | `widths` input | batches sorted by width: lines changed | max conf. change "
        "| batches in input order: lines changed | max conf. change "
        "| ms/line, batch 1 | lines/s, batch 64 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["models"]:
        s, u, t = r["sorted"], r["input_order"], report["timing"][r["model"]]
        lines.append(
            f"| `{r['model']}` | {'yes' if r['takes_widths'] else 'no'} "
            f"| {s['changed_lines']} ({100 * s['changed_share']:.1f}%) "
            f"| {s['max_confidence_change']:.2g} "
            f"| {u['changed_lines']} ({100 * u['changed_share']:.1f}%) "
            f"| {u['max_confidence_change']:.2g} "
            f"| {t['ms_per_line_batch1_median']:.2f} | {t['lines_per_s_batch64_median']:.0f} |"
        )
    lines += [
        "",
        "Timing: 2 threads, median over 3 interleaved rounds; batch 1 over the first 200 lines.",
    ]
    lines += ["", "```", report["command"], "```", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path, help="exported .onnx files")
    ap.add_argument("--labels", nargs="*", type=Path, default=[], help="label files of real lines")
    ap.add_argument("--per-file", type=int, default=500, help="lines taken from each label file")
    ap.add_argument("--synthetic", type=int, default=200, help="rendered English lines added")
    ap.add_argument("--name", default="models")
    args = ap.parse_args(argv)
    for f in [*args.models, *args.labels]:
        if not f.is_file():
            ap.error(f"not found: {f}")
    lines = load_lines(args.labels, args.per_file, args.synthetic)
    sources: dict[str, int] = {}
    for src, _ in lines:
        sources[src] = sources.get(src, 0) + 1
    images = [img for _, img in lines]
    report = {
        "name": args.name,
        "lines": len(images),
        "sources": sources,
        "models": [compare(m, images) for m in args.models],
        "timing": timings(args.models, images),
        "command": "python -m benchmarks.bench_batch_invariance "
        + " ".join(str(m) for m in args.models)
        + (" --labels " + " ".join(str(f) for f in args.labels) if args.labels else "")
        + f" --per-file {args.per_file} --synthetic {args.synthetic} --name {args.name}",
    }
    write_results(f"batch_invariance_{args.name}", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
