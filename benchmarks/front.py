"""The accuracy-latency front: several ``bench_infer.py`` results (one run per set, every
engine on the same lines) in one picture and one table, latency as a multiple of
PP-OCRv6's (the wheel's file, batch 1, 1 thread, same run), to pick a model for a
latency budget:

    python -m benchmarks.front --name en \\
        --set "IIIT5K-300 (scene)=infer_iiit5k_300_en_front" \\
        --set "SROIE-500 (caseless)=infer_sroie_500_en_front" \\
        --set "held-out documents (exact)=infer_heldout_document_en_front" [--budgets 0.1,0.2]

A set may join several runs of the same lines (``--set "TITLE=infer_a+infer_b"``): a later
run adds its engines and replaces the rows of those it read again, each latency over the
wheel's in its own run.

Writes benchmarks/results/front_NAME.{json,md,png}: per set, each engine's latency ratio
and accuracy and whether it is on the front (no engine of the set is both faster and more
accurate); per budget, the most accurate of our models whose latency is within it on
every set (mean accuracy over the sets), beside the best peer within it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.bench_infer import PEERS
from benchmarks.results_io import RESULTS, write_results

FAMILIES = {  # row "family" (bench_infer, from the ONNX metadata) -> legend, colour
    "ppocrv6": ("PP-OCRv6, compressed here", "tab:blue"),
    "shufflenet_v2": ("ShuffleNetV2-BiLSTM student", "tab:orange"),
    "peer": ("peers", "tab:gray"),
}
WHEEL = PEERS["ppocrv6"][0]  # the wheel's PP-OCRv6 row of a bench_infer result


def family_name(family: str) -> str:
    return FAMILIES.get(family, (family,))[0]


def load_run(name: str) -> dict:
    """A bench_infer result by name (``infer_X`` or a path), every row given ``ratio``:
    its 1-thread latency over the wheel's PP-OCRv6 in the same run."""
    path = Path(name)
    if not path.suffix:
        path = RESULTS / f"{name}.json"
    if not path.is_file():
        sys.exit(f"--set: no bench_infer result {path} (run bench_infer --name ... first)")
    result = json.loads(path.read_text())
    ref = next((r for r in result["rows"] if r["engine"] == WHEEL), None)
    if ref is None:
        sys.exit(f"{path}: no {WHEEL!r} row to measure latency against (bench_infer --peers)")
    ours = result["our_models"]
    for r in result["rows"]:
        r["ratio"] = r["ms_line_1thread"] / ref["ms_line_1thread"]
        r.setdefault("family", "ours" if r["engine"] in ours else "peer")
        r["run"] = path.name
    return {"file": str(path), **result}


def load_set(names: str) -> dict:
    """One set from one bench_infer run, or from several runs of the same lines joined
    by ``+`` (``infer_a+infer_b``): a later run adds its engines and replaces the earlier
    rows of the engines it read again (the newest figures), each row's latency still over
    the wheel's in its own run."""
    runs = [load_run(n) for n in names.split("+")]
    result = runs[0]
    for other in runs[1:]:
        for key in ("labelfile", "lines", "protocol"):
            if other[key] != result[key]:
                sys.exit(
                    f"--set {names}: {other['file']} read {key} {other[key]!r}, "
                    f"{result['file']} {result[key]!r}: not the same set"
                )
        newer = {r["engine"] for r in other["rows"]}
        result["rows"] = [r for r in result["rows"] if r["engine"] not in newer] + other["rows"]
        result["file"] += f"+{other['file']}"
    return result


def on_front(rows: list[dict]) -> set[str]:
    """Engines no other engine beats on both latency and accuracy."""
    return {
        r["engine"]
        for r in rows
        if not any(
            o["ratio"] <= r["ratio"]
            and o["acc"] >= r["acc"]
            and (o["ratio"] < r["ratio"] or o["acc"] > r["acc"])
            for o in rows
        )
    }


def best_within(sets: dict[str, dict], budget: float, ours: bool) -> dict | None:
    """The engine (ours, or a peer) with the highest mean accuracy over the sets among
    those within ``budget`` x PP-OCRv6 on every set it was read on."""
    by_engine: dict[str, list[dict]] = {}
    for result in sets.values():
        for r in result["rows"]:
            if (r["family"] != "peer") == ours:
                by_engine.setdefault(r["engine"], []).append(r)
    fits = {
        e: rows
        for e, rows in by_engine.items()
        if len(rows) == len(sets) and all(r["ratio"] <= budget for r in rows)
    }
    if not fits:
        return None
    engine = max(fits, key=lambda e: statistics.mean(r["acc"] for r in fits[e]))
    rows = fits[engine]
    return {
        "engine": engine,
        "family": rows[0]["family"],
        "mean_acc": statistics.mean(r["acc"] for r in rows),
        "acc": [r["acc"] for r in rows],
        "max_ratio": max(r["ratio"] for r in rows),
    }


