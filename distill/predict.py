"""``python -m distill.predict MODEL.onnx INPUT...``: the predictor's command line
(:mod:`distill.runtime.predict`), under the name scripts and users rely on."""

import sys

from distill.runtime.predict import main

if __name__ == "__main__":
    sys.exit(main())
