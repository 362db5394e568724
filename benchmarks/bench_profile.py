"""Where a student's inference time goes: onnxruntime's per-operator profile, the
multiply-adds the network needs, and how far the run is from what this CPU can do.

    python -m benchmarks.bench_profile [--model NAME=PATH ...] [--widths 100,320,800]
        [--batches 1,32] [--threads 2] [--runs 30] [--name NAME]

For each model, line width and batch size: the median time of one ``session.run`` (no
profiler attached), the time per operator type from onnxruntime's profiler (share of
the profiled node time), the network's multiply-adds per line (from the model's own
config in its metadata), the GFLOP/s that makes, and that as a share of the
attainable rate, measured here as a 1024^3 float32 MatMul in onnxruntime with the same
threads. Batch 1 runs the lean graph the predictor runs for a single line (without the
padding masks it does not need: distill/runtime/onnx_masks.py). At batch 1 it also times the
predictor end to end on a real line (``Recognizer``: preprocessing, the run, decoding)
to show the Python share.
Writes benchmarks/results/profile_NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.results_io import write_results
from distill.core import hardware
from distill.core.preprocess import pad_batch, preprocess
from distill.runtime.predict import Recognizer, read_image

ROOT = Path(__file__).resolve().parent.parent

SAMPLE = ROOT / "data" / "samples" / "img" / "000.png"


def graph_for(path: str, batch: int, width_per_frame: int):
    """What the predictor runs: at batch 1 the lean graph (bytes) when the model has
    named padding masks, else the file itself."""
    if batch != 1:
        return path
    import onnx

    from distill.runtime.onnx_masks import without_frame_masks

    lean = without_frame_masks(onnx.load(path), width_per_frame)
    return path if lean is None else lean.SerializeToString()


def session(path, threads: int, profile_dir: str | None = None):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if profile_dir:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(profile_dir, "ort")
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def median_ms(fn, runs: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def attainable_gflops(threads: int, n: int = 1024) -> float:
    """A large float32 MatMul in onnxruntime: the practical peak of this CPU and setting."""
    import onnx
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm", [a, b], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = Path(tempfile.mkdtemp()) / "mm.onnx"
    onnx.save(model, str(path))
    sess = session(str(path), threads)
    x = np.random.rand(n, n).astype(np.float32)
    ms = median_ms(lambda: sess.run(None, {"a": x, "b": x}), 10)
    return 2 * n**3 / (ms / 1000) / 1e9


def macs_per_line(path: str, width: int) -> float | None:
    """Multiply-adds of one line, from the network config the model carries."""
    try:
        from distill.models import build_model
        from distill.pruning.measure import count_macs
    except ImportError:  # the torch-free install: no count
        return None
    meta = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_modelmeta()
    props = meta.custom_metadata_map
    net = json.loads(props["train_config"])["net"]
    model = build_model(int(props["num_classes"]), **net)
    return count_macs(model, int(props["input_height"]), int(props["input_channels"]), width)


def op_profile(path, feeds: dict, threads: int, runs: int) -> dict[str, float]:
    """Share of the profiled node time per operator type."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = session(path, threads, tmp)
        for _ in range(runs):
            sess.run(None, feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"].get("op_name", "?")] += e["dur"]
    total = sum(per_op.values()) or 1.0
    return {k: v / total for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", action="append", help="NAME=PATH (default: the shipped student)")
    ap.add_argument("--widths", default="100,320,800")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--name", default="students")
    args = ap.parse_args()
    models = args.model or [
        "en_student=models/en_student.onnx",
        "en_student_int8=models/en_student_int8.onnx",
    ]
    widths = [int(w) for w in args.widths.split(",")]
    batches = [int(b) for b in args.batches.split(",")]

    peak = attainable_gflops(args.threads)
    print(f"attainable: {peak:.1f} GFLOP/s (1024^3 float32 MatMul, {args.threads} threads)")
    report = {"attainable_gflops": peak, "threads": args.threads, "models": {}}
    md = [
        "# Inference profile",
        "",
        f"`python -m benchmarks.bench_profile {' '.join(sys.argv[1:])}`",
        "",
        f"{hardware.describe()}, onnxruntime "
        f"{ort.__version__}, {args.threads} threads. Attainable: **{peak:.1f} GFLOP/s** (a "
        "1024^3 float32 MatMul). MMACs per line from the network config; GFLOP/s = 2 x MACs "
        "/ time. INT8 models can pass 100%: their integer arithmetic is faster than the "
        "float32 rate it is measured against.",
        "",
    ]
    for spec in models:
        name, _, path = spec.partition("=")
        path = str(ROOT / path) if not Path(path).is_absolute() else path
        rec = Recognizer(path, threads=args.threads, batch_size=1)
        graphs = {b: graph_for(path, b, rec.width_per_frame) for b in {1, *batches}}
        sessions = {b: session(g, args.threads) for b, g in graphs.items()}
        height = sessions[1].get_inputs()[0].shape[2]
        channels = sessions[1].get_inputs()[0].shape[1]
        rows = []
        for w in widths:
            macs = macs_per_line(path, w)
            for b in batches:
                sess = sessions[b]
                feeds = {
                    "image": np.random.rand(b, channels, height, w).astype(np.float32),
                    "widths": np.full(b, w, np.int64),
                }
                ms = median_ms(lambda s=sess, f=feeds: s.run(None, f), args.runs)
                ops = op_profile(graphs[b], feeds, args.threads, max(5, args.runs // 3))
                gflops = 2 * macs * b / (ms / 1000) / 1e9 if macs else None
                rows.append(
                    {
                        "width": w,
                        "batch": b,
                        "ms_per_run": ms,
                        "ms_per_line": ms / b,
                        "mmacs_per_line": macs / 1e6 if macs else None,
                        "gflops": gflops,
                        "share_of_attainable": gflops / peak if gflops else None,
                        "ops": ops,
                    }
                )
                top = ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(ops.items())[:4])
                print(f"{name} w={w} b={b}: {ms:.2f} ms/run, {ms / b:.3f} ms/line  [{top}]")
        image = read_image(SAMPLE)
        end_to_end = median_ms(lambda r=rec, i=image: r.recognize([i]), args.runs)
        batch, valid = pad_batch([preprocess(image, rec.preprocess_cfg)], rec.width_per_frame)
        feeds = {"image": batch, "widths": valid}
        raw = median_ms(lambda s=sessions[1], f=feeds: s.run(None, f), args.runs)
        report["models"][name] = {
            "path": path,
            "rows": rows,
            "end_to_end_ms": end_to_end,
            "session_run_ms": raw,
        }
        md += [f"## {name}", ""]
        md.append(
            f"End to end through `Recognizer` at batch 1 on `{SAMPLE.name}`: {end_to_end:.2f} ms"
            + f" (the session run alone: {raw:.2f} ms; Python {end_to_end - raw:.2f} ms)."
        )
        md += [
            "",
            "| width | batch | ms/run | ms/line | MMACs/line | GFLOP/s | of attainable "
            "| top operators (share of node time) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            top = ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(r["ops"].items())[:5])
            macs = f"{r['mmacs_per_line']:.1f}" if r["mmacs_per_line"] else "-"
            gf = f"{r['gflops']:.1f}" if r["gflops"] else "-"
            share = f"{100 * r['share_of_attainable']:.1f}%" if r["share_of_attainable"] else "-"
            md.append(
                f"| {r['width']} | {r['batch']} | {r['ms_per_run']:.2f} | {r['ms_per_line']:.3f} "
                f"| {macs} | {gf} | {share} | {top} |"
            )
        md.append("")
    write_results(f"profile_{args.name}", report, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
