"""The main job (``make demo``): what the framework is for, on this machine, in a time budget.

    python -m distill.demo [--minutes 15] [--out logs/demo/RUN]

A user has a new kind of text (here: scene words on photographic backgrounds, rendered
by the built-in generator), a few labelled crops (300) and many unlabeled ones (2,100).

1. PP-OCRv6's recognizer (inside the rapidocr wheel: no teacher to train, nothing to
   download) reads all 2,400 once: its readings and per-frame posteriors go into a label
   cache (``python -m distill.teach``). The data and the cache are kept in
   ``logs/demo/data-300-2100`` for the next demo.
2. A short probe measures this machine's seconds per training step; the minutes left
   decide the steps, so a slow machine trains fewer steps instead of running longer.
3. The same small student (ShuffleNetV2-BiLSTM, 0.48M parameters), from the same start
   (``models/demo_student_init.ckpt``: short clean lines, labels only), trains twice for
   the same steps: on the 300 labels alone, and distilled from PP-OCRv6 through the
   cache of all 2,400 (``teacher=cache``). Both are scored on 300 other scene words.
4. The distilled student is exported to ONNX (FP32 + dynamic INT8, parity checked) and
   reads the sample images with the torch-free predictor, beside the shipped model.

Every step is a command of the framework, printed before it runs, so each can be run
again by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from distill.core import hardware

ROOT = Path(__file__).resolve().parent.parent
LABELLED, UNLABELED, VAL = 300, 2100, 300
PROBE_STEPS = 40
MIN_STEPS, MAX_STEPS = 150, 4000
# minutes kept for what follows the two runs: validation and test passes, export with
# its parity check and INT8, the predictor runs
RESERVE_MIN = 2.5


def run(cmd: list[str], log: Path | None = None) -> float:
    """Run a framework command (printed first); returns its wall time in seconds. Output
    goes to the terminal, or to ``log`` with its last lines shown on failure."""
    print("$ " + " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    start = time.monotonic()
    env = {**os.environ, "PROJECT_ROOT": str(ROOT)}
    if log is None:
        res = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env)
    else:
        with log.open("w") as f:
            res = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, stdout=f, stderr=f)
    if res.returncode:
        if log is not None:
            print("".join(log.read_text().splitlines(keepends=True)[-30:]), file=sys.stderr)
        raise SystemExit(f"demo: this step failed (exit {res.returncode}); see above")
    return time.monotonic() - start


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def student_run(out: Path, data: Path, name: str, steps: int, teacher: bool, extra=()):
    cmd = [
        sys.executable,
        "train.py",
        "experiment=demo",
        f"demo_data={data}",
        f"hydra.run.dir={out / name}",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={max(50, steps // 4)}",
        *extra,
    ]
    if teacher:
        cmd += ["teacher=cache", f"data.train=[{data / 'cache'}]"]
    return cmd


def probe_seconds_per_step(out: Path, data: Path) -> float:
    """Seconds per step of the distilled run (the slower of the two) on this machine."""
    extra = [
        "logger=[]",
        "callbacks=none",
        "test=false",
        "+trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "+trainer.enable_checkpointing=false",
    ]
    run(student_run(out, data, "probe", PROBE_STEPS, True, extra), log=out / "probe.log")
    summary = json.loads((out / "probe" / "metrics.json").read_text())
    return summary["wall_time_s"] / max(summary["steps"], 1)


def make_data(data: Path) -> None:
    """Scene words on disk as a user would have them: a label file of 300 crops, a folder
    of 2,100 crops without labels, and 300 more for validation; then PP-OCRv6's cache."""
    py = [sys.executable, "-m"]
    render = [*py, "distill.data.render_set", "--profile", "scene", "--lang", "en"]
    if not (data / "val" / "labels.tsv").is_file():
        run([*render, "--size", VAL, "--seed", 777, "--out", data / "val"])
    if not (data / "labelled.tsv").is_file():
        run([*render, "--size", LABELLED + UNLABELED, "--seed", 11, "--out", data / "words"])
        lines = (data / "words" / "labels.tsv").read_text(encoding="utf-8").splitlines()
        (data / "unlabeled").mkdir(exist_ok=True)
        for line in lines[LABELLED:]:  # their labels are thrown away
            rel = line.split("\t", 1)[0]
            os.replace(data / "words" / rel, data / "unlabeled" / Path(rel).name)
        kept = "".join(f"words/{line}\n" for line in lines[:LABELLED])
        (data / "labelled.tsv").write_text(kept, encoding="utf-8")
    teach = [*py, "distill.teach", "--teacher", "ppocrv6", "--charset", "ascii"]
    sources = ["--source", data / "labelled.tsv", "--source", data / "unlabeled"]
    run([*teach, *sources, "--out", data / "cache"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m distill.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--minutes", type=float, default=15.0, help="the whole job's budget")
    ap.add_argument("--out", type=Path, default=None, help="default: logs/demo/<time>")
    ap.add_argument("--steps", type=int, default=None, help="steps per student (no probe)")
    args = ap.parse_args(argv)
    start = time.monotonic()
    out = args.out or ROOT / "logs" / "demo" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable

    print(f"Machine: {hardware.describe()}")
    print(
        f"Plan ({args.minutes:g} min in all): render scene words, {LABELLED} labelled and "
        f"{UNLABELED} not; PP-OCRv6 reads them into a label cache (about 1-2 min, kept for "
        "the next demo); a probe times a training step; the same student trains the same "
        f"steps on the {LABELLED} labels alone and distilled from PP-OCRv6, in the minutes "
        "left; then export, INT8 and the predictor (about 2 min).\n"
        f"Output: {out}\n",
        flush=True,
    )
    data = out.parent / f"data-{LABELLED}-{UNLABELED}"  # kept: the next demo reuses it

    print("== 1. The data, and PP-OCRv6 reading it once (the label cache)", flush=True)
    make_data(data)

    so_far = minutes(time.monotonic() - start)
    print(f"\n== 2. Timing a training step on this machine ({so_far} so far)", flush=True)
    if args.steps:
        steps = args.steps
        print(f"   --steps {steps}: no probe")
    else:
        per_step = probe_seconds_per_step(out, data)
        left = args.minutes * 60 - (time.monotonic() - start) - RESERVE_MIN * 60
        steps = int(min(MAX_STEPS, max(MIN_STEPS, left / 2 / per_step)))
        print(
            f"   {per_step:.2f} s/step: each student trains {steps} steps "
            f"(about {minutes(steps * per_step)} each)",
            flush=True,
        )

    print("\n== 3. The same student on the labels alone, and distilled from PP-OCRv6", flush=True)
    runs = {"student_labels": False, "student_kd": True}
    for name, teacher in runs.items():
        t = run(student_run(out, data, name, steps, teacher), log=out / f"{name}.log")
        print(f"   {name}: {minutes(t)} (log: {out / f'{name}.log'})", flush=True)
    start_ckpt = ROOT / "models" / "demo_student_init.ckpt"
    val = data / "val" / "labels.tsv"
    eval_start = [py, "eval.py", f"ckpt_path={start_ckpt}", f"data.test=[{val}]"]
    run([*eval_start, f"hydra.run.dir={out / 'start'}"], log=out / "start.log")
    (start_scores,) = json.loads((out / "start" / "eval.json").read_text())["results"].values()
    rows = [("the start (models/demo_student_init.ckpt)", 0, start_scores)]
    for title, name in (
        (f"labels only ({LABELLED} labelled lines)", "student_labels"),
        (f"distilled from PP-OCRv6 ({LABELLED} + {UNLABELED} unlabeled)", "student_kd"),
    ):
        summary = json.loads((out / name / "metrics.json").read_text())
        metrics = {
            k[len("val/") :]: v for k, v in summary["metrics"].items() if k.startswith("val/")
        }
        rows.append((title, summary["steps"], metrics))
    table = [
        f"{VAL} scene words never trained on ({val}):",
        "",
        "| student | steps | word accuracy | CER |",
        "|---|---|---|---|",
        *(f"| {t} | {n} | {100 * m['acc']:.1f}% | {100 * m['cer']:.1f}% |" for t, n, m in rows),
    ]
    (out / "demo.md").write_text("\n".join(table) + "\n")
    print("\n" + "\n".join(table) + "\n")

    print("\n== 4. Export (ONNX FP32 + INT8, parity checked) and the torch-free predictor")
    onnx = out / "student_kd.onnx"
    run(
        [
            py,
            "export.py",
            f"ckpt={out / 'student_kd' / 'checkpoints' / 'last.ckpt'}",
            f"out={onnx}",
            "name=demo_student",
            "quantize=dynamic",
        ],
        log=out / "export.log",
    )
    log = (out / "export.log").read_text()
    print(log[log.index("exported ") :] if "exported " in log else log)
    samples = ROOT / "data" / "samples"
    predict = [py, "-m", "distill.predict"]
    run([*predict, onnx, *sorted((samples / "img").glob("00[0-7].png"))])
    for title, model in (
        ("distilled student FP32", onnx),
        ("distilled student INT8", out / "student_kd_int8.onnx"),
        (
            "the shipped model (models/en_student.onnx, 20,000 steps)",
            ROOT / "models/en_student.onnx",
        ),
    ):
        print(f"-- {title} on {samples / 'gt.txt'}:")
        run([*predict, model, samples / "gt.txt", "--quiet"])

    print(
        f"\nDone in {minutes(time.monotonic() - start)}. TensorBoard: make tensorboard "
        f"(logs under {out}). Next: README, 'Train on your own data'."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
