"""The runtime: an engine file (plan + manifest) is deserialized and run on stream-ordered device memory.

It never imports :mod:`trtkit.builder`; the two share only the engine file (:mod:`trtkit.manifest`).
"""

from trtkit.runtime.compat import check_compatibility
from trtkit.runtime.context import Context
from trtkit.runtime.io import describe_array, normalize_inputs
from trtkit.runtime.loading import LoadedEngine, load_engine
from trtkit.runtime.results import InferHandle
from trtkit.runtime.tensors import ArrayInfo, TensorSpec, describe_tensors, select_profile, validate_inputs

__all__ = [
    "ArrayInfo",
    "Context",
    "InferHandle",
    "LoadedEngine",
    "TensorSpec",
    "check_compatibility",
    "describe_array",
    "describe_tensors",
    "load_engine",
    "normalize_inputs",
    "select_profile",
    "validate_inputs",
]
