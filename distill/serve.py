"""``python -m distill.serve MODEL.onnx``: the OCR server (:mod:`distill.runtime.serve`),
under the name the Dockerfile and users rely on."""

import sys

from distill.runtime.serve.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
