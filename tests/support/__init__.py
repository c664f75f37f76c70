"""Test support: the TensorRT runtime test double and ONNX model factories."""
