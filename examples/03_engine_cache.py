"""03 - The engine cache: build once, then load the stored engine while the inputs of the build are unchanged.

The key hashes the ONNX model and its weights, the build options that matter, the profiles, the backend and
its version, and the target GPU. Location: $TRTKIT_CACHE_DIR, else the user cache directory.
Needs a TensorRT backend; no GPU with TensorRT-RTX.

    python examples/03_engine_cache.py
"""

from __future__ import annotations

import sys
import time

from trtkit import BuildConfig, EngineCache
from trtkit.samples import TINY_CNN_SHAPES, tiny_cnn_path


def main() -> int:
    cache = EngineCache()
    print(f"cache: {cache.directory}")
    for attempt in (1, 2):
        start = time.perf_counter()
        engine, hit = cache.get_or_build(tiny_cnn_path(), shapes=TINY_CNN_SHAPES, progress=False)
        took = time.perf_counter() - start
        print(f"attempt {attempt}: {'hit' if hit else 'miss (built)'} in {took:.2f} s, "
              f"plan sha256 {engine.manifest.plan_sha256[:12]}")

    # Any option that changes the engine changes the key: this is a different entry.
    _, hit = cache.get_or_build(tiny_cnn_path(), shapes=TINY_CNN_SHAPES, config=BuildConfig(tf32=False),
                                progress=False)
    print(f"tf32=False: {'hit' if hit else 'miss (built)'}")
    print(f"entries: {len(cache.entries())}, {cache.size() / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
