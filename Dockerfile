# The OCR server without torch: the base install plus the serve extra (onnxruntime,
# OpenCV, FastAPI, uvicorn). scripts/serve_smoke.sh runs these same steps in CI.
#   docker build -t distill-ocr .
#   docker run -p 8000:8000 -v $PWD/models:/models -e MODEL=/models/en_student.onnx distill-ocr
# Whole pages (PP-OCRv6's text detector finds the lines):
#   docker build --build-arg EXTRAS=serve,page -t distill-ocr-page .
#   docker run -p 8000:8000 -e OCR_DETECTOR=ppocrv6 distill-ocr-page
# OCR_THREADS=0: the model gets all CPUs but one (that one serves HTTP and decodes images)
FROM python:3.11-slim
ARG EXTRAS=serve

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    MODEL=/app/models/en_student.onnx OCR_THREADS=0 PORT=8000
RUN apt-get update && apt-get install -y --no-install-recommends libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 ocr
WORKDIR /app
COPY pyproject.toml README.md ./
COPY distill ./distill
RUN pip install --no-cache-dir ".[${EXTRAS}]"
# the shipped model; mount another over /models and set MODEL to serve yours
COPY models/en_student.onnx models/en_student_int8.onnx ./models/
USER ocr
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=2)"
CMD ["sh", "-c", "exec python -m distill.serve \"$MODEL\" --host 0.0.0.0 --port \"$PORT\" --threads \"$OCR_THREADS\""]
