"""Export a trained network (never a teacher or an adapter) for deployment, from the
network and its metadata (:class:`distill.models.checkpoint.TrainedNetwork`):
``onnx`` (the graph and its metadata props), ``torchscript``, ``parity`` (the exported
model against PyTorch), ``quantize`` (INT8) and ``run`` (the export.py job)."""
