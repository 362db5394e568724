"""``python -m distill.teach``: write a teacher-label cache (:mod:`distill.kd.teach`),
under the name the Makefile and users rely on."""

import sys

from distill.kd.teach import main

if __name__ == "__main__":
    sys.exit(main())
