"""The frame KL from a label cache, dense against top-k, side by side in one run:

    python -m benchmarks.bench_topk_kl [--batch 32] [--frames 290] [--classes 6892,96]
        [--topk 8] [--rounds 5]

A cached teacher stores its top-k posteriors per frame (``python -m distill.teach``). The dense
path builds the full [B, T', C] distribution, resamples it onto the student's frames and
takes the KL over every class; ``losses.topk_kl`` reads the top-k form directly. For
each class count (6,892: the Chinese charset; 96: English) it times the KL term's
forward and backward both ways on random data of a wide training batch (teacher frames
at half the student's, as PP-OCRv6's are), checks that the values and gradients agree,
and writes benchmarks/results/topk_kl.{json,md}. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.results_io import write_results
from distill.core import hardware
from distill.kd.losses import FrameKL
from distill.kd.outputs import Outputs, TopKOutputs

ROOT = Path(__file__).resolve().parent.parent


def teacher_batch(b: int, t_student: int, c: int, k: int) -> tuple[TopKOutputs, torch.Tensor]:
    """A cache's teacher outputs (distinct top-k classes per frame) and student frames."""
    torch.manual_seed(0)
    t_teacher = t_student // 2
    index = torch.rand(b, t_teacher, c).topk(k, -1).indices
    probs = torch.rand(b, t_teacher, k).softmax(-1) * (0.9 + 0.1 * torch.rand(b, t_teacher, 1))
    rest = (1 - probs.sum(-1)).clamp(min=0) / (c - k)
    s_frames = torch.randint(t_student // 2, t_student + 1, (b,))
    s_frames[0] = t_student
    t_frames = (s_frames + 1) // 2
    return TopKOutputs(index, probs, rest, t_frames, c, None, None), s_frames


def time_kl(term, teacher, logits, s_frames, densify: bool) -> tuple[float, float, torch.Tensor]:
    """Seconds for one forward+backward (densifying the teacher first when asked)."""
    x = logits.clone().requires_grad_()
    start = time.perf_counter()
    t = Outputs(teacher.logits, teacher.frames) if densify else teacher
    loss = term(Outputs(x, s_frames), t, {})
    loss.backward()
    seconds = time.perf_counter() - start
    teacher._dense = None  # the next dense run builds it again, as every training step did
    return seconds, float(loss), x.grad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--frames", type=int, default=290, help="student frames (a 1160 px line)")
    ap.add_argument("--classes", default="6892,96")
    ap.add_argument("--topk", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    term = FrameKL(tau=1.0, align="interpolate")
    rows = []
    for c in (int(x) for x in args.classes.split(",")):
        teacher, s_frames = teacher_batch(args.batch, args.frames, c, args.topk)
        logits = torch.randn(args.batch, args.frames, c) * 3
        times = {"dense": [], "top-k": []}
        for _ in range(args.rounds):  # the two take turns
            for name in times:
                s, value, grad = time_kl(term, teacher, logits, s_frames, name == "dense")
                times[name].append(s)
                if name == "dense":
                    ref_value, ref_grad = value, grad
            gap = (grad - ref_grad).abs().max().item()
            if abs(value - ref_value) > 1e-4 * abs(ref_value) or gap > 1e-6:
                sys.exit(f"top-k KL disagrees with the dense KL: {value} vs {ref_value}, {gap}")
        dense, topk = (statistics.median(times[k]) for k in ("dense", "top-k"))
        rows.append(
            {
                "classes": c,
                "dense_s": dense,
                "topk_s": topk,
                "speedup": dense / topk,
                "kl": value,
                "max_grad_gap": gap,
            }
        )
        print(f"C={c}: dense {dense:.3f} s, top-k {topk:.3f} s ({dense / topk:.1f}x)", flush=True)
    report = {
        "argv": " ".join(sys.argv[1:]),
        "cpu": hardware.describe(),
        "rows": rows,
        **vars(args),
    }
    md = [
        "# Frame KL from a label cache: dense against top-k",
        "",
        f"`python -m benchmarks.bench_topk_kl {report['argv']}`",
        "",
        f"{hardware.describe()}, torch {torch.__version__}, {torch.get_num_threads()} threads. "
        f"FrameKL forward + backward (tau 1, resampled onto the student's frames) on a batch of "
        f"{args.batch} lines, {args.frames} student frames, top-{args.topk} teacher frames; "
        f"median of {args.rounds} runs each, the two paths taking turns. The dense path "
        "includes building the teacher's distribution, as each training step did.",
        "",
        "| classes | dense s | top-k s | speed-up | KL | max gradient gap |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['classes']} | {r['dense_s']:.3f} | {r['topk_s']:.3f} | {r['speedup']:.1f}x | "
            f"{r['kl']:.4f} | {r['max_grad_gap']:.1e} |"
        )
    write_results("topk_kl", report, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
