"""How long `import trtkit` takes in a fresh interpreter, and what it pulls in.

    python benchmarks/import_time.py [--runs 20]

Prints the median and max wall time of `python -c "import trtkit"` minus an empty interpreter start, and the
heavy modules (TensorRT, CUDA, ONNX, NumPy) found in sys.modules afterwards (there should be none).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _run(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    base = [_run("pass") for _ in range(args.runs)]
    full = [_run("import trtkit") for _ in range(args.runs)]
    inner = subprocess.run(
        [sys.executable, "-c",
         "import time, sys; t = time.perf_counter(); import trtkit; d = time.perf_counter() - t; "
         "heavy = [m for m in ('tensorrt', 'tensorrt_rtx', 'cuda', 'onnx', 'numpy') if m in sys.modules]; "
         "print(d, ','.join(heavy))"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    result = {
        "python": sys.version.split()[0],
        "runs": args.runs,
        "import_seconds_in_process": float(inner[0]),
        "heavy_modules_loaded": inner[1] if len(inner) > 1 else "",
        "process_median_minus_empty_s": statistics.median(full) - statistics.median(base),
        "process_max_minus_empty_s": max(full) - statistics.median(base),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
