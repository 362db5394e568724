"""The distillation result: teacher, distilled student and baseline student side by side.

    python -m benchmarks.kd_report --teacher logs/en/teacher --kd logs/en/student_kd \\
        --baseline logs/en/student_baseline \\
        --devset ../shared/devsets/iiit5k_300/labels.tsv --name kd_en

For each training run it reads ``metrics.json`` (parameters, steps, wall time, scores on
the synthetic validation set at the last step) and the command that made it
(``.hydra/overrides.yaml``), scores its last checkpoint on the dev set with ``eval.py``
(scene-text protocol; kept in ``<run>/eval_<devset>/eval.json`` and reused only while
the checkpoint, the dev set and the protocol are the ones it was computed for),
and pulls its validation learning curves from TensorBoard. Writes
``benchmarks/results/NAME.{json,md}`` and says whether the distilled student met the
targets: at least 2 points of word accuracy above the baseline, at most 2 below the teacher.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from distill.compare import load_runs, pct
from distill.core.metrics import PROTOCOLS
from distill.lit.train import file_identity

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "benchmarks" / "results"
CURVE_TAGS = ("val/acc", "val/cer", "val/teacher_acc", "val/agreement", "train/loss_ctc")
GAIN_OVER_BASELINE = 0.02  # the distilled student must beat the baseline by this much
GAP_TO_TEACHER = 0.02  # ... and stay at most this far below the teacher


def train_command(run: Path) -> str:
    """The command that trains the run from scratch; the resume of its last part
    (``ckpt_path=last``) is left out, since it fails where no checkpoint exists yet."""
    f = run / ".hydra" / "overrides.yaml"
    if not f.is_file():
        return f"(unknown: {relative(f)} is missing)"
    overrides = [o for o in yaml.safe_load(f.read_text()) or [] if o != "ckpt_path=last"]
    if not any(o.startswith("hydra.run.dir=") for o in overrides):
        overrides.append(f"hydra.run.dir={relative(run)}")
    return "python train.py " + " ".join(overrides)


def relative(path: Path) -> str:
    """The path as written in a command run from the project root."""
    return os.path.relpath(path.resolve(), ROOT)


def eval_on_devset(run: Path, devset: Path, protocol: str, suffix: str = "") -> tuple[dict, str]:
    """Run eval.py on the run's last checkpoint (once); returns (metrics, command). The
    result is kept in ``<run>/eval_<devset><suffix>/``."""
    ckpt = run / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt} not found: did the training run in {run} finish?")
    out_dir = run / f"eval_{devset.parent.name}{suffix}"
    args = [
        "eval.py",
        f"ckpt_path={relative(ckpt)}",
        f"data.test=[{relative(devset)}]",
        f"protocol={protocol}",
        f"hydra.run.dir={relative(out_dir)}",
    ]
    command = "python " + " ".join(args)
    kept = out_dir / "eval.json"
    if not cached_eval_matches(kept, ckpt, devset, protocol):
        print(f"$ {command}", flush=True)
        proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"eval.py failed for {run}:\n{proc.stderr[-3000:]}")
    (metrics,) = json.loads(kept.read_text())["results"].values()
    return metrics, command


def cached_eval_matches(kept: Path, ckpt: Path, devset: Path, protocol: str) -> bool:
    """Is ``kept`` (an eval.json) the evaluation of this very checkpoint, dev set and
    protocol? Same paths, sizes and modification times, same protocol."""
    if not kept.is_file():
        return False
    try:
        old = json.loads(kept.read_text())
    except json.JSONDecodeError:
        return False
    return (
        old.get("ckpt") == file_identity(ckpt)
        and old.get("test") == [file_identity(devset)]
        and old.get("protocol") == protocol
    )


def learning_curves(run: Path) -> dict[str, list[list[float]]]:
    """{tag: [[step, value], ...]} from the run's TensorBoard events (all resumes)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    have = set(acc.Tags()["scalars"])
    curves = {}
    for tag in CURVE_TAGS:
        if tag in have:
            by_step = {e.step: e.value for e in acc.Scalars(tag)}  # a resume may repeat steps
            curves[tag] = [[s, round(v, 5)] for s, v in sorted(by_step.items())]
    return curves


def summarize(name: str, run: Path, devset: Path, protocol: str) -> dict:
    ((_, m),) = load_runs([str(run)])
    dev, dev_cmd = eval_on_devset(run, devset, protocol)
    return {
        "name": name,
        "run": relative(run),
        "params": m["params"],
        "steps": m["steps"],
        "wall_time_s": m["wall_time_s"],
        "synth_val": {k: m["metrics"].get(f"val/{k}") for k in ("acc", "cer", "ned")},
        "devset": {k: dev[k] for k in ("n", "acc", "cer", "ned")},
        "commands": {"train": train_command(run), "eval": dev_cmd},
        "curves": learning_curves(run),
    }


