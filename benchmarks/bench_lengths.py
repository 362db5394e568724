"""Accuracy by line length: where a student loses lines against its teacher.

    python -m benchmarks.bench_lengths LABELFILE[:PROTOCOL] [LABELFILE[:PROTOCOL] ...]
        --model NAME=M.onnx [--model ...] [--peers ppocrv6] [--buckets 0,20,40,60,80]
        --name NAME

Each label file is read by our models and the peers named (bench_infer's engines: the
same preprocessing, batched), then exact accuracy and CER are reported per bucket of
label length (characters after the protocol's normalization). Exact-line accuracy falls
with length as a model's per-character errors add up; the table shows whether a gap to
the teacher is a per-character gap (CER) at every length or a long-line one. Writes
benchmarks/results/lengths_NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from benchmarks.bench_infer import OurEngine, peer_engines
from benchmarks.labelsets import load_labelled
from benchmarks.results_io import write_results
from distill.core.metrics import normalize, score, split_protocol

ROOT = Path(__file__).resolve().parent.parent


def bucket_names(edges: list[int]) -> list[str]:
    """[0, 20, 40] -> ['0-19', '20-39', '40+']."""
    names = [f"{a}-{b - 1}" for a, b in zip(edges, edges[1:])]
    return names + [f"{edges[-1]}+"]


def bucket_of(length: int, edges: list[int]) -> int:
    return max(k for k, e in enumerate(edges) if length >= e)


def by_length(
    texts: list[str], labels: list[str], protocol: str, edges: list[int]
) -> list[dict[str, float]]:
    """Per bucket: lines, exact accuracy, CER (the label's length decides the bucket)."""
    groups: list[tuple[list[str], list[str]]] = [([], []) for _ in edges]
    for text, label in zip(texts, labels, strict=True):
        g = groups[bucket_of(len(normalize(label, protocol)), edges)]
        g[0].append(text)
        g[1].append(label)
    out = []
    for preds, labs in groups:
        m = score(preds, labs, protocol) if labs else {"acc": float("nan"), "cer": float("nan")}
        out.append({"n": len(labs), "acc": m["acc"], "cer": m["cer"]})
    return out


def markdown(report: dict) -> str:
    names = bucket_names(report["buckets"])
    lines = [
        "# Accuracy by line length",
        "",
        f"`{report['command']}`",
        "",
        "Exact-line accuracy (CER) per bucket of label length in characters.",
    ]
    for s in report["sets"]:
        lines += ["", f"## {s['labelfile']} ({s['protocol']})", ""]
        counts = [str(b["n"]) for b in s["rows"][0]["buckets"]]
        lines.append("| engine | all | " + " | ".join(names) + " |")
        lines.append("|---" * (len(names) + 2) + "|")
        lines.append(f"| lines | {s['lines']} | " + " | ".join(counts) + " |")
        for row in s["rows"]:
            cells = [f"{b['acc']:.1%} ({b['cer']:.1%})" for b in row["buckets"]]
            head = f"{row['all']['acc']:.1%} ({row['all']['cer']:.1%})"
            lines.append(f"| {row['engine']} | {head} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("sets", nargs="+", help="LABELFILE[:PROTOCOL] (default protocol: exact)")
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH of our ONNX model")
    ap.add_argument("--peers", default="ppocrv6", help="comma-separated; '' for none")
    ap.add_argument("--buckets", default="0,20,40,60,80", help="lower edges of the buckets")
    ap.add_argument("--name", required=True, help="results: lengths_NAME.{json,md}")
    args = ap.parse_args(argv)

    edges = sorted({int(x) for x in args.buckets.split(",")})
    if not edges or edges[0] != 0:
        ap.error(f"--buckets must start at 0, got {args.buckets!r}")
    engines = []
    for spec in args.model:
        name, _, path = spec.partition("=")
        if not path or not Path(path).is_file():
            ap.error(f"--model {spec!r}: expected NAME=PATH of an existing ONNX file")
        engines.append(OurEngine(name, Path(path)))
    engines += peer_engines([p for p in args.peers.split(",") if p], "eng")
    if not engines:
        ap.error("no engine to run: give --model or --peers")

    sets = []
    for spec in args.sets:
        path, protocol = split_protocol(spec)
        _, images, labels = load_labelled(path)
        rows = []
        for eng in engines:
            print(f"{path}: {eng.name} ...", file=sys.stderr, flush=True)
            texts, _ = eng.batched(images)
            rows.append(
                {
                    "engine": eng.name,
                    "all": score(texts, labels, protocol),
                    "buckets": by_length(texts, labels, protocol, edges),
                }
            )
        sets.append({"labelfile": path, "protocol": protocol, "lines": len(labels), "rows": rows})
    given = sys.argv[1:] if argv is None else argv
    report = {
        "command": "python -m benchmarks.bench_lengths " + shlex.join(given),
        "buckets": edges,
        "sets": sets,
    }
    write_results(f"lengths_{args.name}", report, markdown(report))


if __name__ == "__main__":
    main()
