"""The numbered scripts in examples/ run as a user would run them: ``python examples/NN_name.py``.

01-04 need no GPU and run everywhere. 05-07 run engines: where this machine cannot, they must exit 0 after
printing why; on a machine that can, the ``gpu`` tests check they really ran.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trtkit.backend import get_backend
from trtkit.errors import DependencyError
from trtkit.runtime.compat import run_blocker

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

CPU_EXAMPLES = {
    "01_build_engine.py": ["backend:  tensorrt", "input:    image float32 -1x3x-1x-1", "output:   probs float32 -1x10",
                           "profile 0: image: 1x3x32x32 .. 4x3x64x64 .. 16x3x128x128"],
    "02_dynamic_shapes_profiles.py": ["profile 0: image min (1, 3, 32, 32) opt (1, 3, 64, 64) max (2, 3, 128, 128)",
                                      "profile 1: image min (8, 3, 64, 64)", "rejected as expected: profile 0"],
    "03_engine_cache.py": ["attempt 1: miss (built)", "attempt 2: hit", "tf32=False: miss (built)", "entries: 2"],
    "04_compare_with_onnxruntime.py": ["judged at fp32 tolerances: MISMATCH", "judged at bf16 tolerances: PASS",
                                       "--- engine vs ONNX Runtime:"],
}
GPU_EXAMPLES = ["05_run_numpy.py", "06_zero_copy_torch.py", "07_benchmark.py"]


def engine_blocker() -> str | None:
    try:
        return run_blocker(get_backend())
    except DependencyError as exc:
        return exc.message


@pytest.fixture
def any_backend() -> None:
    """The CPU examples build engines: they need TensorRT or TensorRT-RTX (no GPU)."""
    try:
        get_backend()
    except DependencyError as exc:
        pytest.skip(exc.message)


def run_example(name: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TRTKIT_CACHE_DIR=str(tmp_path / "cache"))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, str(EXAMPLES / name), str(out)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, check=False)


def test_every_example_is_covered() -> None:
    found = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py"))
    assert found == sorted([*CPU_EXAMPLES, *GPU_EXAMPLES])


@pytest.mark.parametrize("name", sorted(CPU_EXAMPLES))
def test_cpu_example_runs(name: str, tmp_path: Path, any_backend: None) -> None:
    if name.startswith("04_") and importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed (pip install onnxruntime)")
    proc = run_example(name, tmp_path)
    assert proc.returncode == 0, proc.stderr
    for line in CPU_EXAMPLES[name]:
        assert line in proc.stdout, proc.stdout


def test_compare_example_reports_engine_status_matching_this_machine(tmp_path: Path, any_backend: None) -> None:
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed (pip install onnxruntime)")
    proc = run_example("04_compare_with_onnxruntime.py", tmp_path)
    blocker = engine_blocker()
    if blocker is not None:
        assert "NOT_RUN (exit status 3)" in proc.stdout and blocker in proc.stdout
    else:
        assert "engine vs ONNX Runtime: PASS" in proc.stdout


@pytest.mark.parametrize("name", GPU_EXAMPLES)
def test_gpu_example_explains_why_it_cannot_run_here(name: str, tmp_path: Path) -> None:
    blocker = engine_blocker()
    if blocker is None:
        pytest.skip("engines can run on this machine; the gpu-marked test runs this example for real")
    proc = run_example(name, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("skipped: ")
    assert blocker in proc.stdout


@pytest.mark.gpu
@pytest.mark.parametrize("name", GPU_EXAMPLES)
def test_gpu_example_runs(name: str, tmp_path: Path) -> None:
    blocker = engine_blocker()
    if blocker is not None:
        pytest.skip(f"engines cannot run on this machine: {blocker}")
    if name.startswith("06_") and importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed (pip install torch)")
    proc = run_example(name, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "skipped:" not in proc.stdout


# ---- snippets in the documentation ---------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs"
SNIPPET_PAGES = ["index.md", "concepts", "guides", "dependencies.md"]
GPU_MARK = "# needs a GPU"


def doc_snippets() -> list[tuple[str, str]]:
    """Every ```python block of the pages above, except those whose first line is ``# needs a GPU``."""
    pages: list[Path] = []
    for entry in SNIPPET_PAGES:
        p = DOCS / entry
        pages.extend(sorted(p.rglob("*.md")) if p.is_dir() else [p])
    found = []
    for page in pages:
        blocks = page.read_text().split("```python\n")[1:]
        for i, block in enumerate(blocks):
            code = block.split("\n```", 1)[0]
            if not code.startswith(GPU_MARK):
                found.append((f"{page.relative_to(DOCS)}#{i}", code))
    return found


@pytest.mark.parametrize(("where", "code"), doc_snippets(), ids=[w for w, _ in doc_snippets()])
def test_doc_snippet_runs(where: str, code: str, tmp_path: Path, any_backend: None) -> None:
    env = dict(os.environ, TRTKIT_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, f"{where}:\n{proc.stderr}"
