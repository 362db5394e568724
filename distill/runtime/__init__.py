"""Reading lines with an exported model: the predictor, its ONNX graph tweaks and the
server. The base install: core + onnxruntime, no torch, Lightning or Hydra."""
