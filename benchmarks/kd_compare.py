"""Several training runs side by side on real dev sets: which distillation recipe wins.

    python -m benchmarks.kd_compare --name ppocrv6_en_recipes \\
        --run "labels only=logs/ppocrv6_en/labels" --run "(a) pseudo=logs/ppocrv6_en/pseudo" \\
        --devset ../shared/devsets/iiit5k_300/labels.tsv:scene \\
        --devset ../shared/devsets/sroie_500/labels.tsv:caseless

For each run: its command, steps, wall time, the validation scores at the last step, and
its last checkpoint scored with eval.py on every dev set (kept in
``<run>/eval_<devset>_<protocol>/eval.json`` and reused only for the same checkpoint, dev
set and protocol). Runs titled alike but for a trailing ``seed N`` ("with teacher seed 1",
"with teacher seed 2") are also averaged, in a second table. Writes
benchmarks/results/NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from benchmarks.kd_report import eval_on_devset, learning_curves, relative, train_command
from benchmarks.results_io import write_results
from distill.compare import load_runs, pct
from distill.core.metrics import split_protocol

ROOT = Path(__file__).resolve().parent.parent


def summarize(title: str, run: Path, devsets: list[tuple[Path, str]]) -> dict:
    ((_, m),) = load_runs([str(run)])
    dev = {}
    for path, protocol in devsets:
        metrics, command = eval_on_devset(run, path, protocol, suffix=f"_{protocol}")
        dev[path.parent.name] = {k: metrics[k] for k in ("n", "acc", "cer")} | {"eval": command}
    return {
        "title": title,
        "run": relative(run),
        "steps": m["steps"],
        "wall_time_s": m["wall_time_s"],
        "val": {k: m["metrics"].get(f"val/{k}") for k in ("acc", "cer")},
        "devsets": dev,
        "train": train_command(run),
        "curves": learning_curves(run),
    }


_SEED = re.compile(r"\s*\bseed\s+\S+$")


def seed_means(runs: list[dict]) -> list[dict]:
    """Runs whose titles differ only by a trailing ``seed N``, averaged: one row per
    group of two or more (validation and every dev set's accuracy and CER)."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(_SEED.sub("", r["title"]), []).append(r)

    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    out = []
    for title, members in groups.items():
        if len(members) < 2:
            continue
        names = members[0]["devsets"].keys()
        out.append(
            {
                "title": title,
                "runs": len(members),
                "val": {k: mean(m["val"][k] for m in members) for k in ("acc", "cer")},
                "devsets": {
                    n: {k: mean(m["devsets"][n][k] for m in members) for k in ("acc", "cer")}
                    for n in names
                },
            }
        )
    return out


def dev_cells(devsets: dict, names: list[str]) -> str:
    """A row's accuracy and CER cells, one pair per dev set."""
    return " | ".join(f"{pct(devsets[n]['acc'])} | {pct(devsets[n]['cer'])}" for n in names)


def markdown(report: dict) -> str:
    names = [Path(p).parent.name for p, _ in report["devsets"]]
    lines = [f"# {report['name']}", ""]
    if report.get("note"):
        lines += [report["note"], ""]
    lines += [
        "Dev sets: "
        + ", ".join(f"`{Path(p).parent.name}` ({proto})" for p, proto in report["devsets"])
        + "; validation: the runs' own held-out split.",
        "",
        "| run | steps | minutes | val acc | val CER | "
        + " | ".join(f"{n} acc | {n} CER" for n in names)
        + " |",
        "|---|---|---|---|---|" + "---|---|" * len(names),
    ]
    for r in report["runs"]:
        dev = dev_cells(r["devsets"], names)
        lines.append(
            f"| {r['title']} | {r['steps']} | {r['wall_time_s'] / 60:.1f} | {pct(r['val']['acc'])} "
            f"| {pct(r['val']['cer'])} | {dev} |"
        )
    means = report.get("seed_means") or []
    if means:
        lines += [
            "",
            "Mean over seeds:",
            "",
            "| runs | seeds | val acc | val CER | "
            + " | ".join(f"{n} acc | {n} CER" for n in names)
            + " |",
            "|---|---|---|---|" + "---|---|" * len(names),
        ]
        for g in means:
            dev = dev_cells(g["devsets"], names)
            lines.append(
                f"| {g['title']} | {g['runs']} | {pct(g['val']['acc'])} | {pct(g['val']['cer'])} "
                f"| {dev} |"
            )
    lines += ["", "Commands:", "", "```"]
    lines += [r["train"] for r in report["runs"]]
    lines += [d["eval"] for r in report["runs"] for d in r["devsets"].values()]
    lines += [report["command"], "```", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--name", required=True)
    ap.add_argument("--run", action="append", required=True, help="TITLE=RUN_DIR")
    ap.add_argument(
        "--devset", action="append", required=True, help="LABELFILE[:PROTOCOL], exact if none"
    )
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    devsets = []
    for spec in args.devset:
        path, protocol = split_protocol(spec)
        if not Path(path).is_file():
            ap.error(f"dev set not found: {path}")
        devsets.append((Path(path), protocol))
    runs = []
    for spec in args.run:
        title, _, run = spec.partition("=")
        runs.append(summarize(title, Path(run), devsets))
    report = {
        "name": args.name,
        "note": args.note,
        "devsets": [(str(p), proto) for p, proto in devsets],
        "runs": runs,
        "seed_means": seed_means(runs),
        "command": "python -m benchmarks.kd_compare --name "
        + args.name
        + "".join(f' --run "{s}"' for s in args.run)
        + "".join(f" --devset {s}" for s in args.devset),
    }
    write_results(args.name, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
