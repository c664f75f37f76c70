"""Runtime checks that need no CUDA: specs, profile selection, validation, compatibility, loading errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import trt_double

from trtkit.backend import Backend
from trtkit.cli.main import main
from trtkit.dtypes import lookup
from trtkit.errors import DependencyError, EngineFileError, EngineIncompatibleError, ExecutionError, InputError
from trtkit.gpu import DeviceInfo
from trtkit.manifest import Manifest, TensorInfo, write_engine_file
from trtkit.profiles import Profile, ShapeRange
from trtkit.runtime import (
    ArrayInfo,
    TensorSpec,
    check_compatibility,
    describe_array,
    describe_tensors,
    load_engine,
    normalize_inputs,
    select_profile,
    validate_inputs,
)
from trtkit.runtime.loading import _deserialize
from trtkit.runtime.shapes import ShapeTracker
from trtkit.tools.bench import summarize


def _be(flavor: str = "tensorrt", **kw: object) -> Backend:
    mod = trt_double.make_module(flavor, **kw)  # type: ignore[arg-type]
    return Backend.from_module(flavor, mod)  # type: ignore[arg-type]


def _engine(be: Backend, plan: bytes):
    rt = be.trt.Runtime(be.logger)
    return _deserialize(be, rt, plan, "test plan")


TWO_PROFILES = trt_double.make_plan(profiles=[{"x": ((1, 4), (8, 4), (64, 4))}, {"x": ((1, 4), (2, 4), (4, 4))}])


def _spec(name: str, ranges: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]],
          shape: tuple[int, ...] = (-1, 4)) -> TensorSpec:
    return TensorSpec(name, "input", lookup("float32"), shape, profiles=tuple(ShapeRange(*r) for r in ranges))


# ---- specs -------------------------------------------------------------------------------------------------


def test_describe_tensors_reads_names_dtypes_dynamic_dims_and_ranges() -> None:
    be = _be()
    specs = describe_tensors(_engine(be, TWO_PROFILES))
    assert [(s.name, s.mode, s.dtype.name, s.shape) for s in specs] == [
        ("x", "input", "float32", (-1, 4)), ("y", "output", "float32", (-1, 4))]
    assert specs[0].profiles == (ShapeRange((1, 4), (8, 4), (64, 4)), ShapeRange((1, 4), (2, 4), (4, 4)))
    assert specs[0].is_dynamic and specs[1].profiles == ()


def test_corrupt_plan_is_an_engine_file_error_with_tensorrt_log() -> None:
    be = _be()
    with pytest.raises(EngineFileError) as info:
        _engine(be, bytes(range(256)) * 4)
    assert info.value.tensorrt_log and "corrupt" in str(info.value)
    with pytest.raises(EngineFileError, match="too small to be a TensorRT plan"):
        _engine(be, b"not a plan at all")


def test_truncated_plan_is_an_engine_file_error() -> None:
    with pytest.raises(EngineFileError):
        _engine(_be(), TWO_PROFILES[: len(TWO_PROFILES) // 2])


def test_plan_of_other_version_is_incompatible() -> None:
    with pytest.raises(EngineIncompatibleError, match="another TensorRT version"):
        _engine(_be(version="10.1.0"), TWO_PROFILES)


def test_rtx_engine_validity_rejects_before_deserializing() -> None:
    be = _be("tensorrt_rtx", device_cc=(8, 6))
    assert be.features.engine_validity
    plan = trt_double.make_plan(compute_capabilities=["SM120"], version="1.7.1.116")
    with pytest.raises(EngineIncompatibleError, match="UNSUPPORTED_CC"):
        _engine(be, plan)
    ok = trt_double.make_plan(compute_capabilities=["SM86"], version="1.7.1.116")
    assert _engine(be, ok).num_io_tensors == 2


# ---- profile selection -------------------------------------------------------------------------------------


def test_select_profile_picks_the_tightest_containing_profile() -> None:
    x = _spec("x", [((1, 4), (8, 4), (64, 4)), ((1, 4), (2, 4), (4, 4))])
    assert select_profile([x], {"x": (3, 4)}) == 1
    assert select_profile([x], {"x": (5, 4)}) == 0
    assert select_profile([x], {"x": (64, 4)}) == 0


def test_select_profile_prefers_the_active_profile_on_ties() -> None:
    x = _spec("x", [((1, 4), (2, 4), (4, 4)), ((1, 4), (2, 4), (4, 4))])
    assert select_profile([x], {"x": (2, 4)}) == 0
    assert select_profile([x], {"x": (2, 4)}, prefer=1) == 1


def test_select_profile_error_lists_every_profile() -> None:
    x = _spec("x", [((1, 4), (8, 4), (64, 4)), ((1, 4), (2, 4), (4, 4))])
    with pytest.raises(InputError) as info:
        select_profile([x], {"x": (100, 4)})
    msg = str(info.value)
    assert "x 100x4" in msg and "profile 0: x: 1x4 .. 8x4 .. 64x4" in msg and "profile 1:" in msg


# ---- input validation --------------------------------------------------------------------------------------


def test_normalize_inputs_forms() -> None:
    specs = [_spec("a", [((1,), (1,), (1,))], (1,)), _spec("b", [((1,), (1,), (1,))], (1,))]
    assert normalize_inputs(specs, [1, 2]) == {"a": 1, "b": 2}
    assert normalize_inputs(specs, {"b": 2, "a": 1}) == {"a": 1, "b": 2}
    assert normalize_inputs(specs[:1], "one") == {"a": "one"}
    with pytest.raises(InputError, match="has 2 inputs"):
        normalize_inputs(specs, np.zeros(1))
    with pytest.raises(InputError, match="got 1 input arrays"):
        normalize_inputs(specs, [1])


def test_validate_reports_every_problem_at_once() -> None:
    x = _spec("input", [((1, 4), (8, 4), (64, 4))])
    m = _spec("mask", [((1, 4), (8, 4), (64, 4))])
    arrays = {
        "inptu": describe_array(np.zeros((2, 4), np.float32)),
        "mask": ArrayInfo("device", (2, 5), "float64", contiguous=False, device=1),
    }
    with pytest.raises(InputError) as info:
        validate_inputs([x, m], arrays, device=0)
    msg = str(info.value)
    assert "unknown input 'inptu' (did you mean 'input'?)" in msg
    assert "missing input input" in msg
    assert "dtype float64; the engine expects float32" in msg
    assert "dim 1 is 5; the engine fixes it to 4" in msg
    assert "not C-contiguous" in msg
    assert "on CUDA device 1; the engine lives on device 0" in msg


def test_validate_rank_and_noncontiguous_numpy() -> None:
    x = _spec("x", [((1, 4), (8, 4), (64, 4))])
    with pytest.raises(InputError, match="rank 3"):
        validate_inputs([x], {"x": describe_array(np.zeros((1, 2, 4), np.float32))}, device=0)
    strided = np.zeros((4, 8), np.float32)[:, ::2]
    with pytest.raises(InputError, match="not C-contiguous"):
        validate_inputs([x], {"x": describe_array(strided)}, device=0)
    validate_inputs([x], {"x": describe_array(np.zeros((3, 4), np.float32))}, device=0)


def test_describe_array_accepts_lists_and_detects_plain_numpy_as_not_pinned() -> None:
    info = describe_array([[1.0, 2.0]])
    assert info.kind == "host" and info.shape == (1, 2) and info.dtype == "float64" and not info.pinned


# ---- compatibility -----------------------------------------------------------------------------------------


def _manifest(backend: str = "tensorrt", version: str = trt_double.__version__, target: dict | None = None,
              compat: dict | None = None) -> Manifest:
    return Manifest(backend=backend, backend_version=version,
                    target=target if target is not None else {"gpu": "NVIDIA H200", "compute_capability": "9.0"},
                    compatibility=compat or {"hardware_compatibility": "none", "version_compatible": False},
                    onnx={"name": "model.onnx"}, config={}, profiles=(Profile({"x": ((1, 4), (8, 4), (64, 4))}),),
                    tensors=(TensorInfo("x", "input", "float32", (-1, 4)), TensorInfo("y", "output", "float32",
                                                                                      (-1, 4))),
                    plan_sha256="0", plan_size=1)


H200 = DeviceInfo(0, "NVIDIA H200", (9, 0), 1 << 37)
A100 = DeviceInfo(0, "NVIDIA A100", (8, 0), 1 << 35)


def test_compatible_manifest_passes() -> None:
    check_compatibility(_manifest(), _be(), H200)
    check_compatibility(None, _be(), H200)


def test_backend_mismatch_says_what_differs_and_how_to_rebuild() -> None:
    with pytest.raises(EngineIncompatibleError) as info:
        check_compatibility(_manifest(backend="tensorrt_rtx", version="1.7.1.116"), _be(), H200)
    assert "tensorrt_rtx 1.7.1.116" in str(info.value) and "Rebuild" in str(info.value)


def test_version_mismatch_and_version_compatible() -> None:
    with pytest.raises(EngineIncompatibleError, match="tied to the TensorRT version"):
        check_compatibility(_manifest(version="10.3.0"), _be(), H200)
    vc = {"hardware_compatibility": "none", "version_compatible": True}
    check_compatibility(_manifest(version="10.3.0", compat=vc), _be(), H200)
    with pytest.raises(EngineIncompatibleError):
        check_compatibility(_manifest(version="9.3.0", compat=vc), _be(), H200)


def test_compute_capability_mismatch_and_ampere_plus() -> None:
    with pytest.raises(EngineIncompatibleError, match=r"compute capability 9.0 .*NVIDIA A100 with 8.0"):
        check_compatibility(_manifest(), _be(), A100)
    hw = {"hardware_compatibility": "ampere_plus", "version_compatible": False}
    check_compatibility(_manifest(compat=hw), _be(), A100)


def test_rtx_targets_and_runtime_limits() -> None:
    be = _be("tensorrt_rtx")
    rtx = _manifest(backend="tensorrt_rtx", version="1.7.1.116", target={"compute_capabilities": ["SM120"]})
    with pytest.raises(EngineIncompatibleError, match=r"does not run|cannot run"):
        check_compatibility(rtx, be, H200)  # RTX refuses 9.0 whatever the manifest says
    ada = DeviceInfo(0, "RTX 4090", (8, 9), 1 << 34)
    with pytest.raises(EngineIncompatibleError, match="targets SM120"):
        check_compatibility(rtx, be, ada)
    check_compatibility(_manifest(backend="tensorrt_rtx", version="1.7.1.116",
                                  target={"compute_capabilities": ["SM89", "SM120"]}), be, ada)


def test_load_engine_reports_file_errors_before_touching_cuda(tmp_path: Path) -> None:
    with pytest.raises(EngineFileError, match="does not exist"):
        load_engine(tmp_path / "missing.engine", backend=_be())
    plan = TWO_PROFILES
    path = write_engine_file(tmp_path / "m.engine", plan, _manifest().__class__(
        **{**_manifest().__dict__, "plan_size": len(plan), "plan_sha256": __import__("hashlib").sha256(plan)
           .hexdigest()}))
    path.write_bytes(plan[:-10])
    with pytest.raises(EngineFileError, match="truncated"):
        load_engine(path, backend=_be())
    with pytest.raises(EngineFileError, match="empty"):
        load_engine(b"", backend=_be())


def test_load_engine_with_wrong_backend_is_incompatible_before_cuda(tmp_path: Path) -> None:
    plan = TWO_PROFILES
    m = _manifest(backend="tensorrt_rtx", version="1.7.1.116")
    m = m.__class__(**{**m.__dict__, "plan_size": len(plan),
                       "plan_sha256": __import__("hashlib").sha256(plan).hexdigest()})
    path = write_engine_file(tmp_path / "m.engine", plan, m)
    with pytest.raises(EngineIncompatibleError):
        load_engine(path, backend=_be())


# ---- the double follows TensorRT's preconditions -----------------------------------------------------------


def test_double_rejects_shapes_outside_profile_and_execute_without_shapes() -> None:
    be = _be()
    eng = _engine(be, TWO_PROFILES)
    ctx = eng.create_execution_context(be.trt.ExecutionContextAllocationStrategy.USER_MANAGED)
    assert ctx.infer_shapes() == ["x"]
    assert ctx.execute_async_v3(1) is False
    assert ctx.set_optimization_profile_async(1, 1)
    assert ctx.set_input_shape("x", (5, 4)) is False  # profile 1 max is 4x4
    assert ctx.set_input_shape("x", (4, 4)) and ctx.infer_shapes() == []
    assert tuple(ctx.get_tensor_shape("y")) == (4, 4)
    assert ctx.set_optimization_profile_async(2, 1) is False
    assert ctx.set_tensor_address("nope", 256) is False


def test_failed_shape_update_is_not_mistaken_for_the_last_good_one() -> None:
    # A call whose shapes TensorRT rejects leaves the context (and the shape-tensor host buffer) holding its
    # values: the next call with the previous shapes must set them again, not skip as "unchanged".
    be = _be()
    plan = trt_double.make_plan(
        op="reshape", inputs=[("x", "FLOAT", (-1,)), ("shape", "INT64", (2,))], outputs=[("y", "FLOAT", (-1, -1))],
        shape_tensors=["shape"], profiles=[{"x": ((1,), (12,), (64,)), "shape": ((1, 1), (3, 4), (8, 8))}])
    eng = _engine(be, plan)
    specs = describe_tensors(eng)
    ctx = eng.create_execution_context()
    host = {"shape": np.zeros(2, np.int64)}

    def bind(name: str, addr: int) -> None:
        assert ctx.set_tensor_address(name, addr)

    tracker = ShapeTracker(be, ctx, specs[:2], specs[2:], [4], host, None, lambda h: None,  # type: ignore[arg-type]
                           user_memory=False)
    good = ((12,), (2,), (3, 4))
    tracker.update(good, good[:2], good[2:], None, 0, bind)  # type: ignore[arg-type]
    bad = ((12,), (2,), (5, 5))  # inside the profile, but not 12 elements: infer_shapes raises
    with pytest.raises(ExecutionError, match=r"infer_shapes\(\) failed"):
        tracker.update(bad, bad[:2], bad[2:], None, 0, bind)  # type: ignore[arg-type]
    assert tracker.key is None and tracker.state is None
    state, _ = tracker.update(good, good[:2], good[2:], None, 0, bind)  # type: ignore[arg-type]
    assert tracker.key == good and state.out_shapes == ((3, 4),) and list(host["shape"]) == [3, 4]
    assert tuple(ctx.get_tensor_shape("y")) == (3, 4)


# ---- benchmark statistics and CLI ----------------------------------------------------------------------------


def test_summarize_percentiles() -> None:
    st = summarize([float(i) for i in range(1, 101)])
    assert (st.min, st.median, st.p90, st.p95, st.p99, st.max) == (1.0, 50.5, 90.0, 95.0, 99.0, 100.0)
    assert st.mean == pytest.approx(50.5)


def test_cli_run_without_inputs_fails_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    trt_double_backend: Backend) -> None:
    eng = tmp_path / "m.engine"
    eng.write_bytes(TWO_PROFILES)
    assert main(["run", str(eng)]) == 1
    assert "no inputs given" in capsys.readouterr().err


def test_cli_bench_on_missing_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tmp_path / "none.engine")]) == 1
    assert "does not exist" in capsys.readouterr().err
    json.dumps({})  # keep json imported for symmetry with the gpu tests


def test_rtx_validity_diagnostics_are_named(rtx: Backend) -> None:
    from trtkit.runtime.compat import validity_reasons

    diag = rtx.trt.EngineInvalidityDiagnostics  # type: ignore[attr-defined]
    bits = int(diag.UNSUPPORTED_CC) | int(diag.OLD_CUDA_DRIVER)
    assert validity_reasons(rtx, bits) == ["UNSUPPORTED_CC", "OLD_CUDA_DRIVER"]
    assert validity_reasons(rtx, 0) == []


# ---- real TensorRT's rules, before any CUDA work -------------------------------------------------------------


def test_tensorrt_10_0_is_refused_with_the_upgrade_command() -> None:
    with pytest.raises(DependencyError, match=r"TensorRT 10\.0\.1 is too old.*tensorrt>=10\.1"):
        _be(version="10.0.1")
    assert _be(version="10.1.0").version == "10.1.0"


def test_failing_runtime_factory_is_an_execution_error_with_the_log() -> None:
    be = _be(fail_factory=True)
    with pytest.raises(ExecutionError, match="could not create a Runtime") as info:
        be.create_runtime()
    assert any("CUDA initialization failure" in line for line in info.value.tensorrt_log)


@pytest.mark.parametrize(("version", "index"), [("10.1.0", 2), ("11.1.0.106", 2), ("11.2.1.2", 3), ("11.4.0.106", 3)])
def test_allocator_stream_position_follows_the_version(version: str, index: int) -> None:
    assert _be(version=version).features.gpu_allocator_stream_index == index
    assert _be("tensorrt_rtx").features.gpu_allocator_stream_index == 3


class _FakeBuf:
    def __init__(self, size: int, addr: int) -> None:
        self.size, self.handle, self.closed_on = size, addr, None

    def close(self, stream: object) -> None:
        self.closed_on = stream


class _FakePool:
    def __init__(self) -> None:
        self.calls: list[tuple[int, object]] = []

    def allocate(self, nbytes: int, stream: object) -> _FakeBuf:
        self.calls.append((nbytes, stream))
        return _FakeBuf(nbytes, 4096 * len(self.calls))


@pytest.mark.parametrize("version", ["10.16.1.11", "11.4.0.106"])
def test_allocator_orders_on_the_stream_tensorrt_passes_even_after_a_zero_first_call(
        version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from trtkit.runtime import memory

    monkeypatch.setattr(sys.modules[memory.make_gpu_allocator.__module__], "to_stream", lambda h: ("stream", h))
    be = _be(version=version)
    pool = _FakePool()
    alloc = memory.make_gpu_allocator(be.trt, pool, "fallback",
                                      stream_index=be.features.gpu_allocator_stream_index)
    stream_last = be.features.gpu_allocator_stream_index == 3
    alloc.allocate_async(512, 256, 0, 0)  # stream 0 and flags 0 look alike: nothing may be guessed from them
    addr = alloc.allocate_async(1000, 256, 0, 0x7F00) if stream_last else alloc.allocate_async(1000, 256, 0x7F00, 0)
    assert pool.calls == [(512, "fallback"), (1000, ("stream", 0x7F00))]
    assert alloc.deallocate_async(addr, 0x7F10) is True
    # TensorRT sends synchronous allocations to allocate_async too: nothing else is overridden.
    assert {"allocate", "deallocate", "reallocate"}.isdisjoint(type(alloc).__dict__)


def _manifest_from_build(tmp_path: Path, **config: object) -> Path:
    """An engine file whose manifest records a version-compatible build with ``config``."""
    plan = TWO_PROFILES
    m = _manifest(compat={"hardware_compatibility": "none", "version_compatible": True})
    m = m.__class__(**{**m.__dict__, "config": dict(config), "plan_size": len(plan),
                       "plan_sha256": __import__("hashlib").sha256(plan).hexdigest()})
    return write_engine_file(tmp_path / "m.engine", plan, m)


def test_version_compatible_plan_needs_explicit_host_code_opt_in(tmp_path: Path) -> None:
    path = _manifest_from_build(tmp_path, version_compatible=True)
    with pytest.raises(EngineIncompatibleError, match=r"allow_host_code=True.*--allow-host-code"):
        load_engine(path, backend=_be())


def test_plan_without_lean_runtime_names_the_option(tmp_path: Path) -> None:
    path = _manifest_from_build(tmp_path, version_compatible=True, exclude_lean_runtime=True)
    with pytest.raises(EngineIncompatibleError, match=r"lean_runtime=PATH.*--lean-runtime"):
        load_engine(path, backend=_be(), allow_host_code=True)


def test_shape_tensor_values_choose_the_profile_and_device_shape_tensors_are_refused() -> None:
    x = _spec("x", [((1,), (8,), (64,)), ((1,), (8,), (64,))], shape=(-1,))
    shp = TensorSpec("shape", "input", lookup("int64"), (2,), location="host", is_shape_tensor=True,
                     profiles=(ShapeRange((1, 1), (2, 4), (8, 8)), ShapeRange((1, 16), (2, 16), (4, 16))))
    assert select_profile([x, shp], {"x": (32,), "shape": (2,)}, values={"shape": (2, 16)}) == 1
    assert select_profile([x, shp], {"x": (32,), "shape": (2,)}, values={"shape": (4, 8)}) == 0
    with pytest.raises(InputError, match="shape values"):
        select_profile([x, shp], {"x": (32,), "shape": (2,)}, values={"shape": (2, 99)})
    with pytest.raises(InputError, match="shape tensor, which TensorRT reads on the CPU"):
        validate_inputs([shp], {"shape": ArrayInfo("device", (2,), "int64", device=0, ptr=256)}, device=0)