def markdown(sets: dict[str, dict], budgets: list[dict]) -> str:
    titles = list(sets)
    lines = [
        "Latency: median ms/line at batch 1, 1 thread, as a multiple of PP-OCRv6's (the "
        f"wheel's file, `{WHEEL}`) in the same bench_infer run; accuracy: word accuracy "
        "under each set's protocol.",
        "",
        "## Within a latency budget (on every set)",
        "",
        "| budget | ours: most accurate | family | " + " | ".join(titles) + " | worst x PP-OCRv6 "
        "| best peer within it | its accuracy |",
        "|---|---|---|" + "---|" * len(titles) + "---|---|---|",
    ]
    for b in budgets:
        o, p = b["ours"], b["peer"]
        accs = (
            " | ".join(f"{100 * a:.1f}%" for a in o["acc"])
            if o
            else " | ".join(["-"] * len(titles))
        )
        ratio = f"{o['max_ratio']:.2f}x" if o else "-"
        peer = (p["engine"], " / ".join(f"{100 * a:.1f}%" for a in p["acc"])) if p else ("-", "-")
        lines.append(
            f"| <= {b['budget']:g}x | {o['engine'] if o else '-'} | "
            f"{family_name(o['family']) if o else '-'} | {accs} | "
            f"{ratio} | {peer[0]} | {peer[1]} |"
        )
    for title, result in sets.items():
        front = on_front(result["rows"])
        several = "+" in result["file"]
        lines += [
            "",
            f"## {title}",
            "",
            f"`{result['labelfile']}`, {result['lines']} lines, {result['protocol']} protocol "
            f"({', '.join(Path(f).name for f in result['file'].split('+'))}"
            + ("; each row's latency over the wheel's in its own run)." if several else ")."),
            "",
            "| engine | family | x PP-OCRv6 | ms/line | params (M) | accuracy | on the front |"
            + (" run |" if several else ""),
            "|---|---|---|---|---|---|---|" + ("---|" if several else ""),
        ]
        for r in sorted(result["rows"], key=lambda r: r["ratio"]):
            params = "-" if r.get("params_M") is None else f"{r['params_M']:.2f}"
            lines.append(
                f"| {r['engine']} | {family_name(r['family'])} | "
                f"{r['ratio']:.2f} | {r['ms_line_1thread']:.2f} | {params} | "
                f"{100 * r['acc']:.1f}% | {'yes' if r['engine'] in front else ''} |"
                + (f" {r['run']} |" if several else "")
            )
    return "\n".join(lines) + "\n"


def draw(ax, result: dict, budgets: list[float]) -> None:
    """One set: a point per engine at (x PP-OCRv6, accuracy), coloured by family, INT8
    as triangles; our models' front as a dashed line; the budgets as dotted verticals."""
    for r in result["rows"]:
        legend, color = FAMILIES.get(r["family"], (r["family"], "tab:green"))
        marker = "^" if "INT8" in r["engine"] else ("s" if r["family"] == "peer" else "o")
        ax.scatter(r["ratio"], 100 * r["acc"], marker=marker, color=color, zorder=3, label=legend)
    ours = [r for r in result["rows"] if r["family"] != "peer"]
    front = on_front(ours)
    pts = sorted((r["ratio"], 100 * r["acc"]) for r in ours if r["engine"] in front)
    if pts:
        ax.plot(*zip(*pts), ls="--", color="black", lw=0.8, zorder=2, label="our front")
    labelled = on_front(result["rows"]) | {
        r["engine"] for r in result["rows"] if r["family"] == "peer"
    }
    for i, r in enumerate(sorted(result["rows"], key=lambda r: r["ratio"])):
        if r["engine"] in labelled:
            ax.annotate(r["engine"], (r["ratio"], 100 * r["acc"]), fontsize=6,
                        xytext=(4, 3 - 8 * (i % 3)), textcoords="offset points")  # fmt: skip
    for b in budgets:
        ax.axvline(b, color="tab:red", ls=":", lw=0.8)
        ax.annotate(f"{b:g}x", (b, 0.02), xycoords=("data", "axes fraction"), fontsize=7,
                    color="tab:red", xytext=(2, 0), textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("latency x PP-OCRv6 (batch 1, 1 thread; log scale)")
    ax.set_ylabel(f"word accuracy, {result['protocol']} (%)")
    ax.grid(True, which="both", alpha=0.3)


def figure(sets: dict[str, dict], budgets: list[float]):
    """The sets side by side, one legend (front_NAME.png; the notebook shows it)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4.5), squeeze=False)
    for ax, (title, result) in zip(axes[0], sets.items()):
        draw(ax, result, budgets)
        ax.set_title(f"{title}: {result['lines']} lines", fontsize=9)
    handles = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    axes[0][0].legend(handles.values(), handles.keys(), fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot(sets: dict[str, dict], budgets: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = figure(sets, budgets)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--set", action="append", required=True, help="TITLE=bench_infer result[+another run]"
    )
    ap.add_argument("--name", required=True, help="writes benchmarks/results/front_NAME.*")
    ap.add_argument("--budgets", default="0.1,0.2,0.5,1", help="x PP-OCRv6 latency")
    args = ap.parse_args(argv)
    sets = {}
    for spec in args.set:
        title, sep, name = spec.partition("=")
        if not sep:
            sys.exit(f"--set {spec!r}: want TITLE=RESULT")
        sets[title] = load_set(name)
    budgets = [float(b) for b in args.budgets.split(",")]
    table = [
        {"budget": b, "ours": best_within(sets, b, True), "peer": best_within(sets, b, False)}
        for b in budgets
    ]
    report = {
        "sets": {
            t: {k: r[k] for k in ("file", "labelfile", "lines", "protocol", "rows")}
            for t, r in sets.items()
        },
        "budgets": table,
        "machine": next((r["machine"] for r in sets.values() if r.get("machine")), None),
    }
    written = write_results(f"front_{args.name}", report, markdown(sets, table))
    plot(sets, budgets, written.with_suffix(".png"))


if __name__ == "__main__":
    main()
