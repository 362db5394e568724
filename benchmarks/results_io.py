"""Where benchmark scripts keep their figures: benchmarks/results/NAME.{json,md}."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, report: dict, md: str) -> Path:
    """Write the report as JSON and its table as Markdown, print the table. Both say
    which machine measured them (CPU model, cores, the flags that change the figures):
    machines differ by 2x in speed and in which INT8 and bf16 paths they take."""
    from distill.core import hardware

    report = {**report, "machine": report.get("machine") or hardware.summary()}
    md = md.rstrip("\n") + f"\n\nMachine: {hardware.describe()}.\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(md)
    print(md)
    return RESULTS / f"{name}.md"
