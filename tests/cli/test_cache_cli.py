"""``trtkit cache list|prune|clear`` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.onnx_factory import conv_relu

from trtkit.backend import Backend
from trtkit.cache import EngineCache
from trtkit.cli import main


@pytest.fixture
def filled(rtx: Backend, tmp_path: Path) -> EngineCache:
    cache = EngineCache(tmp_path / "c")
    for seed in range(2):
        cache.get_or_build(conv_relu(dims=(1, 3, 8, 8), seed=seed), backend=rtx, progress=False)
    return cache


def test_list_prints_one_line_per_entry(filled: EngineCache, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "list", "--dir", str(filled.directory)]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    keys = {e.key for e in filled.entries()}
    assert len(lines) == 2 and {line.split()[0] for line in lines} == keys
    assert all("tensorrt_rtx" in line and "x:1x3x8x8" in line for line in lines)
    assert "2 engines" in out.err

    assert main(["cache", "list", "--dir", str(filled.directory), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {e["key"] for e in data["entries"]} == keys and data["size"] == filled.size()


def test_prune_to_a_size_removes_least_recently_used(filled: EngineCache,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    oldest, newest = filled.entries()
    assert main(["cache", "prune", "--dir", str(filled.directory), "--max-bytes", str(newest.size),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["removed"] == [oldest.key]
    assert [e.key for e in filled.entries()] == [newest.key]


def test_clear_removes_everything_and_stray_files(filled: EngineCache,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    stray = filled.directory / f".{'a' * 32}.engine.x1y2.tmp"
    stray.write_bytes(b"half a plan")
    assert main(["cache", "clear", "--dir", str(filled.directory)]) == 0
    assert filled.entries() == [] and not stray.exists()
    assert list(filled.directory.iterdir()) == []
    assert "2 engines removed" in capsys.readouterr().err


def test_cache_dir_that_is_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    assert main(["cache", "list", "--dir", str(tmp_path / "f")]) == 1
    err = capsys.readouterr().err
    assert "is a file, not a directory" in err and len(err.strip().splitlines()) == 1
    assert main(["cache", "prune", "--dir", str(tmp_path), "--max-bytes", "lots"]) == 1
    assert "'lots'" in capsys.readouterr().err


def test_empty_or_missing_cache_lists_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "list", "--dir", str(tmp_path / "none")]) == 0
    out = capsys.readouterr()
    assert out.out == "" and "0 engines" in out.err
    assert not (tmp_path / "none").exists()  # listing creates nothing


def test_cache_is_a_trtkit_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert any(line.split()[:1] == ["cache"] for line in capsys.readouterr().out.splitlines())
