"""TEST ONLY. Python processes started with this directory on ``PYTHONPATH`` get a NumPy stand-in for
``trtkit.runtime.load_engine``: an "engine" whose contexts compute every output as ``2 * input + 1`` on the CPU.

Lets the tests run a ``--runtime python`` export's real ``model.py`` in a real Triton on a machine without a
GPU (where no engine can run). Triton's Python-backend stub ignores ``PYTHONPATH``: there the ``model.py`` of a
``--runtime python`` export is made to run this file first (``support.triton_server.preload``). Elsewhere it is
plain ``sitecustomize`` injection.
"""

import sys

try:
    import numpy as np

    import trtkit.runtime

    class _Context:
        def __init__(self, engine):
            self.engine = engine

        def infer(self, feed):
            x = next(iter(feed.values()))
            self.engine.calls.append(len(x))
            return {"y": (np.asarray(x) * 2 + 1).astype(np.float32)}

        def close(self):
            pass

    class _Engine:
        def __init__(self, path, device=0, **_):
            self.path, self.device, self.calls = path, device, []

        def create_context(self):
            return _Context(self)

        def ensure_current(self):
            pass

        def close(self):
            pass

    trtkit.runtime.load_engine = _Engine
except Exception as exc:  # pragma: no cover - shown in the server's log
    print(f"numpy_site: could not install the stand-in engine: {exc!r}", file=sys.stderr)
