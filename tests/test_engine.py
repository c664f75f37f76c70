"""The facade on the CPU: how an Engine describes and saves itself, and what ``Engine.from_onnx`` does when a
cached engine no longer fits (rebuild once / warn / error). Engines are built for real with TensorRT-RTX; only
loading is replaced, since no engine can run here."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import onnx
import pytest
from support.onnx_factory import conv_relu

from trtkit import runtime
from trtkit.backend import Backend
from trtkit.builder import BuiltEngine, build_engine
from trtkit.cache import EngineCache
from trtkit.dtypes import lookup
from trtkit.engine import Engine
from trtkit.errors import EngineIncompatibleError
from trtkit.manifest import manifest_path, read_engine_file
from trtkit.profiles import ShapeRange
from trtkit.runtime import TensorSpec

SHAPES = {"x": (1, 3, 8, 8)}


class FakeDevice:
    name = "NVIDIA Fake 4090"
    index = 0


class FakeLoaded:
    """The attributes of a LoadedEngine that the facade reads."""

    def __init__(self, backend: Backend, plan: bytes = b"PLAN", manifest: Any = None,
                 inputs: tuple[TensorSpec, ...] = (), outputs: tuple[TensorSpec, ...] = (),
                 source: str = "model.engine") -> None:
        self.backend = backend
        self.plan = plan
        self.manifest = manifest
        self.inputs = inputs
        self.outputs = outputs
        self.source = source
        self.device_info = FakeDevice()
        self.device_index = 0
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _specs() -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    x = TensorSpec("images", "input", lookup("float16"), (-1, 3, 224, 224),
                   profiles=(ShapeRange((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224)),))
    y = TensorSpec("logits<cls>", "output", lookup("float32"), (-1, 1000))
    return (x,), (y,)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("facade") / "cnn.onnx"
    onnx.save(conv_relu(dims=(1, 3, 8, 8)), path)
    return path


@pytest.fixture(scope="module")
def built(rtx: Backend, model: Path) -> BuiltEngine:
    return build_engine(model, shapes=SHAPES, backend=rtx)


# ---- description ------------------------------------------------------------------------------------------


def test_repr_names_source_backend_device_and_every_tensor(rtx: Backend) -> None:
    ins, outs = _specs()
    text = repr(Engine(FakeLoaded(rtx, inputs=ins, outputs=outs)))  # type: ignore[arg-type]
    first, *rest = text.splitlines()
    assert "model.engine" in first and rtx.label in first and "cuda:0" in first and "NVIDIA Fake 4090" in first
    (images,) = [line for line in rest if "images" in line]
    assert "input" in images and "float16" in images and "-1, 3, 224, 224" in images
    assert "1x3x224x224" in images and "8x3x224x224" in images and "32x3x224x224" in images
    (logits,) = [line for line in rest if "logits<cls>" in line]
    assert "output" in logits and "float32" in logits and "-1, 1000" in logits


def test_repr_html_is_a_table_with_escaped_names(rtx: Backend) -> None:
    ins, outs = _specs()
    page = Engine(FakeLoaded(rtx, inputs=ins, outputs=outs, source="a<b>.engine"))._repr_html_()  # type: ignore[arg-type]
    assert page.count("<tr>") == 3  # header + one row per tensor
    assert "logits&lt;cls&gt;" in page and "logits<cls>" not in page
    assert "a&lt;b&gt;.engine" in page
    assert "NVIDIA Fake 4090" in page


def test_inputs_outputs_come_from_the_runtime(rtx: Backend) -> None:
    ins, outs = _specs()
    eng = Engine(FakeLoaded(rtx, inputs=ins, outputs=outs))  # type: ignore[arg-type]
    assert [t.name for t in eng.inputs] == ["images"] and [t.name for t in eng.outputs] == ["logits<cls>"]
    assert eng.inputs[0].profiles[0].max == (32, 3, 224, 224)
    assert eng.device == 0


# ---- saving ---------------------------------------------------------------------------------------------------


def test_save_writes_the_plan_byte_for_byte_and_its_manifest(rtx: Backend, built: BuiltEngine,
                                                            tmp_path: Path) -> None:
    eng = Engine(FakeLoaded(rtx, plan=built.plan, manifest=built.manifest))  # type: ignore[arg-type]
    path = eng.save(tmp_path / "out.engine")
    assert path.read_bytes() == built.plan
    plan, manifest = read_engine_file(path)
    assert plan == built.plan
    assert manifest is not None and manifest.to_dict() == built.manifest.to_dict()


def test_save_without_manifest_drops_a_stale_one(rtx: Backend, built: BuiltEngine, tmp_path: Path) -> None:
    target = tmp_path / "out.engine"
    built.save(target)
    assert manifest_path(target).exists()
    Engine(FakeLoaded(rtx, plan=b"bare plan bytes")).save(target)  # type: ignore[arg-type]
    assert target.read_bytes() == b"bare plan bytes"
    assert not manifest_path(target).exists()  # it described the old plan
    plan, manifest = read_engine_file(target)
    assert plan == b"bare plan bytes" and manifest is None


def test_save_interrupted_after_the_plan_never_pairs_it_with_the_old_manifest(
        rtx: Backend, built: BuiltEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill right after the new bare plan reaches the disk: what is there reads back as that plan, with no
    manifest that describes the old one."""
    import trtkit.engine
    import trtkit.manifest

    target = tmp_path / "out.engine"
    built.save(target)
    real = trtkit.manifest.atomic_write

    def write_then_die(path: Path, data: bytes, **kw: Any) -> None:
        real(path, data, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(trtkit.manifest, "atomic_write", write_then_die)
    monkeypatch.setattr(trtkit.engine, "atomic_write", write_then_die, raising=False)
    with pytest.raises(KeyboardInterrupt):
        Engine(FakeLoaded(rtx, plan=b"bare plan bytes")).save(target)  # type: ignore[arg-type]
    monkeypatch.undo()
    plan, manifest = read_engine_file(target)
    assert plan == b"bare plan bytes" and manifest is None


# ---- from_onnx: a cached engine that no longer fits ------------------------------------------------------------


class Loader:
    """Stands in for trtkit.runtime.load_engine: refuses the first ``refuse`` calls as incompatible."""

    def __init__(self, backend: Backend, refuse: int) -> None:
        self.backend = backend
        self.refuse = refuse
        self.loaded: list[BuiltEngine] = []

    def __call__(self, source: Any, *, device: int = 0, backend: Any = None, **_: Any) -> FakeLoaded:
        assert isinstance(source, BuiltEngine)
        self.loaded.append(source)
        if len(self.loaded) <= self.refuse:
            raise EngineIncompatibleError("built for compute capability 8.6; this GPU is 8.9")
        return FakeLoaded(self.backend, plan=source.plan, manifest=source.manifest)


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts real builds made through the cache."""
    from trtkit import cache

    calls: list[int] = []
    real = cache.build_engine

    def counting(*args: Any, **kwargs: Any) -> BuiltEngine:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "build_engine", counting)
    return calls


def _primed(rtx: Backend, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EngineCache:
    store = EngineCache(tmp_path / "cache")
    monkeypatch.setattr(runtime, "load_engine", Loader(rtx, refuse=0))
    Engine.from_onnx(model, shapes=SHAPES, cache=store, backend=rtx)
    assert len(store.entries()) == 1
    return store


def test_rebuild_rebuilds_once_and_logs(rtx: Backend, model: Path, tmp_path: Path, builds: list[int],
                                        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    store = _primed(rtx, model, tmp_path, monkeypatch)
    assert len(builds) == 1
    loader = Loader(rtx, refuse=1)
    monkeypatch.setattr(runtime, "load_engine", loader)
    with caplog.at_level(logging.INFO, logger="trtkit"), warnings.catch_warnings():
        warnings.simplefilter("error")  # "rebuild" must not warn
        eng = Engine.from_onnx(model, shapes=SHAPES, cache=store, backend=rtx)
    assert len(builds) == 2  # exactly one rebuild
    assert len(loader.loaded) == 2
    assert isinstance(eng.runtime, FakeLoaded) and eng.runtime.plan == loader.loaded[1].plan
    assert any("rebuilding" in r.getMessage() and "compute capability 8.6" in r.getMessage()
               for r in caplog.records)
    assert len(store.entries()) == 1  # the rebuilt engine replaced the old entry


def test_warn_rebuilds_with_a_runtime_warning(rtx: Backend, model: Path, tmp_path: Path, builds: list[int],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store = _primed(rtx, model, tmp_path, monkeypatch)
    loader = Loader(rtx, refuse=1)
    monkeypatch.setattr(runtime, "load_engine", loader)
    with pytest.warns(RuntimeWarning, match="does not fit here"):
        eng = Engine.from_onnx(model, shapes=SHAPES, cache=store, backend=rtx, on_incompatible="warn")
    assert len(builds) == 2 and len(loader.loaded) == 2
    assert isinstance(eng.runtime, FakeLoaded)


def test_error_raises_and_keeps_the_cache(rtx: Backend, model: Path, tmp_path: Path, builds: list[int],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store = _primed(rtx, model, tmp_path, monkeypatch)
    before = [e.path.read_bytes() for e in store.entries()]
    loader = Loader(rtx, refuse=1)
    monkeypatch.setattr(runtime, "load_engine", loader)
    with pytest.raises(EngineIncompatibleError, match=r"compute capability 8\.6"):
        Engine.from_onnx(model, shapes=SHAPES, cache=store, backend=rtx, on_incompatible="error")
    assert len(builds) == 1 and len(loader.loaded) == 1  # no rebuild
    assert [e.path.read_bytes() for e in store.entries()] == before


def test_rebuild_happens_only_once(rtx: Backend, model: Path, tmp_path: Path, builds: list[int],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = _primed(rtx, model, tmp_path, monkeypatch)
    loader = Loader(rtx, refuse=5)  # the rebuilt engine does not fit either
    monkeypatch.setattr(runtime, "load_engine", loader)
    with pytest.raises(EngineIncompatibleError):
        Engine.from_onnx(model, shapes=SHAPES, cache=store, backend=rtx)
    assert len(builds) == 2 and len(loader.loaded) == 2


def test_a_fresh_build_that_does_not_fit_is_reported_not_rebuilt(rtx: Backend, model: Path, tmp_path: Path,
                                                                 builds: list[int],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    loader = Loader(rtx, refuse=1)
    monkeypatch.setattr(runtime, "load_engine", loader)
    with pytest.raises(EngineIncompatibleError):
        Engine.from_onnx(model, shapes=SHAPES, cache=EngineCache(tmp_path / "c"), backend=rtx)
    assert len(builds) == 1 and len(loader.loaded) == 1


def test_unknown_policy_is_rejected(rtx: Backend, model: Path) -> None:
    with pytest.raises(ValueError, match="on_incompatible"):
        Engine.from_onnx(model, shapes=SHAPES, backend=rtx, on_incompatible="ignore")  # type: ignore[arg-type]


def test_from_torch_without_pytorch_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from trtkit.errors import DependencyError

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(DependencyError, match=r"pip install torch") as info:
        Engine.from_torch(object(), (), cache=False)
    assert "trtkit[" not in str(info.value)  # trtkit is not on PyPI: an extra cannot be installed by name
