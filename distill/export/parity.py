"""An exported model (ONNX or TorchScript) against the PyTorch network it came from."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from distill.core.ctc import greedy_decode, softmax
from distill.core.preprocess import PreprocessConfig, preprocess, valid_frames
from distill.export.torchscript import SUFFIXES as TORCHSCRIPT_SUFFIXES
from distill.models.checkpoint import TrainedNetwork

PARITY_WIDTHS = (32, 100, 320, 800)
PARITY_BATCHES = (1, 7)
PARITY_ATOL = 1e-3
NEAR_TIE = 1e-4  # a top-2 logit margin below this may flip under float rounding


def parity_inputs(
    cfg: PreprocessConfig, width: int, batch: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Realistic inputs for the parity check: rendered text lines of their own widths,
    padded to ``width``; returns the batch and the valid widths.

    Random noise would leave an untrained model with near-tied logits everywhere."""
    from distill.core.charset import Charset
    from distill.data.synth import SynthDataset

    fit = PreprocessConfig(**{**cfg.to_dict(), "max_width": -(-width // 4) * 4, "min_width": 4})
    synth_log = logging.getLogger("distill.data.synth")
    level = synth_log.level
    synth_log.setLevel(logging.WARNING)  # its font summary, once per shape, says nothing here
    try:
        ds = SynthDataset(Charset.resolve("ascii"), fit, size=batch, seed=seed, deterministic=True)
    finally:
        synth_log.setLevel(level)
    x = np.zeros((batch, cfg.channels, cfg.height, width), np.float32)
    widths = np.zeros(batch, np.int64)
    for i in range(batch):
        a = preprocess(ds.render(i), fit)[:, :, :width]
        x[i, :, :, : a.shape[2]] = a
        widths[i] = a.shape[2]
    widths[0] = width  # one line fills the batch
    return x, widths


@dataclass
class ParityReport:
    rows: list[dict] = field(default_factory=list)
    runtime: str = "onnxruntime"

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.rows)

    def __str__(self) -> str:
        lines = [f"parity {self.runtime} vs PyTorch:"]
        for r in self.rows:
            status = "ok" if r["ok"] else "FAIL"
            tie = f", {r['near_ties']} near-tie frame(s)" if r["near_ties"] else ""
            lines.append(
                f"  batch {r['batch']} width {r['width']:4d}: max |diff| {r['max_abs_diff']:.2e}, "
                f"strings {r['strings_equal']}/{r['batch']} identical{tie}  [{status}]"
            )
        return "\n".join(lines)


def _runner(path: Path):
    """``run(x, widths) -> logits`` of an exported model: ONNX or TorchScript (``.pt``)."""
    if path.suffix in TORCHSCRIPT_SUFFIXES:
        scripted = torch.jit.load(str(path), map_location="cpu").eval()

        def run(x, valid):
            with torch.no_grad():
                return scripted(torch.from_numpy(x), torch.from_numpy(valid)).float().numpy()

        return run, "TorchScript"
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return (lambda x, valid: sess.run(None, {"image": x, "widths": valid})[0]), "onnxruntime"


def check_parity(
    trained: TrainedNetwork,
    exported: str | Path,
    widths=None,
    batches=PARITY_BATCHES,
    atol: float = PARITY_ATOL,
) -> ParityReport:
    """Compare the exported model's and PyTorch's logits and decoded strings on several
    shapes, with lines of different valid widths in each batch; by default PARITY_WIDTHS
    plus the model's own ``max_width`` (1600 px for ~110-character document lines).

    A decoded string may differ only where PyTorch's own top-2 margin is a near tie
    (below 1e-4), which any float rounding can flip; that is reported, not hidden."""
    from distill.export.onnx import ExportError

    run, runtime = _runner(Path(exported))
    report = ParityReport(runtime=runtime)
    net = trained.net.eval()
    if widths is None:
        widths = sorted({*PARITY_WIDTHS, trained.preprocess.max_width})
    for b in batches:
        for w in widths:
            x, valid = parity_inputs(trained.preprocess, w, b)
            with torch.no_grad():
                ref = net(torch.from_numpy(x), torch.from_numpy(valid))[0].float().numpy()
            got = run(x, valid)
            if got.shape != ref.shape:
                raise ExportError(
                    f"{runtime} output shape {got.shape} != PyTorch {ref.shape} at {x.shape}"
                )
            diff = float(np.abs(got - ref).max())
            frames = valid_frames(valid, net.width_per_frame)
            ref_s = [i for i, _ in greedy_decode(softmax(ref), frames)]
            got_s = [i for i, _ in greedy_decode(softmax(got), frames)]
            top2 = np.sort(ref, axis=-1)[..., -2:]
            ties = (top2[..., 1] - top2[..., 0]) < NEAR_TIE
            flips = (ref.argmax(-1) != got.argmax(-1)) & ~ties
            equal = sum(a == c for a, c in zip(ref_s, got_s))
            ok = diff <= atol and (equal == b or not flips.any())
            report.rows.append(
                {
                    "batch": b,
                    "width": w,
                    "max_abs_diff": diff,
                    "strings_equal": equal,
                    "near_ties": int((ties & (ref.argmax(-1) != got.argmax(-1))).sum()),
                    "ok": bool(ok),
                }
            )
    return report
