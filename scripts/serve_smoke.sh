#!/usr/bin/env bash
# The Dockerfile's install and start steps, outside a container: a fresh venv with the
# base install + the serve extra (no torch), the server on a free port with the shipped
# model, then a health check, a line read through the API, and the metrics. Exits
# non-zero, saying where, if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/en_student.onnx}
VENV=$(mktemp -d)/venv
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check '.[serve]'
if "$VENV/bin/pip" list 2>/dev/null | grep -qi '^torch '; then
  echo "serve smoke: torch was installed by .[serve]" >&2; exit 1
fi
PORT=$("$VENV/bin/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
OCR_THREADS=1 "$VENV/bin/python" -m distill.serve "$MODEL" --port "$PORT" > "$VENV/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 60); do
  curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$PORT/healthz" || { echo "serve smoke: no health"; cat "$VENV/server.log"; exit 1; }
echo
OUT=$(curl -sf "http://127.0.0.1:$PORT/api/v1/ocr" -F file=@data/samples/img/000.png)
echo "$OUT"
echo "$OUT" | grep -q '"text"' || { echo "serve smoke: no text in the answer"; exit 1; }
curl -sf "http://127.0.0.1:$PORT/metrics" | grep -q 'ocr_requests_total{path="/api/v1/ocr",status="200"} 1.0' \
  || { echo "serve smoke: the request is not in /metrics"; exit 1; }
echo "serve smoke: ok (torch-free install, health, OCR, metrics)"
