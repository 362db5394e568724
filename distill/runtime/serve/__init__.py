"""Serve an exported model over HTTP: ``python -m distill.serve MODEL.onnx``.

``app`` builds the FastAPI application (REST API, health, Prometheus metrics),
``batcher`` groups concurrent requests into batches, ``cache`` remembers results of
repeated images, ``inputs`` checks what clients send before any of it reaches the
model. Inference is the torch-free :class:`distill.runtime.predict.Recognizer`.
"""
