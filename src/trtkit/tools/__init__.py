"""Tools built on both the builder and the runtime: compare against ONNX Runtime, benchmark, list an engine's
layers, export for Triton, export PyTorch modules to ONNX, quantize.

Each tool's own module holds its options and result types (``trtkit.tools.compare``, ``trtkit.tools.bench`` ...).
"""

from trtkit.tools.bench import BenchResult, benchmark
from trtkit.tools.compare import CompareReport, Tolerance, compare, generate_inputs, run_onnxruntime
from trtkit.tools.layers import EngineLayers, engine_layers
from trtkit.tools.quantize import check_conversion, quantize
from trtkit.tools.torch_export import export_onnx
from trtkit.tools.triton import export_triton

__all__ = [
    "BenchResult",
    "CompareReport",
    "EngineLayers",
    "Tolerance",
    "benchmark",
    "check_conversion",
    "compare",
    "engine_layers",
    "export_onnx",
    "export_triton",
    "generate_inputs",
    "quantize",
    "run_onnxruntime",
]
