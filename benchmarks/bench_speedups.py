"""Each inference speed-up measured on its own, side by side in one run: the same
checkpoint exported as traced and after onnxslim, run with each onnxruntime
graph-optimization level (and all but the NCHWc layout transform), with a saved
optimized model, with idle threads sleeping, without the padding masks a single line
does not need (the predictor's lean batch-1 graph, distill/runtime/onnx_masks.py), and in INT8
(dynamic, and static QDQ convolutions, each also lean):

    python -m benchmarks.bench_speedups --ckpt CKPT [--labels FILE:PROTOCOL]
        [--widths 100,320,800] [--runs 300] [--rounds 15] [--name NAME]

For every variant: the time to create the session, the median ``session.run`` ms per
line at batch 1 with 1 and 2 threads and lines/s at batch 32 (2 threads) for each line
width, and, per exported file, accuracy on ``--labels`` through the predictor with the
share of lines read exactly as the FP32 onnxslim model reads them (INT8 agreement).
Static INT8 calibrates on the checkpoint's own validation lines, never on ``--labels``.
Writes benchmarks/results/speedups_NAME.{json,md}. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.results_io import write_results
from distill.core import hardware
from distill.models.backbones import ShuffleUnit

ROOT = Path(__file__).resolve().parent.parent

LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


def session_options(threads: int, level: str = "all", spin: bool = True, save: str = ""):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = LEVELS[level]
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if save:
        opts.optimized_model_filepath = save
    return opts


def build_files(ckpt: Path, out: Path, calibration_lines: int) -> dict[str, Path]:
    """The checkpoint as traced ONNX, after onnxslim, and in both INT8 modes."""
    from omegaconf import OmegaConf

    from distill.export.onnx import export_onnx
    from distill.export.quantize import calibration_batches, quantize_dynamic, quantize_static
    from distill.export.run import validation_split
    from distill.models.checkpoint import load_network

    module = load_network(str(ckpt))
    files = {
        "traced": export_onnx(module, out / "traced.onnx", "traced", simplify=False),
        "onnxslim": export_onnx(module, out / "slim.onnx", "slim"),
    }
    if any(isinstance(m, ShuffleUnit) for m in module.net.modules()):
        with torchvision_shuffle():
            files["transpose shuffle"] = export_onnx(module, out / "transpose.onnx", "t")
    files["int8 dynamic"] = quantize_dynamic(files["onnxslim"], out / "int8_dynamic.onnx")
    cfg = OmegaConf.create(
        {
            "data": None,
            "eval_samples": 0,
            "calibration_lines": calibration_lines,
            "quantize": "static",
        }
    )
    _, calibration, _ = validation_split(cfg, module)
    files["int8 static"] = quantize_static(
        files["onnxslim"], out / "int8_static.onnx", calibration_batches(calibration)
    )
    return files


@contextlib.contextmanager
def torchvision_shuffle():
    """Export ShuffleNetV2 units the way torchvision computes them (concatenate, then
    view/transpose/view) instead of our stack-and-view: the step before."""
    from torchvision.models.shufflenetv2 import InvertedResidual

    ours = ShuffleUnit.forward
    ShuffleUnit.forward = InvertedResidual.forward
    try:
        yield
    finally:
        ShuffleUnit.forward = ours


def lean_files(files: dict[str, Path], width_per_frame: int) -> dict[str, Path]:
    """Each file's lean batch-1 graph, as the predictor builds it for single lines."""
    import onnx

    from distill.runtime.onnx_masks import without_frame_masks

    lean = {}
    for key in ("onnxslim", "transpose shuffle", "int8 dynamic", "int8 static"):
        if key not in files:
            continue
        model = without_frame_masks(onnx.load(str(files[key])), width_per_frame)
        if model is None:
            sys.exit(f"{files[key]}: no named padding masks (export.py names them)")
        lean[f"{key} lean"] = files[key].with_name(files[key].stem + "_lean.onnx")
        onnx.save(model, str(lean[f"{key} lean"]))
    return lean


