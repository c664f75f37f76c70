"""Engine files: raw plan + manifest, corruption detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.onnx_factory import conv_relu

from trtkit.backend import Backend
from trtkit.builder import BuiltEngine, build_engine
from trtkit.errors import EngineFileError
from trtkit.manifest import manifest_path, read_engine_file


@pytest.fixture(scope="module")
def built(rtx: Backend) -> BuiltEngine:
    return build_engine(conv_relu(dims=(1, 3, 8, 8)), backend=rtx, progress=False)


def test_plan_is_written_byte_for_byte_with_manifest(built: BuiltEngine, tmp_path: Path) -> None:
    path = built.save(tmp_path / "m.engine")
    assert path.read_bytes() == built.plan
    data = json.loads(manifest_path(path).read_text())
    assert data["backend"]["name"] == "tensorrt_rtx"
    assert data["plan"]["size"] == len(built.plan)
    assert [t["name"] for t in data["tensors"]] == ["x", "y"]
    plan, manifest = read_engine_file(path)
    assert plan == built.plan and manifest == built.manifest


def test_bare_plan_loads_without_manifest(built: BuiltEngine, tmp_path: Path) -> None:
    bare = tmp_path / "bare.plan"
    bare.write_bytes(built.plan)
    plan, manifest = read_engine_file(bare)
    assert plan == built.plan and manifest is None
    with pytest.raises(EngineFileError, match="no manifest"):
        read_engine_file(bare, require_manifest=True)


def test_corrupt_plan_is_detected(built: BuiltEngine, tmp_path: Path) -> None:
    path = built.save(tmp_path / "m.engine")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(EngineFileError, match="SHA-256"):
        read_engine_file(path)


def test_truncated_plan_is_detected(built: BuiltEngine, tmp_path: Path) -> None:
    path = built.save(tmp_path / "m.engine")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(EngineFileError, match="truncated"):
        read_engine_file(path)


def test_edited_manifest_is_detected(built: BuiltEngine, tmp_path: Path) -> None:
    path = built.save(tmp_path / "m.engine")
    mp = manifest_path(path)
    data = json.loads(mp.read_text())
    data["tensors"][0]["shape"] = [2, 3, 8, 8]
    mp.write_text(json.dumps(data))
    with pytest.raises(EngineFileError, match="checksum"):
        read_engine_file(path)
    mp.write_text("{not json")
    with pytest.raises(EngineFileError, match="not valid JSON"):
        read_engine_file(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(EngineFileError, match="does not exist"):
        read_engine_file(tmp_path / "none.engine")
    (tmp_path / "empty.engine").write_bytes(b"")
    with pytest.raises(EngineFileError, match="empty"):
        read_engine_file(tmp_path / "empty.engine")
