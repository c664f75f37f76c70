"""Tools built on both the builder and the runtime: compare against ONNX Runtime, benchmark, list an engine's
layers, export for Triton, export PyTorch modules to ONNX, quantize, compare layer by layer, reduce a failing
model, report what the parser supports.

Each tool's own module holds its options and result types (``trtkit.tools.compare``, ``trtkit.tools.bench`` ...).
"""

from trtkit.tools.bench import BenchResult, benchmark
from trtkit.tools.capability import CapabilityReport, check_capability
from trtkit.tools.compare import CompareReport, Tolerance, compare, generate_inputs, run_onnxruntime
from trtkit.tools.layers import EngineLayers, engine_layers
from trtkit.tools.layerwise import LayerwiseReport, compare_layerwise
from trtkit.tools.quantize import check_conversion, quantize
from trtkit.tools.reduce import ReduceReport, reduce_model
from trtkit.tools.torch_export import export_onnx
from trtkit.tools.triton import export_triton

__all__ = [
    "BenchResult",
    "CapabilityReport",
    "CompareReport",
    "EngineLayers",
    "LayerwiseReport",
    "ReduceReport",
    "Tolerance",
    "benchmark",
    "check_capability",
    "check_conversion",
    "compare",
    "compare_layerwise",
    "engine_layers",
    "export_onnx",
    "export_triton",
    "generate_inputs",
    "quantize",
    "reduce_model",
    "run_onnxruntime",
]
