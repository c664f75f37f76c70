"""Device memory for the runtime: streams and copies, pools, arrays and the TensorRT allocator adapters."""

from trtkit.runtime.memory.pools import *  # noqa: F403
from trtkit.runtime.memory.pools import __all__ as __all__
from trtkit.runtime.memory.pools import make_output_allocator as make_output_allocator
