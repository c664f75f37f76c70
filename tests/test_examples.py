"""The numbered scripts in examples/ run as a user would run them: ``python examples/NN_name.py``.

01-04 need no GPU and run everywhere. 05-07 run engines: where this machine cannot, they must exit 0 after
printing why; on a machine that can, the ``gpu`` tests check they really ran.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
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


def run_example(name: str, tmp_path: Path, *, out_dir: bool = True,
                temp_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python examples/NAME [OUT_DIR]`` with its own engine cache (and TMPDIR, when given)."""
    env = dict(os.environ, TRTKIT_CACHE_DIR=str(tmp_path / "cache"))
    if temp_dir is not None:
        env["TMPDIR"] = str(temp_dir)
    args = [sys.executable, str(EXAMPLES / name)]
    if out_dir:
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        args.append(str(out))
    return subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)


def empty_temp_dir(tmp_path: Path) -> Path:
    temp = tmp_path / "TMPDIR"
    temp.mkdir()
    return temp


# ONNX Runtime (1.32) keeps a one-line session id in $TMPDIR/.ses across runs: its own file, not a leftover.
NOT_OURS = {".ses"}


def left_behind(temp: Path) -> list[str]:
    """What a run left in its TMPDIR, apart from files other libraries keep there on purpose."""
    return sorted(str(p.relative_to(temp)) for p in temp.rglob("*") if p.name not in NOT_OURS)


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


@pytest.mark.parametrize("name", sorted(CPU_EXAMPLES))
def test_cpu_example_without_out_dir_leaves_no_temporary_files(name: str, tmp_path: Path, any_backend: None) -> None:
    if name.startswith("04_") and importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed (pip install onnxruntime)")
    temp = empty_temp_dir(tmp_path)
    proc = run_example(name, tmp_path, out_dir=False, temp_dir=temp)
    assert proc.returncode == 0, proc.stderr
    assert CPU_EXAMPLES[name][0] in proc.stdout, proc.stdout
    assert left_behind(temp) == []


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
    temp = empty_temp_dir(tmp_path)
    proc = run_example(name, tmp_path, temp_dir=temp)
    assert proc.returncode == 0, proc.stderr
    assert "skipped:" not in proc.stdout
    assert left_behind(temp) == []


# ---- snippets in the documentation ---------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs"
# ``<!-- needs: gpu, tensorrt -->`` on the line before a ```python block says what it needs: ``gpu`` (it runs in
# the GPU job, ``-m gpu``), ``triton-server`` (a Triton server at localhost:8000), or modules it imports.
NEEDS = re.compile(r"<!--\s*needs:\s*([^>]*?)\s*-->\s*\n```python\n")
TRITON_URL = "http://localhost:8000/v2/health/ready"


@dataclass(frozen=True)
class Snippet:
    """One ```python block of a docs page."""

    where: str
    code: str
    needs: tuple[str, ...]


def doc_snippets() -> list[Snippet]:
    """Every ```python block of every page under docs/, with what it needs."""
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        for i, start in enumerate(m.end() for m in re.finditer(r"```python\n", text)):
            code = text[start:].split("\n```", 1)[0] + "\n"
            head = text[:start]
            mark = NEEDS.search(head, max(0, len(head) - 200))
            needs = tuple(n.strip() for n in mark.group(1).split(",")) if mark and mark.end() == start else ()
            found.append(Snippet(f"{page.relative_to(DOCS)}#{i}", code, needs))
    return found


def _triton_server_up() -> bool:
    try:
        with urllib.request.urlopen(TRITON_URL, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _snippet_params() -> list[object]:
    return [pytest.param(s, id=s.where, marks=[pytest.mark.gpu] if "gpu" in s.needs else [])
            for s in doc_snippets()]


def test_every_docs_page_with_python_is_covered() -> None:
    pages = {s.where.split("#")[0] for s in doc_snippets()}
    for page in ("index.md", "precision.md", "runtime.md", "triton.md"):
        assert page in pages


def test_snippets_outside_the_gpu_job_are_most_of_them() -> None:
    """Marking is for what really needs a GPU or a server: the rest run on every CI machine."""
    unmarked = [s for s in doc_snippets() if not s.needs or set(s.needs) <= {"onnxruntime", "onnxconverter_common"}]
    assert len(unmarked) >= 8


@pytest.mark.parametrize("snippet", _snippet_params())
def test_doc_snippet_runs(snippet: Snippet, tmp_path: Path, any_backend: None) -> None:
    for need in snippet.needs:
        if need == "gpu":
            blocker = engine_blocker()
            if blocker is not None:
                pytest.skip(f"engines cannot run on this machine: {blocker}")
        elif need == "triton-server":
            if not _triton_server_up():
                pytest.skip(f"needs a running Triton Inference Server ({TRITON_URL})")
        elif importlib.util.find_spec(need.split(".")[0]) is None:
            pytest.skip(f"needs {need} (not installed)")
    temp = empty_temp_dir(tmp_path)
    env = dict(os.environ, TRTKIT_CACHE_DIR=str(tmp_path / "cache"), TMPDIR=str(temp))
    work = tmp_path / "work"  # the reader's current directory
    work.mkdir()
    proc = subprocess.run([sys.executable, "-c", snippet.code], env=env, cwd=work, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, f"{snippet.where}:\n{proc.stderr}"
    assert left_behind(temp) == [], f"{snippet.where} left temporary files behind"
