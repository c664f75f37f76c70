"""TEST ONLY. Python processes started with this directory on ``PYTHONPATH`` run TensorRT engines on the
runtime double (``tests/support/trt_double.py``) as the ``tensorrt`` backend.

Used for processes the tests cannot patch from inside: ``trtkit serve`` in a subprocess, and the stub of
Triton's Python backend that runs a ``--runtime python`` export's ``model.py``. Set ``TRTKIT_BACKEND=tensorrt``
beside it. Triton's Python-backend stub ignores ``PYTHONPATH``: there the ``model.py`` of a
``--runtime python`` export is made to run this file first (``support.triton_server.preload``). Elsewhere it is
plain ``sitecustomize`` injection.
"""

import os
import sys

_tests = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _tests not in sys.path:
    sys.path.append(_tests)

try:
    from support import trt_double

    from trtkit import backend as _registry
    from trtkit.backend import Backend

    _registry._backends["tensorrt"] = Backend.from_module("tensorrt", trt_double.make_module("tensorrt"))
except Exception as exc:  # pragma: no cover - shown in the server's log
    print(f"double_site: could not install the TensorRT runtime double: {exc!r}", file=sys.stderr)
