"""Side-by-side CPU inference benchmark on one label file, in one run, same images,
same thread settings:

    python benchmarks/bench_infer.py LABELFILE [--student S.onnx] [--student-int8 S8.onnx]
        [--teacher T.onnx] [--protocol scene] [--limit N] [--name NAME]

Engines: our student FP32 and INT8, our teacher FP32, PP-OCRv4's recognizer (from the
rapidocr-onnxruntime wheel, if installed) and Tesseract (``--psm 7``, if installed).
Models not given are exported from untrained default configs: fine for the speed
columns, meaningless for accuracy. Reports parameters, file size, median ms/line at
batch 1 with 1 and 2 threads, lines/s batched (batch 16, 2 threads), word accuracy and
CER; writes benchmarks/results/infer_NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distill.metrics import PROTOCOLS, score  # noqa: E402
from distill.predict import Recognizer, collect, read_image  # noqa: E402

BATCH = 16


def onnx_params(path: Path) -> int:
    """Weights held as initializers or as Constant nodes (PP-OCR's export uses the latter)."""
    graph = onnx.load(str(path)).graph
    n = sum(int(np.prod(t.dims)) for t in graph.initializer)
    for node in graph.node:
        if node.op_type == "Constant":
            n += sum(int(np.prod(a.t.dims)) for a in node.attribute if a.name == "value")
    return n


def time_per_line(fn, images, repeats: int = 1) -> float:
    """Median milliseconds of ``fn(image)`` over the images (after one warm-up call)."""
    fn(images[0])
    times = []
    for _ in range(repeats):
        for img in images:
            start = time.perf_counter()
            fn(img)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


class OurEngine:
    def __init__(self, name: str, path: Path):
        self.name, self.path = name, path

    def info(self) -> dict:
        return {
            "params_M": onnx_params(self.path) / 1e6,
            "size_mb": self.path.stat().st_size / 2**20,
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


class PPOCREngine:
    """PP-OCRv4's recognizer exactly as rapidocr-onnxruntime runs it (48x320, BGR)."""

    name = "PP-OCRv4 rec (rapidocr)"

    def __init__(self):
        import rapidocr_onnxruntime as r
        from rapidocr_onnxruntime.ch_ppocr_rec.text_recognize import TextRecognizer
        from rapidocr_onnxruntime.utils import read_yaml

        base = Path(r.__file__).parent
        self.cfg = read_yaml(str(base / "config.yaml"))["Rec"]
        self.cfg["model_path"] = str(base / self.cfg["model_path"])
        self.path = Path(self.cfg["model_path"])
        self.cls = TextRecognizer

    def info(self) -> dict:
        return {
            "params_M": onnx_params(self.path) / 1e6,
            "size_mb": self.path.stat().st_size / 2**20,
        }

    def _rec(self, threads: int, batch: int):
        cfg = {**self.cfg, "intra_op_num_threads": threads, "inter_op_num_threads": 1}
        cfg["rec_batch_num"] = batch
        return self.cls(cfg)

    def single(self, threads: int):
        rec = self._rec(threads, 1)
        return lambda img: rec(img[:, :, ::-1].copy())[0][0][0]

    def batched(self, images) -> tuple[list[str], float]:
        rec = self._rec(2, BATCH)
        bgr = [img[:, :, ::-1].copy() for img in images]
        rec(bgr[:BATCH])
        start = time.perf_counter()
        texts = [t for t, _ in rec(bgr)[0]]
        return texts, time.perf_counter() - start


class TesseractEngine:
    name = "Tesseract (--psm 7)"

    def __init__(self, lang: str = "eng"):
        if not shutil.which("tesseract"):
            raise FileNotFoundError("tesseract not installed")
        self.lang = lang
        self.tmp = Path(tempfile.mkdtemp())

    def info(self) -> dict:
        return {"params_M": None, "size_mb": None}

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

    from distill.export import export_onnx, quantize_dynamic
    from distill.module import RecognizerModule

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("labelfile")
    ap.add_argument("--student")
    ap.add_argument("--student-int8")
    ap.add_argument("--teacher")
    ap.add_argument("--protocol", default="scene", choices=PROTOCOLS)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N lines")
    ap.add_argument("--timing-lines", type=int, default=100, help="lines timed at batch 1")
    ap.add_argument("--name", default=None, help="results file suffix (default: label folder)")
    ap.add_argument("--no-tesseract", action="store_true")
    args = ap.parse_args()

    items, errors = collect([args.labelfile])
    if errors:
        sys.exit("\n".join(errors))
    if args.limit:
        items = items[: args.limit]
    images = [read_image(p) for p, _ in items]
    labels = [lab for _, lab in items]

    given = {"student": args.student, "student_int8": args.student_int8, "teacher": args.teacher}
    untrained = [k for k, v in given.items() if not v]  # exported from default configs
    if untrained:
        made = default_models(Path(tempfile.mkdtemp()))
        given = {k: v or made[k] for k, v in given.items()}
    engines = [
        OurEngine("our student FP32", Path(given["student"])),
        OurEngine("our student INT8", Path(given["student_int8"])),
        OurEngine("our teacher FP32", Path(given["teacher"])),
    ]
    try:
        engines.append(PPOCREngine())
    except ImportError:
        print("rapidocr-onnxruntime not installed: PP-OCRv4 skipped", file=sys.stderr)
    if not args.no_tesseract:
        try:
            engines.append(TesseractEngine())
        except FileNotFoundError as e:
            print(f"{e}: skipped", file=sys.stderr)

    timing = images[: args.timing_lines]
    rows = []
    for eng in engines:
        print(f"running {eng.name} ...", file=sys.stderr, flush=True)
        texts, batched_s = eng.batched(images)
        m = score(texts, labels, args.protocol)
        row = {
            "engine": eng.name,
            **eng.info(),
            "ms_line_1thread": time_per_line(eng.single(1), timing),
            "ms_line_2threads": time_per_line(eng.single(2), timing),
            "lines_per_s_batched": len(images) / batched_s,
            "acc": m["acc"],
            "cer": m["cer"],
        }
        rows.append(row)
    ref = next((r for r in rows if r["engine"].startswith("PP-OCRv4")), None)
    for r in rows:
        r["latency_vs_ppocr"] = r["ms_line_1thread"] / ref["ms_line_1thread"] if ref else None

    name = args.name or Path(args.labelfile).resolve().parent.name
    result = {
        "labelfile": str(args.labelfile),
        "lines": len(images),
        "protocol": args.protocol,
        "our_models": {k: str(v) for k, v in given.items()},
        "untrained_models": untrained,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "rows": rows,
    }
    md = markdown(result)
    print(md)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"infer_{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"infer_{name}.md").write_text(md + "\n")
    print(f"written: {out / f'infer_{name}.json'} and .md", file=sys.stderr)


def markdown(result: dict) -> str:
    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    lines = [
        f"Label file: `{result['labelfile']}` ({result['lines']} lines, {result['protocol']} "
        f"protocol). ms/line: median at batch 1; lines/s: batch {BATCH}, 2 threads."
        + (
            f" UNTRAINED here, speed only (their accuracy means nothing): "
            f"{', '.join(result['untrained_models'])}."
            if result["untrained_models"]
            else ""
        ),
        "",
        "| engine | params (M) | file (MB) | ms/line 1 thread | ms/line 2 threads "
        "| latency x PP-OCRv4 (1 thread) | lines/s batched | word acc | CER |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['engine']} | {f(r['params_M'], '.2f')} | {f(r['size_mb'], '.1f')} | "
            f"{r['ms_line_1thread']:.2f} | {r['ms_line_2threads']:.2f} | "
            f"{f(r['latency_vs_ppocr'], '.2f')} | {r['lines_per_s_batched']:.1f} | "
            f"{100 * r['acc']:.1f}% | {100 * r['cer']:.1f}% |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