def variants(files: dict[str, Path], tmp: Path) -> list[dict]:
    """(label, file, session settings) in the order a reader follows the steps."""
    saved = str(tmp / "slim.optimized.onnx")
    return [
        {"label": "traced export", "file": "traced", "level": "all"},
        {"label": "onnxslim, optimization basic", "file": "onnxslim", "level": "basic"},
        {"label": "onnxslim, optimization extended", "file": "onnxslim", "level": "extended"},
        {"label": "onnxslim, optimization all (default)", "file": "onnxslim", "level": "all"},
        {
            "label": "onnxslim, optimized model saved, loaded unoptimized",
            "file": "onnxslim",
            "level": "none",
            "load_from": saved,
        },
        {
            "label": "onnxslim, optimization all but the NCHWc layout",
            "file": "onnxslim",
            "level": "all",
            "disabled": ["NchwcTransformer"],
        },
        {
            "label": "onnxslim, idle threads sleep",
            "file": "onnxslim",
            "level": "all",
            "spin": False,
        },
        {
            "label": "onnxslim, lean, torchvision's shuffle (concat + view/transpose/view)",
            "file": "transpose shuffle lean",
            "level": "all",
            "batch1_only": True,
        },
        {
            "label": "onnxslim, lean batch-1 graph (predictor default at b=1)",
            "file": "onnxslim lean",
            "level": "all",
            "batch1_only": True,
        },
        {"label": "INT8 dynamic (LSTM, MatMul)", "file": "int8 dynamic", "level": "all"},
        {
            "label": "INT8 dynamic, lean batch-1 graph",
            "file": "int8 dynamic lean",
            "level": "all",
            "batch1_only": True,
        },
        {"label": "INT8 static QDQ convs + dynamic LSTM", "file": "int8 static", "level": "all"},
        {
            "label": "INT8 static, lean batch-1 graph",
            "file": "int8 static lean",
            "level": "all",
            "batch1_only": True,
        },
    ]


def open_variant(v: dict, files: dict[str, Path]) -> dict:
    """The variant's sessions (1 and 2 threads) and its median session-creation time."""
    path = str(files[v["file"]])
    if v.get("load_from"):  # write the fully optimized graph once, then load it as is
        ort.InferenceSession(
            path, session_options(1, "all", save=v["load_from"]), providers=["CPUExecutionProvider"]
        )
        path = v["load_from"]

    def make(threads: int):
        opts = session_options(threads, v["level"], v.get("spin", True))
        return ort.InferenceSession(
            path,
            opts,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=v.get("disabled", []),
        )

    load = []
    for _ in range(5):
        start = time.perf_counter()
        make(2)
        load.append(time.perf_counter() - start)
    return {"load_ms": 1000 * statistics.median(load), "sessions": {t: make(t) for t in (1, 2)}}


CELLS = ((1, 1, "b1_t1"), (1, 2, "b1_t2"), (32, 2, "b32_lps"))


