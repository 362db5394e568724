"""Distillation: what a teacher says (outputs), the teachers (checkpoint, ONNX, label
cache), the label cache's format and writer, the loss terms and the CTC target policies."""