def verdict(runs: dict[str, dict], split: str) -> dict:
    t, kd, base = (runs[k][split]["acc"] for k in ("teacher", "kd", "baseline"))
    gain, gap = kd - base, t - kd
    return {
        "gain_over_baseline": round(gain, 4),
        "gap_to_teacher": round(gap, 4),
        "beats_baseline_by_2pts": gain >= GAIN_OVER_BASELINE,
        "within_2pts_of_teacher": gap <= GAP_TO_TEACHER,
    }


def markdown(report: dict) -> str:
    runs = report["runs"]
    dev = report["devset_name"]
    lines = [
        f"# Distillation result: {report['name']}",
        "",
        *([report["note"], ""] if report.get("note") else []),
        f"Synthetic validation: {report['synth_val_note']}. Dev set: `{dev}` "
        f"({runs['teacher']['devset']['n']} real images, {report['protocol']} protocol).",
        "",
        f"| model | params (M) | steps | minutes | synth acc | synth CER | {dev} acc | {dev} CER |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, title in (
        ("teacher", "teacher"),
        ("kd", "student, distilled"),
        ("baseline", "student, baseline"),
    ):
        r = runs[key]
        lines.append(
            f"| {title} | {r['params'] / 1e6:.2f} | {r['steps']} | {r['wall_time_s'] / 60:.1f} | "
            f"{pct(r['synth_val']['acc'])} | {pct(r['synth_val']['cer'])} | "
            f"{pct(r['devset']['acc'])} | {pct(r['devset']['cer'])} |"
        )
    lines += [
        "",
        "Targets (word accuracy): distilled >= baseline + 2 points, "
        "distilled >= teacher - 2 points.",
        "",
    ]
    lines += [
        "| set | distilled - baseline | teacher - distilled "
        "| beats baseline by 2 | within 2 of teacher |",
        "|---|---|---|---|---|",
    ]
    for split, label in (("synth_val", "synthetic val"), ("devset", dev)):
        v = report["verdict"][split]
        yes = {True: "yes", False: "no"}
        lines.append(
            f"| {label} | {100 * v['gain_over_baseline']:+.1f} "
            f"| {100 * v['gap_to_teacher']:+.1f} | {yes[v['beats_baseline_by_2pts']]} "
            f"| {yes[v['within_2pts_of_teacher']]} |"
        )
    kd_curve = dict(map(tuple, runs["kd"]["curves"].get("val/acc", [])))
    base_curve = dict(map(tuple, runs["baseline"]["curves"].get("val/acc", [])))
    steps = sorted(set(kd_curve) & set(base_curve))
    if steps:
        lines += ["", "Synthetic validation word accuracy during training:", ""]
        lines += ["| step | " + " | ".join(str(int(s)) for s in steps) + " |"]
        lines += ["|---" * (len(steps) + 1) + "|"]
        lines += ["| distilled | " + " | ".join(pct(kd_curve[s]) for s in steps) + " |"]
        lines += ["| baseline | " + " | ".join(pct(base_curve[s]) for s in steps) + " |"]
    lines += ["", "Commands:", "", "```"]
    for key in ("teacher", "kd", "baseline"):
        lines.append(runs[key]["commands"]["train"])
    for key in ("teacher", "kd", "baseline"):
        lines.append(runs[key]["commands"]["eval"])
    lines.append(report["command"])
    lines += ["```", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--teacher", required=True, type=Path, help="teacher run folder")
    ap.add_argument("--kd", required=True, type=Path, help="distilled student run folder")
    ap.add_argument("--baseline", required=True, type=Path, help="baseline student run folder")
    ap.add_argument("--devset", required=True, type=Path, help="label file of real images")
    ap.add_argument("--protocol", default="scene", choices=PROTOCOLS)
    ap.add_argument("--name", default="kd_en", help="results file name")
    ap.add_argument("--note", default="", help="a remark printed under the title")
    args = ap.parse_args(argv)
    if not args.devset.is_file():
        ap.error(f"dev set label file not found: {args.devset}")

    runs = {
        key: summarize(key, getattr(args, key), args.devset, args.protocol)
        for key in ("teacher", "kd", "baseline")
    }
    report = {
        "name": args.name,
        "note": args.note,
        "devset_name": args.devset.parent.name,
        "protocol": args.protocol,
        "synth_val_note": (
            "the fixed synthetic validation lines of each run's config, exact protocol, last step"
        ),
        "command": "python -m benchmarks.kd_report "
        + " ".join(
            f"--{k} {relative(getattr(args, k))}" for k in ("teacher", "kd", "baseline", "devset")
        )
        + f" --protocol {args.protocol} --name {args.name}"
        + (f" --note {json.dumps(args.note)}" if args.note else ""),
        "runs": runs,
        "verdict": {s: verdict(runs, s) for s in ("synth_val", "devset")},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    md = markdown(report)
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)
    print(f"wrote {RESULTS / args.name}.{{json,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
