"""Side-by-side table of training runs from their ``metrics.json``.

    python -m distill.compare teacher=logs/demo/teacher kd=logs/demo/kd baseline=logs/demo/baseline

Each argument is ``NAME=RUN_DIR`` (or just RUN_DIR). ``--markdown`` prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COLUMNS = (
    ("params", "params (M)", lambda s: f"{s['params'] / 1e6:.2f}"),
    ("steps", "steps", lambda s: str(s["steps"])),
    ("wall", "minutes", lambda s: f"{s['wall_time_s'] / 60:.1f}"),
    ("acc", "val acc", lambda s: pct(s["metrics"].get("val/acc"))),
    ("cer", "val CER", lambda s: pct(s["metrics"].get("val/cer"))),
    ("ned", "val 1-NED", lambda s: pct(s["metrics"].get("val/ned"))),
    ("best", "best val acc", lambda s: pct(s.get("best_val_acc"))),
)


def pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal; '-' when missing."""
    return "-" if x is None else f"{100 * x:.1f}%"


def load_runs(specs: list[str]) -> list[tuple[str, dict]]:
    runs = []
    for spec in specs:
        name, _, path = spec.rpartition("=")
        path = Path(path)
        f = path / "metrics.json" if path.is_dir() else path
        if not f.is_file():
            raise FileNotFoundError(f"no metrics.json in {path}: did that training run finish?")
        runs.append((name or path.name, json.loads(f.read_text())))
    return runs


def table(runs: list[tuple[str, dict]], markdown: bool = False) -> str:
    header = ["run"] + [title for _, title, _ in COLUMNS]
    rows = [[name] + [fmt(s) for _, _, fmt in COLUMNS] for name, s in runs]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt_row = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))  # noqa: E731
    return "\n".join(
        [fmt_row(header), fmt_row(["-" * w for w in widths])] + [fmt_row(r) for r in rows]
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    print(table(load_runs(args.runs), args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