def time_all(opened: list[dict], widths: list[int], runs: int, rounds: int) -> None:
    """Fill each variant's cells. The variants take turns, ``rounds`` times per cell, and
    a cell's figure is the median over all its runs: drift on a shared machine then falls
    on every variant alike instead of on whichever ran during it. Between turns a pause
    lets the previous session's spinning threads go idle (they would steal a core)."""
    shape = opened[0]["sessions"][1].get_inputs()[0].shape
    rng = np.random.default_rng(0)
    for o in opened:
        o.update({key: {} for *_, key in CELLS})
    for w in widths:
        for batch, threads, key in CELLS:
            feeds = {
                "image": rng.standard_normal((batch, shape[1], shape[2], w), np.float32),
                "widths": np.full(batch, w, np.int64),
            }
            n = max(3, (runs if batch == 1 else 10) // rounds)
            # a lean graph is exact only when all lines span the same frames; the predictor
            # never runs it on a batch of mixed widths, so it gets no batch-32 figure
            timed = [o for o in opened if batch == 1 or not o.get("batch1_only")]
            times = [[] for _ in timed]
            for o in timed:  # warm-up
                for _ in range(2):
                    o["sessions"][threads].run(None, feeds)
            for _ in range(rounds):
                for o, t in zip(timed, times):
                    sess = o["sessions"][threads]
                    time.sleep(0.05)  # the last variant's spinning threads park first
                    sess.run(None, feeds)
                    for _ in range(n):
                        start = time.perf_counter()
                        sess.run(None, feeds)
                        t.append(time.perf_counter() - start)
            for o, t in zip(timed, times):
                ms = 1000 * statistics.median(t)
                o[key][w] = ms if batch == 1 else 1000 * batch / ms
            print(
                f"w={w} batch={batch} threads={threads}: "
                + ", ".join(f"{o['label']} {o[key][w]:.2f}" for o in timed),
                flush=True,
            )


def accuracy(files: dict[str, Path], labels: str) -> dict[str, dict]:
    """Accuracy of each file through the predictor, and its agreement with onnxslim FP32."""
    from labelsets import load_labelled

    from distill.core.metrics import score, split_protocol
    from distill.runtime.predict import Recognizer

    path, protocol = split_protocol(labels)
    _, images, truth = load_labelled(path)
    files = {k: f for k, f in files.items() if not k.endswith(" lean")}  # never loaded as such
    texts = {
        k: [r.text for r in Recognizer(f, threads=2).recognize(images)] for k, f in files.items()
    }
    # one line per call: the predictor's lean graph, which must read exactly the same
    single = Recognizer(files["onnxslim"], threads=2, batch_size=1)
    texts["onnxslim, batch 1 (lean graph)"] = [r.text for r in single.recognize(images)]
    files = {**files, "onnxslim, batch 1 (lean graph)": files["onnxslim"]}
    ref = texts["onnxslim"]
    per_file = {
        k: {
            **score(t, truth, protocol),
            "agreement": sum(a == b for a, b in zip(t, ref)) / len(ref),
            "size_mb": files[k].stat().st_size / 2**20,
        }
        for k, t in texts.items()
    }
    return {
        "set": {"file": path, "protocol": protocol, "lines": len(truth)},
        "files": per_file,
    }


def markdown(report: dict, widths: list[int]) -> str:
    ws = "/".join(str(w) for w in widths)
    md = [
        f"# Inference speed-ups, one at a time: {report['name']}",
        "",
        f"`python -m benchmarks.bench_speedups {report['argv']}`",
        "",
        f"{report['cpu']}, onnxruntime {ort.__version__}. `session.run` "
        f"only (no pre/post-processing), random input, widths {ws} px; the variants take "
        f"turns ({report['rounds']} rounds), median of {report['runs']} runs per cell at batch "
        f"1, {report['rounds'] * max(3, 10 // report['rounds'])} at batch 32.",
        "",
        f"| variant | load ms | ms/line b=1, 1 thread ({ws}) | ms/line b=1, 2 threads ({ws}) "
        f"| lines/s b=32, 2 threads ({ws}) |",
        "|---|---|---|---|---|",
    ]
    fmt = lambda d, f: " / ".join(  # noqa: E731
        f.format(d[w]) if w in d else "-" for w in widths
    )
    for r in report["variants"]:
        md.append(
            f"| {r['label']} | {r['load_ms']:.0f} | {fmt(r['b1_t1'], '{:.2f}')} | "
            f"{fmt(r['b1_t2'], '{:.2f}')} | {fmt(r['b32_lps'], '{:.0f}')} |"
        )
    acc = report.get("accuracy")
    if acc:
        s = acc["set"]
        md += [
            "",
            f"Accuracy on `{s['file']}` ({s['lines']} lines, {s['protocol']}), through the "
            "predictor:",
            "",
            "| file | MB | accuracy | CER | same text as FP32 onnxslim |",
            "|---|---|---|---|---|",
        ]
        for k, m in acc["files"].items():
            md.append(
                f"| {k} | {m['size_mb']:.2f} | {100 * m['acc']:.1f}% | "
                f"{100 * m['cer']:.2f}% | {100 * m['agreement']:.1f}% |"
            )
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="a trained checkpoint (.ckpt)")
    ap.add_argument("--labels", help="LABELFILE[:exact|scene|caseless] to score each file on")
    ap.add_argument("--widths", default="100,320,800")
    ap.add_argument("--runs", type=int, default=300, help="timed runs per batch-1 cell")
    ap.add_argument(
        "--rounds", type=int, default=15, help="turns the variants take (spreads the drift)"
    )
    ap.add_argument("--calibration-lines", type=int, default=256)
    ap.add_argument("--name", default="student")
    args = ap.parse_args()
    ckpt = Path(args.ckpt)
    if not ckpt.is_file():
        sys.exit(f"--ckpt: no such file {ckpt}")
    widths = [int(w) for w in args.widths.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="speedups_"))
    files = build_files(ckpt, tmp, args.calibration_lines)
    from distill.models.checkpoint import load_network

    files.update(lean_files(files, load_network(str(ckpt)).net.width_per_frame))
    report = {
        "name": args.name,
        "argv": " ".join(sys.argv[1:]),
        "cpu": hardware.describe(),
        "runs": args.runs,
        "rounds": args.rounds,
        "variants": [],
    }
    todo = [v for v in variants(files, tmp) if v["file"] in files]  # shuffle: ShuffleNet only
    opened = [{**v, **open_variant(v, files)} for v in todo]
    time_all(opened, widths, args.runs, args.rounds)
    report["variants"] = [{k: v for k, v in o.items() if k != "sessions"} for o in opened]
    if args.labels:
        report["accuracy"] = accuracy(files, args.labels)
    write_results(f"speedups_{args.name}", report, markdown(report, widths))


if __name__ == "__main__":
    main()
