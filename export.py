"""Export a checkpoint to ONNX:

    python export.py ckpt=PATH [out=FILE.onnx] [quantize=none|dynamic|static]
    python export.py ckpt=PATH format=torchscript [out=FILE.pt]

Exports the recognizer alone (from a teacher, student or distillation checkpoint),
checks parity with PyTorch, and with quantize=... writes an INT8 model and reports its
accuracy and latency next to FP32 on the validation data. format=torchscript writes a
traced module for libtorch instead (same inputs and outputs, parity checked).
"""

import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

from distill.entry import export  # noqa: E402

if __name__ == "__main__":
    export()
