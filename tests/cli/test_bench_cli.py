"""``trtkit bench``: ``--json`` prints one JSON object like the other commands; ``--json-file`` writes it.

Benchmarking needs a GPU (tests/runtime/test_runtime_gpu.py::test_cli_run_and_bench runs it on the double);
here the measurement is replaced by a fixed result so the command's output can be checked on any machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import trtkit.cli.bench as bench_cli
from trtkit.cli.main import main
from trtkit.tools.bench import BenchResult, Stats

STATS = Stats(1.0, 2.0, 2.0, 3.0, 3.5, 4.0, 5.0, 0.5)


def _result(rows: int) -> BenchResult:
    return BenchResult(shapes={"x": (rows, 4)}, iterations=100, total_seconds=0.2, throughput_qps=500.0,
                       latency=STATS, enqueue=STATS, h2d=STATS, gpu_compute=STATS, d2h=STATS, cuda_graph=True,
                       include_transfers=False)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An engine path whose benchmark gives two fixed results (shapes x:8x4 and x:64x4)."""

    @contextmanager
    def fake_load(*args: Any, **kwargs: Any) -> Iterator[object]:
        yield object()

    def fake_benchmark(le: object, *, shapes: Any = None, **kwargs: Any) -> list[BenchResult]:
        return [_result(8), _result(64)]

    monkeypatch.setattr(bench_cli, "load_engine", fake_load)
    monkeypatch.setattr(bench_cli, "benchmark", fake_benchmark)
    path = tmp_path / "m.engine"
    path.write_bytes(b"ftrt" + bytes(100))
    return path


def test_json_prints_one_object_instead_of_the_text_report(engine: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(engine), "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)  # nothing but the JSON on stdout
    assert isinstance(data, dict) and data["kind"] == "bench" and data["engine"] == str(engine)
    assert [r["shapes"]["x"] for r in data["results"]] == [[8, 4], [64, 4]]
    assert data["results"][0]["throughput_qps"] == 500.0
    assert "Throughput:" not in out


def test_json_file_writes_the_same_object_and_keeps_the_text_report(engine: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "reports" / "bench.json"
    assert main(["bench", str(engine), "--json-file", str(target)]) == 0
    out = capsys.readouterr().out
    assert "Throughput:" in out and f"wrote {target}" in out
    data = json.loads(target.read_text())
    assert data["kind"] == "bench" and [r["shapes"]["x"] for r in data["results"]] == [[8, 4], [64, 4]]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_json_and_json_file_together_keep_stdout_pure_json(engine: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "bench.json"
    assert main(["bench", str(engine), "--json", "--json-file", str(target)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == json.loads(target.read_text())
    assert f"wrote {target}" in out.err


@pytest.mark.parametrize("which", ["engine", "manifest"])
def test_json_file_never_overwrites_the_engine_or_its_manifest(engine: Path, which: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = engine.with_name(engine.name + ".manifest.json")
    manifest.write_text("{}")
    target = engine if which == "engine" else manifest
    before = target.read_bytes()
    assert main(["bench", str(engine), "--json-file", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("trtkit: error: --json-file") and "is also an input" in err
    assert len(err.strip().splitlines()) == 1
    assert target.read_bytes() == before


def test_json_takes_no_path_any_more(engine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(engine), "--json", str(tmp_path / "out.json")]) == 2
    assert not (tmp_path / "out.json").exists()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
