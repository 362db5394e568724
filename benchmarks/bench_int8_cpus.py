"""Static INT8 on CPUs with and without VNNI: does it read what FP32 reads?

    python -m benchmarks.bench_int8_cpus MODEL.onnx LABELFILE[:PROTOCOL] [--limit 120]
        [--calibration 32] [--emulate Haswell-v4] --name NAME

From one FP32 model it writes dynamic INT8 and static INT8 with 8-bit and with 7-bit
(``reduce_range``) weights, calibrated on the first ``--calibration`` lines, then reads
the rest with each model on this CPU and, with ``--emulate``, on an emulated x86 CPU
without AVX-512 or VNNI (``qemu-x86_64 -cpu MODEL``, Debian's qemu-user; onnxruntime picks
its kernels by the CPUID the emulator reports, so it takes the AVX2 u8s8 path whose
16-bit sums saturate). Reports, per model and CPU, the share of lines read as FP32 reads
them on that CPU, and the accuracy. Emulation is slow (~0.1 s a line): keep --limit small.
Writes benchmarks/results/int8_cpus_NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.labelsets import load_labelled
from benchmarks.results_io import write_results
from distill.core import hardware
from distill.core.metrics import score, split_protocol
from distill.core.preprocess import pad_batch, preprocess
from distill.runtime.predict import Recognizer

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = ("fp32", "dynamic", "static 8-bit weights", "static 7-bit weights")


def read_all(models: dict[str, str], images: list) -> dict:
    """{variant: readings} of ``images`` on this CPU."""
    return {
        name: [r.text for r in Recognizer(m, threads=1).recognize(images)]
        for name, m in models.items()
    }


def make_models(fp32: str, calibration_images: list, out: Path) -> dict:
    from distill.export.quantize import quantize_dynamic, quantize_static

    cfg = Recognizer(fp32).preprocess_cfg
    lines = [preprocess(img, cfg) for img in calibration_images]
    calib = [pad_batch(lines[i : i + 16]) for i in range(0, len(lines), 16)]
    return {
        "fp32": fp32,
        "dynamic": str(quantize_dynamic(fp32, out / "dynamic.onnx")),
        "static 8-bit weights": str(
            quantize_static(fp32, out / "static8.onnx", calib, reduce_range=False)
        ),
        "static 7-bit weights": str(
            quantize_static(fp32, out / "static7.onnx", calib, reduce_range=True)
        ),
    }


def read_in_child(prefix: list[str], args, models: dict) -> dict:
    """``read_all`` in another process started through ``prefix`` (``qemu-x86_64 -cpu
    MODEL``: an emulated CPU), on the same lines; its stderr's tail if it fails."""
    cmd = [*prefix, sys.executable, "-m", "benchmarks.bench_int8_cpus", args.model, args.labels]
    cmd += ["--limit", str(args.limit), "--calibration", str(args.calibration)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the package, from any folder
    res = subprocess.run([*cmd, "--read", json.dumps(models)], capture_output=True, text=True,
                         env=env)  # fmt: skip
    if res.returncode:
        tail = "\n".join(res.stderr.strip().splitlines()[-5:])
        sys.exit(f"{' '.join(prefix) or 'the child'} run failed ({res.returncode}):\n{tail}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("labels", help="LABELFILE[:PROTOCOL]")
    ap.add_argument("--limit", type=int, default=120, help="lines read (calibration included)")
    ap.add_argument("--calibration", type=int, default=32)
    ap.add_argument("--emulate", default="Haswell-v4", help="qemu CPU model ('' for none)")
    ap.add_argument("--name", default=None)
    ap.add_argument("--read", default=None, help=argparse.SUPPRESS)  # JSON of models: read only
    args = ap.parse_args()
    path, protocol = split_protocol(args.labels)
    _, images, labels = load_labelled(path, args.limit)
    n = args.calibration
    if args.read:  # the emulated child: read and print
        print(json.dumps(read_all(json.loads(args.read), images[n:])))
        return

    labels = labels[n:]
    tmp = Path(tempfile.mkdtemp())
    models = make_models(args.model, images[:n], tmp)
    cpus = {f"this CPU ({hardware.describe()})": read_all(models, images[n:])}
    qemu = shutil.which("qemu-x86_64")
    if args.emulate and qemu:
        readings = read_in_child([qemu, "-cpu", args.emulate], args, models)
        cpus[f"emulated {args.emulate} (AVX2, no AVX-512, no VNNI)"] = readings
    elif args.emulate:
        print("qemu-x86_64 not found (apt-get install qemu-user): this CPU only", file=sys.stderr)

    rows = []
    for cpu, readings in cpus.items():
        for variant in VARIANTS:
            texts = readings[variant]
            same = sum(a == b for a, b in zip(texts, readings["fp32"])) / len(texts)
            acc = score(texts, labels, protocol)["acc"]
            rows.append({"cpu": cpu, "model": variant, "agreement_with_fp32": same, "acc": acc})
    name = args.name or Path(args.model).stem
    md = [
        f"# int8_cpus_{name}",
        "",
        f"`{args.model}` on {len(labels)} lines of `{path}` ({protocol}), after "
        f"{args.calibration} calibration lines; agreement: the share of lines read as FP32 "
        "reads them on the same CPU.",
        "",
        "| CPU | model | agreement with FP32 | accuracy |",
        "|---|---|---|---|",
        *(
            f"| {r['cpu']} | {r['model']} | {100 * r['agreement_with_fp32']:.1f}% | "
            f"{100 * r['acc']:.1f}% |"
            for r in rows
        ),
        "",
        "Command: `python -m benchmarks.bench_int8_cpus " + " ".join(sys.argv[1:]) + "`",
    ]
    report = {"model": args.model, "labels": args.labels, "rows": rows, "argv": sys.argv[1:]}
    write_results(f"int8_cpus_{name}", report, "\n".join(md) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
