"""Engine files: raw plan + manifest, corruption detection."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.onnx_factory import conv_relu

from trtkit.backend import Backend
from trtkit.builder import BuiltEngine, build_engine
from trtkit.errors import EngineFileError
from trtkit.files import sha256_bytes
from trtkit.manifest import Manifest, TensorInfo, manifest_path, read_engine_file, write_engine_file


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


# ---- the plan and its manifest are replaced as one unit -------------------------------------------------------




def fake_engine(plan: bytes) -> tuple[bytes, Manifest]:
    """A plan (any bytes: these tests never load it) and a manifest describing it."""
    manifest = Manifest(
        backend="tensorrt_rtx", backend_version="1.0", target={"compute_capabilities": ["8.6"]},
        compatibility={}, onnx={"sha256": "0" * 64}, config={}, profiles=(),
        tensors=(TensorInfo("x", "input", "float32", (1, 3)), TensorInfo("y", "output", "float32", (1, 3))),
        plan_sha256=sha256_bytes(plan), plan_size=len(plan),
    )
    return plan, manifest


class _Crash(BaseException):
    """The process dies here: nothing after it runs, not even clean-up."""


_FILE_OPS = ("open", "write", "fsync", "fchmod", "close", "replace", "unlink", "rename", "ftruncate")


def _inject(monkeypatch: pytest.MonkeyPatch, fail_at: int | None, mode: str) -> list[str]:
    """Count the file-system calls; at call ``fail_at`` raise EIO (``mode="error"``) or crash for good."""
    calls: list[str] = []
    crashed = [False]
    for name in _FILE_OPS:
        real = getattr(os, name)

        def op(*args: object, _real: object = real, _name: str = name, **kwargs: object) -> object:
            if crashed[0]:
                raise _Crash()
            calls.append(_name)
            if fail_at is not None and len(calls) - 1 == fail_at:
                if mode == "crash":
                    crashed[0] = True
                    raise _Crash()
                raise OSError(5, "Input/output error")
            return _real(*args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(os, name, op)
    return calls


@pytest.mark.parametrize("mode", ["error", "crash"])
@pytest.mark.parametrize("has_old", [True, False])
def test_pair_is_old_or_new_after_a_fault_at_every_step(tmp_path: Path, mode: str, has_old: bool) -> None:
    old = fake_engine(b"OLD-PLAN" * 100)
    new = fake_engine(b"NEW-PLAN" * 150)
    with pytest.MonkeyPatch.context() as mp:
        calls = _inject(mp, None, mode)
        write_engine_file(tmp_path / "count.engine", *new)
    steps = len(calls)
    assert steps >= 6  # writes, syncs and renames of two files
    for k in range(steps):
        d = tmp_path / f"{mode}-{k}"
        d.mkdir()
        path = d / "m.engine"
        if has_old:
            write_engine_file(path, *old)
        with pytest.MonkeyPatch.context() as mp:
            _inject(mp, k, mode)
            try:
                write_engine_file(path, *new)
                completed = True
            except (EngineFileError, _Crash):  # a raw OSError would fail the test
                completed = False
        if completed:  # the fault hit a step whose failure does not matter (syncing the directory)
            assert read_engine_file(path) == new
        if has_old:  # tools that read only the plan (trtexec, Triton) always find a whole plan
            assert path.read_bytes() in (old[0], new[0]), f"fault at step {k} ({calls[k]})"
        try:
            got = read_engine_file(path)
        except EngineFileError as exc:
            assert not has_old and "does not exist" in str(exc), f"fault at step {k} ({calls[k]}): {exc}"
            continue
        assert got in (old, new), f"fault at step {k} ({calls[k]}) left a mixed pair"
        assert read_engine_file(path) == got  # stable once read (a pending plan is committed)
        if mode == "error":  # a writer that lived cleaned up its temporary files
            assert not list(d.glob("*.tmp"))


def test_a_later_write_removes_what_a_killed_writer_left(tmp_path: Path) -> None:
    path = tmp_path / "m.engine"
    write_engine_file(path, *fake_engine(b"A" * 10))
    with pytest.MonkeyPatch.context() as mp:
        _inject(mp, 9, "crash")
        with pytest.raises(_Crash):
            write_engine_file(path, *fake_engine(b"B" * 10))
    write_engine_file(path, *fake_engine(b"C" * 10))
    assert read_engine_file(path) == fake_engine(b"C" * 10)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".tmp")) == [
        "m.engine", "m.engine.manifest.json"]


def test_bare_plan_write_drops_the_old_manifest_first(tmp_path: Path) -> None:
    path = tmp_path / "m.engine"
    write_engine_file(path, *fake_engine(b"A" * 10))
    write_engine_file(path, b"BARE", None)
    assert read_engine_file(path) == (b"BARE", None)


def test_engine_file_write_faults_are_one_line_engine_file_errors(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    plan, manifest = fake_engine(b"P" * 64)
    with pytest.raises(EngineFileError, match="is a directory") as info:
        write_engine_file(tmp_path, plan, manifest)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(EngineFileError, match="parent of this path is a file") as info2:
        write_engine_file(tmp_path / "afile" / "m.engine", plan, manifest)

    def full(*args: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(EngineFileError, match="disk is full") as info3:
        write_engine_file(tmp_path / "m.engine", plan, manifest)
    monkeypatch.undo()
    for exc in (info, info2, info3):
        assert "\n" not in str(exc.value)
    assert not list(tmp_path.glob(".*"))  # nothing half-written left behind


# ---- schema: a wrong field is named; no mutation of the JSON escapes as another exception ------------------------


def _resign(data: dict[str, object]) -> dict[str, object]:
    """``data`` with a checksum matching its content, so only the schema can reject it."""
    body = {k: v for k, v in data.items() if k != "checksum"}
    return {**body, "checksum": hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                                               .encode()).hexdigest()}


@pytest.mark.parametrize(("edit", "field", "expected"), [
    (lambda d: d["tensors"][0].__setitem__("shape", [1, "3"]), "tensors[0].shape[1]", "an integer"),
    (lambda d: d["tensors"][1].__setitem__("mode", "inout"), "tensors[1].mode", "'input' or 'output'"),
    (lambda d: d["plan"].__setitem__("size", -5), "plan.size", "an integer >= 0"),
    (lambda d: d["plan"].pop("sha256"), "plan.sha256", "missing"),
    (lambda d: d.__setitem__("backend", "tensorrt"), "backend", "an object"),
    (lambda d: d.__setitem__("profiles", [{"x": [1, 2]}]), "profiles[0].x", "'min', 'opt', 'max'"),
])
def test_schema_names_the_wrong_field(tmp_path: Path, edit: object, field: str, expected: str) -> None:
    path = write_engine_file(tmp_path / "m.engine", *fake_engine(b"PLAN"))
    data = json.loads(manifest_path(path).read_text())
    edit(data)  # type: ignore[operator]
    manifest_path(path).write_text(json.dumps(_resign(data)))
    with pytest.raises(EngineFileError) as info:
        read_engine_file(path)
    assert f"'{field}'" in str(info.value) and expected in str(info.value)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def _paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


_VALID = fake_engine(b"PLAN" * 8)[1].to_dict()
_VALID["profiles"] = [{"x": {"min": [1, 3], "opt": [2, 3], "max": [4, 3]}}]
_VALID = _resign(_VALID)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), resign=st.booleans())
def test_mutated_manifest_reads_or_raises_engine_file_error(data: st.DataObject, resign: bool) -> None:
    doc: Any = copy.deepcopy(_VALID)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(doc)))
        if not path:
            doc = data.draw(_json)
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = data.draw(_json)
    if resign and isinstance(doc, dict):
        doc = _resign(doc)
    try:
        manifest = Manifest.from_dict(doc)
    except EngineFileError:
        return
    assert isinstance(manifest, Manifest)
    repr(manifest)
    Manifest.from_dict(manifest.to_dict())


def test_reprs_are_short_and_do_not_show_the_plan() -> None:
    plan, manifest = fake_engine(b"\x00PLAN" * 2_000_000)
    engine = BuiltEngine(plan=plan, manifest=manifest)
    for text in (repr(engine), engine._repr_html_(), repr(manifest), manifest._repr_html_()):
        assert len(text) < 2000 and "PLAN" not in text
    assert "9.5 MB" in repr(engine) and manifest.plan_sha256[:12] in repr(engine)
    assert "x: float32[1,3]" in repr(engine) and "tensorrt_rtx" in repr(manifest)


def test_html_repr_escapes_tensor_names() -> None:
    _plan, manifest = fake_engine(b"P")
    evil = dataclasses.replace(manifest, tensors=(TensorInfo("<script>\x1b[31m", "input", "float32", (1,)),))
    assert "<script>" not in evil._repr_html_() and "\x1b" not in repr(evil)
