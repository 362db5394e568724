"""The recovery curves of a gradual pruning (make ppocrv6-prune), one row per round:

    python -m benchmarks.prune_rounds logs/prune_v6 [--name ppocrv6_en]

For each ``roundK/`` of the folder: the cut (multiply-adds and parameters against the
unpruned network, the importance and plan from ``plan.json``), the validation accuracy
before the cut and just after it (prune.py's sample of the validation lines), and the
recovery's validation accuracy at each evaluation (all the validation lines, from its
TensorBoard events; a resumed run's repeated steps counted once), with its wall time.
Writes benchmarks/results/prune_rounds_NAME.{json,md}. The dev sets are read by
bench_prune (the same target runs both).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from benchmarks.kd_report import learning_curves
from benchmarks.results_io import write_results


def read_round(folder: Path) -> dict:
    plan = json.loads((folder / "plan.json").read_text())
    row = {
        "round": folder.name,
        "source": plan["source"],
        "how": plan["how"],
        "macs": plan["after_no_finetune"]["macs"],
        "params": plan["after_no_finetune"]["params"],
        "acc_before_cut": plan["before"]["acc"],
        "acc_after_cut": plan["after_no_finetune"]["acc"],
        "cut_lines": plan["validation"]["lines"],
        "recovery": [],
    }
    recover = folder / "recover"
    if (recover / "tensorboard").is_dir():
        row["recovery"] = learning_curves(recover).get("val/acc", [])
    if (recover / "metrics.json").is_file():
        metrics = json.loads((recover / "metrics.json").read_text())
        row["recovery_minutes"] = metrics["wall_time_s"] / 60
        row["steps"] = metrics["steps"]
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("folder", type=Path, help="the folder of round1/, round2/, ...")
    ap.add_argument("--name", default="ppocrv6_en")
    args = ap.parse_args(argv)

    folders = [p for p in args.folder.glob("round*") if (p / "plan.json").is_file()]
    if not folders:
        raise SystemExit(f"{args.folder}: no round*/plan.json (run make ppocrv6-prune)")
    folders.sort(key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
    rows = [read_round(p) for p in folders]
    plan = json.loads((folders[0] / "plan.json").read_text())
    first = plan["before"]
    how = (
        f"{plan['importance']} importance, mode={plan['mode']}, multiply-adds cut to "
        f"{plan['target']['keep']:g} x the round's input"
    )

    lines = [
        "| round | MMACs | params | val before cut | after cut | recovery: val acc by step "
        "| minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        # the events log a validation at the step before its count (step 199: 200 done)
        curve = ", ".join(f"{s + 1}: {100 * v:.1f}" for s, v in r["recovery"]) or "not run"
        minutes = f"{r['recovery_minutes']:.1f}" if "recovery_minutes" in r else ""
        lines.append(
            f"| {r['round']} | {r['macs'] / 1e6:.0f} ({r['macs'] / first['macs']:.0%}) "
            f"| {r['params'] / 1e6:.2f}M ({r['params'] / first['params']:.0%}) "
            f"| {100 * r['acc_before_cut']:.1f}% | {100 * r['acc_after_cut']:.1f}% "
            f"| {curve} | {minutes} |"
        )
    md = (
        f"# Gradual pruning: {args.folder}\n\n"
        f"Unpruned: {first['macs'] / 1e6:.0f} MMACs (one 320-px line), "
        f"{first['params'] / 1e6:.2f}M parameters. Cut accuracy on {rows[0]['cut_lines']} "
        "validation lines (prune.py's sample); recovery on all of them. Each round: "
        f"{how}.\n\n" + "\n".join(lines) + "\n"
    )
    write_results(f"prune_rounds_{args.name}", {"folder": str(args.folder), "rounds": rows}, md)


if __name__ == "__main__":
    main()
